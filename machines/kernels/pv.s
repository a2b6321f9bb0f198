; The lab kernel as a 64-bit PV guest: the shared kernel with the PV
; operations (pv_ops.s) in its pv_ops table.
;
; Kernel and user both run in ring 3, so they need separate page tables: the
; user tables map only user space, the kernel's twin maps user space and the
; kernel's direct map. Xen switches between them on every system call and
; every return to user mode (toggle_guest_mode).

.include "common/layout.inc"

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.text
.org 0xffff888000200000
.equ PV_SHARE_KERNEL_OP, pv64_share_kernel
.equ PV_ACTIVATE_MM_OP, pv64_activate_mm
.equ BLK_INIT_OP, blkfront_init
.equ BLK_RW_OP, blkfront_rw
.equ PV_KERNEL_US, PTE_US                 ; the kernel runs in ring 3: its pages are user pages
.equ NET_INIT_OP, netfront_init
.equ NET_SEND_OP, netfront_send
.equ NET_POLL_OP, netfront_poll
.equ CLOCK_NS_OP, xen_clock_ns
.equ TIMER_ARM_OP, xen_timer_arm
.include "pv_ops.s"

; The user tables of a 64-bit PV guest carry no kernel mappings.
pv64_share_kernel:
    ret

; pv64_activate_mm(rdi = the new user L4, pseudo-physical): pin it, build the
; kernel's twin of it, pin that, and hand both to Xen as the base pointers.
pv64_activate_mm:
    push rbx
    push r12
    push r13
    mov rbx, rdi
    call phys_to_machine
    mov rsi, rax
    shr rsi, 12
    mov rdi, MMUEXT_PIN_L4_TABLE
    call mmuext
    call alloc_frame
    mov r12, rax
    mov rdi, rax
    mov rsi, 4
    call pv_alloc_pt
    xor r13, r13
.copy:
    mov rdi, DIRECT_MAP
    add rdi, rbx
    lea rdi, [rdi + r13*8]
    call pv_read_pte
    test rax, PTE_P
    jz .next
    mov rsi, rax
    mov rdi, DIRECT_MAP
    add rdi, r12
    lea rdi, [rdi + r13*8]
    call pv_set_pte
.next:
    inc r13
    cmp r13, 256
    jb .copy
    mov rdi, [rip + kernel_pml4]
    mov rax, DIRECT_MAP
    add rdi, rax
    add rdi, 273*8
    call pv_read_pte
    mov rsi, rax
    mov rdi, DIRECT_MAP
    add rdi, r12
    add rdi, 273*8
    call pv_set_pte
    mov rdi, r12
    call phys_to_machine
    mov r13, rax
    shr r13, 12
    mov rdi, MMUEXT_PIN_L4_TABLE
    mov rsi, r13
    call mmuext
    mov rdi, MMUEXT_NEW_BASEPTR
    mov rsi, r13
    call mmuext
    mov rdi, rbx
    call phys_to_machine
    mov rsi, rax
    shr rsi, 12
    mov rdi, MMUEXT_NEW_USER_BASEPTR
    call mmuext
    pop r13
    pop r12
    pop rbx
    ret

.align 4096
hypercall_page:
    .zero 4096

.data
flavour_name:   .asciz "PV guest, 64-bit, kernel in ring 3"

.include "common/netfront.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, console_page   ; the shell reads the console ring (in[], console_ring.s)
.equ SHELL_SERIAL, 0                    ; no serial port
.include "common/shell.s"
.include "common/kernel.s"
