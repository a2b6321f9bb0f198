; A small HVM kernel that runs on its local APIC's timer (Xen's vlapic.c).
;
; hvmloader leaves it in ring 0 with paging off, so its addresses are guest-physical.
; It enables the local APIC (SVR), divides the bus clock by 1 and then:
;   1. one-shot: LVT timer vector 0x40, initial count 50,000 (500 us); it waits in hlt
;      until the interrupt wakes it, and records the current count before and after;
;   2. periodic: vector 0x41, initial count 20,000 (200 us); it sleeps in hlt through
;      five interrupts, recording the TSC at each, then masks the timer;
;   3. masked one-shot: vector 0x42 with the mask bit, initial count 1,000: it spins
;      until the count reads 0; no interrupt may come;
; then powers off. Every handler ends its interrupt with an EOI to the MMIO register.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov rsp, stack_top
    mov rdi, 0x40
    lea rsi, [rip + oneshot_irq]
    call set_gate
    mov rdi, 0x41
    lea rsi, [rip + periodic_irq]
    call set_gate
    mov rdi, 0x42
    lea rsi, [rip + masked_irq]
    call set_gate
    lea rax, [rip + idt]
    mov [rip + idt_ptr + 2], rax
    lidt [rip + idt_ptr]
    mov rsi, 0xfee00000
    mov eax, 0x1ff
    mov [rsi + 0xf0], eax                ; SVR: software enable, spurious vector 0xff
    mov eax, 0xb
    mov [rsi + 0x3e0], eax               ; divide by 1
    ; ---- 1. one-shot
    mov eax, 0x40
    mov [rsi + 0x320], eax               ; LVT timer: one-shot, vector 0x40
    mov eax, 50000
    mov [rsi + 0x380], eax               ; initial count: the timer starts
    mov eax, [rsi + 0x390]
    mov [rip + count_armed], rax
.wait_oneshot:
    cli
    mov rax, [rip + oneshots]
    test rax, rax
    jnz .oneshot_done
    sti
    hlt
    jmp .wait_oneshot
.oneshot_done:
    mov eax, [rsi + 0x390]
    mov [rip + count_after], rax
    ; ---- 2. periodic
    mov eax, 0x20041
    mov [rsi + 0x320], eax               ; LVT timer: periodic, vector 0x41
    mov eax, 20000
    mov [rsi + 0x380], eax               ; initial count: 200 us a period
.wait_periodic:
    cli
    mov rax, [rip + periodics]
    cmp rax, 5
    jae .periodic_done
    sti
    hlt
    jmp .wait_periodic
.periodic_done:
    mov eax, 0x30041
    mov [rsi + 0x320], eax               ; masked: no more ticks
    mov eax, [rsi + 0x390]
    mov [rip + count_periodic], rax      ; a periodic count reloads: never 0
    ; ---- 3. masked one-shot
    mov eax, 0x10042
    mov [rsi + 0x320], eax
    mov eax, 1000
    mov [rsi + 0x380], eax
.spin_masked:
    mov eax, [rsi + 0x390]
    test eax, eax
    jnz .spin_masked
    sti
    mov rcx, 2000
.spin_more:
    dec rcx
    jnz .spin_more
    cli
    mov eax, [rsi + 0x200 + 0x20]        ; IRR[2]: vectors 0x40-0x5f
    mov [rip + irr_masked], rax
    mov dx, 0xb004                       ; ACPI PM1a_CNT (V1): power-off
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang

; set_gate(rdi = vector, rsi = handler): a present DPL 0 interrupt gate, CS 0x08
set_gate:
    lea rdx, [rip + idt]
    shl rdi, 4
    add rdi, rdx
    mov rax, rsi
    and rax, 0xffff
    mov rcx, 0x08
    shl rcx, 16
    or rax, rcx
    mov rcx, 0x8e
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

eoi:
    push rsi
    push rax
    mov rsi, 0xfee00000
    xor eax, eax
    mov [rsi + 0xb0], eax
    pop rax
    pop rsi
    ret

oneshot_irq:
    inc qword [rip + oneshots]
    call eoi
    iretq

periodic_irq:
    push rax
    push rcx
    push rdx
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rcx, [rip + periodics]
    cmp rcx, 8
    jae .no_room
    lea rdx, [rip + tick_tsc]
    mov [rdx + rcx*8], rax
.no_room:
    inc qword [rip + periodics]
    call eoi
    pop rdx
    pop rcx
    pop rax
    iretq

masked_irq:
    inc qword [rip + masked]
    call eoi
    iretq

.data
results:
count_armed:     .quad 0x5a5a
count_after:     .quad 0x5a5a
count_periodic:  .quad 0x5a5a
irr_masked:      .quad 0x5a5a
oneshots:        .quad 0
periodics:       .quad 0
masked:          .quad 0
tick_tsc:        .quad 0, 0, 0, 0, 0, 0, 0, 0
idt_ptr:         .word 4095
                 .quad 0
.align 4096
idt:             .zero 4096

.bss
.align 4096
stack:           .zero 16384
stack_top:
