; hello-pvh.s: the smallest PVH kernel. It prints one line on Xen's PV console
; and powers the domain off. Boot it with: xl create examples/hello-pvh.cfg
;
; What Xen hands a PVH kernel (docs/guest-abi.md; Xen's docs/misc/pvh.pandoc):
;   - the 32-bit entry point (XEN_ELFNOTE_PHYS32_ENTRY; here the `.entry` line),
;     flat protected mode, ring 0, paging off (addresses are guest-physical);
;   - rbx = the guest-physical address of struct hvm_start_info
;     (public/arch-x86/hvm/start_info.h), whose first u32 is 0x336ec578;
;   - no stack: rsp is undefined, so the kernel sets its own before any call;
;   - no firmware, no emulated devices, no hypercall page until the kernel asks
;     for one: CPUID leaf 0x40000002 names an MSR, and writing a page's address
;     to it makes Xen fill that page with `vmcall` stubs (`vmmcall` on AMD);
;   - the console ring and its event channel in HVM params, read with
;     HVMOP_get_param (public/hvm/params.h: HVM_PARAM_CONSOLE_PFN = 17,
;     HVM_PARAM_CONSOLE_EVTCHN = 18).

.equ XEN_HVM_START_MAGIC, 0x336ec578
.equ HVMOP_get_param,     1
.equ HVM_PARAM_CONSOLE_PFN, 17
.equ HVM_PARAM_CONSOLE_EVTCHN, 18
.equ DOMID_SELF,          0x7ff0
.equ CONS_OUT,            1024
.equ CONS_OUT_SIZE,       2048
.equ CONS_OUT_PROD,       3084
.equ EVTCHNOP_send,       4
.equ SCHEDOP_shutdown,    2
.equ HC_sched_op,         hypercall_page + 29*32
.equ HC_event_channel_op, hypercall_page + 32*32
.equ HC_hvm_op,           hypercall_page + 34*32

.text
.org 0x100000                    ; paging is off: linked at its guest-physical address
pvh_start:
    lea rsp, [rip + stack_top]
    mov eax, [rbx]
    cmp eax, XEN_HVM_START_MAGIC
    jne .not_pvh
    ; the hypercall page: the MSR from CPUID 0x40000002 (ebx), the page's address in edx:eax
    mov eax, 0x40000002
    cpuid
    mov ecx, ebx
    lea rax, [rip + hypercall_page]
    xor edx, edx
    wrmsr
    ; the console's port, then its ring page
    mov esi, HVM_PARAM_CONSOLE_EVTCHN
    call get_param
    mov [rip + console_port], eax
    mov esi, HVM_PARAM_CONSOLE_PFN
    call get_param
    shl rax, 12
    mov r8, rax                        ; the ring, guest-physical = its address with paging off
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
    mov [r8 + CONS_OUT_PROD], r9d
    mov rdi, EVTCHNOP_send
    lea rsi, [rip + console_port]
    call HC_event_channel_op
    mov rdi, SCHEDOP_shutdown          ; no ACPI in PVH: power off with a hypercall
    lea rsi, [rip + shutdown_reason]
    call HC_sched_op
.stay:
    jmp .stay
.not_pvh:
    ud2                                ; not started as PVH: crash

; get_param(esi = index) -> rax: HVMOP_get_param on ourselves
; struct xen_hvm_param { domid_t domid; u32 index (offset 4); u64 value (offset 8) }
get_param:
    lea rdi, [rip + hvm_param]
    mov word [rdi], DOMID_SELF
    mov [rdi + 4], esi
    mov rsi, rdi
    mov rdi, HVMOP_get_param
    call HC_hvm_op
    mov rax, [rip + hvm_param + 8]
    ret

.entry pvh_start

.align 4096
hypercall_page:
    .zero 4096

hvm_param:       .quad 0, 0
stack:           .zero 1024
stack_top:
console_port:    .dword 0
shutdown_reason: .dword 0
message:         .asciz "hello from a PVH kernel: HVM params, hypercall page, console ring\n"
