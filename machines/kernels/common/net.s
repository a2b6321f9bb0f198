; A tiny network stack: Ethernet II, ARP, IPv4 and ICMP echo, over the
; flavour's network card (OP_NET_SEND / OP_NET_POLL in pv_ops), whichever it
; is: the emulated NE2000 (ne2000.s) or the PV frontend (netfront.s).
;
; Addresses: dom0's bridge is 10.0.0.1; a guest with domid D is 10.0.0.(10+D)
; and a kernel that cannot learn its domid (no xenstore) is 10.0.0.2. IPv4
; addresses are passed as u32 in host order (10.0.0.1 = 0x0a000001) and turned
; into wire order only where a header is written.
;
; Needs: pv_ops with OP_NET_INIT, OP_NET_SEND, OP_NET_POLL, OP_IDLE,
; OP_CLOCK_NS, OP_TIMER_ARM and OP_CONSOLE_WRITE; puts, put_dec, hex_digits, msg_newline (kernel.s).
; Provides: net_init, net_send, net_poll_all, ping, net_ping_report, net_mac
; and net_domid (which the card's driver fills in: the MAC, and the domid
; when it can read it from xenstore), net_ip, net_put_ip, net_put_mac,
; inet_csum, bswap32 and the net_* counters.

.equ NET_ETH_HLEN,      14
.equ NET_ETH_P_IP,      0x0008          ; 0x0800 as a little-endian load of its wire bytes
.equ NET_ETH_P_ARP,     0x0608          ; 0x0806, likewise
.equ NET_ARP_REQUEST,   0x0100          ; opcode 1 in wire order
.equ NET_ARP_REPLY,     0x0200
.equ NET_IP_ICMP,       1
.equ NET_ICMP_ECHOREPLY, 0
.equ NET_ICMP_ECHO,     8
.equ NET_PING_ID,       0x4c58          ; identifier "XL" on the wire
.equ NET_PING_DATA,     56              ; ping's default payload: 64-byte ICMP messages
.equ NET_MIN_FRAME,     60              ; without the FCS, which the card adds
.equ NET_MAX_FRAME,     1514
.equ NET_WAIT_NS,       1000000000      ; how long to wait for an answer: 1 s
.equ NET_ARP_TRIES,     3
.equ NET_ETIMEDOUT,     110
.equ NET_EINVAL,        22

.text

; net_domid_from_cpuid(): on Xen, leaf 0x40000004 (HVM-specific features)
; has the domain id in ECX when EAX has XEN_HVM_CPUID_DOMID_PRESENT (bit 4)
; (public/arch-x86/cpuid.h); on bare metal there is no Xen signature.
net_domid_from_cpuid:
    push rbx
    mov eax, 0x40000000
    cpuid
    cmp ebx, 0x566e6558              ; "XenV"
    jne .none
    cmp eax, 0x40000004
    jb .none
    mov eax, 0x40000004
    xor ecx, ecx
    cpuid
    test eax, 0x10
    jz .none
    mov [rip + net_domid], rcx
.none:
    pop rbx
    ret

; net_init() -> rax = 0 or -errno: connect the card, pick our address, say so.
; Safe to call again once the card is up.
net_init:
    cmp qword [rip + net_up], 0
    jne .already
    call [rip + pv_ops + OP_NET_INIT]
    test rax, rax
    jnz .out
    cmp qword [rip + net_domid], 0
    jge .known
    call net_domid_from_cpuid        ; an HVM guest without xenstore: Xen's CPUID leaf says it
.known:
    mov rax, [rip + net_domid]
    mov ecx, 2
    test rax, rax
    js .have
    lea rcx, [rax + 10]
.have:
    and ecx, 0xff
    mov eax, 0x0a000000
    or eax, ecx
    mov [rip + net_ip], eax
    mov edi, eax
    call bswap32
    mov [rip + net_ip_wire], eax
    mov qword [rip + net_up], 1
    lea rdi, [rip + net_msg_up]
    call puts
    call net_put_mac
    lea rdi, [rip + net_msg_ip]
    call puts
    mov edi, [rip + net_ip]
    call net_put_ip
    lea rdi, [rip + msg_newline]
    call puts
.already:
    xor eax, eax
.out:
    ret

; bswap32(edi) -> eax with its four bytes reversed (host <-> wire order)
bswap32:
    mov eax, edi
    ror ax, 8
    ror eax, 16
    ror ax, 8
    ret

; inet_csum(rdi = data, rsi = length) -> rax = the Internet checksum (RFC 1071):
; the one's complement of the one's complement sum of the 16-bit words. The
; sum does not depend on byte order, so little-endian words are added and the
; result is stored back as a little-endian word. Over data that includes a
; correct checksum it gives 0.
inet_csum:
    xor eax, eax
.word:
    cmp rsi, 2
    jb .odd
    movzx ecx, word [rdi]
    add rax, rcx
    add rdi, 2
    sub rsi, 2
    jmp .word
.odd:
    test rsi, rsi
    jz .fold
    movzx ecx, byte [rdi]
    add rax, rcx
.fold:
    mov rcx, rax
    shr rcx, 16
    and eax, 0xffff
    add rax, rcx
    cmp rax, 0xffff
    ja .fold
    not eax
    and eax, 0xffff
    ret

; net_send(rdi = frame, rsi = length) -> rax = 0 or -errno; pads short frames
; with zeros to Ethernet's 60-byte minimum (the buffer must have the room)
net_send:
    cmp rsi, NET_MAX_FRAME
    ja .too_big
    cmp rsi, NET_MIN_FRAME
    jae .go
    push rdi
    lea rdi, [rdi + rsi]
    mov rcx, NET_MIN_FRAME
    sub rcx, rsi
    xor eax, eax
    rep stosb
    pop rdi
    mov rsi, NET_MIN_FRAME
.go:
    inc qword [rip + net_tx_frames]
    jmp [rip + pv_ops + OP_NET_SEND]
.too_big:
    mov rax, -NET_EINVAL
    ret

; net_poll_all() -> rax = frames handled: take every frame the card has and
; answer what needs an answer (ARP requests and echo requests for us)
net_poll_all:
    push rbx
    xor ebx, ebx
    cmp qword [rip + net_up], 0
    je .done
.next:
    lea rdi, [rip + net_rxbuf]
    call [rip + pv_ops + OP_NET_POLL]
    test rax, rax
    jle .done
    inc rbx
    inc qword [rip + net_rx_frames]
    lea rdi, [rip + net_rxbuf]
    mov rsi, rax
    call net_input
    cmp rbx, 64                      ; leave the rest for the next round
    jb .next
.done:
    mov rax, rbx
    pop rbx
    ret

; net_input(rdi = frame, rsi = length): Ethernet II, for us or broadcast
net_input:
    cmp rsi, NET_ETH_HLEN
    jb .drop
    mov eax, [rdi]
    movzx ecx, word [rdi + 4]
    cmp eax, [rip + net_mac]
    jne .broadcast
    cmp cx, [rip + net_mac + 4]
    je .ours
.broadcast:
    cmp eax, 0xffffffff
    jne .drop
    cmp cx, 0xffff
    jne .drop
.ours:
    movzx eax, word [rdi + 12]
    cmp eax, NET_ETH_P_ARP
    je net_arp_input
    cmp eax, NET_ETH_P_IP
    je net_ip_input
.drop:
    inc qword [rip + net_rx_dropped]
    ret

; net_eth_header(rdi = frame, rsi = destination MAC, edx = EtherType as loaded LE)
net_eth_header:
    mov eax, [rsi]
    mov [rdi], eax
    mov ax, [rsi + 4]
    mov [rdi + 4], ax
    mov eax, [rip + net_mac]
    mov [rdi + 6], eax
    mov ax, [rip + net_mac + 4]
    mov [rdi + 10], ax
    mov [rdi + 12], dx
    ret

; ---------------------------------------------------------------- ARP (RFC 826)
; Ethernet/IPv4 ARP after the Ethernet header: htype 14, ptype 16, hlen 18,
; plen 19, op 20, sender MAC 22, sender IP 28, target MAC 32, target IP 38.

; net_arp_input(rdi = frame, rsi = length)
net_arp_input:
    cmp rsi, 42
    jb .out
    cmp word [rdi + 14], 0x0100      ; Ethernet
    jne .out
    cmp word [rdi + 16], NET_ETH_P_IP
    jne .out
    cmp word [rdi + 18], 0x0406      ; hlen 6, plen 4
    jne .out
    mov eax, [rdi + 28]
    cmp eax, [rip + net_arp_want]
    jne .op
    ; the address we are resolving: keep its MAC (from a reply or a request)
    mov [rip + net_arp_ip], eax
    mov eax, [rdi + 22]
    mov [rip + net_arp_mac], eax
    mov ax, [rdi + 26]
    mov [rip + net_arp_mac + 4], ax
.op:
    movzx eax, word [rdi + 20]
    cmp eax, NET_ARP_REQUEST
    jne .out
    mov eax, [rdi + 38]
    cmp eax, [rip + net_ip_wire]
    jne .out
    ; a request for our address: answer it
    push rbx
    mov rbx, rdi
    lea rdi, [rip + net_txbuf]
    lea rsi, [rbx + 22]
    mov edx, NET_ETH_P_ARP
    call net_eth_header
    lea rdi, [rip + net_txbuf]
    mov dword [rdi + 14], 0x00080100 ; htype 1, ptype 0x0800
    mov word [rdi + 18], 0x0406
    mov word [rdi + 20], NET_ARP_REPLY
    mov eax, [rip + net_mac]
    mov [rdi + 22], eax
    mov ax, [rip + net_mac + 4]
    mov [rdi + 26], ax
    mov eax, [rip + net_ip_wire]
    mov [rdi + 28], eax
    mov eax, [rbx + 22]
    mov [rdi + 32], eax
    mov ax, [rbx + 26]
    mov [rdi + 36], ax
    mov eax, [rbx + 28]
    mov [rdi + 38], eax
    mov rsi, 42
    call net_send
    inc qword [rip + net_arp_replies]
    pop rbx
.out:
    ret

; net_arp_resolve(edi = IPv4 address, wire order) -> rax = 0 (MAC in
; net_arp_mac) or -ETIMEDOUT: ask with a broadcast request, wait for the reply
net_arp_resolve:
    cmp edi, [rip + net_arp_ip]
    je .known
    push rbx
    push r12
    mov [rip + net_arp_want], edi
    mov r12, NET_ARP_TRIES
.try:
    lea rdi, [rip + net_txbuf]
    lea rsi, [rip + net_broadcast]
    mov edx, NET_ETH_P_ARP
    call net_eth_header
    lea rdi, [rip + net_txbuf]
    mov dword [rdi + 14], 0x00080100
    mov word [rdi + 18], 0x0406
    mov word [rdi + 20], NET_ARP_REQUEST
    mov eax, [rip + net_mac]
    mov [rdi + 22], eax
    mov ax, [rip + net_mac + 4]
    mov [rdi + 26], ax
    mov eax, [rip + net_ip_wire]
    mov [rdi + 28], eax
    mov dword [rdi + 32], 0
    mov word [rdi + 36], 0
    mov eax, [rip + net_arp_want]
    mov [rdi + 38], eax
    mov rsi, 42
    call net_send
    inc qword [rip + net_arp_requests]
    call net_wait_start
.wait:
    call net_poll_all
    mov eax, [rip + net_arp_want]
    cmp eax, [rip + net_arp_ip]
    je .resolved
    call net_wait_idle
    test rax, rax
    jz .wait
    dec r12
    jnz .try
    mov rax, -NET_ETIMEDOUT
    jmp .out
.resolved:
    xor eax, eax
.out:
    push rax
    call net_wait_end
    pop rax
    mov dword [rip + net_arp_want], 0
    pop r12
    pop rbx
    ret
.known:
    xor eax, eax
    ret

; ---------------------------------------------------------------- IPv4 and ICMP

; net_ip_header(rdi = header, esi = destination (wire order), edx = payload
; length, ecx = protocol): a 20-byte header from us, TTL 64, with its checksum
net_ip_header:
    mov byte [rdi], 0x45             ; version 4, 5 words
    mov byte [rdi + 1], 0
    lea eax, [rdx + 20]
    ror ax, 8
    mov [rdi + 2], ax                ; total length
    mov ax, [rip + net_ip_ident]
    inc word [rip + net_ip_ident]
    ror ax, 8
    mov [rdi + 4], ax                ; identification
    mov word [rdi + 6], 0            ; no fragments
    mov byte [rdi + 8], 64
    mov [rdi + 9], cl
    mov word [rdi + 10], 0
    mov eax, [rip + net_ip_wire]
    mov [rdi + 12], eax
    mov [rdi + 16], esi
    push rdi
    mov rsi, 20
    call inet_csum
    pop rdi
    mov [rdi + 10], ax
    ret

; net_ip_input(rdi = frame, rsi = length): IPv4 for us; ICMP only
net_ip_input:
    cmp rsi, NET_ETH_HLEN + 20
    jb .drop
    movzx eax, byte [rdi + 14]
    mov ecx, eax
    shr eax, 4
    cmp eax, 4
    jne .drop
    and ecx, 15
    cmp ecx, 5
    jb .drop
    shl ecx, 2                       ; header length in bytes
    movzx edx, word [rdi + 16]
    ror dx, 8                        ; total length
    cmp edx, ecx
    jb .drop
    lea rax, [rdx + NET_ETH_HLEN]
    cmp rax, rsi
    ja .drop
    push rdi
    push rcx
    push rdx
    lea rdi, [rdi + NET_ETH_HLEN]
    mov rsi, rcx
    call inet_csum
    pop rdx
    pop rcx
    pop rdi
    test eax, eax
    jnz .drop                        ; a damaged header
    mov eax, [rdi + 30]
    cmp eax, [rip + net_ip_wire]
    jne .drop
    cmp byte [rdi + 23], NET_IP_ICMP
    jne .drop
    lea r8, [rdi + rcx + NET_ETH_HLEN]
    mov r9, rdx
    sub r9, rcx
    jmp net_icmp_input
.drop:
    inc qword [rip + net_rx_dropped]
    ret

; net_icmp_input(rdi = frame, r8 = ICMP message, r9 = its length)
net_icmp_input:
    cmp r9, 8
    jb .drop
    push rdi
    push r8
    push r9
    mov rdi, r8
    mov rsi, r9
    call inet_csum
    pop r9
    pop r8
    pop rdi
    test eax, eax
    jnz .drop
    cmp word [r8], NET_ICMP_ECHO     ; type 8, code 0
    je .echo
    cmp word [r8], NET_ICMP_ECHOREPLY
    jne .out
    ; a reply: is it the one ping waits for?
    cmp word [r8 + 4], NET_PING_ID
    jne .out
    mov ax, [r8 + 6]
    cmp ax, [rip + net_ping_seq_wire]
    jne .out
    mov eax, [rdi + 26]
    cmp eax, [rip + net_ping_target]
    jne .out
    mov qword [rip + net_ping_got], 1
    mov eax, [rdi + 6]
    mov [rip + net_ping_mac], eax
    mov ax, [rdi + 10]
    mov [rip + net_ping_mac + 4], ax
    ret
.echo:
    ; echo request: send the same message back as a reply, to the sender's MAC
    cmp r9, NET_MAX_FRAME - NET_ETH_HLEN - 20
    ja .drop
    push rbx
    push r12
    push r13
    mov rbx, rdi
    mov r12, r8
    mov r13, r9
    lea rdi, [rip + net_txbuf]
    lea rsi, [rbx + 6]
    mov edx, NET_ETH_P_IP
    call net_eth_header
    lea rdi, [rip + net_txbuf + NET_ETH_HLEN]
    mov esi, [rbx + 26]
    mov rdx, r13
    mov ecx, NET_IP_ICMP
    call net_ip_header
    lea rdi, [rip + net_txbuf + NET_ETH_HLEN + 20]
    mov rsi, r12
    mov rcx, r13
    rep movsb
    lea rdi, [rip + net_txbuf + NET_ETH_HLEN + 20]
    mov word [rdi], NET_ICMP_ECHOREPLY
    mov word [rdi + 2], 0
    mov rsi, r13
    call inet_csum
    mov [rip + net_txbuf + NET_ETH_HLEN + 22], ax
    lea rdi, [rip + net_txbuf]
    lea rsi, [r13 + NET_ETH_HLEN + 20]
    call net_send
    inc qword [rip + net_echo_replies]
    pop r13
    pop r12
    pop rbx
