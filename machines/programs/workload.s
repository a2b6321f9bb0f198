; workload: the user program every mode runs unchanged.
;
; It does the kinds of work whose cost differs between bare metal, PV and
; HVM, and proves it did them right with a checksum:
;   1. system calls (getpid, many times)          -> syscall / bounce / no exit
;   2. grows its heap with brk and touches every   -> demand-paging page faults
;      fresh page                                     and page-table updates
;   3. computes over that memory (xorshift fill,   -> plain instructions, loads
;      FNV-1a fold)                                   and stores through the MMU
;   4. writes one disk sector derived from the     -> pwrite64/pread64 on fd 3:
;      checksum, reads it back, folds what it read    blkfront ring and grants,
;      into the checksum                              IDE port I/O, or no disk
;   5. pings dom0 (10.0.0.1) with the lab's        -> netfront rings, grants and
;      system call 512                                event channel, NE2000 port
;                                                     I/O, or no network card
;   6. prints a report and the checksum            -> console output
;
; Without a disk (-ENODEV) step 4 folds the sector it meant to write, so the
; checksum is the same with a disk or without one, in every mode.
;
; rdi at entry: the number of rounds of step 3 (0 means 1).

.equ SYS_write,   1
.equ SYS_brk,     12
.equ SYS_getpid,  39
.equ SYS_exit,    60
.equ SYS_pread64, 17
.equ SYS_pwrite64, 18
.equ DISK_FD,     3         ; the kernel's disk
.equ ENODEV,      19
.equ SYS_lab_ping, 512      ; the lab's own system call: ping an IPv4 address
.equ CALLS,       64        ; getpid calls
.equ PAGES,       32        ; heap pages touched
.equ QWORDS,      PAGES * 512

.text
.org 0x400000
_start:
    mov r15, rdi
    test r15, r15
    jnz .have_rounds
    mov r15, 1
.have_rounds:
    lea rdi, [rip + msg_hello]
    call print

    ; 1. system calls: fold each pid into the checksum
    xor r14, r14
    xor r12, r12
.calls:
    mov eax, SYS_getpid
    syscall
    add r14, rax
    inc r12
    cmp r12, CALLS
    jb .calls

    ; 2. grow the heap and touch each new page once
    mov eax, SYS_brk
    xor edi, edi
    syscall
    mov rbx, rax                       ; heap start
    lea rdi, [rax + PAGES * 4096]
    mov eax, SYS_brk
    syscall
    mov rcx, PAGES
    mov rdi, rbx
.touch:
    mov [rdi], rcx                     ; first touch: a page fault the kernel serves
    add rdi, 4096
    dec rcx
    jnz .touch

    ; 3. compute: xorshift64 fill, then an FNV-1a fold, r15 rounds
    mov r13, 0x9e3779b97f4a7c15        ; xorshift state
.round:
    mov rdi, rbx
    mov rcx, QWORDS
.fill:
    mov rax, r13
    shl rax, 13
    xor r13, rax
    mov rax, r13
    shr rax, 7
    xor r13, rax
    mov rax, r13
    shl rax, 17
    xor r13, rax
    mov [rdi], r13
    add rdi, 8
    dec rcx
    jnz .fill
    mov rax, 0xcbf29ce484222325        ; FNV-1a offset basis
    mov rdx, 0x100000001b3             ; FNV prime
    mov rdi, rbx
    mov rcx, QWORDS
.fold:
    xor rax, [rdi]
    imul rax, rdx
    add rdi, 8
    dec rcx
    jnz .fold
    add r14, rax
    dec r15
    jnz .round

    ; 4. the disk: sector 0 gets 64 qwords of xorshift64 seeded from the
    ;    checksum, is read back into another buffer, and what came back is folded
    mov rax, 0x5851f42d4c957f2d
    xor rax, r14
    lea rdi, [rip + sector_out]
    mov rcx, 64
.sector:
    mov rdx, rax
    shl rdx, 13
    xor rax, rdx
    mov rdx, rax
    shr rdx, 7
    xor rax, rdx
    mov rdx, rax
    shl rdx, 17
    xor rax, rdx
    mov [rdi], rax
    add rdi, 8
    dec rcx
    jnz .sector
    mov eax, SYS_pwrite64
    mov edi, DISK_FD
    lea rsi, [rip + sector_out]
    mov edx, 512
    xor r10d, r10d                     ; offset 0
    syscall
    mov rbx, rax
    mov eax, SYS_pread64               ; (made even without a disk: the same system calls in every mode)
    mov edi, DISK_FD
    lea rsi, [rip + sector_in]
    mov edx, 512
    xor r10d, r10d
    syscall
    cmp rbx, -ENODEV
    je .no_disk
    cmp rbx, 512
    jne .disk_error
    cmp rax, 512
    jne .disk_error
    lea rdi, [rip + msg_disk_ok]
    call print
    lea r12, [rip + sector_in]
    jmp .fold_sector
.no_disk:
    lea rdi, [rip + msg_no_disk]
    call print
    lea r12, [rip + sector_out]        ; what the disk would have given back
    jmp .fold_sector
.disk_error:
    lea rdi, [rip + msg_disk_error]
    call print
    lea r12, [rip + sector_in]         ; whatever came back: the checksum shows it
.fold_sector:
    mov rax, 0xcbf29ce484222325
    mov rdx, 0x100000001b3
    mov rcx, 64
.fold_disk:
    xor rax, [r12]
    imul rax, rdx
    add r12, 8
    dec rcx
    jnz .fold_disk
    add r14, rax

    ; 5. the network: ping dom0 (10.0.0.1; on bare metal the peer at the other end of
    ;    the cable). Nothing of it enters the checksum: the same sum with a network or without.
    mov eax, SYS_lab_ping
    mov edi, 0x0a000001
    syscall
    lea rdi, [rip + msg_ping_ok]
    test rax, rax
    jz .ping_said
    lea rdi, [rip + msg_no_net]
    cmp rax, -ENODEV
    je .ping_said
    lea rdi, [rip + msg_ping_lost]
.ping_said:
    call print

    ; 6. report
    lea rdi, [rip + msg_sum]
    call print
    mov rdi, r14
    call print_hex
    lea rdi, [rip + msg_nl]
    call print
    mov eax, SYS_exit
    xor edi, edi
    syscall
.hang:
    jmp .hang

; print(rdi = NUL-terminated string) through write(1, ...)
print:
    mov rsi, rdi
    xor edx, edx
.len:
    cmp byte [rsi + rdx], 0
    je .go
    inc rdx
    jmp .len
.go:
    mov eax, SYS_write
    mov edi, 1
    syscall
    ret

; print_hex(rdi = value)
print_hex:
    lea rsi, [rip + hexbuf + 18]
    mov rcx, 16
.nib:
    dec rsi
    mov rax, rdi
    and rax, 15
    lea rdx, [rip + digits]
    movzx eax, byte [rdx + rax]
    mov [rsi], al
    shr rdi, 4
    dec rcx
    jnz .nib
    mov eax, SYS_write
    mov edi, 1
    lea rsi, [rip + hexbuf]
    mov edx, 18
    syscall
    ret

.data
msg_hello:  .asciz "workload: system calls, fresh memory, computation\n"
msg_sum:    .asciz "workload: checksum "
msg_nl:     .asciz "\n"
digits:     .ascii "0123456789abcdef"
hexbuf:     .ascii "0x0000000000000000"
msg_disk_ok:    .asciz "workload: disk ok\n"
msg_no_disk:    .asciz "workload: no disk\n"
msg_disk_error: .asciz "workload: disk error\n"
msg_ping_ok:    .asciz "workload: ping 10.0.0.1 ok\n"
msg_no_net:     .asciz "workload: no network\n"
msg_ping_lost:  .asciz "workload: ping 10.0.0.1 got no reply\n"
.align 8
sector_out: .zero 512
sector_in:  .zero 512
