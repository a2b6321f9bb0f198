; A hostile HVM kernel: it writes to the debug port 0xE9 (hvm_print_line) for ever and
; never a newline, so Xen's per-domain line buffer fills again and again, and the
; console log is offered far more than it keeps.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov dx, 0xE9
    mov eax, 0x41
.again:
    out dx, al
    inc eax
    cmp eax, 0x5B
    jne .again
    mov eax, 0x41
    jmp .again
