; Event channels for the guest kernel: the 2-level ABI (public/xen.h,
; xen/common/event_2l.c), as Linux's drivers/xen/events/events_2l.c reads it.
;
; shared_info holds vcpu_info[32] (vCPU 0 at offset 0: u8 evtchn_upcall_pending,
; u8 evtchn_upcall_mask, u64 evtchn_pending_sel at 8), then evtchn_pending[64]
; at 2048 and evtchn_mask[64] at 2560, one bit per port. Xen sets a port's
; pending bit, then its selector bit, then upcall_pending, and kicks the vCPU.
; The guest clears upcall_pending first, takes the selector, and for every
; selected word handles each pending, unmasked port.
;
; API (other drivers call these; registers as in the System V ABI: rbx, rbp,
; r12-r15 are preserved):
;   evtchn_init()                         idempotent; shared_info reachable
;   evtchn_alloc_unbound(rdi = remote domid) -> rax = port, or -errno
;   evtchn_notify(rdi = port)             EVTCHNOP_send
;   evtchn_set_handler(rdi = port, rsi = function)  function(rdi = port) runs
;                                         from evtchn_do_upcall; 0 removes it
;   evtchn_do_upcall()                    scan and dispatch (the upcall's body)
;   xen_events_off() -> rax = previous state; xen_events_restore(rdi = state)
;   xen_wait_event()                      block until an event arrives, then
;                                         dispatch. To wait for a condition
;                                         without losing a wake-up: events off,
;                                         then loop { check; xen_wait_event },
;                                         then restore.
;
; The including flavour defines HC_event_channel_op, HC_sched_op, EVTCHNOP_send (4),
; DOMID_SELF, shared_info_va (a .quad holding shared_info's kernel address:
; the PV kernel sets it when it maps the page at boot, HVM/PVH's
; XEN_EVENTS_INIT when Xen adds the page to the physmap) and these hooks (.equ):
;   XEN_EVENTS_INIT     PV: pv_events_init (pv_ops.s); HVM/PVH: hvm_events_init
;   XEN_EVENTS_OFF      PV: pv_events_off; HVM/PVH: hvm_events_off (cli)
;   XEN_EVENTS_RESTORE  PV: pv_events_restore; HVM/PVH: hvm_events_restore
; HVM/PVH flavours also define HC_memory_op, HC_hvm_op and HVM_CALLBACK_VIA
; (the HVM_PARAM_CALLBACK_IRQ value: (2 << 56) | 0xf3 for the vector Linux
; uses, 0 for "none": the flavour delivers events its own way), and route the
; interrupt to a handler that calls evtchn_upcall_saving (below) and returns
; with iretq; the vector needs no EOI, a GSI/INTx handler also acknowledges
; the PIC.

.equ SHINFO_PENDING,     2048
.equ SHINFO_MASK,        2560
.equ EVTCHN_HANDLERS,    1024        ; ports with a handler slot (the lab allocates low ports)
.equ HVM_CALLBACK_VECTOR, 0xf3       ; Linux's HYPERVISOR_CALLBACK_VECTOR

.text

; evtchn_init(): once; shared_info mapped and the upcall registered
evtchn_init:
    cmp qword [rip + evtchn_ready], 0
    jne .done
    call XEN_EVENTS_INIT
    test rax, rax
    jnz .done
    mov qword [rip + evtchn_ready], 1
.done:
    ret

; evtchn_alloc_unbound(rdi = remote domid) -> rax = a fresh port of ours for it
evtchn_alloc_unbound:
    lea rsi, [rip + evtchn_req]
    mov word [rsi], DOMID_SELF       ; struct evtchn_alloc_unbound {dom, remote_dom, port}
    mov [rsi + 2], di
    mov dword [rsi + 4], 0
    mov rdi, EVTCHNOP_alloc_unbound
    call HC_event_channel_op
    test rax, rax
    jnz .fail
    mov eax, [rip + evtchn_req + 4]
.fail:
    ret

; evtchn_notify(rdi = port)
evtchn_notify:
    mov [rip + evtchn_req], edi
    mov rdi, EVTCHNOP_send
    lea rsi, [rip + evtchn_req]
    call HC_event_channel_op
    ret

; evtchn_set_handler(rdi = port, rsi = function or 0)
evtchn_set_handler:
    cmp rdi, EVTCHN_HANDLERS
    jae .out
    lea rax, [rip + evtchn_handlers]
    mov [rax + rdi*8], rsi
.out:
    ret

; evtchn_do_upcall(): clear upcall_pending, take the selector, and run the
; handler of every pending, unmasked port (clearing its pending bit first);
; again while Xen raised upcall_pending meanwhile
evtchn_do_upcall:
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov rbx, [rip + shared_info_va]
    test rbx, rbx
    jz .out
.again:
    mov byte [rbx], 0                ; evtchn_upcall_pending = 0
    xor eax, eax
    xchg rax, [rbx + 8]              ; take evtchn_pending_sel
    mov r12, rax
    xor r13, r13                     ; word index
.word:
    test r12, r12
    jz .check
    test r12, 1
    jz .next_word
    mov r14, [rbx + r13*8 + SHINFO_PENDING]
    mov rax, [rbx + r13*8 + SHINFO_MASK]
    not rax
    and r14, rax                     ; pending and unmasked
    xor r15, r15                     ; bit index
.bit:
    test r14, r14
    jz .next_word
    test r14, 1
    jz .next_bit
    mov rcx, r15
    mov rax, 1
    shl rax, cl
    not rax
    and [rbx + r13*8 + SHINFO_PENDING], rax     ; clear the pending bit, then handle
    inc qword [rip + evtchn_delivered]
    mov rdi, r13
    shl rdi, 6
    add rdi, r15                     ; port = word * 64 + bit
    cmp rdi, EVTCHN_HANDLERS
    jae .next_bit
    lea rax, [rip + evtchn_handlers]
    mov rax, [rax + rdi*8]
    test rax, rax
    jz .next_bit
    call rax
.next_bit:
    shr r14, 1
    inc r15
    jmp .bit
.next_word:
    shr r12, 1
    inc r13
    jmp .word
.check:
    cmp byte [rbx], 0
    jne .again
.out:
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    ret

; xen_wait_event(): block until an event is pending, then dispatch it. Events
; are off while we decide to block, and the block itself takes an event that
; came meanwhile (PV: SCHEDOP_block returns at once while upcall_pending is
; set; HVM/PVH: sti;hlt, where the interrupt shadow of sti lets no interrupt
; in before the hlt), so none is missed.
xen_wait_event:
    push rbx
    call XEN_EVENTS_OFF
    mov rbx, rax
    mov rax, [rip + shared_info_va]
    test rax, rax
    jz .block
    cmp byte [rax], 0
    jne .dispatch
.block:
    call xen_events_block
.dispatch:
    call evtchn_do_upcall
    mov rdi, rbx
    call XEN_EVENTS_RESTORE
    pop rbx
    ret

xen_events_off:
    jmp XEN_EVENTS_OFF

; xen_events_block(): PV: SCHEDOP_block, which returns at once while an
; upcall is pending (masked or not); HVM/PVH (XEN_EVENTS_OFF is hvm_events_off):
; sti; hlt, where the callback interrupt wakes the vCPU and is taken at once
xen_events_block:
    mov rax, XEN_EVENTS_OFF - hvm_events_off
    test rax, rax
    jz hvm_events_block
    mov rdi, 1                       ; SCHEDOP_block
    xor esi, esi
    jmp HC_sched_op

xen_events_restore:
    jmp XEN_EVENTS_RESTORE

; ------------------------------------------------------------ HVM and PVH

; hvm_events_off() -> rax = the previous IF; hvm_events_restore(rdi)
hvm_events_off:
    pushfq
    pop rax
    and rax, 0x200
    cli
    ret

hvm_events_restore:
    test rdi, 0x200
    jz .keep
    sti
.keep:
    ret

; hvm_events_block(): wait for an interrupt with interrupts enabled; the
; callback's handler has dispatched the event when hlt returns
hvm_events_block:
    sti
    hlt
    cli
    ret

; xen_add_to_physmap(rdi = space, rsi = idx, rdx = a page of ours, kernel
; address) -> rax = 0 or -errno: Xen puts the frame (shared_info, a grant-table
; frame) at that page's guest frame and frees the RAM page that was there, as
; Linux does with a page of its own for shared_info on HVM
xen_add_to_physmap:
    lea rax, [rip + physmap_req]     ; struct xen_add_to_physmap
    mov word [rax], DOMID_SELF       ; domid
    mov word [rax + 2], 0            ; size
    mov [rax + 4], edi               ; space
    mov [rax + 8], rsi               ; idx
    mov rcx, DIRECT_MAP
    sub rdx, rcx
    shr rdx, 12
    mov [rax + 16], rdx              ; gpfn
    mov rsi, rax
    mov rdi, XENMEM_add_to_physmap
    jmp HC_memory_op

; hvm_events_init() -> rax = 0 or -errno: map shared_info into our physmap,
; then tell Xen how to raise the upcall (HVM_PARAM_CALLBACK_IRQ)
hvm_events_init:
    mov rdi, XENMAPSPACE_shared_info
    xor esi, esi
    lea rdx, [rip + xen_shared_info_page]
    call xen_add_to_physmap
    test rax, rax
    jnz .fail
    lea rax, [rip + xen_shared_info_page]
    mov [rip + shared_info_va], rax
    mov rax, HVM_CALLBACK_VIA
    test rax, rax
    jz .ok
    lea rsi, [rip + hvm_param_req]   ; struct xen_hvm_param {domid, pad, index, value}
    mov word [rsi], DOMID_SELF
    mov dword [rsi + 4], HVM_PARAM_CALLBACK_IRQ
    mov [rsi + 8], rax
    mov rdi, HVMOP_set_param
    call HC_hvm_op
    test rax, rax
    jnz .fail
.ok:
    xor eax, eax
.fail:
    ret

; evtchn_upcall_saving: evtchn_do_upcall for an interrupt or callback entry, with
; every register the call may change saved around it
evtchn_upcall_saving:
    save_caller_saved
    call evtchn_do_upcall
    restore_caller_saved
    ret

.data
evtchn_ready:     .quad 0
evtchn_delivered: .quad 0
evtchn_req:       .dword 0, 0, 0, 0
physmap_req:      .quad 0, 0, 0
hvm_param_req:    .quad 0, 0

.bss
.align 4096
evtchn_handlers:  .zero EVTCHN_HANDLERS * 8
xen_shared_info_page: .zero 4096     ; HVM/PVH: replaced by shared_info
.text
