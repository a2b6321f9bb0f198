// The little network stack behind the lab's ping system call: ARP for the address,
// then one ICMP echo request (RFC 792) and its reply, over netfront. The lab's
// addresses: dom0's bridge is 10.0.0.1, domain D is 10.0.0.(10 + D).
//
// net_ping(x0 = IPv4 address, 0x0a000001 for 10.0.0.1) -> x0 = 0 for a reply,
// -ENODEV without a NIC, -ETIMEDOUT when none came.

.equ ETH_P_IP,              0x0800
.equ ETH_P_ARP,             0x0806
.equ ETIMEDOUT,             110
.equ PING_TRIES,            4          // frames looked at before giving up

net_ping:
    stp x29, x30, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    adr x9, nf_up
    ldr x9, [x9]
    mov x1, #-ENODEV
    cbz x9, .ping_out
    adr x9, ping_ip                    // the target, in network order
    lsr x10, x0, #24
    strb w10, [x9]
    lsr x10, x0, #16
    strb w10, [x9, #1]
    lsr x10, x0, #8
    strb w10, [x9, #2]
    strb w0, [x9, #3]

    // ARP: who has the target? (broadcast)
    adr x19, frame
    mov x10, #-1
    str w10, [x19]
    strh w10, [x19, #4]
    add x0, x19, #6
    adr x1, net_mac
    mov x2, #6
    bl kmemcpy
    add x0, x19, #12
    mov x1, #ETH_P_ARP
    bl put_be16
    add x0, x19, #14                   // htype 1, ptype IPv4, hlen 6, plen 4, oper 1 (request)
    adr x1, arp_request_head
    mov x2, #8
    bl kmemcpy
    add x0, x19, #22                   // sender: our MAC and address
    adr x1, net_mac
    mov x2, #6
    bl kmemcpy
    add x0, x19, #28
    adr x1, net_ip
    mov x2, #4
    bl kmemcpy
    add x0, x19, #32                   // target: no MAC yet, the address asked about
    str wzr, [x0]
    strh wzr, [x0, #4]
    add x0, x19, #38
    adr x1, ping_ip
    mov x2, #4
    bl kmemcpy
    mov x0, x19
    mov x1, #42
    bl netfront_send
    mov x20, #PING_TRIES
1:  adr x0, rx_frame                   // its reply: oper 2 from the target
    bl netfront_recv
    cbz x0, .ping_lost
    adr x9, rx_frame
    add x0, x9, #12
    bl get_be16
    cmp x0, #ETH_P_ARP
    b.ne 2f
    adr x9, rx_frame
    add x0, x9, #20
    bl get_be16
    cmp x0, #2
    b.ne 2f
    adr x0, rx_frame
    add x0, x0, #28
    adr x1, ping_ip
    mov x2, #4
    bl memeq
    cbnz x0, 3f
2:  subs x20, x20, #1
    b.ne 1b
    b .ping_lost
3:  adr x0, ping_mac
    adr x1, rx_frame
    add x1, x1, #22
    mov x2, #6
    bl kmemcpy

    // ICMP echo request: Ethernet, IPv4 header (20 bytes), ICMP header and 8 bytes of data
    adr x0, frame
    adr x1, ping_mac
    mov x2, #6
    bl kmemcpy
    adr x0, frame + 6
    adr x1, net_mac
    mov x2, #6
    bl kmemcpy
    adr x0, frame + 12
    mov x1, #ETH_P_IP
    bl put_be16
    adr x0, frame + 14
    adr x1, ip_head                    // version 4, IHL 5, length 36, DF, TTL 64, ICMP
    mov x2, #12
    bl kmemcpy
    adr x0, frame + 26
    adr x1, net_ip
    mov x2, #4
    bl kmemcpy
    adr x0, frame + 30
    adr x1, ping_ip
    mov x2, #4
    bl kmemcpy
    adr x0, frame + 14
    mov x1, #20
    bl inet_checksum
    mov x1, x0
    adr x0, frame + 24
    bl put_be16
    adr x0, frame + 34
    adr x1, icmp_echo                  // type 8, code 0, checksum, id, sequence 1, data
    mov x2, #16
    bl kmemcpy
    adr x0, frame + 34
    mov x1, #16
    bl inet_checksum
    mov x1, x0
    adr x0, frame + 36
    bl put_be16
    adr x0, frame
    mov x1, #50
    bl netfront_send
    mov x20, #PING_TRIES
4:  adr x0, rx_frame                   // the reply: IPv4, ICMP, type 0 from the target
    bl netfront_recv
    cbz x0, .ping_lost
    adr x0, rx_frame + 12
    bl get_be16
    cmp x0, #ETH_P_IP
    b.ne 5f
    adr x9, rx_frame
    ldrb w10, [x9, #23]                // protocol
    cmp w10, #1
    b.ne 5f
    ldrb w10, [x9, #34]                // ICMP type: echo reply
    cbnz w10, 5f
    adr x0, rx_frame + 26
    adr x1, ping_ip
    mov x2, #4
    bl memeq
    cbnz x0, 6f
5:  subs x20, x20, #1
    b.ne 4b
.ping_lost:
    mov x1, #-ETIMEDOUT
    b .ping_out
6:  mov x1, #0
.ping_out:
    mov x0, x1
    ldp x21, x22, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x29, x30, [sp], #16
    ret

// put_be16(x0 = address, x1 = value) (leaf)
put_be16:
    lsr x9, x1, #8
    strb w9, [x0]
    strb w1, [x0, #1]
    ret

// get_be16(x0 = address) -> x0 (leaf)
get_be16:
    ldrb w9, [x0]
    ldrb w10, [x0, #1]
    lsl w9, w9, #8
    orr w0, w9, w10
    ret

// memeq(x0, x1, x2 = bytes) -> x0 = 1 when equal (leaf)
memeq:
1:  cbz x2, 2f
    ldrb w9, [x0], #1
    ldrb w10, [x1], #1
    cmp w9, w10
    b.ne 3f
    sub x2, x2, #1
    b 1b
2:  mov x0, #1
    ret
3:  mov x0, #0
    ret

// inet_checksum(x0 = data, x1 = even length) -> x0: the ones' complement of the ones'
// complement sum of its 16-bit big-endian words (RFC 1071), its checksum field zero (leaf)
inet_checksum:
    mov x11, #0
1:  cbz x1, 2f
    ldrb w9, [x0], #1
    ldrb w10, [x0], #1
    lsl w9, w9, #8
    orr w9, w9, w10
    add x11, x11, x9
    sub x1, x1, #2
    b 1b
2:  lsr x9, x11, #16                   // fold the carries back in
    cbz x9, 3f
    and x11, x11, #0xffff
    add x11, x11, x9
    b 2b
3:  eor x0, x11, #0xffff
    ret

arp_request_head: .byte 0, 1, 8, 0, 6, 4, 0, 1
ip_head:          .byte 0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 1, 0, 0
icmp_echo:        .byte 8, 0, 0, 0, 0x58, 0x4c, 0, 1
                  .ascii "xenlab64"
.align 8
ping_ip:        .zero 8
ping_mac:       .zero 8
frame:          .zero 64
rx_frame:       .zero 2048
