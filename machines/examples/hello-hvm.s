; hello-hvm.s: the smallest HVM kernel: an unmodified one, that knows nothing
; of Xen. It prints one line on the debug port and powers off through ACPI.
; Boot it with: xl create examples/hello-hvm.cfg
;
; What an HVM kernel is handed (docs/guest-abi.md): the lab's firmware
; (machines/firmware/hvmloader.s) runs first, then jumps to the kernel's entry
; (_start) as a boot loader would: flat protected mode, ring 0, paging off,
; rbx = the lab's boot information (docs/boot.md), rsp = 0x6ff0.
;
; Everything it touches is emulated: each `out` is a VM exit (IO_INSTRUCTION).
; Port 0xe9 is Xen's own debug port (hvm_print_line: Xen prints the line as
; "(d1) ..."); 0xb004 is the ACPI PM1a control register of qemu-xen's layout
; (ACPI_PM1A_CNT_BLK_ADDRESS_V1, public/hvm/ioreq.h), which the device model
; turns into a power-off when SLP_EN is written.

.text
.org 0x100000                    ; paging is off: linked at its guest-physical address
_start:
    lea rsi, [rip + message]
.print:
    mov al, [rsi]
    test al, al
    jz .off
    out 0xe9, al                 ; one byte, one VM exit
    inc rsi
    jmp .print
.off:
    mov dx, 0xb004               ; PM1a_CNT: SLP_TYP 0 (S5 in Xen's DSDT) | SLP_EN
    mov ax, 0x2000
    out dx, ax
.stay:
    cli
    hlt
    jmp .stay

message: .asciz "hello from an HVM kernel: port 0xe9, then ACPI S5\n"
