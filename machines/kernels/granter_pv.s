; A 64-bit PV kernel that shares one page with a neighbour and then takes the
; share back, as a split driver's frontend does when a device goes away. The
; isolation lesson (lessons/isolation.toml) runs it beside the hostile guest
; (kernels/hostile_pv.s), which maps the page while it is granted and tries
; again after the grant is revoked.
;
;   1. GNTTABOP_setup_table gives it the machine frame of its grant table (one
;      frame, the one Xen gave the domain when it was created), and
;      update_va_mapping maps that frame over its page `table`.
;   2. It grants its page `shared` to domain HOSTILE as reference GRANT_REF:
;      frame and domain first, the flags (GTF_permit_access) last, so Xen never
;      sees a valid entry half written (Linux: gnttab_update_entry_v1).
;   3. It waits, yielding, until Xen marks the entry in use (GTF_reading: the
;      neighbour mapped it) and then free again (the neighbour unmapped it): a
;      grant may be ended only while nobody maps it (gnttab_end_foreign_access).
;   4. It revokes the grant: the flags go back to 0. From now on Xen refuses
;      every map of the reference (common/grant_table.c: the entry lacks
;      GTF_permit_access, GNTST_general_error).
;
; Then it blocks for good. `granted` and `revoked` count what it did.
;
; Domain ids are small numbers handed out in order: the isolation scenario
; creates the victim (1), then the hostile guest (2), then this one (3).

.include "common/layout.inc"
.include "common/xen.inc"

.equ HOSTILE,             2
.equ GRANT_REF,           8          ; the first reference a guest hands out
.equ GNTTABOP_setup_table, 2
.equ GTF_permit_access,   1
.equ GTF_reading,         0x8
.equ GTF_writing,         0x10
.equ UVMF_INVLPG,         2
.equ SCHEDOP_yield,       0
.equ SCHEDOP_block,       1
.equ SI_MFN_LIST,         104
.equ MAX_WAITS,           5000       ; yields before it gives up waiting for the neighbour

.data
.org 0xffff888000300000
.bss
.org 0xffff888000340000

.text
.org 0xffff888000200000
_start:
    mov rsp, stack_top
    mov [rip + start_info], rsi

    ; 1. the grant table's frame, mapped over `table`
    lea rsi, [rip + setup_req]           ; struct gnttab_setup_table {dom, nr_frames, status, frame_list}
    mov word [rsi], DOMID_SELF
    mov dword [rsi + 4], 1
    lea rax, [rip + table_mfn]
    mov [rsi + 16], rax
    mov rdi, GNTTABOP_setup_table
    mov rdx, 1
    call HC_grant_table_op
    lea rdi, [rip + table]
    mov rsi, [rip + table_mfn]
    shl rsi, 12
    or rsi, PTE_P | PTE_RW | PTE_US
    mov rdx, UVMF_INVLPG
    call HC_update_va_mapping

    ; 2. grant `shared` to HOSTILE: its machine frame, through our P2M list
    lea rax, [rip + shared]
    mov rcx, DIRECT_MAP
    sub rax, rcx
    shr rax, 12
    mov rcx, [rip + start_info]
    mov rcx, [rcx + SI_MFN_LIST]
    mov rax, [rcx + rax*8]
    lea rbx, [rip + table]
    mov [rbx + GRANT_REF*8 + 4], eax     ; frame
    mov word [rbx + GRANT_REF*8 + 2], HOSTILE
    mov word [rbx + GRANT_REF*8], GTF_permit_access
    inc qword [rip + granted]

    ; 3. wait until the neighbour has mapped the page, then until it lets it go
    xor r12d, r12d
.wait_mapped:
    movzx eax, word [rbx + GRANT_REF*8]
    test eax, GTF_reading
    jnz .wait_unmapped
    call yield
    jmp .wait_mapped
.wait_unmapped:
    movzx eax, word [rbx + GRANT_REF*8]
    test eax, GTF_reading | GTF_writing
    jz revoke_grant
    call yield
    jmp .wait_unmapped

    ; 4. revoke the grant
revoke_grant:
    mov word [rbx + GRANT_REF*8], 0
    inc qword [rip + revoked]
.block:
    mov rdi, SCHEDOP_block
    xor esi, esi
    call HC_sched_op
    jmp .block

; yield: give the CPU away once; after MAX_WAITS of them stop waiting and revoke
yield:
    inc r12
    cmp r12, MAX_WAITS
    jae .give_up
    mov rdi, SCHEDOP_yield
    xor esi, esi
    call HC_sched_op
    ret
.give_up:
    add rsp, 8                           ; not back to the wait: revoke now
    jmp revoke_grant

.align 4096
hypercall_page:
    .zero 4096

.data
.align 16
start_info:     .quad 0
table_mfn:      .quad 0
granted:        .quad 0
revoked:        .quad 0
setup_req:      .quad 0, 0, 0

.bss
.align 4096
table:          .zero 4096
shared:         .zero 4096
stack:          .zero 16384
stack_top:
