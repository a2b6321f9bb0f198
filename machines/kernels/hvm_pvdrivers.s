; The lab kernel as an HVM guest with PV drivers.
;
; Everything an HVM guest has stays: hvmloader boots it, it runs in non-root
; ring 0 with its own page tables over EPT, and its time is the PM timer and
; the local APIC timer, one-shot, with the UART's interrupt to wake it
; (common/hvm_tickless.s, as hvm.s). What changes are the disk and NIC: at
; boot the kernel finds Xen with CPUID, then the Xen platform PCI device, and
; asks the device model to unplug the emulated IDE disks and NICs (as Linux's
; platform-pci-unplug.c does). The same disk is then a PV block device, a
; vbd in xenstore, driven by blkfront through a shared ring, grants and an
; event channel; no port I/O reaches the device model for it any more.
;
; The events of the PV drivers still arrive as an emulated interrupt: the
; platform device's PCI interrupt line, which the kernel reads from its
; configuration space and gives Xen as the callback GSI (HVM_PARAM_CALLBACK_IRQ
; type 0, as Linux's platform-pci does for a legacy IRQ). Xen asserts that
; line of the emulated PIC while an event is pending; the handler scans the
; event channels and sends the PIC its EOI.
;
; If the device model blacklists these drivers, or there is no platform
; device, the kernel keeps the emulated IDE disk, as Linux does.

.include "common/layout.inc"

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.include "common/boot_stub.s"

.text
.org 0xffff888000200000
.equ TRAP_INIT_OP, pvd_trap_init
.equ CONSOLE_WRITE_OP, native_console_write
.equ IDLE_OP, hvm_idle
.equ CLOCK_NS_OP, pm_clock_ns
.equ TIMER_ARM_OP, lapic_timer_arm
.equ SHUTDOWN_OP, xen_hvm_shutdown
.equ TIMER_INIT_OP, pvd_timer_init
.equ BLK_INIT_OP, xen_blk_init
.equ BLK_RW_OP, xen_blk_rw
.equ NET_INIT_OP, xen_net_init
.equ NET_SEND_OP, xen_net_send
.equ NET_POLL_OP, xen_net_poll
.include "native_ops.s"
.include "common/xen.inc"

; What the shared Xen drivers need from an HVM flavour.
.equ XEN_EVENTS_INIT,     pvd_events_init
.equ XEN_EVENTS_OFF,      hvm_events_off
.equ XEN_EVENTS_RESTORE,  hvm_events_restore
.equ HVM_CALLBACK_VIA,    0              ; set by pvd_events_init: the GSI is known at run time
.equ XEN_FIND_STORE,      hvm_find_store
.equ GNTTAB_MAP,          hvm_gnttab_map
.equ VIRT_TO_GFN,         hvm_virt_to_gfn
.equ PIC_VECTOR_BASE,     0x20           ; where lapic_timer_init puts the 8259A's IRQ 0

.include "common/ide.s"
.include "common/xen_hvm.s"
.include "common/platform.s"
.include "common/evtchn.s"
.include "common/gnttab.s"
.include "common/xenbus.s"
.include "common/blkfront.s"

.text
; pvd_trap_init: the native set-up, then find Xen and give it the hypercall page
pvd_trap_init:
    call native_trap_init
    call xen_hvm_setup
    mov [rip + on_xen], rax
    ret

; pvd_timer_init: the platform device and the unplug (before any driver
; touches a disk), then the local APIC timer as in hvm.s
pvd_timer_init:
    cmp qword [rip + on_xen], 0
    je .lapic
    call platform_init
.lapic:
    call lapic_timer_init            ; it masks every PIC line but COM1's
    cmp qword [rip + callback_gsi], 0
    je .done
    call pvd_unmask_callback
.done:
    ret

; pvd_events_init() -> rax = 0 or -errno: shared_info mapped, the handler on
; the platform device's interrupt, and that line given to Xen as the callback
pvd_events_init:
    mov rax, [rip + platform_irq]
    test rax, rax                    ; GSI 0 would mean "no callback"
    jz .nodev
    cmp rax, 7                       ; the emulated PIC has lines 0-7 only
    ja .nodev
    call hvm_events_init             ; shared_info (HVM_CALLBACK_VIA is 0: no param yet)
    test rax, rax
    jnz .out
    mov rdi, [rip + platform_irq]
    add rdi, PIC_VECTOR_BASE
    lea rsi, [rip + pvd_callback_irq]
    call set_gate
    lea rsi, [rip + pvd_param]       ; HVM_PARAM_CALLBACK_IRQ = GSI (type 0 in bits 63:56)
    mov word [rsi], DOMID_SELF
    mov dword [rsi + 4], HVM_PARAM_CALLBACK_IRQ
    mov rax, [rip + platform_irq]
    mov [rsi + 8], rax
    mov rdi, HVMOP_set_param
    call HC_hvm_op
    test rax, rax
    jnz .out
    mov rax, [rip + platform_irq]
    mov [rip + callback_gsi], rax
    call pvd_unmask_callback
    lea rdi, [rip + msg_callback]
    call puts
    mov rdi, [rip + callback_gsi]
    call put_dec
    lea rdi, [rip + msg_newline]
    call puts
    xor eax, eax
.out:
    ret
.nodev:
    mov rax, -ENODEV
    ret

; pvd_unmask_callback(): let the callback's PIC line through
pvd_unmask_callback:
    mov rcx, [rip + callback_gsi]
    mov edx, 1
    shl edx, cl
    not edx
    in al, 0x21
    and al, dl
    out 0x21, al
    ret

; The platform device's interrupt: Xen keeps the line asserted while
; evtchn_upcall_pending is set. Scan the event channels (which clears it),
; then EOI the PIC.
pvd_callback_irq:
    inc qword [rip + callback_irqs]
    mov byte [rip + hvm_irq_seen], 1   ; an idle that looks next does not halt
    call evtchn_upcall_saving
    push rax
    mov al, 0x20                     ; EOI to the 8259A
    out 0x20, al
    pop rax
    iretq

.align 4096
hypercall_page:
    .zero 4096

.data
flavour_name:   .asciz "HVM guest with PV drivers, non-root ring 0"
msg_callback:   .asciz "platform: event channels through the platform device's interrupt, GSI "
on_xen:         .quad 0
callback_gsi:   .quad 0
callback_irqs:  .quad 0
shared_info_va: .quad 0
pvd_param:      .quad 0, 0

.include "common/ne2000.s"
.include "common/hvm_tickless.s"
.include "common/netfront.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, 0              ; the shell reads COM1 (the 16550 UART)
.equ SHELL_SERIAL, 2                    ; COM1 is its console, its receive interrupt on
.include "common/shell.s"
.include "common/kernel.s"
