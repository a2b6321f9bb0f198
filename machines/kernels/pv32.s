; The lab kernel with the 32-bit PV profile: the guest kernel in ring 1.
;
; This is the scheme 32-bit PV guests use: Xen in ring 0, the guest kernel in
; ring 1, user code in ring 3. Ring 1 is a supervisor ring, so the kernel's
; pages can simply be supervisor pages and one page table serves kernel and
; user alike (no switching of tables on every system call, unlike 64-bit PV).
; Hypercalls are `int 0x82` (HYPERCALL_VECTOR, DPL 1) in the hypercall page.
;
; What the lab simplifies: the code is still the lab's 64-bit instruction set
; with 4-level page tables and the 64-bit hypercall argument registers (rdi,
; rsi, rdx, r10, r8); what differs is the ring, the trap instruction and the
; single shared page table (docs/isa.md, "What differs").

.include "common/layout.inc"

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.text
.org 0xffff888000200000
.equ PV_SHARE_KERNEL_OP, pv32_share_kernel
.equ PV_ACTIVATE_MM_OP, pv32_activate_mm
.equ BLK_INIT_OP, blkfront_init
.equ BLK_RW_OP, blkfront_rw
.equ PV_KERNEL_US, 0                      ; a ring-1 kernel's pages are supervisor pages
.equ NET_INIT_OP, netfront_init
.equ NET_SEND_OP, netfront_send
.equ NET_POLL_OP, netfront_poll
.equ CLOCK_NS_OP, xen_clock_ns
.equ TIMER_ARM_OP, xen_timer_arm
.include "pv_ops.s"

; pv32_share_kernel(rdi = new top-level table): the kernel half, as on bare
; metal: copy the direct-map slot of the boot table (a supervisor mapping).
pv32_share_kernel:
    push rbx
    mov rbx, rdi
    mov rdi, [rip + kernel_pml4]
    mov rax, DIRECT_MAP
    add rdi, rax
    add rdi, 273*8
    call pv_read_pte
    mov rsi, rax
    mov rdi, DIRECT_MAP
    add rdi, rbx
    add rdi, 273*8
    call pv_set_pte
    pop rbx
    ret

; pv32_activate_mm(rdi = the new table): pin it and make it the base pointer
pv32_activate_mm:
    push rbx
    call phys_to_machine
    mov rbx, rax
    shr rbx, 12
    mov rdi, MMUEXT_PIN_L4_TABLE
    mov rsi, rbx
    call mmuext
    mov rdi, MMUEXT_NEW_BASEPTR
    mov rsi, rbx
    call mmuext
    pop rbx
    ret

.align 4096
hypercall_page:
    .zero 4096

.data
flavour_name:   .asciz "PV guest, 32-bit profile, kernel in ring 1"

.include "common/netfront.s"
.include "common/net.s"
.equ SHELL_CONSOLE_RING, console_page   ; the shell reads the console ring (in[], console_ring.s)
.equ SHELL_SERIAL, 0                    ; no serial port
.include "common/shell.s"
.include "common/kernel.s"
