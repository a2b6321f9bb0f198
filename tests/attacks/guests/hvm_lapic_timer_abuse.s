; A hostile HVM kernel that programs its local APIC timer with absurd values.
;
; hvmloader leaves it in ring 0 with paging off, so its addresses are guest-physical.
; Each answer goes in `results` (one quadword each): a divide configuration and an
; initial count of all ones, a count of 0, vectors below 16 in LVT timer (Xen's
; vlapic_set_irq() refuses them at delivery with "receive illegal vector" in the ESR,
; and raises LVT error's vector if that entry is unmasked and valid), all ones in LVT
; timer (a reserved mode: no count), the TSC-deadline mode (not modelled), then a
; periodic count of 1 (10 ns, which Xen's create_periodic_time() stretches to 0.1 ms)
; taken in hlt twenty times, and last the software disable while it runs.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov rsp, stack_top
    mov rdi, 0x30
    lea rsi, [rip + tick_irq]
    call set_gate
    mov rdi, 0x51
    lea rsi, [rip + error_irq]
    call set_gate
    lea rax, [rip + idt]
    mov [rip + idt_ptr + 2], rax
    lidt [rip + idt_ptr]
    lea rbx, [rip + results]
    mov rsi, 0xfee00000
    mov eax, 0x1ff
    mov [rsi + 0xf0], eax                ; SVR: software enable
    ; 0: divide configuration of all ones keeps bits 0, 1 and 3: divide by 1
    mov eax, 0xffffffff
    mov [rsi + 0x3e0], eax
    mov eax, [rsi + 0x3e0]
    mov [rbx], rax
    ; 1: periodic, vector 0x30, initial count of all ones: counting down from it
    mov eax, 0x20030
    mov [rsi + 0x320], eax
    mov eax, 0xffffffff
    mov [rsi + 0x380], eax
    mov eax, [rsi + 0x390]
    mov [rbx + 8], rax
    ; 2: an initial count of 0 stops the timer: the count reads 0
    xor eax, eax
    mov [rsi + 0x380], eax
    mov eax, [rsi + 0x390]
    mov [rbx + 16], rax
    ; 3: one-shot with vector 5, count 1: at expiry nothing is raised, the ESR says why
    mov eax, 0x5
    mov [rsi + 0x320], eax
    mov eax, 1
    mov [rsi + 0x380], eax
    call spin
    mov eax, [rsi + 0x280]
    mov [rbx + 24], rax                  ; before any ESR write: 0
    mov [rsi + 0x280], eax               ; a write latches the pending errors
    mov eax, [rsi + 0x280]
    mov [rbx + 32], rax
    mov eax, [rsi + 0x200]               ; IRR[0]: vectors 0-31
    mov [rbx + 40], rax
    mov [rsi + 0x280], eax               ; no new error since: 0
    mov eax, [rsi + 0x280]
    mov [rbx + 48], rax
    ; 4: LVT error unmasked with an illegal vector 3: the error folds in, nothing raised
    mov eax, 0x3
    mov [rsi + 0x370], eax
    mov eax, 0x5
    mov [rsi + 0x320], eax
    mov eax, 1
    mov [rsi + 0x380], eax
    call spin
    mov [rsi + 0x280], eax
    mov eax, [rsi + 0x280]
    mov [rbx + 56], rax
    ; 5: LVT error with vector 0x51: an illegal timer vector 7 raises the error's vector
    mov eax, 0x51
    mov [rsi + 0x370], eax
    mov eax, 0x7
    mov [rsi + 0x320], eax
    mov eax, 1
    mov [rsi + 0x380], eax
    call spin
    mov eax, [rsi + 0x220]               ; IRR[2]: vectors 0x40-0x5f
    mov [rbx + 64], rax
    mov [rsi + 0x280], eax
    mov eax, [rsi + 0x280]
    mov [rbx + 72], rax
    sti
    nop
    cli
    ; 6: all ones in LVT timer: masked, reserved mode 3: no count, TMICT ignored
    mov eax, 0xffffffff
    mov [rsi + 0x320], eax
    mov eax, [rsi + 0x320]
    mov [rbx + 80], rax
    mov eax, 0xffffffff
    mov [rsi + 0x380], eax
    mov eax, [rsi + 0x380]
    mov [rbx + 88], rax
    mov eax, [rsi + 0x390]
    mov [rbx + 96], rax
    ; 7: TSC-deadline mode: the initial count is not written
    mov eax, 0x40030
    mov [rsi + 0x320], eax
    mov eax, 1000
    mov [rsi + 0x380], eax
    mov eax, [rsi + 0x380]
    mov [rbx + 104], rax
    ; 8: periodic with a count of 1: twenty ticks, each in hlt
    mov eax, 0x20030
    mov [rsi + 0x320], eax
    mov eax, 1
    mov [rsi + 0x380], eax
.wait_ticks:
    cli
    mov rax, [rip + ticks]
    cmp rax, 20
    jae .ticks_done
    sti
    hlt
    jmp .wait_ticks
.ticks_done:
    ; 9: software disable while it runs: every LVT entry masked, no more ticks
    mov eax, 0xff
    mov [rsi + 0xf0], eax
    mov eax, [rip + ticks]
    mov [rbx + 112], rax
    sti
    mov rcx, 200000
.after_disable:
    dec rcx
    jnz .after_disable
    cli
    mov eax, [rip + ticks]
    mov [rbx + 120], rax
    mov rax, 1
    mov [rip + done], rax
    mov dx, 0xb004                       ; ACPI PM1a_CNT (V1): power-off
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang

spin:
    push rcx
    mov rcx, 500
.spin_loop:
    dec rcx
    jnz .spin_loop
    pop rcx
    ret

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

tick_irq:
    push rax
    push rdx
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rdx, [rip + ticks]
    test rdx, rdx
    jnz .not_first
    mov [rip + first_tick], rax
.not_first:
    mov [rip + last_tick], rax
    inc qword [rip + ticks]
    call eoi
    pop rdx
    pop rax
    iretq

error_irq:
    inc qword [rip + errors]
    call eoi
    iretq

.data
results:
    .zero 256
ticks:           .quad 0
errors:          .quad 0
first_tick:      .quad 0
last_tick:       .quad 0
done:            .quad 0
idt_ptr:         .word 4095
                 .quad 0
.align 4096
idt:             .zero 4096

.bss
.align 4096
stack:           .zero 16384
stack_top:
