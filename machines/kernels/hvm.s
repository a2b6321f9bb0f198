; The lab kernel as an HVM guest: the native kernel, unmodified.
;
; It runs in non-root ring 0 and executes the same privileged instructions as
; on bare metal (native_ops.s); the VMCS decides which of them leave the
; guest as VM exits: port I/O, hlt, cpuid, some MSRs. Its memory is guest-
; physical, translated again by Xen's EPT (or shadowed, with hap=0).
;
; The one addition is what Linux also does on an HVM guest: look for Xen
; with CPUID, give it a hypercall page through the MSR that CPUID names, and
; ask for Xen's version with a hypercall (vmcall on Intel, vmmcall on AMD,
; inside the page Xen wrote).
;
; Its disk is the emulated IDE disk (common/ide.s), the same driver as on
; bare metal: every port access it makes is an I/O exit and an ioreq to the
; device model in dom0.
;
; Its time is what Linux uses on an HVM guest (common/hvm_tickless.s): the
; PM timer as its clock, the local APIC timer one-shot for a deadline, no
; PIT, and the UART's and NE2000's interrupts to wake it; idle at its prompt
; it arms nothing and halts, costing the host nothing until a key or a frame.

.include "common/layout.inc"

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.include "common/boot_stub.s"

.text
.org 0xffff888000200000
.equ TRAP_INIT_OP, hvm_trap_init
.equ CONSOLE_WRITE_OP, native_console_write
.equ IDLE_OP, hvm_idle
.equ CLOCK_NS_OP, pm_clock_ns
.equ TIMER_ARM_OP, lapic_timer_arm
.equ SHUTDOWN_OP, xen_hvm_shutdown
.equ TIMER_INIT_OP, lapic_timer_init
.equ BLK_INIT_OP, ide_init
.equ BLK_RW_OP, ide_rw
.equ NET_INIT_OP, hvm_ne2k_init
.equ NET_SEND_OP, ne2k_send
.equ NET_POLL_OP, ne2k_poll
.include "native_ops.s"
.include "common/xen.inc"
.include "common/ide.s"
.include "common/xen_hvm.s"

; hvm_trap_init: the native set-up, then find Xen and set up the hypercall page
hvm_trap_init:
    call native_trap_init
    call xen_hvm_setup
    test rax, rax
    jz .no_xen
    xor edi, edi                     ; XENVER_version
    xor esi, esi
    call HC_xen_version
    push rax
    lea rdi, [rip + msg_xen]
    call puts
    mov rdi, [rsp]
    shr rdi, 16
    call put_dec
    lea rdi, [rip + msg_dot]
    call puts
    pop rdi
    and rdi, 0xffff
    call put_dec
    lea rdi, [rip + msg_newline]
    call puts
.no_xen:
    ret

.align 4096
hypercall_page:
    .zero 4096

.data
flavour_name:   .asciz "HVM guest, non-root ring 0"
msg_xen:        .asciz "hvm: found Xen with CPUID, hypercall page set; Xen "
msg_dot:        .asciz "."

.include "common/ne2000.s"
.include "common/hvm_tickless.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, 0              ; the shell reads COM1 (the 16550 UART)
.equ SHELL_SERIAL, 2                    ; COM1 is its console, its receive interrupt on
.include "common/shell.s"
.include "common/kernel.s"
