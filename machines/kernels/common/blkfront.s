; blkfront: the PV block frontend (Linux: drivers/block/xen-blkfront.c).
;
; The toolstack wrote device/vbd/<devid>/ (backend, backend-id, state,
; virtual-device) and the backend's directory. The handshake
; (public/io/blkif.h; xen-facts section 7):
;   1. wait for the backend to reach InitWait (2), or further;
;   2. allocate the ring page, SHARED_RING_INIT (req_event = rsp_event = 1),
;      grant it to the backend, allocate an unbound port for it;
;   3. in one transaction write ring-ref, event-channel, protocol
;      ("x86_64-abi") and state Initialised (3);
;   4. wait for the backend's Connected (4), read its "sectors", write our
;      state Connected (4).
;
; The ring (public/io/ring.h): u32 req_prod, req_event, rsp_prod, rsp_event,
; padding to 64 bytes, then 32 entries of 112 bytes. A request
; (struct blkif_request, x86-64 layout):
;    0 u8 operation   1 u8 nr_segments   2 u16 handle   4 (pad)
;    8 u64 id        16 u64 sector_number
;   24 seg[11]: {u32 gref; u8 first_sect; u8 last_sect; (pad 2)} 8 bytes each
; A response: 0 u64 id, 8 u8 operation, 10 i16 status (0 OKAY, -1 ERROR,
; -2 EOPNOTSUPP).
;
; blkfront_init is OP_BLK_INIT: rax = the disk's sectors, or -ENODEV when the
; domain has no vbd (or no xenstore), or -errno. blkfront_rw is OP_BLK_RW:
; rdi = 0 read / 1 write, rsi = first sector, rdx = kernel buffer (page
; aligned), rcx = sectors (1-8) -> rax = 0 or -errno. One request is in
; flight at a time; the data page is granted for it (read-only for a WRITE:
; the backend only reads it) and the grant ended once the response is in.
;
; Needs evtchn.s, gnttab.s, xenbus.s and the kernel's alloc_frame; sets the
; kernel's blk_driver name.

.equ BLKIF_OP_READ,      0
.equ BLKIF_OP_WRITE,     1
.equ BLK_RING_ENTRIES,   32
.equ BLK_ENTRY_SIZE,     112
.equ BLK_RING_HDR,       64
.equ BLK_REQ_PROD,       0
.equ BLK_REQ_EVENT,      4
.equ BLK_RSP_PROD,       8
.equ BLK_RSP_EVENT,      12
.equ XenbusStateInitWait_, 2
.equ XenbusStateInitialised_, 3
.equ XenbusStateConnected_, 4
.equ BLK_EAGAIN,         11
.equ BLK_EINVAL,         22

.text

; blk_key(rdi = directory, rsi = key) -> rax = blk_path: "directory/key"
blk_key:
    push rsi
    mov rsi, rdi
    lea rdi, [rip + blk_path]
    call xs_cpy
    mov byte [rax], '/'
    lea rdi, [rax + 1]
    pop rsi
    call xs_cpy
    lea rax, [rip + blk_path]
    ret

blk_fe_key:
    mov rsi, rdi
    lea rdi, [rip + blk_fe]
    jmp blk_key

blk_be_key:
    mov rsi, rdi
    lea rdi, [rip + blk_be]
    jmp blk_key

; blkfront_init() -> rax = sectors or -errno
blkfront_init:
    push rbx
    push r12
    cmp qword [rip + blk_ring], 0
    jne .connected
    call xs_init
    test rax, rax
    js .out
    ; the first virtual block device the toolstack gave us
    lea rdi, [rip + blk_str_vbd]
    lea rsi, [rip + blk_dir]
    mov rdx, 255
    call xs_directory
    cmp rax, -2                      ; ENOENT: no vbd at all
    je .nodev
    test rax, rax
    js .out
    jz .nodev
    call gnttab_init
    test rax, rax
    js .out
    mov byte [rip + blk_dir + 255], 0
    lea rdi, [rip + blk_fe]
    lea rsi, [rip + blk_str_vbd]
    call xs_cpy
    mov byte [rax], '/'
    lea rdi, [rax + 1]
    lea rsi, [rip + blk_dir]         ; its first name: the devid
    call xs_cpy
    lea rdi, [rip + blk_dir]
    call xs_atou
    mov [rip + blk_handle], rax
    lea rdi, [rip + blk_str_backend]
    call blk_fe_key
    mov rdi, rax
    lea rsi, [rip + blk_be]
    mov rdx, 128
    call xs_read
    test rax, rax
    js .out
    lea rdi, [rip + blk_str_backend_id]
    call blk_fe_key
    mov rdi, rax
    call xs_read_u64
    test rax, rax
    js .out
    mov [rip + blk_backend_id], rax
    ; 1. the backend has opened the disk and published its features
    lea rdi, [rip + blk_str_state]
    call blk_be_key
    mov rdi, rax
    mov rsi, XenbusStateInitWait_
    call xs_wait_at_least
    test rax, rax
    js .out
    cmp rax, XenbusStateConnected_
    ja .eio                          ; closing or closed
    ; 2. the shared ring, granted, and an event channel for the backend
    call alloc_frame
    mov rbx, DIRECT_MAP
    add rbx, rax
    mov dword [rbx + BLK_REQ_EVENT], 1          ; SHARED_RING_INIT (the page is zeroed)
    mov dword [rbx + BLK_RSP_EVENT], 1
    mov rdi, rbx
    call virt_to_gfn
    mov rsi, rax
    mov rdi, [rip + blk_backend_id]
    xor edx, edx
    call gnttab_grant
    test rax, rax
    js .out
    mov [rip + blk_ring_ref], rax
    mov rdi, [rip + blk_backend_id]
    call evtchn_alloc_unbound
    test rax, rax
    js .out
    mov [rip + blk_port], eax
    mov edi, eax
    lea rsi, [rip + blk_on_event]
    call evtchn_set_handler
    ; 3. publish them and say Initialised, all in one transaction
.transaction:
    call xs_transaction_start
    test rax, rax
    js .out
    lea rdi, [rip + blk_str_ring_ref]
    call blk_fe_key
    mov rdi, rax
    mov rsi, [rip + blk_ring_ref]
    call xs_write_u64
    test rax, rax
    js .abort
    lea rdi, [rip + blk_str_event_channel]
    call blk_fe_key
    mov rdi, rax
    mov esi, [rip + blk_port]
    call xs_write_u64
    test rax, rax
    js .abort
    lea rdi, [rip + blk_str_protocol]
    call blk_fe_key
    mov rdi, rax
    lea rsi, [rip + blk_str_abi]
    call xs_write
    test rax, rax
    js .abort
    lea rdi, [rip + blk_str_state]
    call blk_fe_key
    mov rdi, rax
    mov rsi, XenbusStateInitialised_
    call xs_write_u64
    test rax, rax
    js .abort
    mov rdi, 1
    call xs_transaction_end
    cmp rax, -BLK_EAGAIN
    je .transaction                  ; someone wrote meanwhile: do it again
    test rax, rax
    js .out
    ; 4. the backend mapped the ring and bound the port
    lea rdi, [rip + blk_str_state]
    call blk_be_key
    mov rdi, rax
    mov rsi, XenbusStateConnected_
    call xs_wait_at_least
    test rax, rax
    js .out
    cmp rax, XenbusStateConnected_
    jne .eio
    lea rdi, [rip + blk_str_sectors]
    call blk_be_key
    mov rdi, rax
    call xs_read_u64
    test rax, rax
    js .out
    mov r12, rax
    lea rdi, [rip + blk_str_state]
    call blk_fe_key
    mov rdi, rax
    mov rsi, XenbusStateConnected_
    call xs_write_u64
    test rax, rax
    js .out
    mov [rip + blk_sectors], r12
    mov [rip + blk_ring], rbx
    lea rax, [rip + blk_name]
    mov [rip + blk_driver], rax
.connected:
    mov rax, [rip + blk_sectors]
.out:
    pop r12
    pop rbx
    ret
.abort:
    push rax
    xor edi, edi
    call xs_transaction_end
    pop rax
    jmp .out
.nodev:
    mov rax, -ENODEV
    jmp .out
.eio:
    mov rax, -EIO
    jmp .out

; The backend's event: responses are read from the ring by the waiting code
blk_on_event:
    inc qword [rip + blk_events]
    ret

; blkfront_rw(rdi = 0 read / 1 write, rsi = sector, rdx = buffer, rcx = sectors)
; -> rax = 0 or -errno
blkfront_rw:
    cmp qword [rip + blk_ring], 0
    je .nodev
    test rcx, rcx
    jz .einval
    cmp rcx, 8
    ja .einval
    cmp rdi, 1
    ja .einval
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rbp
    mov r12, rdi
    mov r13, rsi
    mov r14, rdx
    mov r15, rcx
    ; the data page, for this request only
    mov rdi, r14
    call virt_to_gfn
    mov rsi, rax
    mov rdi, [rip + blk_backend_id]
    mov rdx, r12                     ; a WRITE's page is only read by the backend
    call gnttab_grant
    test rax, rax
    js .out
    mov rbx, rax
    call xen_events_off
    mov rbp, rax
    ; the request in the next free slot
    mov r8, [rip + blk_ring]
    mov eax, [rip + blk_req_prod_pvt]
    and eax, BLK_RING_ENTRIES - 1
    imul rax, rax, BLK_ENTRY_SIZE
    lea r9, [r8 + rax + BLK_RING_HDR]
    mov [r9], r12b                   ; operation
    mov byte [r9 + 1], 1             ; nr_segments
    mov rax, [rip + blk_handle]
    mov [r9 + 2], ax                 ; handle: the virtual device
    mov dword [r9 + 4], 0
    inc qword [rip + blk_next_id]
    mov rax, [rip + blk_next_id]
    mov [r9 + 8], rax                ; id
    mov [r9 + 16], r13               ; sector_number
    mov [r9 + 24], ebx               ; seg[0].gref
    mov byte [r9 + 28], 0            ; first_sect
    mov rax, r15
    dec rax
    mov [r9 + 29], al                ; last_sect (inclusive)
    mov word [r9 + 30], 0
    ; RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publish, then notify only if the
    ; backend's req_event falls inside what we just pushed
    mov ecx, [r8 + BLK_REQ_PROD]     ; old
    mov eax, [rip + blk_req_prod_pvt]
    inc eax                          ; new
    mov [rip + blk_req_prod_pvt], eax
    mov [r8 + BLK_REQ_PROD], eax
    mov edx, eax
    sub edx, [r8 + BLK_REQ_EVENT]    ; new - req_event
    sub eax, ecx                     ; new - old
    cmp edx, eax
    jae .wait
    mov edi, [rip + blk_port]
    call evtchn_notify
    ; the response: RING_FINAL_CHECK_FOR_RESPONSES before each sleep
.wait:
    mov r8, [rip + blk_ring]
    mov eax, [rip + blk_rsp_cons]
    cmp eax, [r8 + BLK_RSP_PROD]
    jne .response
    mov ecx, eax
    inc ecx
    mov [r8 + BLK_RSP_EVENT], ecx    ; tell us when the next response is in
    cmp eax, [r8 + BLK_RSP_PROD]
    jne .response
    call xen_wait_event
    jmp .wait
.response:
    and eax, BLK_RING_ENTRIES - 1
    imul rax, rax, BLK_ENTRY_SIZE
    movsx r12, word [r8 + rax + BLK_RING_HDR + 10]       ; status
    inc dword [rip + blk_rsp_cons]
    mov rdi, rbp
    call xen_events_restore
    mov rdi, rbx
    call gnttab_end
    xor eax, eax
    test r12, r12
    jz .out
    mov rax, -EIO
.out:
    pop rbp
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    ret
.nodev:
    mov rax, -ENODEV
    ret
.einval:
    mov rax, -BLK_EINVAL
    ret

.data
blk_ring:           .quad 0
blk_sectors:        .quad 0
blk_handle:         .quad 0
blk_backend_id:     .quad 0
blk_ring_ref:       .quad 0
blk_port:           .dword 0, 0
blk_req_prod_pvt:   .dword 0, 0
blk_rsp_cons:       .dword 0, 0
blk_next_id:        .quad 0
blk_events:         .quad 0
blk_name:           .asciz "xen-blkfront"
blk_str_vbd:        .asciz "device/vbd"
blk_str_backend:    .asciz "backend"
blk_str_backend_id: .asciz "backend-id"
blk_str_state:      .asciz "state"
blk_str_ring_ref:   .asciz "ring-ref"
blk_str_event_channel: .asciz "event-channel"
blk_str_protocol:   .asciz "protocol"
blk_str_abi:        .asciz "x86_64-abi"
blk_str_sectors:    .asciz "sectors"
blk_fe:             .zero 64
blk_be:             .zero 128
blk_path:           .zero 192
blk_dir:            .zero 256
.text
