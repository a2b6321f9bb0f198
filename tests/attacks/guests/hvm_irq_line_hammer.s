; A hostile HVM kernel against the device model's interrupt lines, with
; interrupts off throughout (it never takes one):
;   1. COM1 in loopback with a byte in its receive buffer, then IER toggled
;      between 0 and RDA 500 times: IRQ 4 up and down each time;
;   2. the NE2000's interrupt line register (PCI config 0x3c of 00:04.0)
;      overwritten with 0xff, then remote DMA complete (ISR.RDC) raised and
;      IMR toggled between 0 and RDC 500 times: INTA up and down each time;
;   3. every ISR bit acknowledged with IMR all ones, then power off.

.data
.org 0x300000
.bss
.org 0x340000

.equ ROUNDS, 500
.equ COM1, 0x3f8
.equ NE2K, 0xc100

.text
.org 0x200000
_start:
    cli
    ; 1. COM1: loopback, one byte in RBR, then IER on and off
    mov dx, COM1 + 4
    mov al, 0x10
    out dx, al
    mov dx, COM1
    mov al, 0x41
    out dx, al
    mov ecx, ROUNDS
.uart:
    mov dx, COM1 + 1
    mov al, 1
    out dx, al
    xor eax, eax
    out dx, al
    dec ecx
    jnz .uart
    ; 2. the card's interrupt line register, then RDC and IMR on and off
    mov dx, 0xcf8
    mov eax, 0x8000203c
    out dx, eax
    mov dx, 0xcfc
    mov eax, 0xff
    out dx, eax
    mov dx, NE2K + 0x0a            ; RBCR0/1 = 0: a remote read of nothing
    xor eax, eax
    out dx, al
    mov dx, NE2K + 0x0b
    out dx, al
    mov dx, NE2K                   ; CR: remote read, start: RDC at once
    mov al, 0x0a
    out dx, al
    mov ecx, ROUNDS
.nic:
    mov dx, NE2K + 0x0f
    mov al, 0x40
    out dx, al
    xor eax, eax
    out dx, al
    dec ecx
    jnz .nic
    ; 3. IMR all ones, then every ISR bit acknowledged
    mov dx, NE2K + 0x0f
    mov al, 0xff
    out dx, al
    mov dx, NE2K + 0x07
    out dx, al
    mov byte [rip + done], 1
    mov dx, 0xb004                 ; ACPI S5 (PM1a_CNT of qemu-xen)
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang

.data
done: .byte 0
