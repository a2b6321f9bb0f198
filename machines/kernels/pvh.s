; The lab kernel as a PVH guest: HVM hardware without the emulated PC.
;
; Like an HVM guest it runs in non-root ring 0 with its own page tables over
; EPT, so page tables, system calls and page faults are native (no exits).
; Unlike HVM there is no device model and no emulated platform at all: no
; firmware, no PIC or PIT, no ACPI. Xen starts it at its 32-bit entry with
; paging off and rbx pointing at struct hvm_start_info (magic 0x336ec578);
; everything a device would do is a hypercall through the page it asks for
; with CPUID and an MSR: the console ring and its event channel (found in
; HVM params), sti; hlt to idle (a HLT exit, pvh_idle), SCHEDOP_shutdown to
; power off.

.include "common/layout.inc"

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.include "common/boot_stub.s"

; Xen's entry point for PVH (XEN_ELFNOTE_PHYS32_ENTRY): rbx = hvm_start_info.
.section .boot
.align 16
pvh_start:
    mov eax, [rbx]
    cmp eax, 0x336ec578
    jne .not_pvh
    mov rax, [rbx + 16]              ; modlist_paddr
    mov rbx, [rax]                   ; module 0: the lab's boot information
    jmp _start
.not_pvh:
    ud2
.entry pvh_start

.text
.org 0xffff888000200000
.equ TRAP_INIT_OP, pvh_trap_init
.equ CONSOLE_WRITE_OP, ring_console_write
.equ IDLE_OP, pvh_idle
.equ CLOCK_NS_OP, xen_clock_ns
.equ TIMER_ARM_OP, xen_timer_arm
.equ SHUTDOWN_OP, pvh_shutdown
.equ TIMER_INIT_OP, pvh_timer_init
.equ BLK_INIT_OP, blkfront_init
.equ BLK_RW_OP, blkfront_rw
.equ NET_INIT_OP, netfront_init
.equ NET_SEND_OP, netfront_send
.equ NET_POLL_OP, netfront_poll
.include "native_ops.s"
.include "common/xen.inc"

; The PV drivers (common/evtchn.s, gnttab.s, xenbus.s, blkfront.s): shared_info
; and the grant table added to our physmap, events as vector 0xf3
.equ XEN_EVENTS_INIT,     hvm_events_init
.equ XEN_EVENTS_OFF,      hvm_events_off
.equ XEN_EVENTS_RESTORE,  hvm_events_restore
.equ XEN_FIND_STORE,      hvm_find_store
.equ GNTTAB_MAP,          hvm_gnttab_map
.equ VIRT_TO_GFN,         hvm_virt_to_gfn
.equ HVM_CALLBACK_VIA,    (2 << 56) | HVM_CALLBACK_VECTOR   ; HVM_PARAM_CALLBACK_IRQ type 2: a vector

; pvh_trap_init: the native set-up, the hypercall page, and the console ring
pvh_trap_init:
    call native_trap_init
    mov eax, 0x40000002
    cpuid                            ; ebx = the hypercall-page MSR
    mov ecx, ebx
    lea rax, [rip + hypercall_page]
    mov rdx, DIRECT_MAP
    sub rax, rdx
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov esi, HVM_PARAM_CONSOLE_PFN
    call get_param
    shl rax, 12
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov [rip + console_page], rax
    mov esi, HVM_PARAM_CONSOLE_EVTCHN
    call get_param
    mov [rip + console_evtchn], eax
    ; the event upcall arrives as an interrupt on Linux's callback vector
    mov rdi, HVM_CALLBACK_VECTOR
    lea rsi, [rip + pvh_callback_irq]
    call set_gate
    ret

; get_param(esi = index) -> rax: HVMOP_get_param on ourselves
get_param:
    lea rdi, [rip + hvm_param]
    mov word [rdi], DOMID_SELF
    mov [rdi + 4], esi
    mov rsi, rdi
    mov rdi, HVMOP_get_param
    call HC_hvm_op
    mov rax, [rip + hvm_param + 8]
    ret

; pvh_idle(): wait for the next interrupt as Linux's PVH guests idle
; (default_idle: interrupts off, the condition looked at, then safe_halt's
; sti; hlt, which leaves the guest on a HLT exit). Interrupts off while
; looking whether the callback vector came since the last idle (its handler
; sets pvh_irq_seen); if it did not, sti; hlt: sti's interrupt shadow lets no
; interrupt in before the hlt, and Xen does not block a vCPU that has one to
; take. So an event that comes between a caller's look at its console ring
; or network and this wait ends the wait instead of being slept through.
; (SCHEDOP_block would do with interrupts on, but a wait from a system call
; runs with them off, and Xen only wakes an HVM-like vCPU for an interrupt it
; can take.) Interrupts are on again on return.
pvh_idle:
    cli
    cmp byte [rip + pvh_irq_seen], 0
    jne .awake
    sti
    hlt
.awake:
    mov byte [rip + pvh_irq_seen], 0
    sti
    ret

; pvh_callback_irq: Xen's callback vector (HVM_PARAM_CALLBACK_IRQ type 2, no
; EOI): noted for pvh_idle, then the pending event channels dispatched
pvh_callback_irq:
    mov byte [rip + pvh_irq_seen], 1
    call evtchn_upcall_saving
    iretq

; pvh_shutdown(rdi = exit code): there is no ACPI to write to, so ask Xen
pvh_shutdown:
    mov dword [rip + shutdown_reason], 0
    cmp rdi, 255
    jne .go
    mov dword [rip + shutdown_reason], 3
.go:
    mov rdi, 2                       ; SCHEDOP_shutdown
    lea rsi, [rip + shutdown_reason]
    call HC_sched_op
.stay:
    jmp .stay

; No PIT and no PIC in a PVH guest: its timer is Xen's PV timer, one-shot, on
; an event channel (common/xen_timer.s), as Linux's PVH guests use it
pvh_timer_init:
    call evtchn_init
    cmp qword [rip + evtchn_ready], 0
    je .out
    call xen_timer_init
.out:
    ret

.align 4096
hypercall_page:
    .zero 4096

.include "common/console_ring.s"
.include "common/evtchn.s"
.include "common/xen_timer.s"
.include "common/gnttab.s"
.include "common/xenbus.s"
.include "common/blkfront.s"

.data
flavour_name:   .asciz "PVH guest, non-root ring 0, no device model"
hvm_param:      .quad 0, 0
shutdown_reason: .dword 0
shared_info_va: .quad 0
pvh_irq_seen:   .byte 0

.include "common/netfront.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, console_page   ; the shell reads the console ring (in[], console_ring.s)
.equ SHELL_SERIAL, 0                    ; no serial port
.include "common/shell.s"
.include "common/kernel.s"
