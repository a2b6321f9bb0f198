; The part of the lab kernel that every flavour shares: start-up order,
; console output, the frame allocator, page-table building, demand paging,
; the system-call dispatcher and the program loader.
;
; Nothing here touches privileged state directly. Whatever differs between
; bare metal and Xen (writing a page-table entry, loading CR3, enabling
; interrupts, console output, entering user mode ...) goes through the pv_ops
; table that the flavour's own file fills in. Reading this file next to
; native.s and pv.s shows exactly what paravirtualisation changes.

.equ SYS_pread64,      17
.equ SYS_pwrite64,     18
.equ DISK_FD,          3          ; the disk, open from the start
; The lab's own system calls start at 512, above every Linux x86-64 number.
.equ SYS_lab_ping,     512        ; (IPv4 address, host order) -> 0 when the echo reply came, or -errno
.equ SYS_lab_shell_return, 513    ; (value): back to the shell that ran a user-mode stub (shell.s)
.equ DISK_EBADF,       9
.equ DISK_EINVAL,      22
.equ DISK_ENOSPC,      28

.text

; kmain(rdi = boot info, physical address). Runs in the direct map, paging on.
kmain:
    mov rsp, kstack_top
    mov rax, DIRECT_MAP
    add rdi, rax
    mov [rip + boot_info], rdi
    call [rip + pv_ops + OP_TRAP_INIT]
    lea rdi, [rip + msg_banner]
    call puts
    lea rdi, [rip + flavour_name]
    call puts
    lea rdi, [rip + msg_banner_end]
    call puts
    call mm_init
    call [rip + pv_ops + OP_SYSCALL_INIT]
    call [rip + pv_ops + OP_TIMER_INIT]
    call disk_init
    ; bit 63 of the boot argument ("shell" on the command line): the learner's shell
    ; on the console instead of the program (its "run" command starts the program)
    mov rax, [rip + boot_info]
    mov rdx, [rax + BI_ARG]
    test rdx, rdx
    js shell_main
    call load_program
    ; rax = entry, rdx = user stack; the argument comes from the boot info
    mov rdi, rax
    mov rsi, rdx
    mov rax, [rip + boot_info]
    mov rdx, [rax + BI_ARG]
    call [rip + pv_ops + OP_ENTER_USER]
.never:
    jmp .never

; ---------------------------------------------------------------- console

; puts(rdi = NUL-terminated string)
puts:
    mov rsi, rdi
.scan:
    cmp byte [rsi], 0
    je .write
    inc rsi
    jmp .scan
.write:
    sub rsi, rdi
    jmp [rip + pv_ops + OP_CONSOLE_WRITE]

; put_hex(rdi = value): "0x" and 16 hex digits
put_hex:
    lea rsi, [rip + hex_buf + 18]
    mov rcx, 16
.digit:
    dec rsi
    mov rax, rdi
    and rax, 15
    lea rdx, [rip + hex_digits]
    movzx eax, byte [rdx + rax]
    mov [rsi], al
    shr rdi, 4
    dec rcx
    jnz .digit
    lea rdi, [rip + hex_buf]
    mov rsi, 18
    jmp [rip + pv_ops + OP_CONSOLE_WRITE]

; put_dec(rdi = unsigned value)
put_dec:
    lea rsi, [rip + dec_buf + 20]
    mov rax, rdi
    mov rcx, 10
.dloop:
    xor edx, edx
    div rcx
    add dl, 0x30
    dec rsi
    mov [rsi], dl
    test rax, rax
    jnz .dloop
    lea rdi, [rip + dec_buf + 20]
    sub rdi, rsi
    xchg rdi, rsi
    jmp [rip + pv_ops + OP_CONSOLE_WRITE]

; disk_init(): the flavour's block driver (OP_BLK_INIT), once, and one line
; saying what it found. The driver may point blk_driver at its name.
disk_init:
    call [rip + pv_ops + OP_BLK_INIT]
    test rax, rax
    jle .none
    mov [rip + disk_sectors], rax
    call alloc_frame
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov [rip + disk_page], rax
    lea rdi, [rip + msg_blk]
    call puts
    mov rdi, [rip + blk_driver]
    call puts
    lea rdi, [rip + msg_space]
    call puts
    mov rdi, [rip + disk_sectors]
    call put_dec
    lea rdi, [rip + msg_blk_sectors]
    jmp puts
.none:
    push rax
    lea rdi, [rip + msg_blk_none]
    call puts
    pop rdi
    cmp rdi, -ENODEV
    je .nl
    test rdi, rdi
    jz .nl
    push rdi
    lea rdi, [rip + msg_blk_error]
    call puts
    pop rdi
    neg rdi
    call put_dec
    lea rdi, [rip + msg_blk_close]
    call puts
.nl:
    lea rdi, [rip + msg_newline]
    jmp puts

