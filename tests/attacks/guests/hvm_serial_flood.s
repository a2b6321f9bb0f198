; A hostile HVM kernel: it writes to COM1's transmit register (0x3F8, the device
; model's 16550) for ever and never a newline, so the serial line the device model
; holds for the trace, its serial log and the domain's console log are all offered
; far more than they keep.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov dx, 0x3F8
    mov eax, 0x61
.again:
    out dx, al
    inc eax
    cmp eax, 0x7B
    jne .again
    mov eax, 0x61
    jmp .again
