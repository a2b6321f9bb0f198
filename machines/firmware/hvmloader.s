; The lab's hvmloader: the firmware an HVM domain starts in.
;
; Xen starts the vCPU here in flat protected mode, ring 0, paging off, like a
; reset. It says hello on the debug port (every byte an I/O exit that Xen
; handles), then hands over to the kernel the domain builder loaded, as a
; boot loader does: rbx = boot information, a small stack, paging still off.

.org 0x8000
_start:
    lea rsi, [rip + banner]
.print:
    mov al, [rsi]
    test al, al
    jz .boot
    out 0xe9, al
    inc rsi
    jmp .print
.boot:
    mov rbx, 0x7000
    mov rsp, 0x6ff0
    jmp [rip + kernel_entry]

.align 16
kernel_entry:   .quad 0          ; written by the domain builder
banner:         .asciz "hvmloader: lab firmware, booting the kernel\n"