; ---------------------------------------------------------------- memory

mm_init:
    mov rax, [rip + boot_info]
    mov rcx, [rax + BI_FREE]
    mov [rip + next_free], rcx
    mov rcx, [rax + BI_MEM]
    mov [rip + mem_limit], rcx
    ret

; alloc_frame() -> rax = physical address of a zeroed 4 KiB frame
alloc_frame:
    mov rax, [rip + next_free]
    cmp rax, [rip + mem_limit]
    jae .oom
    lea rdx, [rax + PAGE_SIZE]
    mov [rip + next_free], rdx
    inc qword [rip + frames_used]
    push rax
    push rdi
    mov rdi, DIRECT_MAP
    add rdi, rax
    mov rcx, 512
    xor eax, eax
    rep stosq
    pop rdi
    pop rax
    ret
.oom:
    lea rdi, [rip + msg_oom]
    call puts
    mov rdi, 12
    jmp [rip + pv_ops + OP_SHUTDOWN]

; map_page(rdi = top-level table phys, rsi = virtual address, rdx = leaf entry)
; Walks the four levels, allocating missing tables on the way.
map_page:
    push rbx
    push r12
    push r13
    push r14
    mov rbx, rdi
    mov r12, rsi
    mov r13, rdx
    mov r14, 39
.level:
    mov rax, r12
    mov rcx, r14
    shr rax, cl
    and rax, 511
    mov rdi, DIRECT_MAP
    add rdi, rbx
    lea rdi, [rdi + rax*8]
    cmp r14, 12
    je .leaf
    call [rip + pv_ops + OP_READ_PTE]
    test rax, PTE_P
    jnz .present
    push rdi
    call alloc_frame
    push rax
    mov rdi, rax
    mov rsi, r14
    sub rsi, 3
    mov rax, rsi
    xor edx, edx
    mov rcx, 9
    div rcx
    mov rsi, rax                     ; level of the new table: 3, 2 or 1
    call [rip + pv_ops + OP_ALLOC_PT]
    pop rax
    pop rdi
    mov rbx, rax
    or rax, PTE_P | PTE_RW | PTE_US
    mov rsi, rax
    call [rip + pv_ops + OP_SET_PTE]
    jmp .down
.present:
    mov rcx, PADDR_MASK
    and rax, rcx
    mov rbx, rax
.down:
    sub r14, 9
    jmp .level
.leaf:
    mov rsi, r13
    call [rip + pv_ops + OP_SET_PTE]
    pop r14
    pop r13
    pop r12
    pop rbx
    ret

; do_page_fault(rdi = faulting address, rsi = error code) -> rax = 0 if served
; Serves first touches of the heap with fresh zeroed frames (demand paging).
do_page_fault:
    test rsi, 1                      ; P set: a protection violation, not a missing page
    jnz .refuse
    mov rax, HEAP_BASE
    cmp rdi, rax
    jb .refuse
    cmp rdi, [rip + brk_end]
    jae .refuse
    push rdi
    call alloc_frame
    pop rsi
    and rsi, -4096
    mov rdx, rax
    or rdx, PTE_P | PTE_RW | PTE_US
    mov rax, [rip + nx_bit]
    or rdx, rax
    mov rdi, [rip + user_pml4]
    call map_page
    inc qword [rip + demand_faults]
    xor eax, eax
    ret
.refuse:
    mov rax, 1
    ret

; ---------------------------------------------------------------- system calls

; do_syscall(rdi = number, rsi = arg0, rdx = arg1, rcx = arg2) -> rax
do_syscall:
    inc qword [rip + syscalls]
    cmp rdi, SYS_write
    je .sys_write
    cmp rdi, SYS_getpid
    je .sys_getpid
    cmp rdi, SYS_brk
    je .sys_brk
    cmp rdi, SYS_sched_yield
    je .sys_yield
    cmp rdi, SYS_exit
    je .sys_exit
    cmp rdi, SYS_pread64
    je .sys_pread
    cmp rdi, SYS_pwrite64
    je .sys_pwrite
    cmp rdi, SYS_lab_ping
    je .sys_ping
    cmp rdi, SYS_lab_shell_return
    je sh_return_from_user
    mov rax, -ENOSYS
    ret
.sys_ping:
    ; bring the card up on first use (the driver's handshake, the ARP for the peer), then ping
    push rsi
    call net_init
    pop rdi
    test rax, rax
    jnz .ping_done
    call ping
.ping_done:
    ret
.sys_pread:
    xor edi, edi
    jmp disk_io
.sys_pwrite:
    mov edi, 1
    jmp disk_io
.sys_write:
    ; write(fd, buf, len): the buffer must lie in user space
    mov rax, 0x0000800000000000
    cmp rdx, rax
    jae .efault
    mov rdi, rdx
    add rdi, rcx
    cmp rdi, rax
    jae .efault
    push rcx
    mov rdi, rdx
    mov rsi, rcx
    call [rip + pv_ops + OP_CONSOLE_WRITE]
    pop rax
    ret
.efault:
    mov rax, -EFAULT
    ret
.sys_getpid:
    mov rax, 1
    ret
.sys_yield:
    xor eax, eax
    ret
.sys_brk:
    test rsi, rsi
    jz .brk_now
    mov rax, HEAP_BASE
    cmp rsi, rax
    jb .brk_now
    mov rax, HEAP_LIMIT
    cmp rsi, rax
    ja .brk_now
    mov [rip + brk_end], rsi
.brk_now:
    mov rax, [rip + brk_end]
    ret
.sys_exit:
    push rsi
    lea rdi, [rip + msg_exit]
    call puts
    mov rdi, [rsp]
    call put_dec
    lea rdi, [rip + msg_stats1]
    call puts
    mov rdi, [rip + syscalls]
    call put_dec
    lea rdi, [rip + msg_stats2]
    call puts
    mov rdi, [rip + demand_faults]
    call put_dec
    lea rdi, [rip + msg_stats3]
    call puts
    mov rdi, [rip + ticks]
    call put_dec
    lea rdi, [rip + msg_newline]
    call puts
    pop rdi
    jmp [rip + pv_ops + OP_SHUTDOWN]

; disk_io(rdi = 0 read / 1 write, rsi = fd, rdx = user buffer, rcx = count,
; r10 = offset: the fourth argument, still in its register) -> rax = count
; or -errno. pread64/pwrite64 on fd 3, the disk: whole sectors, at most one
; page, through the kernel's disk page (the block driver takes kernel pages only).
disk_io:
    cmp rsi, DISK_FD
    jne .ebadf
    cmp qword [rip + disk_sectors], 0
    je .enodev
    test rcx, 511
    jnz .einval
    cmp rcx, PAGE_SIZE
    ja .einval
    test r10, 511
    jnz .einval
    test rcx, rcx
    jz .zero
    mov rax, 0x0000800000000000      ; the buffer must lie in user space
    cmp rdx, rax
    jae .efault
    lea r8, [rdx + rcx]
    cmp r8, rax
    ja .efault
    push rbx
    push r12
    push r13
    push r14
    mov rbx, rdi
    mov r12, rdx                     ; user buffer
    mov r13, r10
    shr r13, 9                       ; first sector
    mov r14, rcx
    shr r14, 9                       ; sectors
    mov rax, [rip + disk_sectors]
    cmp r13, rax
    jae .past_end
    sub rax, r13
    cmp r14, rax
    jbe .in_range
    mov r14, rax                     ; cut at the end of the disk
.in_range:
    test rbx, rbx
    jz .io
    mov rdi, [rip + disk_page]       ; a write: the user's data into the disk page
    mov rsi, r12
    mov rcx, r14
    shl rcx, 6
    rep movsq
.io:
    mov rdi, rbx
    mov rsi, r13
    mov rdx, [rip + disk_page]
    mov rcx, r14
    call [rip + pv_ops + OP_BLK_RW]
    test rax, rax
    jnz .done
    test rbx, rbx
    jnz .count
    mov rdi, r12                     ; a read: the disk page out to the user
    mov rsi, [rip + disk_page]
    mov rcx, r14
    shl rcx, 6
    rep movsq
.count:
    mov rax, r14
    shl rax, 9
.done:
    pop r14
    pop r13
    pop r12
    pop rbx
    ret
.past_end:
    xor eax, eax                     ; reading at the end reads nothing
    test rbx, rbx
    jz .done
    mov rax, -DISK_ENOSPC            ; writing there finds no room
    jmp .done
.zero:
    xor eax, eax
    ret
.ebadf:
    mov rax, -DISK_EBADF
    ret
.enodev:
    mov rax, -ENODEV
    ret
.einval:
    mov rax, -DISK_EINVAL
    ret
.efault:
    mov rax, -EFAULT
    ret

; ---------------------------------------------------------------- the program

; load_program() -> rax = entry, rdx = initial user stack pointer
; Builds the user address space: the program's segments where they were
; linked, a stack below USER_STACK_TOP, and the kernel half shared.
load_program:
    push rbx
    push r12
    push r13
    push r14
    push r15
    call alloc_frame
    mov [rip + user_pml4], rax
    mov r15, rax
    mov rdi, rax
    mov rsi, 4
    call [rip + pv_ops + OP_ALLOC_PT]
    mov rdi, r15
    call [rip + pv_ops + OP_SHARE_KERNEL]
    ; map each segment page by page
    mov rbx, [rip + boot_info]
    mov r12, [rbx + BI_NSEG]
    lea r13, [rbx + BI_SEGS]
.seg:
    test r12, r12
    jz .stack
    mov r14, 0
.page:
    cmp r14, [r13 + SEG_SIZE]
    jae .next_seg
    mov rdx, [r13 + SEG_PA]
    add rdx, r14
    or rdx, PTE_P | PTE_US
    test qword [r13 + SEG_FLAGS], 1
    jz .ro
    or rdx, PTE_RW
.ro:
    test qword [r13 + SEG_FLAGS], 2
    jnz .exec
    mov rax, [rip + nx_bit]
    or rdx, rax
.exec:
    mov rsi, [r13 + SEG_VA]
    add rsi, r14
    mov rdi, r15
    call map_page
    add r14, PAGE_SIZE
    jmp .page
.next_seg:
    add r13, SEG_ENTRY_SIZE
    dec r12
    jmp .seg
.stack:
    mov r14, USER_STACK_PAGES
    mov r13, USER_STACK_TOP
.stack_page:
    sub r13, PAGE_SIZE
    call alloc_frame
    mov rdx, rax
    or rdx, PTE_P | PTE_RW | PTE_US
    mov rax, [rip + nx_bit]
    or rdx, rax
    mov rsi, r13
    mov rdi, r15
    call map_page
    dec r14
    jnz .stack_page
    mov rax, HEAP_BASE
    mov [rip + brk_end], rax
    mov rdi, r15
    call [rip + pv_ops + OP_ACTIVATE_MM]
    mov rax, [rip + boot_info]
    mov rax, [rax + BI_ENTRY]
    mov rdx, USER_STACK_TOP
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    ret

; fatal_trap(rdi = vector, rsi = error code, rdx = rip, rcx = cs)
; A trap the kernel cannot serve: from user mode it ends the program, from
; the kernel it stops the machine.
fatal_trap:
    push rcx
    push rdx
    push rsi
    push rdi
    lea rdi, [rip + msg_trap]
    call puts
    mov rdi, [rsp]
    call put_dec
    lea rdi, [rip + msg_trap_err]
    call puts
    mov rdi, [rsp + 8]
    call put_hex
    lea rdi, [rip + msg_trap_rip]
    call puts
    mov rdi, [rsp + 16]
    call put_hex
    lea rdi, [rip + msg_newline]
    call puts
    mov rcx, [rsp + 24]
    add rsp, 32
    test rcx, 3
    jz .kernel
    lea rdi, [rip + msg_killed]
    call puts
    mov rdi, 139
    jmp [rip + pv_ops + OP_SHUTDOWN]
.kernel:
    lea rdi, [rip + msg_panic]
    call puts
    mov rdi, 255
    jmp [rip + pv_ops + OP_SHUTDOWN]

; no_device(): the block or network operation of a kernel flavour that has no
; such device
no_device:
    mov rax, -ENODEV
    ret

; timer_tick(): a timer interrupt's common work, counted for stats: the PIT's
; 100 Hz tick on bare metal, else each one-shot expiry (the local APIC timer's,
; common/hvm_tickless.s, or Xen's PV timer's, common/xen_timer.s)
timer_tick:
    inc qword [rip + ticks]
    ret

.data
boot_info:      .quad 0
kernel_pml4:    .quad 0
user_pml4:      .quad 0
next_free:      .quad 0
mem_limit:      .quad 0
brk_end:        .quad 0
nx_bit:         .quad 0
frames_used:    .quad 0
demand_faults:  .quad 0
syscalls:       .quad 0
ticks:          .quad 0
disk_sectors:   .quad 0
disk_page:      .quad 0
blk_driver:     .quad msg_blk_disk
hex_digits:     .ascii "0123456789abcdef"
hex_buf:        .ascii "0x0000000000000000"
dec_buf:        .zero 24
msg_banner:     .asciz "xenlab kernel ("
msg_banner_end: .asciz ")\n"
msg_newline:    .asciz "\n"
msg_oom:        .asciz "kernel: out of memory\n"
msg_exit:       .asciz "kernel: program exited with code "
msg_stats1:     .asciz "; syscalls "
msg_stats2:     .asciz ", demand faults "
msg_stats3:     .asciz ", timer ticks "
msg_trap:       .asciz "kernel: unhandled trap "
msg_trap_err:   .asciz " error "
msg_trap_rip:   .asciz " at rip "
msg_killed:     .asciz "kernel: program killed\n"
msg_panic:      .asciz "kernel: panic\n"
msg_blk:        .asciz "blk: "
msg_blk_disk:   .asciz "disk"
msg_space:      .asciz " "
msg_blk_sectors: .asciz " sectors\n"
msg_blk_none:   .asciz "blk: no disk"
msg_blk_error:  .asciz " (error "
msg_blk_close:  .asciz ")"

.bss
.align 4096
kstack:         .zero 16384
kstack_top:
