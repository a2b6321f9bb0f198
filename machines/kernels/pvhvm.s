; The lab kernel as a PVHVM guest: an HVM guest that uses Xen's own
; mechanisms wherever it can.
;
; Like the HVM guest with PV drivers (hvm_pvdrivers.s) it boots through
; hvmloader, runs in non-root ring 0 over EPT, finds the Xen platform PCI
; device, unplugs the emulated disks and NICs and drives its disk with
; blkfront. What it drops is the emulated interrupt path:
;
; - Events arrive on an IDT vector of their own, 0xf3 as in Linux
;   (HYPERVISOR_CALLBACK_VECTOR): HVM_PARAM_CALLBACK_IRQ type 2. Xen injects
;   the vector while evtchn_upcall_pending is set; no PIC, no EOI.
; - The timer is Xen's PV timer, not the emulated PIT behind the PIC:
;   VIRQ_TIMER bound to an event channel and one-shot deadlines
;   (VCPUOP_set_singleshot_timer, common/xen_timer.s), so the idle guest
;   has no tick at all. The 8259A is set up with every line masked, as a
;   kernel that does not use it leaves it.
; - The console is hvc0, Xen's PV console: the ring page and event channel
;   named by HVM_PARAM_CONSOLE_PFN / _EVTCHN, drained by xenconsoled, one
;   notification per write instead of an I/O exit per byte (the debug port
;   0xe9 only until the ring is known). Input typed into hvc0 (xenconsoled
;   writes the ring's in[] and notifies the port) is read as hvc_xen.c reads
;   it; COM1, still emulated by the device model, is read too, as ttyS0.

.include "common/layout.inc"

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.include "common/boot_stub.s"

.text
.org 0xffff888000200000
.equ TRAP_INIT_OP, pvhvm_trap_init
.equ CONSOLE_WRITE_OP, pvhvm_console_write
.equ IDLE_OP, native_idle
.equ CLOCK_NS_OP, xen_clock_ns
.equ TIMER_ARM_OP, xen_timer_arm
.equ SHUTDOWN_OP, xen_hvm_shutdown
.equ TIMER_INIT_OP, pvhvm_timer_init
.equ BLK_INIT_OP, xen_blk_init
.equ BLK_RW_OP, xen_blk_rw
.equ NET_INIT_OP, xen_net_init
.equ NET_SEND_OP, xen_net_send
.equ NET_POLL_OP, xen_net_poll
.include "native_ops.s"
.include "common/xen.inc"

; What the shared Xen drivers need from an HVM flavour.
.equ HVM_CALLBACK_TYPE_VECTOR, 2
.equ HVM_CALLBACK_VIA,    (HVM_CALLBACK_TYPE_VECTOR << 56) | HVM_CALLBACK_VECTOR
.equ XEN_EVENTS_INIT,     hvm_events_init
.equ XEN_EVENTS_OFF,      hvm_events_off
.equ XEN_EVENTS_RESTORE,  hvm_events_restore
.equ XEN_FIND_STORE,      hvm_find_store
.equ GNTTAB_MAP,          hvm_gnttab_map
.equ VIRT_TO_GFN,         hvm_virt_to_gfn

.include "common/ide.s"
.include "common/xen_hvm.s"
.include "common/platform.s"
.include "common/evtchn.s"
.include "common/xen_timer.s"
.include "common/gnttab.s"
.include "common/xenbus.s"
.include "common/blkfront.s"
.include "common/console_ring.s"

.text
; pvhvm_trap_init: the native set-up, the hypercall page, and the gate for
; Xen's callback vector
pvhvm_trap_init:
    call native_trap_init
    call xen_hvm_setup
    mov [rip + on_xen], rax
    test rax, rax
    jz .done
    mov rdi, HVM_CALLBACK_VECTOR
    lea rsi, [rip + hvm_callback_entry]
    call set_gate
    ; hvc0: the PV console ring and its event channel, from HVM params as Linux's
    ; xen_hvm_console_init() finds them (drivers/tty/hvc/hvc_xen.c). The port
    ; first, then the page that turns the ring on.
    mov esi, HVM_PARAM_CONSOLE_EVTCHN
    call xs_get_param
    mov [rip + console_evtchn], eax
    mov esi, HVM_PARAM_CONSOLE_PFN
    call xs_get_param
    test rax, rax
    jz .done
    shl rax, 12
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov [rip + console_page], rax
.done:
    ret

; pvhvm_console_write(rdi = buffer, rsi = length): hvc0 once the ring is known;
; before that (and off Xen) the debug port, as an early console.
pvhvm_console_write:
    cmp qword [rip + console_page], 0
    je native_console_write
    jmp ring_console_write

; pvhvm_timer_init: the unplug, the PIC quiet, then events and the PV timer
pvhvm_timer_init:
    call pic_mask_all
    cmp qword [rip + on_xen], 0
    je .out
    call platform_init
    call evtchn_init                 ; shared_info, and the callback vector given to Xen
    cmp qword [rip + evtchn_ready], 0
    je .no_events
    lea rdi, [rip + msg_callback]
    call puts
    ; the PV timer, one-shot (common/xen_timer.s), as xen_hvm_init_time_ops() sets it up
    call xen_timer_init
    test rax, rax
    jnz .no_timer
    lea rdi, [rip + msg_timer]
    jmp puts
.no_events:
    lea rdi, [rip + msg_no_events]
    jmp puts
.no_timer:
    lea rdi, [rip + msg_no_timer]
    jmp puts
.out:
    ret

; pic_mask_all: initialise the 8259A (vectors 0x20-0x27) with every line masked
pic_mask_all:
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xff
    out 0x21, al
    ret

.align 4096
hypercall_page:
    .zero 4096

.data
flavour_name:   .asciz "PVHVM guest, non-root ring 0, callback vector"
msg_callback:   .asciz "pvhvm: event channels through callback vector 0xf3\n"
msg_timer:      .asciz "pvhvm: PV timer: VIRQ_TIMER, one-shot deadlines (tickless)\n"
msg_no_events:  .asciz "pvhvm: no event channels: no PV timer, no PV devices\n"
msg_no_timer:   .asciz "pvhvm: the PV timer could not be set up\n"
on_xen:         .quad 0
shared_info_va: .quad 0

.include "common/ne2000.s"
.include "common/netfront.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, console_page   ; the shell reads hvc0 (the console ring's in[])
.equ SHELL_SERIAL, 1                    ; and COM1 (ttyS0, the device model's 16550 UART)
.include "common/shell.s"
.include "common/kernel.s"
