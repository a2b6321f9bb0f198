// A XenStore client over the store ring, as Linux's xenbus_xs.c and
// xenbus_comms.c speak to xenstored (the x86 kernels' common/xenbus.s, in A64).
//
// The ring page is struct xenstore_domain_interface (public/io/xs_wire.h):
// req[1024] at 0 and rsp[1024] at 1024, then u32 req_cons, req_prod, rsp_cons,
// rsp_prod at 2048..2063; the indexes run freely and byte i lives at i % 1024.
// Messages are struct xsd_sockmsg {u32 type, req_id, tx_id, len} and len bytes
// of payload, strings separated by NULs. Whoever writes into the ring notifies
// the other end through the store's event channel. Replies come back in order;
// between them xenstored may put XS_WATCH_EVENT messages (path\0token\0), which
// are counted for xs_wait_event. An error is XS_ERROR with an errno name.
// Relative paths ("device/vbd") are under the domain's home, /local/domain/<D>.
//
// API (x0-x17 scratch, x19-x28 kept):
//   xs_read(x0 = path) -> x0 = length of the value (in xs_buf, NUL-terminated,
//       cut to 255 bytes) or -errno
//   xs_read_int(x0 = path) -> x0 = the decimal value, or -errno
//   xs_write(x0 = path, x1 = NUL-terminated value) -> x0 = 0 or -errno
//   xs_write_int(x0 = path, x1 = value) -> x0 = 0 or -errno
//   xs_directory(x0 = path) -> x0 = bytes of NUL-separated child names in xs_buf, or -errno
//   xs_watch(x0 = path, x1 = token) / xs_unwatch(...) -> x0 = 0 or -errno
//   xs_wait_state(x0 = path, x1 = state) -> x0 = the value once it is >= state, or -errno:
//       a watch on the node and a wait for its events between reads (Linux's xenbus_watch_path
//       and the driver's otherend_changed)
//   xs_transaction_start() -> x0 = 0 or -errno; requests are inside it until
//   xs_transaction_end(x0 = 1 commit / 0 abort) -> x0 = 0, -EAGAIN (start again) or -errno
// Nothing here may run from an interrupt handler: it waits in wfi for the store's event.

.equ XS_DIRECTORY,          1
.equ XS_READ,               2
.equ XS_WATCH,              4
.equ XS_UNWATCH,            5
.equ XS_TRANSACTION_START,  6
.equ XS_TRANSACTION_END,    7
.equ XS_WRITE,              11
.equ XS_WATCH_EVENT,        15
.equ XS_ERROR,              16
.equ XS_RSP,                1024
.equ XS_REQ_CONS,           2048
.equ XS_REQ_PROD,           2052
.equ XS_RSP_CONS,           2056
.equ XS_RSP_PROD,           2060
.equ XS_BUF_SIZE,           256
.equ XS_ENOENT,             2
.equ XS_EAGAIN,             11
.equ XS_EINVAL,             22

// xs_put(x0 = bytes, x1 = count): into req[] at req_prod, then publish req_prod (leaf)
xs_put:
    adr x9, store_ring
    ldr x9, [x9]
    ldr w13, [x9, #XS_REQ_PROD]
1:  cbz x1, 2f
    ldrb w10, [x0], #1
    and x14, x13, #1023
    add x14, x14, x9
    strb w10, [x14]
    add w13, w13, #1
    sub x1, x1, #1
    b 1b
2:  dmb sy                             // the bytes before the index that publishes them
    str w13, [x9, #XS_REQ_PROD]
    ret

// xs_get(x0 = destination or 0 to drop, x1 = count): out of rsp[] at rsp_cons (leaf)
xs_get:
    adr x9, store_ring
    ldr x9, [x9]
    ldr w13, [x9, #XS_RSP_CONS]
1:  cbz x1, 3f
    and x14, x13, #1023
    add x14, x14, x9
    ldrb w10, [x14, #XS_RSP]
    cbz x0, 2f
    strb w10, [x0], #1
2:  add w13, w13, #1
    sub x1, x1, #1
    b 1b
3:  dmb sy
    str w13, [x9, #XS_RSP_CONS]
    ret

// xs_wait_rsp(x0 = bytes): wait until rsp[] holds that many unread bytes (leaf).
// The test and the sleep happen with the interrupt held off, so an event between
// them is not lost: wfi wakes for a pending interrupt even while it is masked.
xs_wait_rsp:
1:  msr daifset, #2
    adr x9, store_ring
    ldr x9, [x9]
    ldr w13, [x9, #XS_RSP_PROD]
    ldr w14, [x9, #XS_RSP_CONS]
    sub w15, w13, w14
    cmp w15, w0
    b.hs 2f
    wfi
    msr daifclr, #2                    // the event channel's PPI is taken here
    b 1b
2:  msr daifclr, #2
    dmb sy                             // the index before the bytes it covers
    ret

// xs_send(x0 = type, x1 = payload, x2 = length): one message on the request ring, notified
xs_send:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    mov x19, x0
    mov x20, x1
    mov x21, x2
1:  adr x9, store_ring                 // room for all of it? (xenstored drains on each event)
    ldr x9, [x9]
    ldr w13, [x9, #XS_REQ_PROD]
    ldr w14, [x9, #XS_REQ_CONS]
    sub w15, w13, w14
    add w15, w15, w21
    add w15, w15, #16
    cmp w15, #1024
    b.ls 2f
    adr x0, store_port
    ldr x0, [x0]
    bl notify
    bl sched_yield
    b 1b
2:  adr x0, xs_hdr_out
    str w19, [x0]
    adr x10, xs_req_id
    ldr w11, [x10]
    add w11, w11, #1
    str w11, [x10]
    str w11, [x0, #4]
    adr x10, xs_tx_id
    ldr w11, [x10]
    str w11, [x0, #8]
    str w21, [x0, #12]
    mov x1, #16
    bl xs_put
    mov x0, x20
    mov x1, x21
    bl xs_put
    adr x0, store_port
    ldr x0, [x0]
    bl notify
    ldp x21, x22, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// xs_next_msg() -> x0 = type, x1 = payload length kept in xs_buf (NUL-terminated)
xs_next_msg:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    mov x0, #16
    bl xs_wait_rsp
    adr x0, xs_hdr_in
    mov x1, #16
    bl xs_get
    adr x9, xs_hdr_in
    ldr w19, [x9, #12]                 // len
    adr x20, xs_buf
    mov x21, #0
1:  cmp x21, x19                       // byte by byte: a payload may be longer than the ring
    b.hs 3f
    mov x0, #1
    bl xs_wait_rsp
    mov x0, #0                         // past the buffer: read and dropped
    cmp x21, #XS_BUF_SIZE - 1
    b.hs 2f
    add x0, x20, x21
2:  mov x1, #1
    bl xs_get
    add x21, x21, #1
    b 1b
3:  mov x1, x19
    cmp x1, #XS_BUF_SIZE - 1
    b.ls 4f
    mov x1, #XS_BUF_SIZE - 1
4:  add x9, x20, x1
    strb wzr, [x9]
    adr x9, xs_hdr_in
    ldr w0, [x9]
    ldp x21, x22, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// xs_request(x0 = type, x1 = payload, x2 = length) -> x0 = reply length (xs_buf) or -errno
xs_request:
    stp x29, x30, [sp, #-16]!
    bl xs_send
1:  bl xs_next_msg
    cmp x0, #XS_WATCH_EVENT
    b.ne 2f
    adr x9, xs_events                  // a watch fired meanwhile: counted for xs_wait_event
    ldr x10, [x9]
    add x10, x10, #1
    str x10, [x9]
    b 1b
2:  cmp x0, #XS_ERROR
    b.eq 3f
    mov x0, x1
    ldp x29, x30, [sp], #16
    ret
3:  adr x0, xs_buf                     // the errno's name
    adr x1, str_enoent
    bl streq
    mov x9, #-XS_ENOENT
    cbnz x0, 4f
    adr x0, xs_buf
    adr x1, str_eagain
    bl streq
    mov x9, #-XS_EAGAIN
    cbnz x0, 4f
    mov x9, #-XS_EINVAL
4:  mov x0, x9
    ldp x29, x30, [sp], #16
    ret

// xs_path_request(x0 = type, x1 = path): a request whose payload is the path and its NUL
xs_path_request:
    stp x29, x30, [sp, #-16]!
    mov x2, #0
1:  add x9, x1, x2
    ldrb w9, [x9]
    add x2, x2, #1
    cbnz w9, 1b
    bl xs_request
    ldp x29, x30, [sp], #16
    ret

xs_read:
    mov x1, x0
    mov x0, #XS_READ
    b xs_path_request

xs_directory:
    mov x1, x0
    mov x0, #XS_DIRECTORY
    b xs_path_request

// xs_pair(x0 = type, x1 = first, x2 = second, x3 = 1 to end the second with a NUL too)
xs_pair:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    mov x19, x0
    mov x20, x3
    mov x9, x1
    mov x10, x2
    adr x0, xs_msg
    mov x1, x9
    bl kstrcpy                         // x0: the NUL after the first
    add x0, x0, #1
    mov x1, x10
    bl kstrcpy
    add x0, x0, x20                    // the second's NUL, when the message carries it
    adr x1, xs_msg
    sub x2, x0, x1
    mov x0, x19
    bl xs_request
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

xs_write:
    mov x2, x1
    mov x1, x0
    mov x0, #XS_WRITE
    mov x3, #0                         // XS_WRITE: path\0value, the value without its NUL
    b xs_pair

xs_watch:
    mov x2, x1
    mov x1, x0
    mov x0, #XS_WATCH
    mov x3, #1
    b xs_pair

xs_unwatch:
    mov x2, x1
    mov x1, x0
    mov x0, #XS_UNWATCH
    mov x3, #1
    b xs_pair

// xs_read_int(x0 = path) -> x0 = value or -errno
xs_read_int:
    stp x29, x30, [sp, #-16]!
    bl xs_read
    cmp x0, #0
    b.lt 1f
    adr x0, xs_buf
    bl parse_dec
1:  ldp x29, x30, [sp], #16
    ret

// xs_write_int(x0 = path, x1 = value)
xs_write_int:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    mov x19, x0
    mov x0, x1
    adr x1, xs_num
    bl format_dec
    mov x0, x19
    adr x1, xs_num
    bl xs_write
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// xs_wait_event(): wait for the next watch event
xs_wait_event:
    stp x29, x30, [sp, #-16]!
1:  adr x9, xs_events
    ldr x10, [x9]
    cbnz x10, 2f
    bl xs_next_msg
    cmp x0, #XS_WATCH_EVENT
    b.ne 1b                            // (a reply nobody waits for: dropped)
    adr x9, xs_events
    ldr x10, [x9]
    add x10, x10, #1
    str x10, [x9]
2:  sub x10, x10, #1
    str x10, [x9]
    ldp x29, x30, [sp], #16
    ret

// xs_wait_state(x0 = path, x1 = state) -> x0 = the value read, once >= state; or -errno
xs_wait_state:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    mov x19, x0
    mov x20, x1
    adr x1, str_token
    bl xs_watch                        // (its first event comes at once)
    mov x21, x0
    cmp x0, #0
    b.lt 3f
1:  mov x0, x19
    bl xs_read_int
    mov x21, x0
    cmp x0, #0
    b.lt 2f
    cmp x0, x20
    b.ge 2f
    bl xs_wait_event
    b 1b
2:  mov x0, x19
    adr x1, str_token
    bl xs_unwatch
    adr x9, xs_events                  // what the watch still had to say is moot now
    str xzr, [x9]
3:  mov x0, x21
    ldp x21, x22, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// xs_transaction_start() -> x0 = 0 or -errno; the id goes in every request's tx_id
xs_transaction_start:
    stp x29, x30, [sp, #-16]!
    mov x0, #XS_TRANSACTION_START
    adr x1, str_empty
    mov x2, #1
    bl xs_request
    cmp x0, #0
    b.lt 1f
    adr x0, xs_buf
    bl parse_dec
    adr x9, xs_tx_id
    str w0, [x9]
    mov x0, #0
1:  ldp x29, x30, [sp], #16
    ret

// xs_transaction_end(x0 = 1 commit / 0 abort) -> x0 = 0, -EAGAIN or -errno
xs_transaction_end:
    stp x29, x30, [sp, #-16]!
    adr x1, str_commit
    cbnz x0, 1f
    adr x1, str_abort
1:  mov x0, #XS_TRANSACTION_END
    mov x2, #2
    bl xs_request
    adr x9, xs_tx_id
    str wzr, [x9]
    cmp x0, #0
    b.lt 2f
    mov x0, #0
2:  ldp x29, x30, [sp], #16
    ret

// -- strings and numbers (leaf routines) ------------------------------------------------

// kstrcpy(x0 = destination, x1 = NUL-terminated source) -> x0 = the NUL written
kstrcpy:
1:  ldrb w9, [x1], #1
    strb w9, [x0]
    cbz w9, 2f
    add x0, x0, #1
    b 1b
2:  ret

// kpath(x0 = destination, x1 = directory, x2 = key): "directory/key"
kpath:
    ldrb w9, [x1], #1
    cbz w9, 1f
    strb w9, [x0], #1
    b kpath
1:  mov w9, #'/'
    strb w9, [x0], #1
2:  ldrb w9, [x2], #1
    strb w9, [x0], #1
    cbnz w9, 2b
    ret

// parse_dec(x0 = text) -> x0 = its leading decimal value (-EINVAL for none)
parse_dec:
    mov x10, #0
    mov x11, #0
    mov x12, #10
1:  ldrb w9, [x0], #1
    sub w9, w9, #'0'
    cmp w9, #9
    b.hi 2f
    madd x10, x10, x12, x9
    add x11, x11, #1
    b 1b
2:  mov x0, #-XS_EINVAL
    cbz x11, 3f
    mov x0, x10
3:  ret

// format_dec(x0 = value, x1 = buffer of 21 bytes): its decimal text, NUL-terminated
format_dec:
    mov x12, #10
    mov x13, x1
    mov x14, #0
1:  udiv x10, x0, x12                  // the digits, last first, onto the stack
    msub x11, x10, x12, x0
    add x11, x11, #'0'
    sub sp, sp, #16
    str x11, [sp]
    add x14, x14, #1
    mov x0, x10
    cbnz x0, 1b
2:  ldr x11, [sp]
    add sp, sp, #16
    strb w11, [x13], #1
    subs x14, x14, #1
    b.ne 2b
    strb wzr, [x13]
    ret

str_enoent:     .asciz "ENOENT"
str_eagain:     .asciz "EAGAIN"
str_token:      .asciz "otherend"
str_empty:      .asciz ""
str_commit:     .asciz "T"
str_abort:      .asciz "F"
.align 8
xs_req_id:      .quad 0
xs_tx_id:       .quad 0
xs_events:      .quad 0
xs_hdr_out:     .zero 16
xs_hdr_in:      .zero 16
xs_num:         .zero 24
xs_buf:         .zero XS_BUF_SIZE
xs_msg:         .zero 512
.align 8
