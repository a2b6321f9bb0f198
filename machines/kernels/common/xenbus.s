; A XenStore client over the store ring, as Linux's xenbus_xs.c and
; xenbus_comms.c speak to xenstored.
;
; The ring page is struct xenstore_domain_interface (public/io/xs_wire.h):
; req[1024] at 0 and rsp[1024] at 1024, then u32 req_cons, req_prod,
; rsp_cons, rsp_prod at 2048..2063; the indexes run freely and byte i lives
; at i % 1024. On that byte stream travel messages: struct xsd_sockmsg
; {u32 type, req_id, tx_id, len} and len bytes of payload (at most 4096),
; strings separated by NULs. Whoever writes into the ring notifies the other
; end through the store's event channel. Replies come back in order; between
; them xenstored may put XS_WATCH_EVENT messages (path\0token\0). Errors are
; XS_ERROR carrying an errno name ("ENOENT"), turned here into -errno.
;
; Paths may be relative ("device/vbd"): xenstored resolves them against the
; domain's home, /local/domain/<domid>.
;
; API (System V registers; rbx, rbp, r12-r15 preserved):
;   xs_init() -> rax = 0, or -ENODEV when there is no store ring
;   xs_read(rdi = path, rsi = buffer, rdx = size) -> rax = length (the value,
;       NUL-terminated in the buffer, cut to size - 1) or -errno
;   xs_write(rdi = path, rsi = NUL-terminated value) -> rax = 0 or -errno
;   xs_read_u64(rdi = path) -> rax = the decimal value, or -errno
;   xs_write_u64(rdi = path, rsi = value) -> rax = 0 or -errno
;   xs_directory(rdi = path, rsi = buffer, rdx = size) -> rax = bytes of
;       NUL-separated child names, or -errno
;   xs_wait_value(rdi = path, rsi = value) -> rax = 0 or -errno: waits until
;       the node reads as that decimal value
;   xs_wait_at_least(rdi = path, rsi = value) -> rax = the value read, once
;       it is >= value, or -errno
;   xs_watch(rdi = path, rsi = token) / xs_unwatch(...) -> rax = 0 or -errno
;   xs_transaction_start() -> rax = 0 or -errno; the xs_write/xs_read calls
;       that follow are inside it until
;   xs_transaction_end(rdi = 1 commit / 0 abort) -> rax = 0, -EAGAIN when a
;       commit conflicted (start again), or -errno
; Waiting is Linux's: a watch on the node, and blocking for events between
; reads of it. Nothing here may run from an event handler.
;
; The including flavour defines (.equ) XEN_FIND_STORE, the routine that
; returns rax = the ring's kernel address (0: none) and rdx = its port
; (PV: pv_find_store in pv_ops.s, from start_info; HVM/PVH: hvm_find_store
; below, from HVM_PARAM_STORE_PFN/STORE_EVTCHN), and needs evtchn.s.

.equ XS_RING_SIZE,      1024
.equ XS_REQ,            0
.equ XS_RSP,            1024
.equ XS_REQ_CONS,       2048
.equ XS_REQ_PROD,       2052
.equ XS_RSP_CONS,       2056
.equ XS_RSP_PROD,       2060
.equ XS_PAYLOAD_MAX,    4096
.equ XS_DIRECTORY,      1
.equ XS_READ,           2
.equ XS_WATCH,          4
.equ XS_UNWATCH,        5
.equ XS_TRANSACTION_START, 6
.equ XS_TRANSACTION_END, 7
.equ XS_WRITE,          11
.equ XS_WATCH_EVENT,    15
.equ XS_ERROR,          16
.equ XS_EINVAL,         22
.equ XS_ENOENT,         2
.equ XS_EIO,            5

.text

; xs_init() -> rax = 0 or -ENODEV
xs_init:
    cmp qword [rip + xs_ring], 0
    jne .ok
    call evtchn_init
    call XEN_FIND_STORE
    test rax, rax
    jz .none
    test edx, edx
    jz .none
    mov [rip + xs_ring], rax
    mov [rip + xs_port], edx
    mov edi, edx
    lea rsi, [rip + xs_on_event]
    call evtchn_set_handler
.ok:
    xor eax, eax
    ret
.none:
    mov rax, -ENODEV
    ret

; The store's event: the waiting code reads the ring itself, so only count it
xs_on_event:
    inc qword [rip + xs_events]
    ret

xs_kick:
    mov edi, [rip + xs_port]
    jmp evtchn_notify

; xs_put(rdi = data, rsi = length): into the request ring, waiting for room
xs_put:
    push rbx
    push r12
    push r13
    mov rbx, rdi
    mov r12, rsi
.more:
    test r12, r12
    jz .done
    mov r13, [rip + xs_ring]
    mov eax, [r13 + XS_REQ_PROD]
    mov ecx, eax
    sub ecx, [r13 + XS_REQ_CONS]
    cmp ecx, XS_RING_SIZE
    jb .room
    call xs_kick                     ; full: let xenstored drain it
    call xen_wait_event
    jmp .more
.room:
    mov ecx, eax
    and ecx, XS_RING_SIZE - 1
    mov dl, [rbx]
    mov [r13 + rcx + XS_REQ], dl
    inc eax
    mov [r13 + XS_REQ_PROD], eax     ; the byte is written before the index moves
    inc rbx
    dec r12
    jmp .more
.done:
    pop r13
    pop r12
    pop rbx
    ret

; xs_get(rdi = buffer, rsi = length): from the response ring, waiting for bytes
xs_get:
    push rbx
    push r12
    push r13
    mov rbx, rdi
    mov r12, rsi
.more:
    test r12, r12
    jz .done
    mov r13, [rip + xs_ring]
    mov eax, [r13 + XS_RSP_CONS]
    cmp eax, [r13 + XS_RSP_PROD]
    jne .have
    cmp qword [rip + xs_consumed], 0
    je .wait
    mov qword [rip + xs_consumed], 0
    call xs_kick                     ; we made room: xenstored may have more to put
.wait:
    call xen_wait_event
    jmp .more
.have:
    mov ecx, eax
    and ecx, XS_RING_SIZE - 1
    mov dl, [r13 + rcx + XS_RSP]
    mov [rbx], dl
    inc eax
    mov [r13 + XS_RSP_CONS], eax
    inc qword [rip + xs_consumed]
    inc rbx
    dec r12
    jmp .more
.done:
    pop r13
    pop r12
    pop rbx
    ret

; xs_read_msg() -> rax = the message type (payload in xs_in, NUL-terminated,
; length in xs_in_len), or -EIO for a header no xenstored would send.
; A watch event sets xs_watch_fired.
xs_read_msg:
    lea rdi, [rip + xs_hdr_in]
    mov esi, 16
    call xs_get
    mov eax, [rip + xs_hdr_in + 12]
    cmp eax, XS_PAYLOAD_MAX
    ja .bad
    mov [rip + xs_in_len], rax
    lea rdi, [rip + xs_in]
    mov rsi, rax
    call xs_get
    mov rcx, [rip + xs_in_len]
    lea rdx, [rip + xs_in]
    mov byte [rdx + rcx], 0
    mov eax, [rip + xs_hdr_in]
    cmp eax, XS_WATCH_EVENT
    jne .ret
    mov qword [rip + xs_watch_fired], 1
.ret:
    ret
.bad:
    mov rax, -XS_EIO
    ret

; xs_request(rdi = type, rsi = payload length; the payload in xs_out)
; -> rax = 0 or -errno; the reply in xs_in / xs_in_len
xs_request:
    push rbx
    push r12
    push r13
    mov r12, rdi
    mov r13, rsi
    cmp qword [rip + xs_ring], 0
    je .nostore
    call xen_events_off
    mov rbx, rax
    inc dword [rip + xs_req_id]
    lea rdi, [rip + xs_hdr_out]
    mov [rdi], r12d
    mov eax, [rip + xs_req_id]
    mov [rdi + 4], eax
    mov eax, [rip + xs_tx]
    mov [rdi + 8], eax
    mov [rdi + 12], r13d
    mov esi, 16
    call xs_put
    lea rdi, [rip + xs_out]
    mov rsi, r13
    call xs_put
    call xs_kick
.reply:
    call xs_read_msg
    test rax, rax
    js .done
    cmp eax, XS_WATCH_EVENT
    je .reply
    cmp eax, XS_ERROR
    je .error
    xor eax, eax
    jmp .done
.error:
    call xs_errno
.done:
    mov r12, rax
    mov rdi, rbx
    call xen_events_restore
    mov rax, r12
    pop r13
    pop r12
    pop rbx
    ret
.nostore:
    mov rax, -ENODEV
    pop r13
    pop r12
    pop rbx
    ret

; xs_errno() -> rax = -errno for the errno name in xs_in (EINVAL if unknown)
xs_errno:
    lea r8, [rip + xs_errnames]
.entry:
    cmp byte [r8], 0
    je .unknown
    lea r9, [rip + xs_in]
.cmp:
    mov al, [r8]
    cmp al, [r9]
    jne .skip
    test al, al
    je .match
    inc r8
    inc r9
    jmp .cmp
.skip:
    cmp byte [r8], 0
    je .skipped
    inc r8
    jmp .skip
.skipped:
    add r8, 2                        ; the NUL and the errno byte
    jmp .entry
.match:
    movzx eax, byte [r8 + 1]
    neg rax
    ret
.unknown:
    mov rax, -XS_EINVAL
    ret

; xs_cpy(rdi = destination, rsi = string) -> rax = the NUL written at its end
xs_cpy:
    mov al, [rsi]
    mov [rdi], al
    test al, al
    jz .end
    inc rdi
    inc rsi
    jmp xs_cpy
.end:
    mov rax, rdi
    ret

; xs_path_request(rdi = type, rsi = path): a request whose payload is one path
xs_path_request:
    push rdi
    lea rdi, [rip + xs_out]
    call xs_cpy
    lea rsi, [rip + xs_out]
    sub rax, rsi
    lea rsi, [rax + 1]
    pop rdi
    jmp xs_request

; xs_copy_out(rdi = buffer, rsi = size, rdx = 1 to NUL-terminate) -> rax = length
; copies the reply's payload, cut to fit
xs_copy_out:
    mov rax, [rip + xs_in_len]
    mov rcx, rsi
    sub rcx, rdx
    cmp rax, rcx
    jbe .fits
    mov rax, rcx
.fits:
    lea rsi, [rip + xs_in]
    xor ecx, ecx
.byte:
    cmp rcx, rax
    jae .end
    mov r8b, [rsi + rcx]
    mov [rdi + rcx], r8b
    inc rcx
    jmp .byte
.end:
    test rdx, rdx
    jz .ret
    mov byte [rdi + rax], 0
.ret:
    ret

; xs_read(rdi = path, rsi = buffer, rdx = size) -> rax = length or -errno
xs_read:
    test rdx, rdx
    jz .einval
    push rsi
    push rdx
    mov rsi, rdi
    mov rdi, XS_READ
    call xs_path_request
    pop rsi
    pop rdi
    test rax, rax
    js .ret
    mov rdx, 1
    jmp xs_copy_out
.ret:
    ret
.einval:
    mov rax, -XS_EINVAL
    ret

; xs_directory(rdi = path, rsi = buffer, rdx = size) -> rax = length or -errno
xs_directory:
    push rsi
    push rdx
    mov rsi, rdi
    mov rdi, XS_DIRECTORY
    call xs_path_request
    pop rsi
    pop rdi
    test rax, rax
    js .ret
    xor edx, edx
    jmp xs_copy_out
.ret:
    ret

; xs_two_strings(rdi = first, rsi = second, rdx = 1 to end with a NUL)
; -> rax = payload length in xs_out: first\0second[\0]
xs_two_strings:
    push rdx
    push rsi
    lea rax, [rip + xs_out]
    mov rsi, rdi
    mov rdi, rax
    call xs_cpy
    lea rdi, [rax + 1]
    pop rsi
    call xs_cpy
    pop rdx
    add rax, rdx
    lea rcx, [rip + xs_out]
    sub rax, rcx
    ret

; xs_write(rdi = path, rsi = value) -> rax = 0 or -errno
xs_write:
    xor edx, edx                     ; XS_WRITE's value has no NUL of its own
    call xs_two_strings
    mov rsi, rax
    mov rdi, XS_WRITE
    jmp xs_request

xs_watch:
    mov rdx, 1
    call xs_two_strings
    mov rsi, rax
    mov rdi, XS_WATCH
    jmp xs_request

xs_unwatch:
    mov rdx, 1
    call xs_two_strings
    mov rsi, rax
    mov rdi, XS_UNWATCH
    jmp xs_request

; xs_atou(rdi = string) -> rax = its decimal value, or -EINVAL
xs_atou:
    xor eax, eax
    cmp byte [rdi], 0
    je .bad
.digit:
    movzx ecx, byte [rdi]
    test ecx, ecx
    jz .ret
    sub ecx, '0'
    cmp ecx, 9
    ja .bad
    imul rax, rax, 10
    add rax, rcx
    inc rdi
    jmp .digit
.ret:
    ret
.bad:
    mov rax, -XS_EINVAL
    ret

; xs_read_u64(rdi = path) -> rax = value or -errno
xs_read_u64:
    lea rsi, [rip + xs_num]
    mov rdx, 24
    call xs_read
    test rax, rax
    js .ret
    lea rdi, [rip + xs_num]
    jmp xs_atou
.ret:
    ret

; xs_write_u64(rdi = path, rsi = value) -> rax = 0 or -errno
xs_write_u64:
    push rdi
    lea rcx, [rip + xs_num + 23]
    mov byte [rcx], 0
    mov rax, rsi
    mov r8, 10
.digit:
    xor edx, edx
    div r8
    add dl, '0'
    dec rcx
    mov [rcx], dl
    test rax, rax
    jnz .digit
    mov rsi, rcx
    pop rdi
    jmp xs_write

; xs_wait_watch(): until a watch event has come in
xs_wait_watch:
.check:
    cmp qword [rip + xs_watch_fired], 0
    jne .ret
    mov rax, [rip + xs_ring]
    mov ecx, [rax + XS_RSP_CONS]
    cmp ecx, [rax + XS_RSP_PROD]
    je .block
    call xs_read_msg                 ; a watch event (or a stray reply: dropped)
    test rax, rax
    js .ret
    jmp .check
.block:
    call xen_wait_event
    jmp .check
.ret:
    ret

; xs_wait_cond(rdi = path, rsi = value, rdx = 0 equal / 1 at least)
; -> rax = the value read once it matches, or -errno
xs_wait_cond:
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov r12, rdi
    mov r13, rsi
    mov r14, rdx
    call xen_events_off
    mov rbx, rax
    mov rdi, r12
    lea rsi, [rip + xs_token]
    call xs_watch
    test rax, rax
    js .out
.loop:
    mov qword [rip + xs_watch_fired], 0
    mov rdi, r12
    call xs_read_u64
    cmp rax, -XS_ENOENT
    je .wait                         ; not written yet: its creation fires the watch
    test rax, rax
    js .fail
    cmp rax, r13
    je .match
    test r14, r14
    jz .wait
    cmp rax, r13
    ja .match
.wait:
    call xs_wait_watch
    jmp .loop
.match:
.fail:
    mov r15, rax
    mov rdi, r12
    lea rsi, [rip + xs_token]
    call xs_unwatch
    mov rax, r15
.out:
    mov r15, rax
    mov rdi, rbx
    call xen_events_restore
    mov rax, r15
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    ret

; xs_wait_value(rdi = path, rsi = value) -> rax = 0 or -errno
xs_wait_value:
    xor edx, edx
    call xs_wait_cond
    test rax, rax
    js .ret
    xor eax, eax
.ret:
    ret

; xs_wait_at_least(rdi = path, rsi = value) -> rax = value read or -errno
xs_wait_at_least:
    mov rdx, 1
    jmp xs_wait_cond

; xs_transaction_start() -> rax = 0 or -errno
xs_transaction_start:
    mov byte [rip + xs_out], 0
    mov rdi, XS_TRANSACTION_START
    mov rsi, 1
    call xs_request
    test rax, rax
    js .ret
    lea rdi, [rip + xs_in]
    call xs_atou
    test rax, rax
    js .ret
    mov [rip + xs_tx], eax
    xor eax, eax
.ret:
    ret

; xs_transaction_end(rdi = 1 commit, 0 abort) -> rax = 0 or -errno (-EAGAIN)
xs_transaction_end:
    mov byte [rip + xs_out], 'F'
    test rdi, rdi
    jz .send
    mov byte [rip + xs_out], 'T'
.send:
    mov byte [rip + xs_out + 1], 0
    mov rdi, XS_TRANSACTION_END
    mov rsi, 2
    call xs_request
    mov dword [rip + xs_tx], 0
    ret

; ------------------------------------------------------------ HVM and PVH

; hvm_find_store() -> rax = ring address (0: none), rdx = port
hvm_find_store:
    push rbx
    mov esi, HVM_PARAM_STORE_EVTCHN
    call xs_get_param
    mov rbx, rax
    mov esi, HVM_PARAM_STORE_PFN
    call xs_get_param
    test rax, rax
    jz .none
    shl rax, 12
    mov rcx, DIRECT_MAP
    add rax, rcx
    mov rdx, rbx
    pop rbx
    ret
.none:
    xor eax, eax
    xor edx, edx
    pop rbx
    ret

; xs_get_param(esi = index) -> rax: HVMOP_get_param on ourselves (0 on failure)
xs_get_param:
    lea rdi, [rip + xs_param]
    mov word [rdi], DOMID_SELF
    mov [rdi + 4], esi
    mov qword [rdi + 8], 0
    mov rsi, rdi
    mov rdi, HVMOP_get_param
    call HC_hvm_op
    test rax, rax
    jnz .fail
    mov rax, [rip + xs_param + 8]
    ret
.fail:
    xor eax, eax
    ret

.data
xs_ring:        .quad 0
xs_port:        .dword 0
xs_req_id:      .dword 0
xs_tx:          .dword 0, 0
xs_consumed:    .quad 0
xs_events:      .quad 0
xs_watch_fired: .quad 0
xs_in_len:      .quad 0
xs_param:       .quad 0, 0
xs_hdr_out:     .dword 0, 0, 0, 0
xs_hdr_in:      .dword 0, 0, 0, 0
xs_num:         .zero 24
xs_token:       .asciz "kernel-wait"
; XS_ERROR's errno names (xsd_errors[] in xs_wire.h) and their numbers
xs_errnames:
    .asciz "EINVAL"
    .byte 22
    .asciz "EACCES"
    .byte 13
    .asciz "EEXIST"
    .byte 17
    .asciz "EISDIR"
    .byte 21
    .asciz "ENOENT"
    .byte 2
    .asciz "ENOMEM"
    .byte 12
    .asciz "ENOSPC"
    .byte 28
    .asciz "EIO"
    .byte 5
    .asciz "ENOTEMPTY"
    .byte 39
    .asciz "ENOSYS"
    .byte 38
    .asciz "EROFS"
    .byte 30
    .asciz "EBUSY"
    .byte 16
    .asciz "EAGAIN"
    .byte 11
    .asciz "EISCONN"
    .byte 106
    .asciz "E2BIG"
    .byte 7
    .asciz "EPERM"
    .byte 1
    .byte 0

.bss
.align 4096
xs_out:         .zero XS_PAYLOAD_MAX + 16
xs_in:          .zero XS_PAYLOAD_MAX + 16
.text
