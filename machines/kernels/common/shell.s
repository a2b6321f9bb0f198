; The guest shell: a prompt on the kernel's console and a few commands that
; each exercise one path the guest modes do differently.
;
;   help                 the commands
;   disk read N          read sector N (OP_BLK_RW, the disk found at boot) and show its text
;   disk write N TEXT    write TEXT into sector N
;   ping DOMID|A.B.C.D   ICMP echo (net.s): domid 0 is dom0 (10.0.0.1), domid D is 10.0.0.(10+D)
;   syscall              time the kernel's getpid path (called directly: no trap)
;   touch                grow the heap by a page and write to it: a demand fault
;   cpuid                time a cpuid (a VM exit in every hardware-virtualised guest)
;   stats                the kernel's counters
;   run                  start the workload (does not come back)
;
; Console input comes from the 16550 UART (COM1) on bare metal and in HVM
; guests, and from the console ring's in[] (in_cons, in_prod) in PV and PVH
; guests, where xenconsoled writes what is typed and notifies the guest. A
; PVHVM guest has both, as Linux's hvc0 (hvc_xen.c) and ttyS0: the shell
; reads the ring first, then COM1; what it prints goes to the primary one,
; the ring.
; While no key is waiting the shell answers the network (net_poll_all) and
; idles until the next interrupt or event. A ring console's input comes with
; an event, so a tickless kernel sleeps with no timer armed. COM1's comes
; with its receive interrupt where the kernel turns it on (SHELL_SERIAL 2:
; hvm.s and hvm_pvdrivers.s, common/hvm_tickless.s, and pvhvm.s), and so
; sleeps as long; where the kernel leaves it off (SHELL_SERIAL 1: native.s,
; whose PIT ticks) the idle ends 10 ms on at the latest to look at the UART
; again.
;
; Needs: pv_ops (OP_CONSOLE_WRITE, OP_IDLE, OP_IRQ_ENABLE, OP_BLK_RW,
; OP_ENTER_USER, OP_CLOCK_NS, OP_TIMER_ARM); puts, put_dec, put_hex, load_program, do_syscall,
; boot_info, brk_end, disk_sectors and disk_page (the disk found at boot),
; kstack_top and the counters (kernel.s); net_init, net_ping_report, net_poll_all
; and the net_* counters (net.s); SHELL_CONSOLE_RING from the flavour: the
; address of its console_page variable (console_ring.s) for a ring console,
; else 0; SHELL_SERIAL: 1 if the flavour reads COM1 too (or only) and polls it,
; 2 if it reads COM1 on its receive interrupt, else 0.
; Provides: shell_main (never returns).

.equ SH_COM1,           0x3f8
.equ SH_COM1_LSR,       0x3fd
.equ SH_LSR_DR,         0x01
.equ SH_CONS_IN_CONS,   3072
.equ SH_CONS_IN_PROD,   3076
.equ SH_CONS_IN_SIZE,   1024
.equ SH_LINE_MAX,       200
.equ SH_SECTOR,         512
.equ SH_UART_POLL_NS,   10000000         ; how often an idle shell looks at COM1

.equ SH_STUB_VA,            0x0000000070000000

.text

shell_main:
    mov rsp, kstack_top
    ; the shell waits with interrupts (events) on, as an idle kernel does:
    ; each wait for a key or a frame lasts until the next interrupt or event
    call [rip + pv_ops + OP_IRQ_ENABLE]
    lea rdi, [rip + sh_msg_banner]
    call puts
    call net_init                    ; up from the start, so the guest answers pings
.prompt:
    lea rdi, [rip + sh_msg_prompt]
    call puts
    call sh_readline
    call sh_execute
    jmp .prompt

; sh_getc() -> rax = the next input byte, or -1 if none is waiting: the console
; ring's first (hvc0), then COM1 (ttyS0), as far as the flavour has each
sh_getc:
    mov rax, SHELL_CONSOLE_RING
    test rax, rax
    jnz .ring
