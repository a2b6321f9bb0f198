; Finding Xen from an HVM-like guest (HVM, HVM with PV drivers, PVHVM), as
; Linux does: shared by the flavours so there is one way to do it.

.text
; xen_hvm_setup() -> rax = 1 if running on Xen, else 0
; As Linux finds Xen on an HVM guest: CPUID leaf 0x40000000 says "XenVMMXenVMM",
; leaf 0x40000002 names the MSR that takes the hypercall page, and Xen fills
; the page the kernel gives it with vmcall (Intel) or vmmcall (AMD) stubs.
; The including file defines hypercall_page (4 KiB, page aligned).
xen_hvm_setup:
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    cmp ebx, 0x566e6558              ; "XenV"
    jne .no_xen
    cmp ecx, 0x65584d4d              ; "MMXe"
    jne .no_xen
    cmp edx, 0x4d4d566e              ; "nVMM"
    jne .no_xen
    mov eax, 0x40000002
    xor ecx, ecx
    cpuid                            ; ebx = the MSR that takes the hypercall page
    mov ecx, ebx
    lea rax, [rip + hypercall_page]
    mov rdx, DIRECT_MAP
    sub rax, rdx                     ; its guest-physical address
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov eax, 1
    ret
.no_xen:
    lea rdi, [rip + msg_xen_absent]
    call puts
    xor eax, eax
    ret

.data
msg_xen_absent:     .asciz "platform: not running on Xen (no Xen CPUID leaves)\n"
.text

; xen_hvm_shutdown(rdi = exit code): ACPI S5 through the PM1a control block Xen's
; ACPI tables name for qemu-xen (ACPI_PM1A_CNT_BLK_ADDRESS_V1, 0xb004 in
; public/hvm/ioreq.h): SLP_EN with SLP_TYP 0, the _S5 of Xen's DSDT. The device
; model, not Xen, owns that register and asks Xen to power the domain off.
xen_hvm_shutdown:
    mov dx, 0xb004
    mov ax, 0x2000
    out dx, ax
.stay:
    cli
    hlt
    jmp .stay
