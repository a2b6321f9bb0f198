; A hostile HVM kernel that touches guest-physical memory it has no RAM for.
;
; hvmloader leaves it in ring 0 with paging off, so its addresses are guest-physical.
; It reads and writes a gfn past the end of its RAM, the Xen platform device's memory
; BAR (QEMU's), the local APIC's page, gfns far above its memory and at the top of a
; 48-bit address space, copies from MMIO into its RAM with rep movsq, fills MMIO with a
; rep stosq of 2^32 elements, and records every answer in `results`. Then it jumps into
; MMIO: the fetch reads no instruction, and with no IDT the #UD ends it.

.data
.org 0x300000
results:
    .zero 256
copy_buf:
    .zero 64
probes_done:
    .quad 0

.bss
.org 0x340000

.text
.org 0x200000
_start:
    lea rbx, [rip + results]
    ; past the end of its 16 MiB of RAM: read, write, read again
    mov rsi, 0x4000000
    mov rax, [rsi]
    mov [rbx], rax
    mov rax, 0x5ec2e7
    mov [rsi], rax
    mov rax, [rsi]
    mov [rbx + 8], rax
    ; a byte and a dword of the same hole
    xor eax, eax
    mov al, [rsi + 3]
    mov [rbx + 16], rax
    mov eax, [rsi + 12]
    mov [rbx + 24], rax
    ; the Xen platform device's BAR1 (QEMU's memory space)
    mov rsi, 0xf0000020
    mov rax, 0x1111
    mov [rsi], rax
    mov rax, [rsi]
    mov [rbx + 32], rax
    ; the local APIC's page
    mov rsi, 0xfee00030
    mov eax, [rsi]
    mov [rbx + 40], rax
    ; far above its memory, and the last page of a 48-bit address space
    mov rsi, 0x800000000
    mov rax, [rsi]
    mov [rbx + 48], rax
    mov rsi, 0xfffffffff000
    mov rax, 0x2222
    mov [rsi + 8], rax
    mov rax, [rsi + 8]
    mov [rbx + 56], rax
    ; rep movsq: four quadwords from the hole into its own RAM
    mov rsi, 0x4000100
    lea rdi, [rip + copy_buf]
    mov rcx, 4
    rep movsq
    mov [rbx + 64], rcx
    ; rep stosq of 3 * 4096 + 5 quadwords into the hole: Xen clips each emulation to 4096
    mov rdi, 0x4000000
    mov rax, 0x3333
    mov rcx, 12293
    rep stosq
    mov qword [rip + probes_done], 1
    ; execute from MMIO
    mov rax, 0x4000000
    jmp rax
