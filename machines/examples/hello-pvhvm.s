; hello-pvhvm.s: the smallest PVHVM kernel: an HVM kernel that uses Xen's own
; mechanisms. It prints one line on its PV console (hvc0) instead of an
; emulated port, and powers off through ACPI as an HVM kernel does.
; Boot it with: xl create examples/hello-pvhvm.cfg
;
; What it is handed is an HVM kernel's (docs/guest-abi.md): the lab's firmware
; runs first, then jumps to _start in flat protected mode, ring 0, paging off.
; What makes it PVHVM is what it asks Xen for, as Linux's xen_hvm_guest_init()
; and hvc_xen.c do:
;   - CPUID leaf 0x40000000 says Xen is there ("XenVMMXenVMM"); leaf 0x40000002
;     names the MSR that takes the hypercall page;
;   - the event-channel callback: HVM_PARAM_CALLBACK_IRQ (public/hvm/params.h,
;     index 0) = vector 0xf3 with type 2 in bits 63:56, set with HVMOP_set_param;
;   - hvc0: the console ring and its event channel, from HVM_PARAM_CONSOLE_PFN
;     (17) and HVM_PARAM_CONSOLE_EVTCHN (18), read with HVMOP_get_param: the
;     line costs one hypercall, not one VM exit per byte.
; Off Xen (no "XenVMMXenVMM") it falls back to the debug port, as an early
; console would.

.equ HVMOP_set_param,     0
.equ HVMOP_get_param,     1
.equ HVM_PARAM_CALLBACK_IRQ, 0
.equ HVM_PARAM_CONSOLE_PFN, 17
.equ HVM_PARAM_CONSOLE_EVTCHN, 18
.equ CALLBACK_VIA,        (2 << 56) | 0xf3
.equ DOMID_SELF,          0x7ff0
.equ CONS_OUT,            1024
.equ CONS_OUT_SIZE,       2048
.equ CONS_OUT_PROD,       3084
.equ EVTCHNOP_send,       4
.equ HC_event_channel_op, hypercall_page + 32*32
.equ HC_hvm_op,           hypercall_page + 34*32

.text
.org 0x100000                    ; paging is off: linked at its guest-physical address
_start:
    lea rsp, [rip + stack_top]
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    cmp ebx, 0x566e6558              ; "XenV"
    jne .debug_port
    ; the hypercall page: the MSR from CPUID 0x40000002 (ebx), the page's address in edx:eax
    mov eax, 0x40000002
    xor ecx, ecx
    cpuid
    mov ecx, ebx
    lea rax, [rip + hypercall_page]
    xor edx, edx
    wrmsr
    ; events on IDT vector 0xf3 (the kernel keeps interrupts off: it never takes one here)
    lea rdi, [rip + hvm_param]
    mov word [rdi], DOMID_SELF
    mov dword [rdi + 4], HVM_PARAM_CALLBACK_IRQ
    mov rax, CALLBACK_VIA
    mov [rdi + 8], rax
    mov rsi, rdi
    mov rdi, HVMOP_set_param
    call HC_hvm_op
    ; hvc0: the console's port, then its ring page
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
    jmp .off
.debug_port:
    lea rsi, [rip + message]
.byte:
    mov al, [rsi]
    test al, al
    jz .off
    out 0xe9, al
    inc rsi
    jmp .byte
.off:
    mov dx, 0xb004                     ; ACPI PM1a_CNT (qemu-xen's layout): SLP_TYP 0 | SLP_EN
    mov ax, 0x2000
    out dx, ax
.stay:
    cli
    hlt
    jmp .stay

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

.align 4096
hypercall_page:
    .zero 4096

hvm_param:       .quad 0, 0
stack:           .zero 1024
stack_top:
console_port:    .dword 0
message:         .asciz "hello from a PVHVM kernel: hypercall page, callback vector, hvc0\n"