.out:
    ret
.drop:
    inc qword [rip + net_rx_dropped]
    ret

; ping(edi = IPv4 address, host order) -> rax = 0 if the echo reply came,
; -errno otherwise (ENODEV: no card; ETIMEDOUT: no ARP or no echo reply)
ping:
    push rbx
    push r12
    mov r12d, edi
    call net_init
    test rax, rax
    jnz .out
    mov edi, r12d
    call bswap32
    mov ebx, eax
    mov [rip + net_ping_target], ebx
    mov qword [rip + net_ping_got], 0
    mov edi, ebx
    call net_arp_resolve
    test rax, rax
    jnz .out
    inc word [rip + net_ping_seq]
    mov ax, [rip + net_ping_seq]
    ror ax, 8
    mov [rip + net_ping_seq_wire], ax
    ; Ethernet and IP headers, then the echo request
    lea rdi, [rip + net_txbuf]
    lea rsi, [rip + net_arp_mac]
    mov edx, NET_ETH_P_IP
    call net_eth_header
    lea rdi, [rip + net_txbuf + NET_ETH_HLEN]
    mov esi, ebx
    mov edx, 8 + NET_PING_DATA
    mov ecx, NET_IP_ICMP
    call net_ip_header
    lea rdi, [rip + net_txbuf + NET_ETH_HLEN + 20]
    mov word [rdi], NET_ICMP_ECHO
    mov word [rdi + 2], 0
    mov word [rdi + 4], NET_PING_ID
    mov ax, [rip + net_ping_seq_wire]
    mov [rdi + 6], ax
    xor ecx, ecx
.fill:
    mov [rdi + rcx + 8], cl          ; payload bytes 0, 1, 2 ...
    inc ecx
    cmp ecx, NET_PING_DATA
    jb .fill
    mov rsi, 8 + NET_PING_DATA
    call inet_csum
    mov [rip + net_txbuf + NET_ETH_HLEN + 22], ax
    lea rdi, [rip + net_txbuf]
    mov rsi, NET_ETH_HLEN + 20 + 8 + NET_PING_DATA
    call net_send
    test rax, rax
    jnz .out
    inc qword [rip + net_echo_requests]
    call net_wait_start
.wait:
    call net_poll_all
    cmp qword [rip + net_ping_got], 0
    jne .answered
    call net_wait_idle
    test rax, rax
    jz .wait
    call net_wait_end
    mov rax, -NET_ETIMEDOUT
    jmp .out
.answered:
    call net_wait_end
    xor eax, eax
.out:
    pop r12
    pop rbx
    ret

; net_wait_start(): an answer is due within NET_WAIT_NS: the deadline, armed
; as the one timer the idle vCPU will have (a tickless kernel sleeps until an
; event or this deadline, whichever comes first)
net_wait_start:
    call [rip + pv_ops + OP_CLOCK_NS]
    add rax, NET_WAIT_NS
    mov [rip + net_wait_until], rax
    mov rdi, rax
    jmp [rip + pv_ops + OP_TIMER_ARM]

