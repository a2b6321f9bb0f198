; The PV network frontend (Linux: drivers/net/xen-netfront.c), over the
; backend netback in dom0. No port I/O at all: frames go through two shared
; rings (public/io/netif.h), one page each, 256 entries:
;
;   tx ring  request  {u32 gref; u16 offset; u16 flags; u16 id; u16 size}   12 bytes
;            response {u16 id; i16 status}
;   rx ring  request  {u16 id; u16 pad; u32 gref}                           8 bytes
;            response {u16 id; u16 offset; u16 flags; i16 status (> 0: length)}
;
; after a 64-byte header {u32 req_prod, req_event, rsp_prod, rsp_event}
; (public/io/ring.h). Every page the backend touches is granted to it: both
; rings, each frame to send (read-only, until its tx response), each receive
; buffer (writable; with request-rx-copy=1 netback copies into it with
; GNTTABOP_copy). One event channel serves both rings; a side notifies the
; other only when the other asked for it (the req_event/rsp_event rule).
;
; The connection, through xenstore (the XenbusState handshake):
;   read device/vif/0/backend, backend-id and mac; wait until the backend is
;   InitWait (2); grant the rings, allocate the event channel, write
;   tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy=1 and state 4
;   (Connected); wait until the backend is Connected (4).
;
; Needs: xs_init, xs_read, xs_write_u64, xs_wait_at_least (xenbus.s); gnttab_init,
; gnttab_grant, gnttab_end, virt_to_gfn (gnttab.s); evtchn_init,
; evtchn_alloc_unbound, evtchn_notify (evtchn.s); alloc_frame, puts (kernel.s);
; net_mac and net_domid (net.s).
; Provides: netfront_init (OP_NET_INIT), netfront_send (OP_NET_SEND),
; netfront_poll (OP_NET_POLL), net_xs_domid.

.equ NF_RING_SIZE,      256
.equ NF_RING_MASK,      255
.equ NF_REQ_PROD,       0
.equ NF_REQ_EVENT,      4
.equ NF_RSP_PROD,       8
.equ NF_RSP_EVENT,      12
.equ NF_RING_ENTRIES,   64
.equ NF_TX_ENTRY,       12
.equ NF_RX_ENTRY,       8
.equ NF_TX_BUFS,        8              ; frames in flight to the backend
.equ NF_RX_BUFS,        16             ; receive buffers posted to it
.equ NF_STATE_INITWAIT, 2
.equ NF_STATE_CONNECTED, 4
.equ NF_ENOBUFS,        105
.equ NF_PATH_MAX,       128

.text

; net_xs_domid() -> rax = our domid from xenstore ("domid" in our home), or -errno
net_xs_domid:
    lea rdi, [rip + nf_key_domid]
    lea rsi, [rip + nf_value]
    mov rdx, 32
    call xs_read
    test rax, rax
    js .out
    lea rdi, [rip + nf_value]
    mov rsi, rax
    jmp nf_parse_dec
.out:
    ret

; nf_parse_dec(rdi = text, rsi = length) -> rax = its value (digits only), or -EINVAL
nf_parse_dec:
    xor eax, eax
    test rsi, rsi
    jz .bad
.digit:
    movzx ecx, byte [rdi]
    sub ecx, '0'
    cmp ecx, 9
    ja .bad
    imul rax, rax, 10
    add rax, rcx
    inc rdi
    dec rsi
    jnz .digit
    ret
.bad:
    mov rax, -22
    ret

; nf_hex(ecx = character) -> rcx = its value 0-15, or 16 when it is not a hex digit
nf_hex:
    sub ecx, '0'
    cmp ecx, 10
    jb .ok
    or ecx, 0x20                     ; lower case
    sub ecx, 'a' - '0'
    cmp ecx, 6
    jae .bad
    add ecx, 10
.ok:
    ret
.bad:
    mov ecx, 16
    ret

; nf_backend_path(rdi = key) -> the path "<backend>/<key>" in nf_path
nf_backend_path:
    lea rsi, [rip + nf_backend]
    lea rdx, [rip + nf_path]
.copy:
    mov al, [rsi]
    test al, al
    jz .slash
    mov [rdx], al
    inc rsi
    inc rdx
    jmp .copy
.slash:
    mov byte [rdx], '/'
    inc rdx
.key:
    mov al, [rdi]
    mov [rdx], al
    inc rdi
    inc rdx
    test al, al
    jnz .key
    ret

; netfront_init() -> rax = 0, or -errno (ENODEV: no vif in xenstore)
netfront_init:
    push rbx
    push r12
    push r13
    call xs_init
    test rax, rax
    js .nodev
    call evtchn_init
    call gnttab_init
    test rax, rax
    js .out
    ; who we are, where the backend is, who it is, and our MAC
    call net_xs_domid
    test rax, rax
    js .no_domid
    mov [rip + net_domid], rax
.no_domid:
    lea rdi, [rip + nf_key_backend]
    lea rsi, [rip + nf_backend]
    mov rdx, NF_PATH_MAX - 16
    call xs_read
    test rax, rax
    js .nodev
    lea rcx, [rip + nf_backend]
    mov byte [rcx + rax], 0
    lea rdi, [rip + nf_key_backend_id]
    lea rsi, [rip + nf_value]
    mov rdx, 32
    call xs_read
    test rax, rax
    js .nodev
    lea rdi, [rip + nf_value]
    mov rsi, rax
    call nf_parse_dec
    test rax, rax
    js .nodev
    mov [rip + nf_backend_id], rax
    lea rdi, [rip + nf_key_mac]
    lea rsi, [rip + nf_value]
    mov rdx, 32
    call xs_read
    cmp rax, 17
    jb .nodev
    ; "xx:xx:xx:xx:xx:xx" into net_mac
    lea rsi, [rip + nf_value]
    lea rdi, [rip + net_mac]
    xor ebx, ebx
.mac:
    movzx ecx, byte [rsi]
    call nf_hex
    cmp ecx, 16
    jae .nodev
    mov edx, ecx
    shl edx, 4
    movzx ecx, byte [rsi + 1]
    call nf_hex
    cmp ecx, 16
    jae .nodev
    or edx, ecx
    mov [rdi + rbx], dl
    add rsi, 3
    inc ebx
    cmp ebx, 6
    jb .mac
    ; the backend must be waiting for us (InitWait) before we connect; say so
    ; if it is not there yet (no netback running in dom0 leaves us waiting)
    lea rdi, [rip + nf_key_state]
    call nf_backend_path
    lea rdi, [rip + nf_path]
    call xs_read_u64
    cmp rax, NF_STATE_INITWAIT
    jge .wait_initwait
    lea rdi, [rip + nf_msg_waiting]
    call puts
    lea rdi, [rip + nf_backend]
    call puts
    lea rdi, [rip + msg_newline]
    call puts
.wait_initwait:
    lea rdi, [rip + nf_path]
    mov rsi, NF_STATE_INITWAIT       ; (or further: a backend may skip InitWait)
    call xs_wait_at_least
    test rax, rax
    js .out
    cmp rax, NF_STATE_CONNECTED
    ja .backend_gone
    ; the shared rings: zeroed pages, then req_event = rsp_event = 1
    call alloc_frame
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov [rip + nf_tx_ring], rax
    mov dword [rax + NF_REQ_EVENT], 1
    mov dword [rax + NF_RSP_EVENT], 1
    call alloc_frame
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov [rip + nf_rx_ring], rax
    mov dword [rax + NF_REQ_EVENT], 1
    mov dword [rax + NF_RSP_EVENT], 1
    mov rdi, [rip + nf_tx_ring]
    call nf_grant_rw
    test rax, rax
    js .out
    mov [rip + nf_tx_ring_ref], rax
    mov rdi, [rip + nf_rx_ring]
    call nf_grant_rw
    test rax, rax
    js .out
    mov [rip + nf_rx_ring_ref], rax
    mov rdi, [rip + nf_backend_id]
    call evtchn_alloc_unbound
    test rax, rax
    js .out
    mov [rip + nf_port], rax
    ; buffers: NF_TX_BUFS pages to send from, NF_RX_BUFS pages to receive into
    xor ebx, ebx
.tx_buf:
    call alloc_frame
    mov rcx, DIRECT_MAP
    add rax, rcx
    lea rcx, [rip + nf_tx_page]
    mov [rcx + rbx*8], rax
    inc ebx
    cmp ebx, NF_TX_BUFS
    jb .tx_buf
    xor ebx, ebx
.rx_buf:
    call alloc_frame
    mov rcx, DIRECT_MAP
    add rax, rcx
    lea rcx, [rip + nf_rx_page]
    mov [rcx + rbx*8], rax
    mov edi, ebx
    call nf_post_rx
    test rax, rax
    js .out
    inc ebx
    cmp ebx, NF_RX_BUFS
    jb .rx_buf
    ; the receive buffers are there before the backend looks
    mov rax, [rip + nf_rx_ring]
    mov ecx, [rip + nf_rx_req_prod_pvt]
    mov [rax + NF_REQ_PROD], ecx
    ; tell the backend where everything is, then say we are connected
    lea rdi, [rip + nf_key_tx_ref]
    mov rsi, [rip + nf_tx_ring_ref]
    call xs_write_u64
    lea rdi, [rip + nf_key_rx_ref]
    mov rsi, [rip + nf_rx_ring_ref]
    call xs_write_u64
    lea rdi, [rip + nf_key_evtchn]
    mov rsi, [rip + nf_port]
    call xs_write_u64
    lea rdi, [rip + nf_key_rx_copy]
    mov rsi, 1
    call xs_write_u64
    lea rdi, [rip + nf_key_rx_notify]
    mov rsi, 1
    call xs_write_u64
    lea rdi, [rip + nf_key_fstate]
    mov rsi, NF_STATE_CONNECTED
    call xs_write_u64
    lea rdi, [rip + nf_key_state]
    call nf_backend_path
    lea rdi, [rip + nf_path]
    mov rsi, NF_STATE_CONNECTED
    call xs_wait_at_least
    test rax, rax
    js .out
    cmp rax, NF_STATE_CONNECTED
    jne .backend_gone                ; Closing or Closed: it refused us
    mov qword [rip + nf_connected], 1
    ; a first kick, as Linux's xennet_connect gives: look at the rings now
    mov rdi, [rip + nf_port]
    call evtchn_notify
    lea rdi, [rip + nf_msg_up]
    call puts
    xor eax, eax
    jmp .out
.backend_gone:
    lea rdi, [rip + nf_msg_refused]
    call puts
    mov rax, -EIO
    jmp .out
.nodev:
    mov rax, -ENODEV
.out:
    pop r13
    pop r12
    pop rbx
    ret

; nf_grant_rw(rdi = kernel address of a page) -> rax = a writable grant to the backend
nf_grant_rw:
    call virt_to_gfn
    mov rsi, rax
    mov rdi, [rip + nf_backend_id]
    xor edx, edx
    jmp gnttab_grant

; nf_post_rx(edi = buffer id) -> rax = 0 or -errno: grant the buffer's page
; to the backend and queue an rx request for it (pushed by nf_push_rx)
nf_post_rx:
    push rbx
    mov ebx, edi
    lea rax, [rip + nf_rx_page]
    mov rdi, [rax + rbx*8]
    call nf_grant_rw
    test rax, rax
    js .out
    lea rcx, [rip + nf_rx_ref]
    mov [rcx + rbx*4], eax
    mov rdx, [rip + nf_rx_ring]
    mov ecx, [rip + nf_rx_req_prod_pvt]
    and ecx, NF_RING_MASK
    lea rcx, [rcx*8 + NF_RING_ENTRIES]
    mov [rdx + rcx], bx              ; id
    mov word [rdx + rcx + 2], 0
    mov [rdx + rcx + 4], eax         ; gref
    inc dword [rip + nf_rx_req_prod_pvt]
    xor eax, eax
.out:
    pop rbx
    ret

; nf_push(rdi = ring, esi = req_prod_pvt): publish the requests and notify
; the backend if it asked to be told (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY)
nf_push:
    mov eax, [rdi + NF_REQ_PROD]     ; old
    mov [rdi + NF_REQ_PROD], esi     ; new
    mov ecx, esi
    sub ecx, [rdi + NF_REQ_EVENT]    ; new - event
    sub esi, eax                     ; new - old
    cmp ecx, esi
    jae .quiet
    cmp qword [rip + nf_connected], 0
    je .quiet
    inc qword [rip + nf_notifies]
    mov rdi, [rip + nf_port]
    jmp evtchn_notify
.quiet:
    ret

nf_push_rx:
    mov rdi, [rip + nf_rx_ring]
    mov esi, [rip + nf_rx_req_prod_pvt]
    jmp nf_push

; nf_tx_gc(): take the tx responses: end each frame's grant, free its buffer
nf_tx_gc:
    push rbx
    mov rbx, [rip + nf_tx_ring]
.next:
    mov eax, [rip + nf_tx_rsp_cons]
    cmp eax, [rbx + NF_RSP_PROD]
    je .done
    and eax, NF_RING_MASK
    imul eax, eax, NF_TX_ENTRY
    movzx ecx, word [rbx + rax + NF_RING_ENTRIES]      ; id
    movsx edx, word [rbx + rax + NF_RING_ENTRIES + 2]  ; status
    inc dword [rip + nf_tx_rsp_cons]
    cmp ecx, NF_TX_BUFS
    jae .next
    test edx, edx
    jns .ended
    inc qword [rip + nf_tx_errors]
.ended:
    lea rax, [rip + nf_tx_ref]
    mov edi, [rax + rcx*4]
    mov dword [rax + rcx*4], 0
    lea rax, [rip + nf_tx_busy]
    mov byte [rax + rcx], 0
    call gnttab_end
    jmp .next
.done:
    ; FINAL_CHECK: ask to be told about the next response, then look again
    mov eax, [rip + nf_tx_rsp_cons]
    inc eax
    mov [rbx + NF_RSP_EVENT], eax
    dec eax
    cmp eax, [rbx + NF_RSP_PROD]
    jne .next
    pop rbx
    ret

; netfront_send(rdi = frame, rsi = length) -> rax = 0 or -errno
netfront_send:
    push rbx
    push r12
    push r13
    mov r12, rdi
    mov r13, rsi
    cmp qword [rip + nf_connected], 0
    je .nodev
    call nf_tx_gc
    ; a free transmit buffer
    xor ebx, ebx
    lea rax, [rip + nf_tx_busy]
.find:
    cmp byte [rax + rbx], 0
    je .found
    inc ebx
    cmp ebx, NF_TX_BUFS
    jb .find
    mov rax, -NF_ENOBUFS
    jmp .out
.found:
    mov byte [rax + rbx], 1
    lea rax, [rip + nf_tx_page]
    mov rdi, [rax + rbx*8]
    mov rsi, r12
    mov rcx, r13
    rep movsb
    ; grant it read-only for as long as the backend needs it
    lea rax, [rip + nf_tx_page]
    mov rdi, [rax + rbx*8]
    call virt_to_gfn
    mov rsi, rax
    mov rdi, [rip + nf_backend_id]
    mov edx, 1
    call gnttab_grant
    test rax, rax
    js .no_grant
    lea rcx, [rip + nf_tx_ref]
    mov [rcx + rbx*4], eax
    ; the request
    mov rdx, [rip + nf_tx_ring]
    mov ecx, [rip + nf_tx_req_prod_pvt]
    and ecx, NF_RING_MASK
    imul ecx, ecx, NF_TX_ENTRY
    add rdx, rcx
    mov [rdx + NF_RING_ENTRIES], eax          ; gref
    mov word [rdx + NF_RING_ENTRIES + 4], 0   ; offset
    mov word [rdx + NF_RING_ENTRIES + 6], 0   ; flags
    mov [rdx + NF_RING_ENTRIES + 8], bx       ; id
    mov [rdx + NF_RING_ENTRIES + 10], r13w    ; size
    inc dword [rip + nf_tx_req_prod_pvt]
    mov rdi, [rip + nf_tx_ring]
    mov esi, [rip + nf_tx_req_prod_pvt]
    call nf_push
    xor eax, eax
    jmp .out
.no_grant:
    lea rcx, [rip + nf_tx_busy]
    mov byte [rcx + rbx], 0
    jmp .out
.nodev:
    mov rax, -ENODEV
.out:
    pop r13
    pop r12
    pop rbx
    ret

; netfront_poll(rdi = buffer, 2048 bytes) -> rax = length of a received
; frame, 0 if none: take one rx response, copy the frame out, end the grant,
; and post the buffer again
netfront_poll:
    push rbx
    push r12
    push r13
    push r14
    mov r12, rdi
    cmp qword [rip + nf_connected], 0
    je .none
    call nf_tx_gc
    mov r14, [rip + nf_rx_ring]
.next:
    mov eax, [rip + nf_rx_rsp_cons]
    cmp eax, [r14 + NF_RSP_PROD]
    jne .take
    ; nothing: ask to be told about the next response, then look again
    inc eax
    mov [r14 + NF_RSP_EVENT], eax
    dec eax
    cmp eax, [r14 + NF_RSP_PROD]
    jne .take
    jmp .none
.take:
    and eax, NF_RING_MASK
    lea rax, [rax*8 + NF_RING_ENTRIES]
    movzx ebx, word [r14 + rax]               ; id
    movzx r13d, word [r14 + rax + 2]          ; offset
    movsx ecx, word [r14 + rax + 6]           ; status: the length, or an error
    inc dword [rip + nf_rx_rsp_cons]
    cmp ebx, NF_RX_BUFS
    jae .next
    push rcx
    lea rax, [rip + nf_rx_ref]
    mov edi, [rax + rbx*4]
    call gnttab_end
    pop rcx
    xor eax, eax
    test ecx, ecx
    jle .repost                               ; an error: no frame in it
    cmp ecx, 2048
    jbe .fits
    mov ecx, 2048
.fits:
    mov eax, ecx
    and r13d, 4095
    lea rdx, [r13 + rcx]
    cmp rdx, 4096
    jbe .copy
    xor eax, eax                              ; beyond the page: refuse it
    jmp .repost
.copy:
    lea rdx, [rip + nf_rx_page]
    mov rsi, [rdx + rbx*8]
    add rsi, r13
    mov rdi, r12
    rep movsb
.repost:
    push rax
    mov edi, ebx
    call nf_post_rx
    call nf_push_rx
    pop rax
    test rax, rax
    jz .next
    jmp .out
.none:
    xor eax, eax
.out:
    pop r14
    pop r13
    pop r12
    pop rbx
    ret

.data
nf_connected:       .quad 0
nf_backend_id:      .quad 0
nf_port:            .quad 0
nf_tx_ring:         .quad 0
nf_rx_ring:         .quad 0
nf_tx_ring_ref:     .quad 0
nf_rx_ring_ref:     .quad 0
nf_tx_req_prod_pvt: .dword 0
nf_tx_rsp_cons:     .dword 0
nf_rx_req_prod_pvt: .dword 0
nf_rx_rsp_cons:     .dword 0
nf_notifies:        .quad 0
nf_tx_errors:       .quad 0
nf_tx_page:         .zero NF_TX_BUFS * 8
nf_rx_page:         .zero NF_RX_BUFS * 8
nf_tx_ref:          .zero NF_TX_BUFS * 4
nf_rx_ref:          .zero NF_RX_BUFS * 4
nf_tx_busy:         .zero NF_TX_BUFS
nf_key_domid:       .asciz "domid"
nf_key_backend:     .asciz "device/vif/0/backend"
nf_key_backend_id:  .asciz "device/vif/0/backend-id"
nf_key_mac:         .asciz "device/vif/0/mac"
nf_key_tx_ref:      .asciz "device/vif/0/tx-ring-ref"
nf_key_rx_ref:      .asciz "device/vif/0/rx-ring-ref"
nf_key_evtchn:      .asciz "device/vif/0/event-channel"
nf_key_rx_copy:     .asciz "device/vif/0/request-rx-copy"
nf_key_rx_notify:   .asciz "device/vif/0/feature-rx-notify"
nf_key_fstate:      .asciz "device/vif/0/state"
nf_key_state:       .asciz "state"
nf_msg_refused:     .asciz "netfront: the backend closed the device instead of connecting\n"
nf_msg_waiting:     .asciz "netfront: waiting for the backend to be ready (InitWait): "
nf_msg_up:          .asciz "netfront: connected to the backend (tx and rx rings, one event channel)\n"
nf_value:           .zero 32
nf_backend:         .zero NF_PATH_MAX
nf_path:            .zero NF_PATH_MAX + 16
.text
