; The boot stub of the native and HVM kernels: it runs at its physical
; address with paging off, as a boot loader (or hvmloader) leaves the CPU.
; It builds a page table that maps the first 1 GiB both at 0 (so the stub
; keeps running) and at DIRECT_MAP, turns on 64-bit paging and jumps to kmain
; in the upper half.

; ------------------------------------------------------------ boot stub
.section .boot
.org 0x100000
_start:
    ; rbx = boot info (physical), paging off, ring 0
    mov rsp, boot_stack_top
    mov r12, rbx
    ; boot_pml4[0] and boot_pml4[273] both point at boot_pdpt
    mov rax, boot_pdpt
    or rax, PTE_P | PTE_RW
    mov rdi, boot_pml4
    mov [rdi], rax
    mov [rdi + 273*8], rax
    ; boot_pdpt[0] -> boot_pd
    mov rax, boot_pd
    or rax, PTE_P | PTE_RW
    mov rdi, boot_pdpt
    mov [rdi], rax
    ; boot_pd: 512 entries of 2 MiB, covering the first 1 GiB
    mov rdi, boot_pd
    mov rax, PTE_P | PTE_RW | PTE_PS
    mov rcx, 512
.fill:
    mov [rdi], rax
    add rax, 0x200000
    add rdi, 8
    dec rcx
    jnz .fill
    ; CR4.PAE, then EFER.LME | NXE | SCE, then CR3, then CR0.PG | WP
    mov rax, 0x20
    mov cr4, rax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x901
    wrmsr
    mov rax, boot_pml4
    mov cr3, rax
    mov rax, cr0
    mov rdx, 0x80010001
    or rax, rdx
    mov cr0, rax
    ; into the upper half
    mov rdi, r12
    mov rax, kmain
    jmp rax

.align 4096
boot_pml4:  .zero 4096
boot_pdpt:  .zero 4096
boot_pd:    .zero 4096
            .zero 4096
boot_stack_top:

