.arch arm64
// workload: the lab's user program, translated to the Arm profile.
//
// The same steps as machines/programs/workload.s and the same checksum:
// system calls, a heap grown with brk and touched page by page, an xorshift
// fill and FNV-1a fold, a disk sector written and read back (or, without a
// disk, folded as written), a ping, and a report. System calls are Linux's
// arm64 ones: the number in x8, arguments in x0-x5, `svc #0`, the result in x0.
//
// x0 at entry: the number of rounds of step 3 (0 means 1).

.equ SYS_pread64,  67
.equ SYS_pwrite64, 68
.equ SYS_write,    64
.equ SYS_exit,     93
.equ SYS_getpid,   172
.equ SYS_brk,      214
.equ SYS_lab_ping, 512      // the lab's own system call: ping an IPv4 address
.equ DISK_FD,      3
.equ ENODEV,       19
.equ CALLS,        64
.equ PAGES,        32
.equ QWORDS,       PAGES * 512

.org 0x40400000
_start:
    mov x19, x0                        // rounds
    cbnz x19, 1f
    mov x19, #1
1:  adr x0, msg_hello
    bl print

    // 1. system calls: fold each pid into the checksum
    mov x20, #0
    mov x21, #0
2:  mov x8, #SYS_getpid
    svc #0
    add x20, x20, x0
    add x21, x21, #1
    cmp x21, #CALLS
    b.lo 2b

    // 2. grow the heap and touch each new page once
    mov x8, #SYS_brk
    mov x0, #0
    svc #0
    mov x22, x0                        // heap start
    mov x9, #PAGES * 4096
    add x0, x0, x9
    mov x8, #SYS_brk
    svc #0
    mov x21, #PAGES
    mov x0, x22
    mov x9, #4096
3:  str x21, [x0]
    add x0, x0, x9
    subs x21, x21, #1
    b.ne 3b

    // 3. compute: xorshift64 fill, then an FNV-1a fold, x19 rounds
    movz x23, #0x9e37, lsl #48
    movk x23, #0x79b9, lsl #32
    movk x23, #0x7f4a, lsl #16
    movk x23, #0x7c15
    movz x11, #0x0100, lsl #32         // FNV prime 0x100000001b3
    movk x11, #0x01b3
.round:
    mov x0, x22
    mov x21, #QWORDS
4:  lsl x9, x23, #13
    eor x23, x23, x9
    lsr x9, x23, #7
    eor x23, x23, x9
    lsl x9, x23, #17
    eor x23, x23, x9
    str x23, [x0], #8
    subs x21, x21, #1
    b.ne 4b
    bl fnv_basis
    mov x0, x22
    mov x21, #QWORDS
5:  ldr x9, [x0], #8
    eor x10, x10, x9
    mul x10, x10, x11
    subs x21, x21, #1
    b.ne 5b
    add x20, x20, x10
    subs x19, x19, #1
    b.ne .round

    // 4. the disk: sector 0 gets 64 qwords of xorshift64 seeded from the checksum
    movz x10, #0x5851, lsl #48
    movk x10, #0xf42d, lsl #32
    movk x10, #0x4c95, lsl #16
    movk x10, #0x7f2d
    eor x10, x10, x20
    adr x0, sector_out
    mov x21, #64
6:  lsl x9, x10, #13
    eor x10, x10, x9
    lsr x9, x10, #7
    eor x10, x10, x9
    lsl x9, x10, #17
    eor x10, x10, x9
    str x10, [x0], #8
    subs x21, x21, #1
    b.ne 6b
    mov x8, #SYS_pwrite64
    mov x0, #DISK_FD
    adr x1, sector_out
    mov x2, #512
    mov x3, #0
    svc #0
    mov x24, x0
    mov x8, #SYS_pread64               // (made even without a disk: the same calls everywhere)
    mov x0, #DISK_FD
    adr x1, sector_in
    mov x2, #512
    mov x3, #0
    svc #0
    mov x25, x0
    cmn x24, #ENODEV
    b.eq .no_disk
    cmp x24, #512
    b.ne .disk_error
    cmp x25, #512
    b.ne .disk_error
    adr x0, msg_disk_ok
    bl print
    adr x12, sector_in
    b .fold_sector
.no_disk:
    adr x0, msg_no_disk
    bl print
    adr x12, sector_out                // what the disk would have given back
    b .fold_sector
.disk_error:
    adr x0, msg_disk_error
    bl print
    adr x12, sector_in
.fold_sector:
    bl fnv_basis
    mov x21, #64
7:  ldr x9, [x12], #8
    eor x10, x10, x9
    mul x10, x10, x11
    subs x21, x21, #1
    b.ne 7b
    add x20, x20, x10

    // 5. the network: ping dom0 (10.0.0.1); nothing of it enters the checksum
    mov x8, #SYS_lab_ping
    movz x0, #0x0a00, lsl #16
    movk x0, #0x0001
    svc #0
    mov x9, x0
    adr x0, msg_ping_ok
    cbz x9, 8f
    adr x0, msg_no_net
    cmn x9, #ENODEV
    b.eq 8f
    adr x0, msg_ping_lost
8:  bl print

    // 6. report
    adr x0, msg_sum
    bl print
    mov x0, x20
    bl print_hex
    adr x0, msg_nl
    bl print
    mov x8, #SYS_exit
    mov x0, #0
    svc #0
9:  b 9b

// x10 = the FNV-1a offset basis 0xcbf29ce484222325
fnv_basis:
    movz x10, #0xcbf2, lsl #48
    movk x10, #0x9ce4, lsl #32
    movk x10, #0x8422, lsl #16
    movk x10, #0x2325
    ret

// print(x0 = NUL-terminated string) through write(1, ...)
print:
    mov x1, x0
    mov x2, #0
1:  ldrb w3, [x1]
    cbz w3, 2f
    add x1, x1, #1
    add x2, x2, #1
    b 1b
2:  mov x1, x0
    mov x0, #1
    mov x8, #SYS_write
    svc #0
    ret

// print_hex(x0 = value)
print_hex:
    adr x1, hexbuf
    add x1, x1, #18
    mov x2, #16
    adr x4, digits
1:  sub x1, x1, #1
    and x3, x0, #15
    add x3, x4, x3
    ldrb w3, [x3]
    strb w3, [x1]
    lsr x0, x0, #4
    subs x2, x2, #1
    b.ne 1b
    mov x0, #1
    adr x1, hexbuf
    mov x2, #18
    mov x8, #SYS_write
    svc #0
    ret

msg_hello:      .asciz "workload: system calls, fresh memory, computation\n"
msg_sum:        .asciz "workload: checksum "
msg_nl:         .asciz "\n"
digits:         .ascii "0123456789abcdef"
hexbuf:         .ascii "0x0000000000000000"
msg_disk_ok:    .asciz "workload: disk ok\n"
msg_no_disk:    .asciz "workload: no disk\n"
msg_disk_error: .asciz "workload: disk error\n"
msg_ping_ok:    .asciz "workload: ping 10.0.0.1 ok\n"
msg_no_net:     .asciz "workload: no network\n"
msg_ping_lost:  .asciz "workload: ping 10.0.0.1 got no reply\n"
.align 8
sector_out: .zero 512
sector_in:  .zero 512
