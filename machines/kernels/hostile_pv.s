; A hostile 64-bit PV kernel: it boots beside other guests and tries, one
; after the other, what a real attacker in a PV guest tries, and Xen refuses
; each. The isolation lesson (lessons/isolation.toml) watches every refusal.
;
; Xen's domain builder starts it as it starts any PV kernel (ring 3, its own
; page tables, its memory in the direct map, the page tables themselves mapped
; read-only). It installs a page-fault handler, then:
;
;   1. writes its own L4 page table directly: the page is read-only to a PV
;      guest, so the write faults (#PF, error code present|write|user) and the
;      handler steps over it. Xen emulates direct writes only to L1 tables
;      (ptwr, xen/arch/x86/pv/ro-page-fault.c); an L4 gets the fault.
;   2. asks mmu_update for a writable mapping of that L4 (the L1 entry that
;      maps it, with RW): refused, a page is a page table or writable, never
;      both (get_page_from_l1e, xen/arch/x86/mm.c: -EBUSY).
;   3. asks mmu_update to map a machine frame it does not own (the frame just
;      below its own first one, which the domain built before it holds):
;      refused ("pg_owner d2 l1e_owner d2, but real_pg_owner d1", -EBUSY).
;   4. maps grant reference GRANT_REF of domain VICTIM, a grant that domain
;      made to its backends, not to this one: GNTST_general_error
;      (common/grant_table.c, the grant entry's domid is not the mapper's).
;   5. binds an event channel to the VICTIM's port VICTIM_PORT, which was
;      never offered to it: -EINVAL (evtchn_bind_interdomain(),
;      common/event_channel.c, the remote port must be unbound and offered to
;      the caller).
;   6. destroys the VICTIM with domctl: -EPERM, only the control domain may
;      (the default XSM policy, xsm/dummy.h).
;   7. maps grant GRANT_REF of domain GRANTER, which that neighbour made to
;      this guest (kernels/granter_pv.s): mapped, held a while, unmapped. The
;      granter then revokes it (clears the entry once nobody maps it), and
;      the map tried again is refused: GNTST_general_error, the entry no
;      longer has GTF_permit_access (common/grant_table.c, _set_status_v1).
;
; Each result is kept in `results` (8 bytes each, in that order; the first is
; the page fault's error code), and the kernel then blocks for good: Xen has
; refused it everything and it is still alive, as are its neighbours.
;
; Domain ids are small numbers: an attacker guesses them. The lab's isolation
; scenario creates the victim first (domain 1), this guest second and the
; granter third (domain 3).

.include "common/layout.inc"
.include "common/xen.inc"

.equ VICTIM,             1
.equ GRANTER,            3
.equ REVOKE_WAIT,        50          ; yields that give the granter its turns
.equ BOOT_WAIT,          200000      ; loop rounds (two instructions each) before step 7
.equ MAP_TRIES,          1000        ; yields before it gives up waiting for the grant
.equ GRANT_REF,          8           ; the first reference a frontend hands out
.equ VICTIM_PORT,        1
.equ XEN_M2P,            0xffff800000000000
.equ SI_PT_BASE,         88
.equ SI_MFN_LIST,        104
.equ MMU_NORMAL_PT_UPDATE, 0
.equ GNTTABOP_map_grant_ref, 0
.equ GNTTABOP_unmap_grant_ref, 1
.equ GNTMAP_host_map,    2
.equ EVTCHNOP_bind_interdomain, 0
.equ XEN_DOMCTL_destroydomain, 2
.equ XEN_DOMCTL_INTERFACE_VERSION, 0x18
.equ SCHEDOP_yield,      0
.equ SCHEDOP_block,      1
.equ HC_domctl,          hypercall_page + 36*32
.equ INSN_BYTES,         16          ; every instruction of the lab's ISA is 16 bytes long

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.text
.org 0xffff888000200000
_start:
    mov rsp, stack_top
    mov [rip + start_info], rsi
    lea rdi, [rip + trap_table]
    call HC_set_trap_table

    ; 1. a direct write into the live L4 (a forged entry in slot 1)
    mov rsi, [rip + start_info]
    mov rbx, [rsi + SI_PT_BASE]
    mov rax, PTE_P | PTE_RW | PTE_US
    mov [rbx + 8], rax                   ; faults: the handler steps over it
    mov rax, [rip + pf_error]
    mov [rip + results], rax

    ; 2. make the L4's own mapping writable: find the L1 entry that maps it
    mov rdi, rbx
    call l1e_of
    mov [rip + mmu_req], rax             ; ptr = the entry's machine address | MMU_NORMAL_PT_UPDATE
    or rdx, PTE_RW
    mov [rip + mmu_req + 8], rdx
    call do_mmu_update
    mov [rip + results + 8], rax

    ; 3. map a frame of another domain over our scratch page, read-only even
    lea rdi, [rip + scratch]
    call l1e_of
    mov [rip + mmu_req], rax
    mov rcx, [rip + start_info]
    mov rcx, [rcx + SI_MFN_LIST]         ; our P2M list
    mov rax, [rcx]                       ; the machine frame of our pfn 0
    dec rax                              ; the frame just below it
    mov [rip + target_mfn], rax
    shl rax, 12
    or rax, PTE_P | PTE_US
    mov [rip + mmu_req + 8], rax
    call do_mmu_update
    mov [rip + results + 16], rax

    ; 4. map the victim's grant GRANT_REF at our scratch page
    lea rax, [rip + scratch]
    mov [rip + map_req], rax             ; host_addr
    mov dword [rip + map_req + 8], GNTMAP_host_map
    mov dword [rip + map_req + 12], GRANT_REF
    mov word [rip + map_req + 16], VICTIM
    mov rdi, GNTTABOP_map_grant_ref
    lea rsi, [rip + map_req]
    mov rdx, 1
    call HC_grant_table_op
    movsx rax, word [rip + map_req + 18] ; the status Xen wrote back
    mov [rip + results + 24], rax

    ; 5. bind to the victim's port VICTIM_PORT
    mov word [rip + bind_req], VICTIM
    mov dword [rip + bind_req + 4], VICTIM_PORT
    mov rdi, EVTCHNOP_bind_interdomain
    lea rsi, [rip + bind_req]
    call HC_event_channel_op
    mov [rip + results + 32], rax

    ; 6. destroy the victim
    mov dword [rip + domctl_req], XEN_DOMCTL_destroydomain
    mov dword [rip + domctl_req + 4], XEN_DOMCTL_INTERFACE_VERSION
    mov word [rip + domctl_req + 8], VICTIM
    lea rdi, [rip + domctl_req]
    call HC_domctl
    mov [rip + results + 40], rax

    ; 7. the grant GRANTER made to us: map it (once it is there), hold it a
    ; while, give it back, let the granter revoke it, and map it again
    mov r12, BOOT_WAIT                   ; a moment for the neighbour to boot and grant
.let_grant:
    dec r12
    jnz .let_grant
    xor r12d, r12d
.try_granted:
    mov edi, GRANTER
    call map_at_scratch
    test rax, rax
    jz .mapped_granted
    inc r12
    cmp r12, MAP_TRIES
    jae .granted_never
    call do_yield
    jmp .try_granted
.mapped_granted:
    mov [rip + results + 48], rax
    mov r12, REVOKE_WAIT
.hold:
    call do_yield
    dec r12
    jnz .hold
    lea rax, [rip + scratch]
    mov [rip + unmap_req], rax           ; host_addr
    mov eax, [rip + map_req + 20]
    mov [rip + unmap_req + 16], eax      ; handle
    mov rdi, GNTTABOP_unmap_grant_ref
    lea rsi, [rip + unmap_req]
    mov rdx, 1
    call HC_grant_table_op
    mov r12, REVOKE_WAIT
.let_revoke:
    call do_yield
    dec r12
    jnz .let_revoke
.granted_never:
    mov edi, GRANTER
    call map_at_scratch
    mov [rip + results + 56], rax

    inc qword [rip + attacks_done]
.block:
    mov rdi, SCHEDOP_block
    xor esi, esi
    call HC_sched_op
    jmp .block

; map_at_scratch(di = granting domain): map its grant GRANT_REF at our scratch
; page -> rax = the status Xen wrote back (the handle stays in map_req)
map_at_scratch:
    lea rax, [rip + scratch]
    mov [rip + map_req], rax             ; host_addr
    mov dword [rip + map_req + 8], GNTMAP_host_map
    mov dword [rip + map_req + 12], GRANT_REF
    mov [rip + map_req + 16], di
    mov word [rip + map_req + 18], 0
    mov rdi, GNTTABOP_map_grant_ref
    lea rsi, [rip + map_req]
    mov rdx, 1
    call HC_grant_table_op
    movsx rax, word [rip + map_req + 18]
    ret

do_yield:
    mov rdi, SCHEDOP_yield
    xor esi, esi
    call HC_sched_op
    ret

; do_mmu_update: the one request in mmu_req, for ourselves -> rax = Xen's answer
do_mmu_update:
    lea rdi, [rip + mmu_req]
    mov rsi, 1
    xor edx, edx
    mov r10, DOMID_SELF
    call HC_mmu_update
    ret

; l1e_of(rdi = a virtual address of ours) -> rax = the machine address of the
; L1 entry that maps it, rdx = that entry. The tables are read-only but
; readable: each entry's machine frame goes back to a pseudo-physical one
; through Xen's read-only M2P, and from there into the direct map.
l1e_of:
    mov rsi, [rip + start_info]
    mov r8, [rsi + SI_PT_BASE]           ; the L4, in the direct map
    mov rcx, 39
.level:
    mov rax, rdi
    shr rax, cl
    and rax, 511
    mov rdx, [r8 + rax*8]                ; this level's entry
    mov r9, PADDR_MASK
    and rdx, r9
    shr rdx, 12                          ; the next table's machine frame
    cmp rcx, 12
    je .found
    mov r9, XEN_M2P
    mov rdx, [r9 + rdx*8]                ; its pseudo-physical frame
    shl rdx, 12
    mov r8, DIRECT_MAP
    add r8, rdx
    sub rcx, 9
    jmp .level
.found:
    ; r8 = the L1 table in the direct map: the entry, and the table's machine frame
    mov rax, rdi
    shr rax, 12
    and rax, 511
    mov rdx, [r8 + rax*8]                ; the L1 entry itself
    mov r9, DIRECT_MAP
    sub r8, r9
    shr r8, 12                           ; the L1's pseudo-physical frame
    mov rsi, [rip + start_info]
    mov rsi, [rsi + SI_MFN_LIST]         ; the P2M list
    mov r8, [rsi + r8*8]                 ; the L1's machine frame
    shl r8, 12
    lea rax, [r8 + rax*8]
    ret

; A page fault: Xen bounced it with [rcx, r11, error code, rip, cs, rflags,
; rsp, ss] on our stack. Note the error code and return past the faulting
; instruction with HYPERVISOR_iret.
pf_handler:
    pop rcx
    pop r11
    pop rax
    mov [rip + pf_error], rax
    inc qword [rip + faults]
    add qword [rsp], INSN_BYTES
    push 0                               ; flags
    push rcx
    push r11
    push rax
    jmp HC_iret

.align 4096
hypercall_page:
    .zero 4096

.data
.align 16
; struct trap_info {u8 vector; u8 flags; u16 cs; u64 address}
trap_table:
    .byte 14, 0
    .word 0xe030
    .dword 0
    .quad pf_handler
    .quad 0, 0
start_info:     .quad 0
pf_error:       .quad 0
faults:         .quad 0
target_mfn:     .quad 0
attacks_done:   .quad 0
; the answers Xen gave, in the order above
results:        .quad 0, 0, 0, 0, 0, 0, 0, 0
; struct mmu_update {u64 ptr; u64 val}
mmu_req:        .quad 0, 0
; struct gnttab_map_grant_ref {u64 host_addr; u32 flags; u32 ref; u16 dom;
; i16 status; u32 handle; u64 dev_bus_addr}
map_req:        .quad 0, 0, 0, 0
; struct gnttab_unmap_grant_ref {u64 host_addr; u64 dev_bus_addr; u32 handle; i16 status}
unmap_req:      .quad 0, 0, 0
; struct evtchn_bind_interdomain {u16 remote_dom; u32 remote_port; u32 local_port}
bind_req:       .quad 0, 0
; struct xen_domctl {u32 cmd; u32 interface_version; u16 domain; ...}
domctl_req:     .zero 256

.bss
.align 4096
scratch:        .zero 4096
stack:          .zero 16384
stack_top:
