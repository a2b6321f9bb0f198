; An ATA disk driver for the IDE controller's primary channel, in PIO mode.
;
; The disk is the master on the legacy primary channel: its task file is at
; ports 0x1F0-0x1F7 and its device control register at 0x3F6. The driver
; polls the status register instead of taking IRQ 14 (it sets nIEN), and
; moves every sector as 256 16-bit `in`/`out` on the data port: the ISA has
; no `rep insw`, and neither does this driver need one to be correct.
;
; On bare metal each access is a bus cycle. In an HVM guest each one is a VM
; exit, and Xen passes it to the device model in dom0 as an ioreq: one sector
; costs about 260 round trips to QEMU. That price is what PV drivers avoid.
;
; ide_init and ide_rw are the kernel's OP_BLK_INIT and OP_BLK_RW.

.equ ATA_DATA,        0x1f0
.equ ATA_COUNT,       0x1f2          ; sector count
.equ ATA_LBA0,        0x1f3          ; LBA bits 7-0
.equ ATA_LBA1,        0x1f4          ; LBA bits 15-8
.equ ATA_LBA2,        0x1f5          ; LBA bits 23-16
.equ ATA_DEVICE,      0x1f6          ; 0xa0 master, | 0x40 LBA, | LBA bits 27-24
.equ ATA_STATUS,      0x1f7          ; read: status; write: command
.equ ATA_CONTROL,     0x3f6          ; write: device control
.equ ATA_BSY,         0x80
.equ ATA_DF,          0x20
.equ ATA_DRQ,         0x08
.equ ATA_ERR,         0x01
.equ ATA_NIEN,        0x02           ; device control: no interrupts, the driver polls
.equ ATA_READ,        0x20           ; READ SECTORS (LBA28)
.equ ATA_WRITE,       0x30           ; WRITE SECTORS (LBA28)
.equ ATA_FLUSH,       0xe7           ; FLUSH CACHE
.equ ATA_IDENTIFY,    0xec           ; IDENTIFY DEVICE
.equ ATA_POLL_LIMIT,  100000         ; status reads before the driver gives up
.equ IDE_EINVAL,      22             ; EINVAL

.text

; ide_init() -> rax = the disk's sectors, or -ENODEV
ide_init:
    mov dx, ATA_CONTROL
    mov al, ATA_NIEN
    out dx, al
    mov dx, ATA_DEVICE
    mov al, 0xa0                     ; select the master
    out dx, al
    mov dx, ATA_STATUS
    in al, dx
    cmp al, 0xff                     ; nothing decodes the ports: no controller
    je .none
    test al, al                      ; a controller with no drive there
    jz .none
    call ide_wait
    test rax, rax
    js .none
    mov dx, ATA_STATUS
    mov al, ATA_IDENTIFY
    out dx, al
    call ide_wait_drq
    test rax, rax
    js .none
    lea rdi, [rip + ide_identify]
    call ide_read_block
    mov eax, [rip + ide_identify + 60*2]   ; words 60-61: sectors addressable with LBA28
    mov [rip + ide_sectors], rax
    lea rcx, [rip + ide_name]
    mov [rip + blk_driver], rcx     ; the kernel's line: "blk: <driver> <sectors> sectors"
    ret
.none:
    mov qword [rip + ide_sectors], 0
    mov rax, -ENODEV
    ret

; ide_rw(rdi = 0 read / 1 write, rsi = sector, rdx = buffer, rcx = sectors 1-8)
; -> rax = 0, or -errno
ide_rw:
    push rbx
    push r12
    push r13
    push r14
    mov r12, rdi
    mov rbx, rsi
    mov r13, rdx
    mov r14, rcx
    mov rax, [rip + ide_sectors]
    test rax, rax
    jz .nodev
    lea rcx, [r14 - 1]
    cmp rcx, 7                       ; unsigned: a count of 0 fails here too
    ja .einval
    lea rcx, [rbx + r14]
    cmp rbx, rax
    jae .eio
    cmp rcx, rax
    ja .eio
    call ide_wait
    test rax, rax
    js .eio
    ; the task file: LBA28 address, count, then the command
    mov rax, rbx
    shr rax, 24
    and al, 0x0f
    or al, 0xe0                      ; master, LBA
    mov dx, ATA_DEVICE
    out dx, al
    mov al, r14b
    mov dx, ATA_COUNT
    out dx, al
    mov al, bl
    mov dx, ATA_LBA0
    out dx, al
    mov rax, rbx
    shr rax, 8
    mov dx, ATA_LBA1
    out dx, al
    shr rax, 8
    mov dx, ATA_LBA2
    out dx, al
    mov al, ATA_READ
    test r12, r12
    jz .command
    mov al, ATA_WRITE
.command:
    mov dx, ATA_STATUS
    out dx, al
.sector:
    call ide_wait_drq                ; one DRQ block of 256 words per sector
    test rax, rax
    js .eio
    test r12, r12
    jnz .write
    mov rdi, r13
    call ide_read_block
    jmp .next
.write:
    mov rsi, r13
    call ide_write_block
.next:
    add r13, 512
    dec r14
    jnz .sector
    call ide_wait_ok
    test rax, rax
    js .eio
    test r12, r12
    jz .ok
    mov dx, ATA_STATUS               ; written: make sure the data left the disk's cache
    mov al, ATA_FLUSH
    out dx, al
    call ide_wait_ok
    test rax, rax
    js .eio
.ok:
    xor eax, eax
    jmp .out
.nodev:
    mov rax, -ENODEV
    jmp .out
.einval:
    mov rax, -IDE_EINVAL
    jmp .out
.eio:
    mov rax, -EIO
.out:
    pop r14
    pop r13
    pop r12
    pop rbx
    ret

; ide_wait() -> rax = the status once BSY is clear, or -EIO after too long
ide_wait:
    mov r8d, ATA_POLL_LIMIT
    mov dx, ATA_STATUS
.poll:
    in al, dx
    test al, ATA_BSY
    jz .ready
    dec r8d
    jnz .poll
    mov rax, -EIO
    ret
.ready:
    movzx eax, al
    ret

; ide_wait_ok() -> rax = 0 if the command ended without an error, else -EIO
ide_wait_ok:
    call ide_wait
    test rax, rax
    js .fail
    test al, ATA_ERR | ATA_DF
    jnz .fail
    xor eax, eax
    ret
.fail:
    mov rax, -EIO
    ret

; ide_wait_drq() -> rax = 0 when the disk has a block of data ready (DRQ),
; -EIO when the command failed or ended without one
ide_wait_drq:
    call ide_wait
    test rax, rax
    js .fail
    test al, ATA_ERR | ATA_DF
    jnz .fail
    test al, ATA_DRQ
    jz .fail
    xor eax, eax
    ret
.fail:
    mov rax, -EIO
    ret

; ide_read_block(rdi = buffer): 256 words from the data port
ide_read_block:
    mov ecx, 256
    mov dx, ATA_DATA
.word:
    in ax, dx
    mov [rdi], ax
    add rdi, 2
    dec ecx
    jnz .word
    ret

; ide_write_block(rsi = buffer): 256 words to the data port
ide_write_block:
    mov ecx, 256
    mov dx, ATA_DATA
.word:
    mov ax, [rsi]
    out dx, ax
    add rsi, 2
    dec ecx
    jnz .word
    ret

.data
ide_sectors:     .quad 0
ide_name:        .asciz "ide (primary master, LBA28, PIO)"

.bss
.align 16
ide_identify:    .zero 512
