; hello-pv.s: the smallest 64-bit PV kernel. It prints one line on its console
; and powers the domain off. Boot it with: xl create examples/hello-pv.cfg
;
; What Xen and the domain builder hand a PV kernel (docs/guest-abi.md):
;   - paging already on, in page tables the builder made: all of the domain's
;     first pages mapped at DIRECT_MAP + pseudo-physical address;
;   - ring 3, CS = 0xe033 (FLAT_KERNEL_CS64), RIP = _start;
;   - rsi = the virtual address of start_info (public/xen.h), rsp = a scratch stack;
;   - the hypercall page written over the kernel's `hypercall_page` (4 KiB,
;     page-aligned): hypercall N is `call hypercall_page + N*32`, arguments in
;     rdi, rsi, rdx, r10, r8, result in rax.
;
; A domU may not write Xen's own console (console_io is for dom0), so it writes
; the console ring (struct xencons_interface, public/io/console.h) whose machine
; frame and event channel start_info names, and notifies dom0's xenconsoled.

.equ DIRECT_MAP,          0xffff888000000000   ; where the builder maps pseudo-physical memory
.equ XEN_M2P,             0xffff800000000000   ; Xen's read-only machine-to-phys table
.equ SI_CONSOLE_MFN,      72                   ; start_info.console.domU.mfn
.equ SI_CONSOLE_EVTCHN,   80                   ; start_info.console.domU.evtchn
.equ CONS_OUT,            1024                 ; xencons_interface.out[2048]
.equ CONS_OUT_SIZE,       2048
.equ CONS_OUT_PROD,       3084                 ; xencons_interface.out_prod
.equ EVTCHNOP_send,       4
.equ SCHEDOP_shutdown,    2
.equ HC_sched_op,         hypercall_page + 29*32   ; __HYPERVISOR_sched_op
.equ HC_event_channel_op, hypercall_page + 32*32   ; __HYPERVISOR_event_channel_op

.text
.org 0xffff888000200000          ; pseudo-physical 0x200000, in the direct map
_start:
    ; the console ring: machine frame -> pseudo-physical frame (M2P) -> virtual
    mov rax, [rsi + SI_CONSOLE_MFN]
    mov rcx, XEN_M2P
    mov rax, [rcx + rax*8]
    shl rax, 12
    mov r8, DIRECT_MAP
    add r8, rax
    mov eax, [rsi + SI_CONSOLE_EVTCHN]
    mov [rip + console_port], eax
    ; copy the message into out[] at out_prod (it is shorter than the ring,
    ; so there is no need to wait for xenconsoled to make room)
    lea rdi, [rip + message]
    mov r9d, [r8 + CONS_OUT_PROD]
.copy:
    mov cl, [rdi]
    test cl, cl
    jz .publish
    mov eax, r9d
    and eax, CONS_OUT_SIZE - 1
    mov [r8 + rax + CONS_OUT], cl
    inc r9d
    inc rdi
    jmp .copy
.publish:
    mov [r8 + CONS_OUT_PROD], r9d      ; the bytes first, then the index that publishes them
    mov rdi, EVTCHNOP_send             ; event_channel_op(EVTCHNOP_send, &{port})
    lea rsi, [rip + console_port]
    call HC_event_channel_op
    mov rdi, SCHEDOP_shutdown          ; sched_op(SCHEDOP_shutdown, &{SHUTDOWN_poweroff})
    lea rsi, [rip + shutdown_reason]
    call HC_sched_op
.stay:
    jmp .stay                          ; not reached: Xen stops the domain

.align 4096
hypercall_page:
    .zero 4096                         ; Xen writes its stubs here

console_port:    .dword 0              ; struct evtchn_send { evtchn_port_t port; }
shutdown_reason: .dword 0              ; struct sched_shutdown { SHUTDOWN_poweroff }
message:         .asciz "hello from a PV kernel: console ring and event channel\n"
