; A hostile HVM kernel: it asks Xen to write the hypercall page at a guest-physical
; address far beyond its memory (4 TiB), then would power off. It installs no IDT.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov ecx, 0x40000000
    xor eax, eax
    mov edx, 0x400
    wrmsr
    mov dx, 0x604
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang
