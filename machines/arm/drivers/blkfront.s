// blkfront: the PV block frontend (Linux: drivers/block/xen-blkfront.c), as the x86
// kernels' common/blkfront.s does it, on Arm.
//
// The toolstack wrote device/vbd/<devid>/ (backend, backend-id, state, virtual-device)
// and the backend's directory. The handshake (public/io/blkif.h):
//   1. wait for the backend to reach InitWait (2), or further;
//   2. SHARED_RING_INIT the ring page (req_event = rsp_event = 1), grant it to the
//      backend, allocate an unbound event channel for it;
//   3. in one transaction write ring-ref, event-channel, protocol and state
//      Initialised (3). The protocol is "arm-abi", XEN_IO_PROTO_ABI_NATIVE of arm64
//      (public/io/protocols.h), whose requests are laid out as x86_64's;
//   4. wait for the backend's Connected (4), read its "sectors", write our Connected.
//
// The ring (public/io/ring.h): u32 req_prod, req_event, rsp_prod, rsp_event, padding to
// 64 bytes, then 32 entries of 112 bytes. A request: 0 u8 operation, 1 u8 nr_segments,
// 2 u16 handle, 8 u64 id, 16 u64 sector_number, 24 seg[11] {u32 gref; u8 first_sect;
// u8 last_sect; pad}. A response: 0 u64 id, 8 u8 operation, 10 i16 status.
//
// blkfront_init() -> x0 = the disk's sectors, or -ENODEV (no vbd), or -errno.
// blkfront_rw(x0 = 0 read / 1 write, x1 = first sector, x2 = sectors 1-8) -> x0 = 0 or -EIO:
// one request in flight; the data is blk_page, granted for the request (read-only for a
// WRITE: the backend only reads it) and the grant ended once the response is in.

.equ BLKIF_OP_READ,         0
.equ BLKIF_OP_WRITE,        1
.equ BLK_RING_ENTRIES,      32
.equ BLK_ENTRY,             112
.equ RING_REQ_PROD,         0
.equ RING_REQ_EVENT,        4
.equ RING_RSP_PROD,         8
.equ RING_RSP_EVENT,        12
.equ RING_HEADER,           64
.equ XENBUS_INITWAIT,       2
.equ XENBUS_INITIALISED,    3
.equ XENBUS_CONNECTED,      4
.equ BLK_RING_REF,          8          // the grant refs blkfront owns
.equ BLK_DATA_REF,          9
.equ EIO,                   5

blkfront_init:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    adr x0, str_device_vbd             // our first vbd: device/vbd/<devid>
    bl xs_directory
    cmp x0, #0
    b.le .blk_nodev
    adr x0, blk_dir
    adr x1, str_device_vbd
    adr x2, xs_buf
    bl kpath
    adr x0, xs_buf
    bl parse_dec
    adr x9, blk_handle
    str x0, [x9]
    adr x0, xs_path                    // where its backend is
    adr x1, blk_dir
    adr x2, str_backend
    bl kpath
    adr x0, xs_path
    bl xs_read
    cmp x0, #0
    b.lt .blk_out
    adr x0, blk_be
    adr x1, xs_buf
    bl kstrcpy
    adr x0, xs_path
    adr x1, blk_dir
    adr x2, str_backend_id
    bl kpath
    adr x0, xs_path
    bl xs_read_int
    cmp x0, #0
    b.lt .blk_out
    adr x9, blk_be_id
    str x0, [x9]

    // 1. the backend probed the device: InitWait
    adr x0, blk_be_state
    adr x1, blk_be
    adr x2, str_state
    bl kpath
    adr x0, blk_be_state
    mov x1, #XENBUS_INITWAIT
    bl xs_wait_state
    cmp x0, #0
    b.lt .blk_out

    // 2. the ring, granted; the event channel
    adr x9, blk_ring
    mov x10, #1
    str w10, [x9, #RING_REQ_EVENT]
    str w10, [x9, #RING_RSP_EVENT]
    mov x0, #BLK_RING_REF
    adr x1, blk_be_id
    ldr x1, [x1]
    adr x2, blk_ring
    lsr x2, x2, #12
    mov x3, #0
    bl gnttab_grant
    adr x0, blk_be_id
    ldr x0, [x0]
    bl evtchn_alloc_unbound
    cmp x0, #0
    b.lt .blk_out
    adr x9, blk_port
    str x0, [x9]

    // 3. what the backend needs, in one transaction
1:  bl xs_transaction_start
    cmp x0, #0
    b.lt .blk_out
    adr x0, xs_path
    adr x1, blk_dir
    adr x2, str_ring_ref
    bl kpath
    adr x0, xs_path
    mov x1, #BLK_RING_REF
    bl xs_write_int
    adr x0, xs_path
    adr x1, blk_dir
    adr x2, str_event_channel
    bl kpath
    adr x0, xs_path
    adr x1, blk_port
    ldr x1, [x1]
    bl xs_write_int
    adr x0, xs_path
    adr x1, blk_dir
    adr x2, str_protocol
    bl kpath
    adr x0, xs_path
    adr x1, str_arm_abi
    bl xs_write
    adr x0, xs_path
    adr x1, blk_dir
    adr x2, str_state
    bl kpath
    adr x0, xs_path
    mov x1, #XENBUS_INITIALISED
    bl xs_write_int
    mov x0, #1
    bl xs_transaction_end
    cmn x0, #XS_EAGAIN
    b.eq 1b                            // someone else wrote meanwhile: again
    cmp x0, #0
    b.lt .blk_out

    // 4. the backend connected: the disk's size, then we are Connected too
    adr x0, blk_be_state
    mov x1, #XENBUS_CONNECTED
    bl xs_wait_state
    cmp x0, #0
    b.lt .blk_out
    adr x0, xs_path
    adr x1, blk_be
    adr x2, str_sectors
    bl kpath
    adr x0, xs_path
    bl xs_read_int
    cmp x0, #0
    b.lt .blk_out
    adr x9, blk_sectors
    str x0, [x9]
    adr x0, xs_path
    adr x1, blk_dir
    adr x2, str_state
    bl kpath
    adr x0, xs_path
    mov x1, #XENBUS_CONNECTED
    bl xs_write_int
    cmp x0, #0
    b.lt .blk_out
    adr x0, blk_sectors
    ldr x0, [x0]
    b .blk_out
.blk_nodev:
    mov x0, #-ENODEV
.blk_out:
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

blkfront_rw:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    mov x19, x0
    mov x20, x1
    mov x21, x2
    mov x0, #BLK_DATA_REF              // the data page: read-only for a write
    adr x1, blk_be_id
    ldr x1, [x1]
    adr x2, blk_page
    lsr x2, x2, #12
    mov x3, x19
    bl gnttab_grant
    adr x9, blk_ring                   // the request at req_prod
    ldr w10, [x9, #RING_REQ_PROD]
    and x11, x10, #BLK_RING_ENTRIES - 1
    mov x12, #BLK_ENTRY
    mul x11, x11, x12
    add x11, x11, x9
    add x11, x11, #RING_HEADER
    strb w19, [x11]                    // operation
    mov x12, #1
    strb w12, [x11, #1]                // nr_segments
    adr x12, blk_handle
    ldr x12, [x12]
    strh w12, [x11, #2]                // handle: the virtual device
    add x12, x10, #1
    str x12, [x11, #8]                 // id
    str x20, [x11, #16]                // sector_number
    mov x12, #BLK_DATA_REF
    str w12, [x11, #24]                // seg[0].gref
    strb wzr, [x11, #28]               // first_sect
    sub x12, x21, #1
    strb w12, [x11, #29]               // last_sect
    add w10, w10, #1
    dmb sy                             // the request before the index that publishes it
    str w10, [x9, #RING_REQ_PROD]
    adr x0, blk_port                   // (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: one request at a
    ldr x0, [x0]                       //  time, and the backend always asks for the next one)
    bl notify
    adr x0, blk_ring                   // wait for the response
    add x0, x0, #RING_RSP_PROD
    adr x1, blk_rsp_cons
    ldr x1, [x1]
    bl wait_ring
    adr x9, blk_ring
    adr x13, blk_rsp_cons
    ldr x10, [x13]
    and x11, x10, #BLK_RING_ENTRIES - 1
    mov x12, #BLK_ENTRY
    mul x11, x11, x12
    add x11, x11, x9
    add x11, x11, #RING_HEADER
    ldrh w22, [x11, #10]               // status: 0 OKAY
    add x10, x10, #1
    str x10, [x13]
    add w12, w10, #1
    str w12, [x9, #RING_RSP_EVENT]     // tell us of the next response
    mov x0, #BLK_DATA_REF
    bl gnttab_end
    mov x0, #0
    cbz x22, 1f
    mov x0, #-EIO
1:  ldp x21, x22, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

str_device_vbd:     .asciz "device/vbd"
str_backend:        .asciz "backend"
str_backend_id:     .asciz "backend-id"
str_state:          .asciz "state"
str_ring_ref:       .asciz "ring-ref"
str_event_channel:  .asciz "event-channel"
str_protocol:       .asciz "protocol"
str_arm_abi:        .asciz "arm-abi"
str_sectors:        .asciz "sectors"
.align 8
blk_handle:     .quad 0
blk_be_id:      .quad 0
blk_port:       .quad 0
blk_sectors:    .quad 0
blk_rsp_cons:   .quad 0
xs_path:        .zero 128
blk_dir:        .zero 64
blk_be:         .zero 128
blk_be_state:   .zero 128
.align 4096
blk_ring:       .zero 4096
blk_page:       .zero 4096