; net_wait_idle() -> rax = 0 after idling until the next event (or the
; deadline's timer), 1 once the deadline has passed
net_wait_idle:
    call [rip + pv_ops + OP_CLOCK_NS]
    cmp rax, [rip + net_wait_until]
    jae .expired
    call [rip + pv_ops + OP_IDLE]
    xor eax, eax
    ret
.expired:
    mov eax, 1
    ret

; net_wait_end(): the answer came or the time is up: no timer left armed
net_wait_end:
    xor edi, edi
    jmp [rip + pv_ops + OP_TIMER_ARM]

; net_ping_report(edi = IPv4 address, host order) -> rax as ping: ping and say
; what happened on the console
net_ping_report:
    push rbx
    push r12
    mov ebx, edi
    call ping
    mov r12, rax
    lea rdi, [rip + net_msg_ping]
    call puts
    mov edi, ebx
    call net_put_ip
    test r12, r12
    jnz .failed
    lea rdi, [rip + net_msg_reply]
    call puts
    lea rsi, [rip + net_ping_mac]
    call net_put_mac_at
    lea rdi, [rip + net_msg_seq]
    call puts
    movzx edi, word [rip + net_ping_seq]
    call put_dec
    jmp .end
.failed:
    lea rdi, [rip + net_msg_nodev]
    cmp r12, -ENODEV
    je .say
    lea rdi, [rip + net_msg_fail]
    call puts
    mov rdi, r12
    neg rdi
    call put_dec
.end:
    lea rdi, [rip + msg_newline]
.say:
    call puts
    mov rax, r12
    pop r12
    pop rbx
    ret

; net_put_ip(edi = IPv4 address, host order): "a.b.c.d"
net_put_ip:
    push rbx
    push r12
    mov ebx, edi
    mov r12, 24
.part:
    mov eax, ebx
    mov ecx, r12d
    shr eax, cl
    and eax, 0xff
    mov edi, eax
    call put_dec
    test r12, r12
    jz .done
    lea rdi, [rip + net_msg_dot]
    call puts
    sub r12, 8
    jmp .part
.done:
    pop r12
    pop rbx
    ret

; net_put_mac(): our MAC; net_put_mac_at(rsi = 6 bytes): "xx:xx:xx:xx:xx:xx"
net_put_mac:
    lea rsi, [rip + net_mac]
net_put_mac_at:
    lea rdi, [rip + net_mac_text]
    lea r8, [rip + hex_digits]
    xor ecx, ecx
.byte:
    movzx eax, byte [rsi + rcx]
    mov edx, eax
    shr eax, 4
    movzx eax, byte [r8 + rax]
    mov [rdi], al
    and edx, 15
    movzx eax, byte [r8 + rdx]
    mov [rdi + 1], al
    mov byte [rdi + 2], ':'
    add rdi, 3
    inc ecx
    cmp ecx, 6
    jb .byte
    lea rdi, [rip + net_mac_text]
    mov rsi, 17
    jmp [rip + pv_ops + OP_CONSOLE_WRITE]

.data
net_up:             .quad 0
net_wait_until:     .quad 0             ; the current wait's deadline (OP_CLOCK_NS time)
net_ip:             .dword 0            ; host order
net_ip_wire:        .dword 0
net_mac:            .zero 8             ; the card's station address (the driver fills it in)
net_domid:          .quad -1            ; our domid, if the driver learnt it; else we are 10.0.0.2
net_broadcast:      .byte 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0
net_arp_ip:         .dword 0            ; one-entry ARP cache: address (wire order) and MAC
net_arp_mac:        .zero 8
net_arp_want:       .dword 0            ; the address being resolved
net_ip_ident:       .word 1
net_ping_seq:       .word 0
net_ping_seq_wire:  .word 0
net_ping_target:    .dword 0
net_ping_mac:       .zero 8
net_ping_got:       .quad 0
net_tx_frames:      .quad 0
net_rx_frames:      .quad 0
net_rx_dropped:     .quad 0
net_arp_requests:   .quad 0
net_arp_replies:    .quad 0
net_echo_requests:  .quad 0
net_echo_replies:   .quad 0
net_mac_text:       .zero 18
net_msg_up:         .asciz "net: card up, MAC "
net_msg_ip:         .asciz ", IP "
net_msg_dot:        .asciz "."
net_msg_ping:       .asciz "ping "
net_msg_reply:      .asciz ": echo reply from "
net_msg_seq:        .asciz " seq "
net_msg_fail:       .asciz ": no reply, errno "
net_msg_nodev:      .asciz ": no network card\n"

.bss
.align 16
net_txbuf:          .zero 2048
net_rxbuf:          .zero 2048
.text
