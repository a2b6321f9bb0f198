// netfront: the PV network frontend (Linux: drivers/net/xen-netfront.c), as the x86
// kernels' common/netfront.s does it, on Arm. Frames go through two shared rings
// (public/io/netif.h), one page each, 256 entries after the 64-byte ring header:
//
//   tx ring  request  {u32 gref; u16 offset; u16 flags; u16 id; u16 size}   12 bytes
//            response {u16 id; i16 status}
//   rx ring  request  {u16 id; u16 pad; u32 gref}                           8 bytes
//            response {u16 id; u16 offset; u16 flags; i16 status (> 0: length)}
//
// Every page the backend touches is granted to it: both rings, the frame being sent
// (read-only, until its tx response), each receive buffer (writable: with
// request-rx-copy = 1 netback copies into it with GNTTABOP_copy). One event channel
// serves both rings.
//
// The connection, through xenstore: read device/vif/<N>/backend, backend-id and mac;
// wait until the backend is InitWait (2); grant the rings, allocate the event channel,
// post the receive buffers, write tx-ring-ref, rx-ring-ref, event-channel,
// request-rx-copy = 1 and state Connected (4) in one transaction; wait until the
// backend is Connected (4).
//
// netfront_init() -> x0 = 0, -ENODEV (no vif) or -errno
// netfront_send(x0 = frame, x1 = length up to 1514) -> x0 = 0 or -EIO
// netfront_recv(x0 = buffer of 2048 bytes) -> x0 = the length of the next frame received,
//     or 0 when none came (it lets dom0 run NF_RECV_TRIES times first)

.equ NF_RING_MASK,          255
.equ NF_TX_ENTRY,           12
.equ NF_RX_ENTRY,           8
.equ NF_RX_BUFS,            2
.equ NF_TX_RING_REF,        10         // the grant refs netfront owns
.equ NF_RX_RING_REF,        11
.equ NF_TX_REF,             12
.equ NF_RX_REF0,            13
.equ NF_RECV_TRIES,         64

netfront_init:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    adr x0, str_device_vif
    bl xs_directory
    cmp x0, #0
    b.le .nf_nodev
    adr x0, nf_dir
    adr x1, str_device_vif
    adr x2, xs_buf
    bl kpath
    adr x0, xs_path
    adr x1, nf_dir
    adr x2, str_backend
    bl kpath
    adr x0, xs_path
    bl xs_read
    cmp x0, #0
    b.lt .nf_out
    adr x0, nf_be
    adr x1, xs_buf
    bl kstrcpy
    adr x0, xs_path
    adr x1, nf_dir
    adr x2, str_backend_id
    bl kpath
    adr x0, xs_path
    bl xs_read_int
    cmp x0, #0
    b.lt .nf_out
    adr x9, nf_be_id
    str x0, [x9]
    adr x0, xs_path                    // our MAC: "aa:bb:cc:dd:ee:ff"
    adr x1, nf_dir
    adr x2, str_mac
    bl kpath
    adr x0, xs_path
    bl xs_read
    cmp x0, #0
    b.lt .nf_out
    adr x0, xs_buf
    adr x1, net_mac
    bl parse_mac
    adr x0, str_domid                  // our address: the lab's 10.0.0.(10 + domid)
    bl xs_read_int
    cmp x0, #0
    b.lt .nf_out
    add x0, x0, #10
    adr x9, net_ip
    mov x10, #10
    strb w10, [x9]
    strb wzr, [x9, #1]
    strb wzr, [x9, #2]
    strb w0, [x9, #3]

    adr x0, nf_be_state
    adr x1, nf_be
    adr x2, str_state
    bl kpath
    adr x0, nf_be_state
    mov x1, #XENBUS_INITWAIT
    bl xs_wait_state
    cmp x0, #0
    b.lt .nf_out

    // the rings (SHARED_RING_INIT), granted; the receive buffers posted; the event channel
    adr x9, nf_tx_ring
    mov x10, #1
    str w10, [x9, #RING_REQ_EVENT]
    str w10, [x9, #RING_RSP_EVENT]
    adr x9, nf_rx_ring
    str w10, [x9, #RING_REQ_EVENT]
    str w10, [x9, #RING_RSP_EVENT]
    mov x0, #NF_TX_RING_REF
    adr x2, nf_tx_ring
    bl nf_grant_rw
    mov x0, #NF_RX_RING_REF
    adr x2, nf_rx_ring
    bl nf_grant_rw
    mov x19, #0
1:  mov x0, #NF_RX_REF0                // buffer i: ref NF_RX_REF0 + i, page nf_rx_bufs + i * 4096
    add x0, x0, x19
    adr x2, nf_rx_bufs
    add x2, x2, x19, lsl #12
    bl nf_grant_rw
    mov x0, x19
    bl nf_post_rx
    add x19, x19, #1
    cmp x19, #NF_RX_BUFS
    b.lo 1b
    adr x0, nf_be_id
    ldr x0, [x0]
    bl evtchn_alloc_unbound
    cmp x0, #0
    b.lt .nf_out
    adr x9, nf_port
    str x0, [x9]

2:  bl xs_transaction_start
    cmp x0, #0
    b.lt .nf_out
    adr x2, str_tx_ring_ref
    mov x3, #NF_TX_RING_REF
    bl nf_write_key
    adr x2, str_rx_ring_ref
    mov x3, #NF_RX_RING_REF
    bl nf_write_key
    adr x2, str_event_channel
    adr x3, nf_port
    ldr x3, [x3]
    bl nf_write_key
    adr x2, str_request_rx_copy
    mov x3, #1
    bl nf_write_key
    adr x2, str_state
    mov x3, #XENBUS_CONNECTED
    bl nf_write_key
    mov x0, #1
    bl xs_transaction_end
    cmn x0, #XS_EAGAIN
    b.eq 2b
    cmp x0, #0
    b.lt .nf_out
    adr x0, nf_be_state
    mov x1, #XENBUS_CONNECTED
    bl xs_wait_state
    cmp x0, #0
    b.lt .nf_out
    adr x9, nf_up
    mov x10, #1
    str x10, [x9]
    mov x0, #0
    b .nf_out
.nf_nodev:
    mov x0, #-ENODEV
.nf_out:
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// nf_grant_rw(x0 = ref, x2 = page): grant it to the backend, writable
nf_grant_rw:
    adr x1, nf_be_id
    ldr x1, [x1]
    lsr x2, x2, #12
    mov x3, #0
    b gnttab_grant

// nf_write_key(x2 = key, x3 = value): nf_dir/key = value
nf_write_key:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    mov x19, x3
    adr x0, xs_path
    adr x1, nf_dir
    bl kpath
    adr x0, xs_path
    mov x1, x19
    bl xs_write_int
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// nf_post_rx(x0 = buffer id): an rx request {id, gref} at the rx ring's req_prod (leaf)
nf_post_rx:
    adr x9, nf_rx_ring
    ldr w10, [x9, #RING_REQ_PROD]
    and x11, x10, #NF_RING_MASK
    add x11, x9, x11, lsl #3
    add x11, x11, #RING_HEADER
    strh w0, [x11]
    add x12, x0, #NF_RX_REF0
    str w12, [x11, #4]
    add w10, w10, #1
    dmb sy
    str w10, [x9, #RING_REQ_PROD]
    ret

netfront_send:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    mov x19, x1
    mov x2, x1                         // the frame into the tx page
    mov x1, x0
    adr x0, nf_tx_page
    bl kmemcpy
    mov x0, #NF_TX_REF                 // granted read-only: the backend copies out of it
    adr x1, nf_be_id
    ldr x1, [x1]
    adr x2, nf_tx_page
    lsr x2, x2, #12
    mov x3, #1
    bl gnttab_grant
    adr x9, nf_tx_ring
    ldr w10, [x9, #RING_REQ_PROD]
    and x11, x10, #NF_RING_MASK
    mov x12, #NF_TX_ENTRY
    mul x11, x11, x12
    add x11, x11, x9
    add x11, x11, #RING_HEADER
    mov x12, #NF_TX_REF
    str w12, [x11]                     // gref
    strh wzr, [x11, #4]                // offset
    strh wzr, [x11, #6]                // flags: one slot, checksum done
    strh w10, [x11, #8]                // id
    strh w19, [x11, #10]               // size
    add w10, w10, #1
    dmb sy
    str w10, [x9, #RING_REQ_PROD]
    adr x0, nf_port
    ldr x0, [x0]
    bl notify
    adr x0, nf_tx_ring                 // its response: the page is ours again after it
    add x0, x0, #RING_RSP_PROD
    adr x1, nf_tx_cons
    ldr x1, [x1]
    bl wait_ring
    adr x9, nf_tx_ring
    adr x13, nf_tx_cons
    ldr x10, [x13]
    and x11, x10, #NF_RING_MASK
    add x11, x9, x11, lsl #2
    ldrh w19, [x11, #RING_HEADER + 2]  // status: 0 OKAY
    add x10, x10, #1
    str x10, [x13]
    add w12, w10, #1
    str w12, [x9, #RING_RSP_EVENT]
    mov x0, #NF_TX_REF
    bl gnttab_end
    mov x0, #0
    cbz x19, 1f
    mov x0, #-EIO
1:  ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

netfront_recv:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    mov x19, x0
    mov x20, #NF_RECV_TRIES
1:  adr x9, nf_rx_ring
    ldr w10, [x9, #RING_RSP_PROD]
    adr x11, nf_rx_cons
    ldr x11, [x11]
    cmp w10, w11
    b.ne 2f
    subs x20, x20, #1
    b.eq 4f
    bl sched_yield                     // let dom0 run: the bridge and netback
    b 1b
2:  dmb sy
    and x12, x11, #NF_RING_MASK        // the response: id and status (the length)
    add x12, x9, x12, lsl #3
    add x12, x12, #RING_HEADER
    ldrh w21, [x12]
    ldrh w22, [x12, #6]
    add x11, x11, #1
    adr x13, nf_rx_cons
    str x11, [x13]
    add w12, w11, #1
    str w12, [x9, #RING_RSP_EVENT]
    cmp x21, #NF_RX_BUFS
    b.hs 3f
    tst x22, #0x8000                   // an error (status < 0): nothing to copy
    b.ne 3f
    cmp x22, #2048
    b.hi 3f
    mov x0, x19
    adr x1, nf_rx_bufs
    add x1, x1, x21, lsl #12
    mov x2, x22
    bl kmemcpy
    mov x0, x21
    bl nf_post_rx                      // the buffer goes back to the backend
    adr x0, nf_port
    ldr x0, [x0]
    bl notify
    mov x0, x22
    b 5f
3:  mov x0, x21                        // (a bad response: its buffer is posted again)
    cmp x0, #NF_RX_BUFS
    b.hs 1b
    bl nf_post_rx
    b 1b
4:  mov x0, #0
5:  ldp x21, x22, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// parse_mac(x0 = "aa:bb:cc:dd:ee:ff", x1 = 6 bytes) (leaf)
parse_mac:
    mov x12, #6
1:  mov x11, #0
    mov x13, #2
2:  ldrb w9, [x0], #1
    sub w10, w9, #'0'
    cmp w10, #9
    b.ls 3f
    orr w9, w9, #0x20                  // a-f or A-F
    sub w10, w9, #'a' - 10
3:  lsl x11, x11, #4
    and x10, x10, #15
    orr x11, x11, x10
    subs x13, x13, #1
    b.ne 2b
    strb w11, [x1], #1
    add x0, x0, #1                     // the ':'
    subs x12, x12, #1
    b.ne 1b
    ret

str_device_vif:       .asciz "device/vif"
str_mac:              .asciz "mac"
str_domid:            .asciz "domid"
str_tx_ring_ref:      .asciz "tx-ring-ref"
str_rx_ring_ref:      .asciz "rx-ring-ref"
str_request_rx_copy:  .asciz "request-rx-copy"
.align 8
nf_up:          .quad 0
nf_be_id:       .quad 0
nf_port:        .quad 0
nf_tx_cons:     .quad 0
nf_rx_cons:     .quad 0
net_mac:        .zero 8
net_ip:         .zero 8
nf_dir:         .zero 64
nf_be:          .zero 128
nf_be_state:    .zero 128
.align 4096
nf_tx_ring:     .zero 4096
nf_rx_ring:     .zero 4096
nf_tx_page:     .zero 4096
nf_rx_bufs:     .zero 4096 * NF_RX_BUFS