.serial:
    mov rax, SHELL_SERIAL
    test rax, rax
    jz .none
    mov dx, SH_COM1_LSR
    in al, dx
    cmp al, 0xff                     ; nothing at the port (reads float high): no UART
    je .none
    test al, SH_LSR_DR
    jz .none
    mov dx, SH_COM1
    xor eax, eax
    in al, dx
    ret
.ring:
    mov rcx, [rax]                   ; the console page
    test rcx, rcx
    jz .serial
    mov eax, [rcx + SH_CONS_IN_CONS]
    cmp eax, [rcx + SH_CONS_IN_PROD]
    je .serial
    mov edx, eax
    and edx, SH_CONS_IN_SIZE - 1
    movzx edx, byte [rcx + rdx]
    inc eax
    mov [rcx + SH_CONS_IN_CONS], eax
    push rdx
    ; room in in[] again: tell xenconsoled (an empty write notifies it)
    lea rdi, [rip + sh_line]
    xor esi, esi
    call [rip + pv_ops + OP_CONSOLE_WRITE]
    pop rax
    ret
.none:
    mov rax, -1
    ret

; sh_idle(): wait for input: the next event, and at most SH_UART_POLL_NS when
; the flavour polls COM1 (SHELL_SERIAL 1: its receive interrupt stays off)
sh_idle:
    mov rax, SHELL_SERIAL & 1
    test rax, rax
    jz .sleep
    call [rip + pv_ops + OP_CLOCK_NS]
    add rax, SH_UART_POLL_NS
    mov rdi, rax
    call [rip + pv_ops + OP_TIMER_ARM]
.sleep:
    jmp [rip + pv_ops + OP_IDLE]

; sh_readline(): one line into sh_line (NUL-terminated), echoed as typed
sh_readline:
    push rbx
    xor ebx, ebx
.key:
    call sh_getc
    test rax, rax
    jns .got
    call net_poll_all
    call sh_idle
    jmp .key
.got:
    cmp al, 13
    je .end
    cmp al, 10
    je .end
    cmp al, 8
    je .erase
    cmp al, 0x7f
    je .erase
    cmp al, 0x20
    jb .key
    cmp ebx, SH_LINE_MAX
    jae .key
    lea rcx, [rip + sh_line]
    mov [rcx + rbx], al
    inc ebx
    lea rdi, [rcx + rbx - 1]
    mov rsi, 1
    call [rip + pv_ops + OP_CONSOLE_WRITE]
    jmp .key
.erase:
    test ebx, ebx
    jz .key
    dec ebx
    lea rdi, [rip + sh_msg_erase]
    mov rsi, 3
    call [rip + pv_ops + OP_CONSOLE_WRITE]
    jmp .key
.end:
    lea rcx, [rip + sh_line]
    mov byte [rcx + rbx], 0
    lea rdi, [rip + msg_newline]
    call puts
    pop rbx
    ret

; sh_word(rsi = text) -> rsi = the first non-blank character
sh_skip:
    cmp byte [rsi], ' '
    jne .out
    inc rsi
    jmp sh_skip
.out:
    ret

; sh_match(rsi = text, rdi = word) -> rax = 1 and rsi past the word (and the
; blanks after it) if the text starts with the word followed by a blank or
; the end, else rax = 0 and rsi unchanged
sh_match:
    mov rdx, rsi
.char:
    mov al, [rdi]
    test al, al
    jz .end
    cmp al, [rdx]
    jne .no
    inc rdi
    inc rdx
    jmp .char
.end:
    mov al, [rdx]
    test al, al
    jz .yes
    cmp al, ' '
    jne .no
.yes:
    mov rsi, rdx
    call sh_skip
    mov eax, 1
    ret
.no:
    xor eax, eax
    ret

; sh_number(rsi = text) -> rax = the decimal number there, rsi past it and the
; blanks; rax = -1 if there is no number
sh_number:
    xor eax, eax
    movzx ecx, byte [rsi]
    sub ecx, '0'
    cmp ecx, 9
    ja .none
.digit:
    movzx ecx, byte [rsi]
    sub ecx, '0'
    cmp ecx, 9
    ja .end
    imul rax, rax, 10
    add rax, rcx
    inc rsi
    jmp .digit
.end:
    push rax
    call sh_skip
    pop rax
    ret
.none:
    mov rax, -1
    ret

; sh_execute(): run the command in sh_line
sh_execute:
    lea rsi, [rip + sh_line]
    call sh_skip
    cmp byte [rsi], 0
    je .out
    lea rdi, [rip + sh_cmd_help]
    call sh_match
    test eax, eax
    jnz sh_help
    lea rdi, [rip + sh_cmd_disk]
    call sh_match
    test eax, eax
    jnz sh_disk
    lea rdi, [rip + sh_cmd_ping]
    call sh_match
    test eax, eax
    jnz sh_ping
    lea rdi, [rip + sh_cmd_syscall]
    call sh_match
    test eax, eax
    jnz sh_syscall
    lea rdi, [rip + sh_cmd_touch]
    call sh_match
    test eax, eax
    jnz sh_touch
    lea rdi, [rip + sh_cmd_cpuid]
    call sh_match
    test eax, eax
    jnz sh_cpuid
    lea rdi, [rip + sh_cmd_stats]
    call sh_match
    test eax, eax
    jnz sh_stats
    lea rdi, [rip + sh_cmd_run]
    call sh_match
    test eax, eax
    jnz sh_run
    lea rdi, [rip + sh_msg_unknown]
    call puts
.out:
    ret

sh_help:
    lea rdi, [rip + sh_msg_help]
    jmp puts

; ---------------------------------------------------------------- disk

; sh_disk(rsi = "read N" or "write N TEXT")
sh_disk:
    push rbx
    push r12
    push r13
    xor r12, r12                     ; 0 read, 1 write
    lea rdi, [rip + sh_cmd_read]
    call sh_match
    test eax, eax
    jnz .number
    mov r12, 1
    lea rdi, [rip + sh_cmd_write]
    call sh_match
    test eax, eax
    jz .usage
.number:
    call sh_number
    test rax, rax
    js .usage
    mov rbx, rax                     ; sector
    mov r13, rsi                     ; the text to write
    ; the disk the kernel found at boot (disk_init), through its disk page
    cmp qword [rip + disk_sectors], 0
    je .no_disk
    cmp rbx, [rip + disk_sectors]
    jae .range
    mov rdi, [rip + disk_page]
    test r12, r12
    jz .io
    ; the sector: the text, then zeros
    mov rcx, SH_SECTOR
    xor eax, eax
    push rdi
    rep stosb
    pop rdi
    mov rsi, r13
    xor ecx, ecx
.copy:
    mov al, [rsi + rcx]
    test al, al
    jz .io
    mov [rdi + rcx], al
    inc ecx
    cmp ecx, SH_SECTOR - 1
    jb .copy
.io:
    mov rdi, r12
    mov rsi, rbx
    mov rdx, [rip + disk_page]
    mov rcx, 1
    call [rip + pv_ops + OP_BLK_RW]
    test rax, rax
    jnz .failed
    lea rdi, [rip + sh_msg_sector]
    call puts
    mov rdi, rbx
    call put_dec
    test r12, r12
    jz .show
    lea rdi, [rip + sh_msg_written]
    call puts
    jmp .out
.show:
    lea rdi, [rip + sh_msg_colon]
    call puts
    ; its text: printable bytes up to the first NUL, at most 64
    mov rdi, [rip + disk_page]
    xor esi, esi
.len:
    movzx eax, byte [rdi + rsi]
    test eax, eax
    jz .print
    cmp eax, 0x20
    jb .dot
    cmp eax, 0x7e
    jbe .keep
.dot:
    mov byte [rdi + rsi], '.'
.keep:
    inc esi
    cmp esi, 64
    jb .len
.print:
    call [rip + pv_ops + OP_CONSOLE_WRITE]
    lea rdi, [rip + msg_newline]
    call puts
    jmp .out
.failed:
    push rax
    lea rdi, [rip + sh_msg_disk_error]
    call puts
    pop rdi
    neg rdi
    call put_dec
    lea rdi, [rip + msg_newline]
    call puts
    jmp .out
.no_disk:
    lea rdi, [rip + sh_msg_no_disk]
    call puts
    jmp .out
.range:
    lea rdi, [rip + sh_msg_range]
    call puts
    mov rdi, [rip + disk_sectors]
    call put_dec
    lea rdi, [rip + sh_msg_sectors]
    call puts
    jmp .out
.usage:
    lea rdi, [rip + sh_msg_disk_usage]
    call puts
.out:
    pop r13
    pop r12
    pop rbx
    ret

; ---------------------------------------------------------------- ping

; sh_ping(rsi = "DOMID" or "A.B.C.D")
sh_ping:
    push rbx
    call sh_number
    test rax, rax
    js .usage
    cmp byte [rsi], '.'
    je .dotted
    cmp byte [rsi], 0
    jne .usage
    ; a domid: 0 is dom0's bridge, D is 10.0.0.(10+D)
    mov ebx, 0x0a000001
    test rax, rax
    jz .go
    cmp rax, 245
    ja .usage
    lea ebx, [rax + 0x0a00000a]
    jmp .go
.dotted:
    mov rbx, rax
    mov r8, 3
.part:
    cmp byte [rsi], '.'
    jne .usage
    inc rsi
    push rbx
    call sh_number
    pop rbx
    test rax, rax
    js .usage
    cmp rax, 255
    ja .usage
    shl ebx, 8
    or ebx, eax
    dec r8
    jnz .part
    cmp byte [rsi], 0
    jne .usage
.go:
    mov edi, ebx
    call net_ping_report
    pop rbx
    ret
.usage:
    lea rdi, [rip + sh_msg_ping_usage]
    call puts
    pop rbx
    ret

; ---------------------------------------------------------------- the others

; sh_cycles_report(rdi = message, rsi = cycles)
sh_cycles_report:
    push rsi
    call puts
    pop rdi
    call put_dec
    lea rdi, [rip + sh_msg_cycles]
    jmp puts

; sh_syscall(): a real system call, from user mode: a five-instruction program
; at SH_STUB_VA makes getpid, then the lab's call 513, which brings the kernel
; back here. So the call takes the flavour's whole path: a PV guest's syscall
; bounces through Xen, an HVM guest's never leaves the guest.
sh_syscall:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    call sh_user_space
    call sh_map_stub
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov [rip + sh_t0], rax
    mov [rip + sh_saved_rsp], rsp
    lea rdi, [rsp - 512]             ; the stub's system calls land below the shell's frames
    and rdi, -16
    call [rip + pv_ops + OP_SET_KSTACK]
    mov rdi, SH_STUB_VA
    mov rsi, USER_STACK_TOP
    xor edx, edx
    call [rip + pv_ops + OP_ENTER_USER]
; sh_syscall_back: where system call 513 resumes the shell (do_syscall has put
; the shell's stack back and r12 = what getpid returned to the stub)
sh_syscall_back:
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, [rip + sh_t0]
    mov r13, rax
    lea rdi, [rip + sh_msg_getpid]
    call puts
    mov rdi, r12
    call put_dec
    lea rdi, [rip + sh_msg_from_user]
    call puts
    lea rdi, [rip + sh_msg_in]
    mov rsi, r13
    call sh_cycles_report
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

; sh_return_from_user(rsi = the stub's argument): system call 513. Drops the
; system call's own frame: the shell's stack and kernel entry stack come back,
; and interrupts (events) are on again, as the shell waits with them on.
sh_return_from_user:
    mov rax, [rip + sh_saved_rsp]
    test rax, rax
    jz .not_ours
    mov qword [rip + sh_saved_rsp], 0
    mov rsp, rax
    mov r12, rsi
    mov rdi, kstack_top
    call [rip + pv_ops + OP_SET_KSTACK]
    call [rip + pv_ops + OP_IRQ_ENABLE]
    jmp sh_syscall_back
.not_ours:
    mov rax, -ENOSYS                 ; no shell is waiting: an unknown system call
    ret

; sh_map_stub(): the stub's code on a user page at SH_STUB_VA (once)
sh_map_stub:
    cmp qword [rip + sh_stub_mapped], 0
    jne .done
    call alloc_frame
    push rax
    mov rdi, DIRECT_MAP
    add rdi, rax
    lea rsi, [rip + sh_stub]
    mov rcx, (sh_stub_end - sh_stub) / 8
    rep movsq
    pop rdx
    or rdx, PTE_P | PTE_US           ; read-only, executable, user
    mov rsi, SH_STUB_VA
    mov rdi, [rip + user_pml4]
    call map_page
    mov qword [rip + sh_stub_mapped], 1
.done:
    ret

; The stub itself: position-independent, copied to SH_STUB_VA.
sh_stub:
    mov eax, SYS_getpid
    syscall
    mov rdi, rax
    mov eax, SYS_lab_shell_return
    syscall
sh_stub_end:

; sh_user_space(): the program's address space, built once (load_program), so
; that the heap exists and `run` can start the program in it later
sh_user_space:
    cmp qword [rip + sh_user_entry], 0
    jne .out
    call load_program
    mov [rip + sh_user_entry], rax
    mov [rip + sh_user_stack], rdx
.out:
    ret

; sh_touch(): grow the heap by a page and write to it: the write faults
; (#PF, not present) and the kernel's demand paging maps a fresh zeroed frame
sh_touch:
    push rbx
    push r12
    call sh_user_space
    mov rbx, [rip + brk_end]
    lea rax, [rbx + PAGE_SIZE]
    mov rcx, HEAP_LIMIT
    cmp rax, rcx
    ja .full
    mov [rip + brk_end], rax
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r12, rax
    mov byte [rbx], 1                ; the first touch: a page fault, served
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub r12, rax
    neg r12
    lea rdi, [rip + sh_msg_touch]
    call puts
    mov rdi, rbx
    call put_hex
    lea rdi, [rip + sh_msg_faults]
    call puts
    mov rdi, [rip + demand_faults]
    call put_dec
    lea rdi, [rip + sh_msg_in]
    mov rsi, r12
    call sh_cycles_report
    pop r12
    pop rbx
    ret
.full:
    lea rdi, [rip + sh_msg_heap_full]
    call puts
    pop r12
    pop rbx
    ret

sh_cpuid:
    push rbx
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r8, rax
    xor eax, eax
    xor ecx, ecx
    cpuid
    lea rdi, [rip + sh_cpuid_text]
    mov [rdi], ebx
    mov [rdi + 4], edx
    mov [rdi + 8], ecx
    push r8
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    lea rdi, [rip + sh_cpuid_text]
    mov [rdi + 15], ebx
    mov [rdi + 19], ecx
    mov [rdi + 23], edx
    rdtsc
    shl rdx, 32
    or rax, rdx
    pop r8
    sub rax, r8
    push rax
    lea rdi, [rip + sh_msg_cpuid]
    call puts
    lea rdi, [rip + sh_cpuid_text]
    call puts
    pop rsi
    lea rdi, [rip + sh_msg_two_in]
    call sh_cycles_report
    pop rbx
    ret

; sh_stat(rdi = label, rsi = value)
sh_stat:
    push rsi
    call puts
    pop rdi
    jmp put_dec

sh_stats:
    lea rdi, [rip + sh_st_syscalls]
    mov rsi, [rip + syscalls]
    call sh_stat
    lea rdi, [rip + sh_st_faults]
    mov rsi, [rip + demand_faults]
    call sh_stat
    lea rdi, [rip + sh_st_ticks]
    mov rsi, [rip + ticks]
    call sh_stat
    lea rdi, [rip + sh_st_frames]
    mov rsi, [rip + frames_used]
    call sh_stat
    lea rdi, [rip + sh_st_tx]
    mov rsi, [rip + net_tx_frames]
    call sh_stat
    lea rdi, [rip + sh_st_rx]
    mov rsi, [rip + net_rx_frames]
    call sh_stat
    lea rdi, [rip + sh_st_echo]
    mov rsi, [rip + net_echo_replies]
    call sh_stat
    lea rdi, [rip + msg_newline]
    jmp puts

; sh_run(): the workload, as kmain would have started it
sh_run:
    call sh_user_space
    mov rdi, [rip + sh_user_entry]
    mov rsi, [rip + sh_user_stack]
    mov rax, [rip + boot_info]
    mov rdx, [rax + BI_ARG]
    shl rdx, 1                       ; without bit 63 (the shell flag): the program's argument
    shr rdx, 1
    call [rip + pv_ops + OP_ENTER_USER]
.never:
    jmp .never

.data
sh_user_entry:      .quad 0
sh_saved_rsp:       .quad 0
sh_t0:              .quad 0
sh_stub_mapped:     .quad 0
sh_msg_from_user:   .asciz " (from user mode)"
sh_user_stack:      .quad 0
sh_cpuid_text:      .ascii "............ / ............"
                    .byte 0
sh_msg_banner:      .asciz "xenlab shell: type help for the commands\n"
sh_msg_prompt:      .asciz "guest# "
sh_msg_erase:       .ascii "\x08 \x08"
sh_msg_unknown:     .asciz "unknown command; type help\n"
sh_msg_help:        .ascii "help                 this list\n"
                    .ascii "disk read N          show sector N\n"
                    .ascii "disk write N TEXT    write TEXT into sector N\n"
                    .ascii "ping DOMID|A.B.C.D   ICMP echo (0: dom0, D: 10.0.0.(10+D))\n"
                    .ascii "syscall              time the getpid path\n"
                    .ascii "touch                fault in a fresh heap page\n"
                    .ascii "cpuid                time two cpuid instructions\n"
                    .ascii "stats                the kernel's counters\n"
                    .asciz "run                  start the workload\n"
sh_cmd_help:        .asciz "help"
sh_cmd_disk:        .asciz "disk"
sh_cmd_read:        .asciz "read"
sh_cmd_write:       .asciz "write"
sh_cmd_ping:        .asciz "ping"
sh_cmd_syscall:     .asciz "syscall"
sh_cmd_touch:       .asciz "touch"
sh_cmd_cpuid:       .asciz "cpuid"
sh_cmd_stats:       .asciz "stats"
sh_cmd_run:         .asciz "run"
sh_msg_sector:      .asciz "sector "
sh_msg_written:     .asciz " written\n"
sh_msg_colon:       .asciz ": "
sh_msg_disk_error:  .asciz "disk: I/O failed, errno "
sh_msg_no_disk:     .asciz "disk: no disk\n"
sh_msg_range:       .asciz "disk: the disk has "
sh_msg_sectors:     .asciz " sectors\n"
sh_msg_disk_usage:  .asciz "usage: disk read N | disk write N TEXT\n"
sh_msg_ping_usage:  .asciz "usage: ping DOMID | ping A.B.C.D\n"
sh_msg_getpid:      .asciz "getpid() = "
sh_msg_in:          .asciz " in "
sh_msg_two_in:      .asciz ", both in "
sh_msg_cycles:      .asciz " cycles\n"
sh_msg_touch:       .asciz "touch: heap page "
sh_msg_faults:      .asciz " faulted in; demand faults "
sh_msg_heap_full:   .asciz "touch: the heap is at its limit\n"
sh_msg_cpuid:       .asciz "cpuid: "
sh_st_syscalls:     .asciz "syscalls "
sh_st_faults:       .asciz ", demand faults "
sh_st_ticks:        .asciz ", timer ticks "
sh_st_frames:       .asciz ", frames "
sh_st_tx:           .asciz ", frames sent "
sh_st_rx:           .asciz ", received "
sh_st_echo:         .asciz ", echo replies "

.bss
sh_line:            .zero SH_LINE_MAX + 8
.text
