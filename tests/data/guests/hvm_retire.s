; A tiny HVM kernel whose instructions take every path Xen can carry one out by.
;
; hvmloader leaves it in ring 0 with paging off. Each run below is eight instructions of
; one kind, between labels, so a test can run it from the first label and check that an
; instruction-bounded run of N instructions ends N instructions on, whichever way each
; went: a port Xen emulates (the vPIC), a port the device model emulates (COM1's line
; status), a port nobody claims (Xen's null handler), MMIO Xen emulates (the local
; APIC's version register), MMIO nobody claims (past the end of RAM), MMIO the device
; model emulates (the Xen platform device's memory BAR, an ioreq), CPUID and a
; hypercall (VM exits Xen completes), and plain instructions.

.data
.org 0x300000
.bss
.org 0x340000

.text
.org 0x200000
_start:
    mov dx, 0x3fd
    mov rsi, 0xfee00030
    mov rdi, 0x4000000
    mov rax, 9999
    mov r8, 0xf0000020
io_xen:
    .rept 8
    in al, 0x21
    .endr
io_dm:
    .rept 8
    in al, dx
    .endr
io_none:
    .rept 8
    in al, 0x80
    .endr
mmio_xen:
    .rept 8
    mov eax, [rsi]
    .endr
mmio_none:
    .rept 8
    mov rbx, [rdi]
    .endr
mmio_dm:
    .rept 8
    mov rbx, [r8]
    .endr
exits:
    .rept 4
    cpuid
    .endr
    mov rax, 9999
    .rept 3
    vmcall
    .endr
plain:
    .rept 8
    add rcx, 1
    .endr
done:
    jmp done
