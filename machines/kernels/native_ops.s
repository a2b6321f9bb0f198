; Native operations: the real privileged instructions, executed at ring 0.
; Shared by the bare-metal kernel (native.s) and the HVM guest kernel
; (hvm.s), which runs unmodified in non-root ring 0: on bare metal these
; instructions touch the hardware; in an HVM guest some of them cause VM exits.
;
; The file that includes this one sets the .text origin, the flavour name and
; the operations it does differently: TRAP_INIT_OP, CONSOLE_WRITE_OP, IDLE_OP,
; SHUTDOWN_OP, TIMER_INIT_OP, CLOCK_NS_OP and TIMER_ARM_OP (the native_*
; routines below, or its own).

pv_ops:
    .quad native_set_pte
    .quad native_load_cr3
    .quad native_flush_one
    .quad native_irq_disable
    .quad native_irq_enable
    .quad native_set_kstack
    .quad CONSOLE_WRITE_OP
    .quad IDLE_OP
    .quad SHUTDOWN_OP
    .quad TRAP_INIT_OP
    .quad native_syscall_init
    .quad TIMER_INIT_OP
    .quad native_enter_user
    .quad native_alloc_pt
    .quad native_activate_mm
    .quad native_read_pte
    .quad native_share_kernel
    .quad BLK_INIT_OP
    .quad BLK_RW_OP
    .quad NET_INIT_OP
    .quad NET_SEND_OP
    .quad NET_POLL_OP
    .quad CLOCK_NS_OP
    .quad TIMER_ARM_OP
.align 16

native_set_pte:
    mov [rdi], rsi
    ret

native_load_cr3:
    mov cr3, rdi
    ret

native_flush_one:
    invlpg [rdi]
    ret

native_irq_disable:
    cli
    ret

native_irq_enable:
    sti
    ret

native_set_kstack:
    mov [rip + tss + 4], rdi         ; TSS.RSP0: traps and interrupts from user mode
    mov [rip + syscall_rsp0], rdi    ; and syscall, which switches stacks in software
    ret

; native_console_write(rdi = buffer, rsi = length): one byte per out to port 0xe9
native_console_write:
    test rsi, rsi
    jz .done
.byte_out:
    mov al, [rdi]
    out 0xe9, al
    inc rdi
    dec rsi
    jnz .byte_out
.done:
    ret

native_idle:
    sti
    hlt
    ret

; native_clock_ns() -> rax: the PIT's ticks of 10 ms, in ns (its period is the
; clock's resolution: a wait ends at the first tick past its deadline)
native_clock_ns:
    mov rax, [rip + ticks]
    mov rcx, 10000000
    mul rcx
    ret

; native_timer_arm(rdi = deadline): nothing to arm, the PIT ticks every 10 ms and
; each tick ends the idle
native_timer_arm:
    ret

; native_shutdown(rdi = code): ACPI power-off as QEMU's q35 machine takes it
native_shutdown:
    mov dx, 0x604
    mov ax, 0x2000
    out dx, ax
.stay:
    cli
    hlt
    jmp .stay

native_alloc_pt:
    ret

native_activate_mm:
    jmp native_load_cr3

native_read_pte:
    mov rax, [rdi]
    ret

; native_share_kernel(rdi = new top-level table): copy the direct-map slot of
; the boot table, so the kernel half is the same in every address space
native_share_kernel:
    mov rax, [rip + kernel_pml4]
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov rsi, [rax + 273*8]
    add rdi, rcx
    add rdi, 273*8
    jmp native_set_pte

native_trap_init:
    ; remember the boot page table: the kernel half of every address space comes from it
    mov rax, cr3
    mov [rip + kernel_pml4], rax
    ; NX is usable once EFER.NXE is on (the boot stub set it)
    mov rax, 0x8000000000000000
    mov [rip + nx_bit], rax
    ; GDT with a TSS descriptor, then the task register
    lea rax, [rip + tss]
    lea rdi, [rip + gdt + TSS_SEL]
    mov rcx, rax
    and rcx, 0xffff
    shl rcx, 16
    or rcx, 103                      ; limit: a 104-byte TSS
    mov rdx, rax
    shr rdx, 16
    and rdx, 0xff
    shl rdx, 32
    or rcx, rdx
    mov rdx, 0x89                    ; present, type 9: available 64-bit TSS
    shl rdx, 40
    or rcx, rdx
    mov rdx, rax
    shr rdx, 24
    and rdx, 0xff
    shl rdx, 56
    or rcx, rdx
    mov [rdi], rcx
    mov rdx, rax
    shr rdx, 32
    mov [rdi + 8], rdx
    lea rax, [rip + gdt]
    mov [rip + gdt_ptr + 2], rax
    lgdt [rip + gdt_ptr]
    mov rax, TSS_SEL
    ltr ax
    mov rdi, kstack_top
    call native_set_kstack
    ; IDT: the exceptions the kernel handles, the timer, and the rest fatal
    mov rdi, 0
    lea rsi, [rip + trap_de]
    call set_gate
    mov rdi, 6
    lea rsi, [rip + trap_ud]
    call set_gate
    mov rdi, 8
    lea rsi, [rip + trap_df]
    call set_gate
    mov rdi, 13
    lea rsi, [rip + trap_gp]
    call set_gate
    mov rdi, 14
    lea rsi, [rip + trap_pf]
    call set_gate
    mov rdi, 0x20
    lea rsi, [rip + irq_timer]
    call set_gate
    lea rax, [rip + idt]
    mov [rip + idt_ptr + 2], rax
    lidt [rip + idt_ptr]
    ret

; set_gate(rdi = vector, rsi = handler): a DPL 0 interrupt gate into KERNEL_CS
set_gate:
    lea rdx, [rip + idt]
    shl rdi, 4
    add rdi, rdx
    mov rax, rsi
    and rax, 0xffff
    mov rcx, KERNEL_CS
    shl rcx, 16
    or rax, rcx
    mov rcx, 0x8e                    ; present, DPL 0, 64-bit interrupt gate
    shl rcx, 40
    or rax, rcx
    mov rcx, rsi
    shr rcx, 16
    and rcx, 0xffff
    shl rcx, 48
    or rax, rcx
    mov [rdi], rax
    mov rcx, rsi
    shr rcx, 32
    mov [rdi + 8], rcx
    ret

native_syscall_init:
    ; STAR: kernel CS in 47:32, user base selector in 63:48 (sysret adds 16 for CS, 8 for SS)
    mov ecx, 0xc0000081
    xor eax, eax
    mov edx, 0x00100008
    wrmsr
    ; LSTAR: the entry point
    mov ecx, 0xc0000082
    lea rax, [rip + syscall_entry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    ; FMASK: clear IF on entry, so no interrupt arrives on the user stack
    mov ecx, 0xc0000084
    mov eax, 0x200
    xor edx, edx
    wrmsr
    ret

native_timer_init:
    ; 8259A: ICW1 (edge, cascade, ICW4), ICW2 vector base 0x20, ICW3, ICW4 (8086 mode)
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xfe                     ; unmask IRQ 0 only
    out 0x21, al
    ; 8254 channel 0, lobyte/hibyte, mode 2 (rate generator): 100 Hz = 1193182 / 11932
    mov al, 0x34
    out 0x43, al
    mov al, 0x9c
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
    ret

; native_enter_user(rdi = entry, rsi = user stack, rdx = argument)
native_enter_user:
    push USER_DS
    push rsi
    push 0x202                       ; IF set
    push USER_CS
    push rdi
    mov rdi, rdx
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    iretq

; ------------------------------------------------------------ entry points

; syscall: rcx = user rip, r11 = user rflags, still on the user stack
syscall_entry:
    mov [rip + user_rsp], rsp
    mov rsp, [rip + syscall_rsp0]
    push rcx
    push r11
    push rdi
    push rsi
    push rdx
    push r8
    push r9
    push r10
    mov rcx, rdx
    mov rdx, rsi
    mov rsi, rdi
    mov rdi, rax
    call do_syscall
    pop r10
    pop r9
    pop r8
    pop rdx
    pop rsi
    pop rdi
    pop r11
    pop rcx
    mov rsp, [rip + user_rsp]
    sysretq

trap_pf:
    save_caller_saved
    mov rdi, cr2
    mov rsi, [rsp + 72]
    call do_page_fault
    test rax, rax
    jnz .fatal
    restore_caller_saved
    add rsp, 8                       ; the error code
    iretq
.fatal:
    add rsp, 72
    mov rdi, 14
    pop rsi
    mov rdx, [rsp]
    mov rcx, [rsp + 8]
    jmp fatal_trap

trap_de:
    push 0
    push 0
    jmp trap_common
trap_ud:
    push 0
    push 6
    jmp trap_common
trap_df:
    push 8
    jmp trap_common
trap_gp:
    push 13
    jmp trap_common
; stack: vector, error code, rip, cs, ...
trap_common:
    pop rdi
    pop rsi
    mov rdx, [rsp]
    mov rcx, [rsp + 8]
    jmp fatal_trap

irq_timer:
    push rax
    call timer_tick
    mov al, 0x20                     ; EOI to the 8259A
    out 0x20, al
    pop rax
    iretq

.data
user_rsp:   .quad 0
syscall_rsp0: .quad kstack_top
.align 16
gdt:        .quad 0
            .quad 0x00af9a000000ffff     ; 0x08 kernel code
            .quad 0x00cf92000000ffff     ; 0x10 kernel data
            .quad 0x00cff2000000ffff     ; 0x18 user data
            .quad 0x00affa000000ffff     ; 0x20 user code
            .quad 0                      ; 0x28 TSS (16 bytes, filled in at boot)
            .quad 0
gdt_end:
gdt_ptr:    .word gdt_end - gdt - 1
            .quad 0
.align 16
idt_ptr:    .word 4095
            .quad 0
.align 16
tss:        .zero 104
.align 4096
idt:        .zero 4096

