; Grant tables, version 1 (public/grant_table.h), the granting side.
;
; A grant entry is 8 bytes, 512 to a page: u16 flags; u16 domid; u32 frame.
; Entries 0-7 are reserved (0 console, 1 xenstore). To grant, the guest writes
; the frame and the domain first and the flags last, so Xen never sees a
; valid type over a half-written entry (Linux: gnttab_update_entry_v1). While
; the peer has the frame mapped, Xen sets GTF_reading / GTF_writing; the
; grant may only be ended once both are clear.
;
; API:
;   gnttab_init() -> rax = 0 or -errno        idempotent
;   gnttab_grant(rdi = domid, rsi = frame, rdx = 1 read-only / 0 writable)
;       -> rax = ref (the first free ref >= 8), or -ENOSPC (refs 8-2047:
;       the table has GNTTAB_FRAMES = 4 frames)
;   gnttab_end(rdi = ref) -> rax = 0, or -EBUSY (16) while the peer maps it
;   virt_to_gfn(rdi = kernel virtual address) -> rax = the frame to put in a
;       grant (PV: the machine frame, through the P2M; HVM/PVH: the
;       guest-physical frame)
;
; The including flavour defines (.equ) GNTTAB_MAP, the routine that makes
; the table's GNTTAB_FRAMES frames appear at xen_gnttab_pages -> rax = 0 or
; -errno (PV: pv_gnttab_map in pv_ops.s, GNTTABOP_setup_table and a mapping
; through Xen; HVM/PVH: hvm_gnttab_map below, XENMEM_add_to_physmap) and
; VIRT_TO_GFN (pv_virt_to_gfn or hvm_virt_to_gfn).

.equ GTF_permit_access,  1
.equ GTF_readonly,       0x4
.equ GTF_reading,        0x8
.equ GTF_writing,        0x10
.equ GNTTAB_NR_RESERVED, 8
.equ GNTTAB_FRAMES,      4
.equ GNTTAB_ENTRIES,     GNTTAB_FRAMES * 512       ; 512 v1 entries a frame
.equ GNTTAB_EBUSY,       16
.equ GNTTAB_ENOSPC,      28

.text

gnttab_init:
    cmp qword [rip + gnttab_va], 0
    jne .ok
    call GNTTAB_MAP
    test rax, rax
    jnz .fail
    lea rax, [rip + xen_gnttab_pages]
    mov [rip + gnttab_va], rax
.ok:
    xor eax, eax
.fail:
    ret

; gnttab_grant(rdi = domid, rsi = frame, rdx = read-only) -> rax = ref
gnttab_grant:
    mov r8, [rip + gnttab_va]
    mov eax, GNTTAB_NR_RESERVED
.find:
    cmp eax, GNTTAB_ENTRIES
    jae .full
    cmp word [r8 + rax*8], 0
    je .found
    inc eax
    jmp .find
.found:
    mov [r8 + rax*8 + 4], esi        ; frame
    mov [r8 + rax*8 + 2], di         ; domid
    mov ecx, GTF_permit_access
    test rdx, rdx
    jz .rw
    or ecx, GTF_readonly
.rw:
    mov [r8 + rax*8], cx             ; flags last: now the grant is valid
    ret
.full:
    mov rax, -GNTTAB_ENOSPC
    ret

; gnttab_end(rdi = ref) -> rax = 0, or -EBUSY while mapped
gnttab_end:
    mov r8, [rip + gnttab_va]
    movzx eax, word [r8 + rdi*8]
    test eax, GTF_reading | GTF_writing
    jnz .busy
    mov word [r8 + rdi*8], 0
    xor eax, eax
    ret
.busy:
    mov rax, -GNTTAB_EBUSY
    ret

virt_to_gfn:
    jmp VIRT_TO_GFN

; ------------------------------------------------------------ HVM and PVH

; hvm_gnttab_map() -> rax = 0 or -errno: Xen adds each grant-table frame to
; our physmap in place of one of our pages
hvm_gnttab_map:
    push rbx
    xor ebx, ebx
.frame:
    mov rdi, XENMAPSPACE_grant_table
    mov rsi, rbx
    mov rdx, rbx
    shl rdx, 12
    lea rax, [rip + xen_gnttab_pages]
    add rdx, rax
    call xen_add_to_physmap
    test rax, rax
    jnz .out
    inc rbx
    cmp rbx, GNTTAB_FRAMES
    jb .frame
.out:
    pop rbx
    ret

; hvm_virt_to_gfn(rdi = direct-map address) -> rax = guest frame number
hvm_virt_to_gfn:
    mov rax, DIRECT_MAP
    sub rdi, rax
    mov rax, rdi
    shr rax, 12
    ret

.data
gnttab_va:      .quad 0

.bss
.align 4096
xen_gnttab_pages: .zero GNTTAB_FRAMES * 4096   ; where the table's frames appear
.text
