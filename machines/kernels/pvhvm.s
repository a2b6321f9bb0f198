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
;   has no tick at all. The 8259A is set up with every line masked but
;   COM1's (below).
; - The console is hvc0, Xen's PV console: the ring page and event channel
;   named by HVM_PARAM_CONSOLE_PFN / _EVTCHN, drained by xenconsoled, one
;   notification per write instead of an I/O exit per byte (the debug port
;   0xe9 only until the ring is known). Input typed into hvc0 (xenconsoled
;   writes the ring's in[] and notifies the port) is read as hvc_xen.c reads
;   it; COM1, still emulated by the device model, is read too, as ttyS0.
; - COM1 is interrupt driven, as Linux's 8250 driver runs on a PVHVM guest:
;   its receive interrupt (IER bit 0) on ISA IRQ 4, which QEMU raises and
;   lowers with XEN_DMOP_set_isa_irq_level and Xen's vPIC delivers on vector
;   0x24 (the only 8259A line left unmasked). Neither input needs a timer, so
;   an idle guest with nothing to time arms none and costs nothing until a
;   key or an event comes.

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
.equ IDLE_OP, pvhvm_idle
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

; COM1 on the 8259A
.equ PVHVM_PIC_BASE,      0x20               ; IRQ n at vector 0x20 + n
.equ PVHVM_COM1_IRQ,      4
.equ PVHVM_COM1_IER,      0x3f9
.equ PVHVM_COM1_IER_RDA,  0x01

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
    lea rsi, [rip + pvhvm_callback_irq]
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

; pvhvm_timer_init: the PIC with COM1's line alone open and COM1's receive
; interrupt on, the unplug, then events and the PV timer
pvhvm_timer_init:
    call pic_com1_only
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

; pic_com1_only: initialise the 8259A (vectors 0x20-0x27) with every line
; masked but COM1's, and turn on COM1's receive interrupt (8250_port.c sets
; UART_IER_RDI when the port is opened)
pic_com1_only:
    mov al, 0x11
    out 0x20, al
    mov al, PVHVM_PIC_BASE
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xff & ~(1 << PVHVM_COM1_IRQ)
    out 0x21, al
    mov rdi, PVHVM_PIC_BASE + PVHVM_COM1_IRQ
    lea rsi, [rip + pvhvm_com1_irq]
    call set_gate
    mov dx, PVHVM_COM1_IER
    mov al, PVHVM_COM1_IER_RDA
    out dx, al
    ret

; pvhvm_idle(): interrupts off while looking whether one came since the last
; idle (the callback vector and COM1's interrupt each set pvhvm_irq_seen); if
; none did, sti;hlt: sti's interrupt shadow lets none in before the hlt, and
; Xen does not block a vCPU that has an interrupt to take. So a key or an
; event that comes between the shell's look and its wait still ends the wait.
; Interrupts are on again on return.
pvhvm_idle:
    cli
    cmp byte [rip + pvhvm_irq_seen], 0
    jne .awake
    sti
    hlt
.awake:
    mov byte [rip + pvhvm_irq_seen], 0
    sti
    ret

; The interrupts. Each notes that it came (pvhvm_idle looks); the callback
; vector scans the event channels (no EOI: the vector type needs none), COM1's
; ends itself at the PIC and leaves the byte to whoever waits for it (reading
; it lowers the line).
pvhvm_callback_irq:
    mov byte [rip + pvhvm_irq_seen], 1
    call evtchn_upcall_saving
    iretq

pvhvm_com1_irq:
    push rax
    mov byte [rip + pvhvm_irq_seen], 1
    mov al, 0x20                     ; EOI to the 8259A
    out 0x20, al
    pop rax
    iretq

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
pvhvm_irq_seen: .byte 0

.include "common/ne2000.s"
.include "common/netfront.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, console_page   ; the shell reads hvc0 (the console ring's in[])
.equ SHELL_SERIAL, 2                    ; and COM1 (ttyS0, the device model's 16550 UART) on IRQ 4
.include "common/shell.s"
.include "common/kernel.s"
