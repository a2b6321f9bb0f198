; Paravirtualised operations: the same pv_ops table as native_ops.s, filled
; with hypercalls. This is what a PV kernel changes, and all it changes:
;
;   native (native_ops.s)            PV (this file)
;   mov [pte], value                 mmu_update (Xen validates every entry)
;   reading a PTE                    machine frame -> pseudo-physical via Xen's M2P
;   mov cr3, rax                     mmuext_op NEW_BASEPTR (+ NEW_USER_BASEPTR)
;   invlpg [va]                      mmuext_op INVLPG_LOCAL
;   cli / sti                        the event mask byte in vcpu_info
;   TSS.RSP0                         stack_switch
;   out 0xe9 (console)               console_io (dom0) or the console ring + event channel
;   sti; hlt                         sched_op(SCHEDOP_block)
;   ACPI power-off                   sched_op(SCHEDOP_shutdown)
;   lidt (IDT)                       set_trap_table
;   wrmsr LSTAR                      callback_op(register syscall callback)
;   iretq to ring 3                  HYPERVISOR_iret
;   IDE port I/O (the disk)          blkfront: a shared ring, grants and an event
;                                    channel, found through xenstore
;                                    (common/blkfront.s, xenbus.s, gnttab.s, evtchn.s)
;
; Page tables hold machine frame numbers (direct paging): every physical
; address the shared kernel computes is pseudo-physical, and this file turns
; it into a machine one through the P2M list Xen handed over (start_info.mfn_list).
;
; The including file defines hypercall_page (4 KiB, aligned), the flavour
; name, PV_SHARE_KERNEL_OP and PV_ACTIVATE_MM_OP (which differ between the
; 64-bit scheme with separate user tables and the 32-bit ring-1 scheme), and
; PV_KERNEL_US, the user bit of the kernel's own mappings (PTE_US for a ring-3
; kernel, 0 for a ring-1 one).

.equ XEN_M2P,            0xffff800000000000   ; Xen's read-only machine-to-phys table
.equ MMU_NORMAL_PT_UPDATE, 0
.equ MMUEXT_PIN_L4_TABLE, 3
.equ MMUEXT_NEW_BASEPTR, 5
.equ MMUEXT_INVLPG_LOCAL, 7
.equ MMUEXT_NEW_USER_BASEPTR, 15
.equ UVMF_INVLPG,        2
.equ SCHEDOP_block,      1
.equ SCHEDOP_shutdown,   2
.equ SHUTDOWN_poweroff,  0
.equ SHUTDOWN_crash,     3
.equ CONSOLEIO_write,    0
.equ CALLBACKOP_register, 0
.equ CALLBACKTYPE_syscall, 2
.equ CALLBACKTYPE_event, 0
.equ VGCF_in_syscall,    0x100
.equ FLAT_USER_CS,       0xe033
.equ FLAT_USER_SS,       0xe02b
.equ SIF_INITDOMAIN,     2
; start_info offsets (public/xen.h)
.equ SI_NR_PAGES,        32
.equ SI_SHARED_INFO,     40
.equ SI_FLAGS,           48
.equ SI_CONSOLE_MFN,     72
.equ SI_CONSOLE_EVTCHN,  80
.equ SI_PT_BASE,         88
.equ SI_MFN_LIST,        104
.equ SI_MOD_START,       112

.include "common/xen.inc"
.equ GNTTABOP_setup_table, 2
.equ SI_STORE_MFN,       56
.equ SI_STORE_EVTCHN,    64

; The PV side of the Xen drivers' hooks (common/evtchn.s, gnttab.s, xenbus.s)
.equ XEN_EVENTS_INIT,    pv_events_init
.equ XEN_EVENTS_OFF,     pv_events_off
.equ XEN_EVENTS_RESTORE, pv_events_restore
.equ XEN_FIND_STORE,     pv_find_store
.equ GNTTAB_MAP,         pv_gnttab_map
.equ VIRT_TO_GFN,        pv_virt_to_gfn
.equ HVM_CALLBACK_VIA,   0

pv_ops:
    .quad pv_set_pte
    .quad pv_load_cr3
    .quad pv_flush_one
    .quad pv_irq_disable
    .quad pv_irq_enable
    .quad pv_set_kstack
    .quad pv_console_write
    .quad pv_idle
    .quad pv_shutdown
    .quad pv_trap_init
    .quad pv_syscall_init
    .quad pv_timer_init
    .quad pv_enter_user
    .quad pv_alloc_pt
    .quad PV_ACTIVATE_MM_OP
    .quad pv_read_pte
    .quad PV_SHARE_KERNEL_OP
    .quad BLK_INIT_OP
    .quad BLK_RW_OP
    .quad NET_INIT_OP
    .quad NET_SEND_OP
    .quad NET_POLL_OP
    .quad CLOCK_NS_OP
    .quad TIMER_ARM_OP
.align 16

; _start: Xen starts the PV kernel here with paging on, in its own page tables,
; at ring 3 (64-bit) or ring 1 (32-bit profile), rsi = start_info.
_start:
    mov rsp, kstack_top
    mov [rip + start_info], rsi
    mov rax, [rsi + SI_MFN_LIST]
    mov [rip + p2m_list], rax
    mov rax, [rsi + SI_FLAGS]
    and rax, SIF_INITDOMAIN
    mov [rip + is_dom0], rax
    mov rdi, [rsi + SI_MOD_START]    ; the boot information the builder wrote
    mov rax, DIRECT_MAP
    sub rdi, rax
    jmp kmain

; phys_to_machine(rdi = pseudo-physical address) -> rax = machine address
phys_to_machine:
    mov rax, rdi
    shr rax, 12
    mov rcx, [rip + p2m_list]
    mov rax, [rcx + rax*8]
    shl rax, 12
    mov rcx, rdi
    and rcx, 0xfff
    or rax, rcx
    ret

; virt_to_machine(rdi = direct-map address) -> rax = machine address
virt_to_machine:
    mov rax, DIRECT_MAP
    sub rdi, rax
    jmp phys_to_machine

; pv_set_pte(rdi = entry's virtual address, rsi = entry with a pseudo-physical address)
pv_set_pte:
    push rbx
    mov rbx, rsi
    test rbx, PTE_P
    jz .addressed
    mov rax, PADDR_MASK
    and rax, rbx
    shr rax, 12
    mov rcx, [rip + p2m_list]
    mov rax, [rcx + rax*8]           ; pfn -> mfn
    shl rax, 12
    mov rcx, PADDR_MASK
    not rcx
    and rbx, rcx
    or rbx, rax
.addressed:
    call virt_to_machine             ; rax = machine address of the entry
    lea rdi, [rip + mmu_req]
    mov [rdi], rax                   ; ptr | MMU_NORMAL_PT_UPDATE
    mov [rdi + 8], rbx               ; val
    mov rsi, 1
    xor edx, edx
    mov r10, DOMID_SELF
    call HC_mmu_update
    pop rbx
    test rax, rax
    jnz pv_failed
    ret

; pv_read_pte(rdi = entry's virtual address) -> rax, with the machine frame
; turned back into a pseudo-physical address through Xen's M2P table
pv_read_pte:
    mov rax, [rdi]
    test rax, PTE_P
    jz .done
    mov rcx, PADDR_MASK
    mov rdx, rax
    and rdx, rcx
    shr rdx, 12
    mov rcx, XEN_M2P
    mov rdx, [rcx + rdx*8]
    shl rdx, 12
    mov rcx, PADDR_MASK
    not rcx
    and rax, rcx
    or rax, rdx
.done:
    ret

; mmuext(rdi = cmd, rsi = arg1): one mmuext_op
mmuext:
    lea rax, [rip + mmuext_req]
    mov [rax], rdi
    mov [rax + 8], rsi
    mov rdi, rax
    mov rsi, 1
    xor edx, edx
    mov r10, DOMID_SELF
    call HC_mmuext_op
    test rax, rax
    jnz pv_failed
    ret

; pv_load_cr3(rdi = pseudo-physical address of an L4)
pv_load_cr3:
    call phys_to_machine
    mov rsi, rax
    shr rsi, 12
    mov rdi, MMUEXT_NEW_BASEPTR
    jmp mmuext

pv_flush_one:
    mov rsi, rdi
    mov rdi, MMUEXT_INVLPG_LOCAL
    jmp mmuext

; pv_alloc_pt(rdi = pseudo-physical frame, rsi = level): a page table may not be
; mapped writable anywhere, so make its direct-map alias read-only first
pv_alloc_pt:
    push rdi
    call phys_to_machine
    or rax, PTE_P | PTE_US
    mov rsi, [rip + nx_bit]
    or rsi, rax
    pop rdi
    mov rax, DIRECT_MAP
    add rdi, rax
    mov rdx, UVMF_INVLPG
    call HC_update_va_mapping
    test rax, rax
    jnz pv_failed
    ret

; the event mask is the PV guest's interrupt flag
pv_irq_disable:
    mov byte [rip + shared_info_page + 1], 1
    ret

pv_irq_enable:
    mov byte [rip + shared_info_page + 1], 0
    ret

pv_set_kstack:
    mov rsi, rdi
    mov rdi, FLAT_USER_SS
    call HC_stack_switch
    ret

; pv_console_write(rdi = buffer, rsi = length): Xen's console for dom0, the
; console ring for a domU (common/console_ring.s)
pv_console_write:
    test qword [rip + is_dom0], SIF_INITDOMAIN
    jz ring_console_write
    mov rdx, rdi
    mov rdi, CONSOLEIO_write
    call HC_console_io
    ret

pv_idle:
    mov rdi, SCHEDOP_block
    xor esi, esi
    call HC_sched_op
    ret

; pv_shutdown(rdi = exit code): poweroff, or crash for a kernel panic
pv_shutdown:
    mov dword [rip + shutdown_reason], SHUTDOWN_poweroff
    cmp rdi, 255
    jne .go
    mov dword [rip + shutdown_reason], SHUTDOWN_crash
.go:
    mov rdi, SCHEDOP_shutdown
    lea rsi, [rip + shutdown_reason]
    call HC_sched_op
.stay:
    jmp .stay

pv_trap_init:
    mov rsi, [rip + start_info]
    ; the kernel's page table, as Xen built it (pseudo-physical)
    mov rax, [rsi + SI_PT_BASE]
    mov rcx, DIRECT_MAP
    sub rax, rcx
    mov [rip + kernel_pml4], rax
    ; NX is there for PV guests too
    mov rax, 0x8000000000000000
    mov [rip + nx_bit], rax
    ; map shared_info over our own page reserved for it
    lea rdi, [rip + shared_info_page]
    mov rsi, [rip + start_info]
    mov rsi, [rsi + SI_SHARED_INFO]
    or rsi, PTE_P | PTE_RW | PTE_US
    mov rax, [rip + nx_bit]
    or rsi, rax
    mov rdx, UVMF_INVLPG
    call HC_update_va_mapping
    test rax, rax
    jnz pv_failed
    lea rax, [rip + shared_info_page]
    mov [rip + shared_info_va], rax
    ; a domU's console ring: the machine frame in start_info, through the M2P
    mov rsi, [rip + start_info]
    mov rax, [rsi + SI_CONSOLE_MFN]
    mov rcx, XEN_M2P
    mov rax, [rcx + rax*8]
    shl rax, 12
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov [rip + console_page], rax
    mov eax, [rsi + SI_CONSOLE_EVTCHN]
    mov [rip + console_evtchn], eax
    ; the virtual IDT
    lea rdi, [rip + trap_table]
    call HC_set_trap_table
    test rax, rax
    jnz pv_failed
    mov rdi, kstack_top
    call pv_set_kstack
    ret

pv_syscall_init:
    mov rdi, CALLBACKOP_register
    lea rsi, [rip + syscall_callback]
    call HC_callback_op
    test rax, rax
    jnz pv_failed
    mov rdi, CALLBACKOP_register
    lea rsi, [rip + event_callback]
    call HC_callback_op
    test rax, rax
    jnz pv_failed
    ret

; pv_timer_init: tickless, as Linux on Xen (common/xen_timer.s): VIRQ_TIMER
; bound and Xen's default 100 Hz periodic timer stopped; a wait that needs a
; timeout arms a one-shot deadline (VCPUOP_set_singleshot_timer)
pv_timer_init:
    call xen_timer_init
    test rax, rax
    jnz pv_failed
    ret

; pv_enter_user(rdi = entry, rsi = user stack, rdx = argument): HYPERVISOR_iret
; with an iret_context whose CS has RPL 3, so Xen switches to the user tables
pv_enter_user:
    push FLAT_USER_SS
    push rsi
    push 0x200                       ; IF: events enabled in user mode
    push FLAT_USER_CS
    push rdi
    push 0                           ; flags
    push 0                           ; rcx
    push 0                           ; r11
    push 0                           ; rax
    mov rdi, rdx
    xor ebx, ebx
    xor edx, edx
    xor esi, esi
    jmp HC_iret

; ------------------------------------------------------------ Xen drivers' PV hooks

pv_events_init:
    xor eax, eax
    ret

; pv_events_off() -> rax = the previous event mask; pv_events_restore(rdi):
; the mask byte in vcpu_info is a PV kernel's interrupt flag. Unmasking with
; an upcall pending makes a hypercall so Xen delivers it on the way back
; (Linux: xen_irq_enable -> xen_force_evtchn_callback).
pv_events_off:
    movzx eax, byte [rip + shared_info_page + 1]
    mov byte [rip + shared_info_page + 1], 1
    ret

pv_events_restore:
    mov [rip + shared_info_page + 1], dil
    test dil, dil
    jnz .masked
    cmp byte [rip + shared_info_page], 0
    je .masked
    xor edi, edi                     ; XENVER_version: any hypercall will do
    xor esi, esi
    call HC_xen_version
.masked:
    ret

; pv_find_store() -> rax = the store ring's kernel address (0: none), rdx = its
; port: start_info's store_mfn, through the M2P to our own frame
pv_find_store:
    mov rsi, [rip + start_info]
    mov edx, [rsi + SI_STORE_EVTCHN]
    mov rax, [rsi + SI_STORE_MFN]
    test rax, rax
    jz .none
    mov rcx, XEN_M2P
    mov rax, [rcx + rax*8]
    shl rax, 12
    mov rcx, DIRECT_MAP
    add rax, rcx
    ret
.none:
    xor eax, eax
    xor edx, edx
    ret

; pv_gnttab_map() -> rax = 0 or -errno: GNTTABOP_setup_table gives us the
; machine numbers of the table's frames, and we map them over pages of our own
; reserved for them (xen_gnttab_pages), as shared_info is mapped
pv_gnttab_map:
    push rbx
    lea rsi, [rip + gnttab_setup]    ; struct gnttab_setup_table {dom, nr_frames, status, frame_list}
    mov word [rsi], DOMID_SELF
    mov dword [rsi + 4], GNTTAB_FRAMES
    mov word [rsi + 8], 0
    lea rax, [rip + gnttab_frames]
    mov [rsi + 16], rax
    mov rdi, GNTTABOP_setup_table
    mov rdx, 1
    call HC_grant_table_op
    test rax, rax
    jnz .out
    movsx rax, word [rip + gnttab_setup + 8]
    test rax, rax
    jnz .status
    xor ebx, ebx
.frame:
    mov rdi, rbx
    shl rdi, 12
    lea rax, [rip + xen_gnttab_pages]
    add rdi, rax
    lea rax, [rip + gnttab_frames]
    mov rsi, [rax + rbx*8]
    shl rsi, 12
    or rsi, PTE_P | PTE_RW | PV_KERNEL_US
    mov rax, [rip + nx_bit]
    or rsi, rax
    mov rdx, UVMF_INVLPG
    call HC_update_va_mapping
    test rax, rax
    jnz .out
    inc rbx
    cmp rbx, GNTTAB_FRAMES
    jb .frame
    xor eax, eax
.out:
    pop rbx
    ret
.status:
    mov rax, -EIO                    ; a GNTST_* failure
    pop rbx
    ret

; pv_virt_to_gfn(rdi = direct-map address) -> rax = the machine frame
pv_virt_to_gfn:
    call virt_to_machine
    shr rax, 12
    ret

pv_failed:
    push rax
    lea rdi, [rip + msg_pv_failed]
    call puts
    pop rdi
    neg rdi
    call put_dec
    lea rdi, [rip + msg_newline]
    call puts
    mov rdi, 255
    jmp pv_shutdown

; ------------------------------------------------------------ entry points (bounced by Xen)

; A system call: Xen switched us to the kernel tables and stack and pushed
; [rcx, r11, rip, cs, rflags, rsp, ss].
pv_syscall_entry:
    pop rcx
    pop r11
    push rdi
    push rsi
    push rdx
    push r8
    push r9
    push r10
    mov rcx, rdx
    mov rdx, rsi
    mov rsi, rdi
    mov rdi, rax
    call do_syscall
    pop r10
    pop r9
    pop r8
    pop rdx
    pop rsi
    pop rdi
    push VGCF_in_syscall
    push 0
    push 0
    push rax
    jmp HC_iret

; An event upcall: Xen found evtchn_upcall_pending set and events unmasked,
; masked them and bounced here with [rcx, r11, rip, cs, rflags, rsp, ss].
; evtchn_do_upcall (common/evtchn.s) scans the 2-level bitmaps as Xen's
; event_2l ABI lays them out and runs each port's handler (the timer's is
; xen_timer_event); HYPERVISOR_iret then unmasks events again.
pv_event_entry:
    pop rcx
    pop r11
    call evtchn_upcall_saving
    push 0
    push rcx
    push r11
    push rax
    jmp HC_iret

; A page fault: [rcx, r11, error code, rip, cs, rflags, rsp, ss]; CR2 is in vcpu_info.
pv_trap_pf:
    pop rcx
    pop r11
    save_caller_saved
    mov rdi, [rip + shared_info_page + 16]
    mov rsi, [rsp + 72]
    call do_page_fault
    test rax, rax
    jnz .fatal
    restore_caller_saved
    add rsp, 8                       ; the error code
    push 0
    push rcx
    push r11
    push rax
    jmp HC_iret
.fatal:
    add rsp, 72
    mov rdi, 14
    pop rsi
    mov rdx, [rsp]
    mov rcx, [rsp + 8]
    jmp fatal_trap

pv_trap_de:
    pop rcx
    pop r11
    push 0
    push 0
    jmp pv_trap_common
pv_trap_ud:
    pop rcx
    pop r11
    push 0
    push 6
    jmp pv_trap_common
pv_trap_gp:
    pop rcx
    pop r11
    push 13
pv_trap_common:
    pop rdi
    pop rsi
    mov rdx, [rsp]
    mov rcx, [rsp + 8]
    jmp fatal_trap

.data
.align 16
; struct trap_info {u8 vector; u8 flags; u16 cs; u64 address}: flags bits 0-1 = DPL
trap_table:
    .byte 0, 0
    .word 0xe030
    .dword 0
    .quad pv_trap_de
    .byte 6, 0
    .word 0xe030
    .dword 0
    .quad pv_trap_ud
    .byte 13, 0
    .word 0xe030
    .dword 0
    .quad pv_trap_gp
    .byte 14, 0
    .word 0xe030
    .dword 0
    .quad pv_trap_pf
    .quad 0, 0
; struct callback_register {u16 type; u16 flags; u64 address}
syscall_callback:
    .word CALLBACKTYPE_syscall, 0
    .dword 0
    .quad pv_syscall_entry
event_callback:
    .word CALLBACKTYPE_event, 0
    .dword 0
    .quad pv_event_entry
start_info:     .quad 0
p2m_list:       .quad 0
is_dom0:        .quad 0
shutdown_reason: .dword 0
mmu_req:        .quad 0, 0
mmuext_req:     .quad 0, 0, 0
msg_pv_failed:  .asciz "pv: a hypercall failed with errno "
shared_info_va: .quad 0
gnttab_setup:   .quad 0, 0, 0
gnttab_frames:  .quad 0, 0, 0, 0

.bss
.align 4096
shared_info_page: .zero 4096

.include "common/console_ring.s"
.include "common/evtchn.s"
.include "common/xen_timer.s"
.include "common/gnttab.s"
.include "common/xenbus.s"
.include "common/blkfront.s"
