; The driver for the emulated NE2000 (QEMU's ne2k_pci, a Realtek RTL8029:
; a DP8390 with 32 KiB of packet memory reached only through "remote DMA" on
; a data port). Every byte goes through port I/O, so in an HVM guest every
; in and out below is a VM exit and an ioreq to QEMU in dom0: the cost of an
; emulated card, which netfront.s avoids.
;
; Packet memory (pages of 256 bytes): 0x40-0x45 the transmit buffer, 0x46-0x7f
; the receive ring. The card writes each frame it accepts at CURR behind a
; 4-byte header (status, next page, byte count); the driver reads from the
; page after BNRY and moves BNRY on. ne2k_init leaves the card's interrupts
; masked (IMR 0): native.s polls it; the tickless HVM kernels then unmask
; IMR.PRX on the line its PCI configuration names (common/hvm_tickless.s).
;
; Needs: net_mac (net.s), ENODEV and EIO (layout.inc).
; Provides: ne2k_init (OP_NET_INIT), ne2k_send (OP_NET_SEND), ne2k_poll
; (OP_NET_POLL), ne2k_base, ne2k_slot (the card's PCI device number on bus 0,
; -1 for the card at the fixed base), ne2k_config_read.

.equ NE2K_VENDOR_DEVICE, 0x802910ec     ; PCI 10ec:8029 as the dword at config offset 0
.equ NE2K_FIXED_BASE,   0xc100          ; where the firmware puts the first card's I/O BAR
; DP8390 registers (offsets in the I/O BAR)
.equ NE2K_CR,       0x00
.equ NE2K_PSTART,   0x01
.equ NE2K_PSTOP,    0x02
.equ NE2K_BNRY,     0x03
.equ NE2K_TPSR,     0x04                ; write; TSR on read
.equ NE2K_TBCR0,    0x05
.equ NE2K_TBCR1,    0x06
.equ NE2K_ISR,      0x07
.equ NE2K_RSAR0,    0x08
.equ NE2K_RSAR1,    0x09
.equ NE2K_RBCR0,    0x0a
.equ NE2K_RBCR1,    0x0b
.equ NE2K_RCR,      0x0c
.equ NE2K_TCR,      0x0d
.equ NE2K_DCR,      0x0e
.equ NE2K_IMR,      0x0f
.equ NE2K_PAR0,     0x01                ; page 1
.equ NE2K_CURR,     0x07                ; page 1
.equ NE2K_MAR0,     0x08                ; page 1
.equ NE2K_DATA,     0x10
.equ NE2K_RESET,    0x1f
; CR values: page in bits 7-6, remote DMA in bits 5-3, TXP, STA, STP
.equ NE2K_CR_STOP,  0x21                ; page 0, abort DMA, stop
.equ NE2K_CR_START, 0x22                ; page 0, abort DMA, start
.equ NE2K_CR_PAGE1, 0x62                ; page 1, abort DMA, start
.equ NE2K_CR_PAGE1_STOP, 0x61
.equ NE2K_CR_RREAD, 0x0a                ; remote read, start
.equ NE2K_CR_RWRITE, 0x12               ; remote write, start
.equ NE2K_CR_TXP,   0x26                ; transmit, abort DMA, start
.equ NE2K_ISR_PRX,  0x01
.equ NE2K_ISR_PTX,  0x02
.equ NE2K_ISR_TXE,  0x08
.equ NE2K_ISR_RDC,  0x40
.equ NE2K_ISR_RST,  0x80
.equ NE2K_TX_PAGE,  0x40
.equ NE2K_RX_START, 0x46
.equ NE2K_RX_STOP,  0x80

.text

; ne2k_out(esi = register, eax = byte); ne2k_in(esi = register) -> eax
ne2k_out:
    mov edx, [rip + ne2k_base]
    add edx, esi
    out dx, al
    ret

ne2k_in:
    mov edx, [rip + ne2k_base]
    add edx, esi
    xor eax, eax
    in al, dx
    ret

; ne2k_config_read(ecx = device number, esi = register) -> eax = that dword of
; the device's configuration space on PCI bus 0. Configuration mechanism #1:
; the address (enable, bus, device, register) to 0xCF8, the register through
; 0xCFC.
ne2k_config_read:
    mov eax, ecx
    shl eax, 11
    or eax, esi
    or eax, 0x80000000
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in eax, dx
    ret

; ne2k_find() -> rax = the I/O base of the first 10ec:8029 on PCI bus 0, or 0;
; rcx = its device number (the slot), -1 for a card at the fixed base
ne2k_find:
    xor ecx, ecx                     ; device number
.slot:
    xor esi, esi                     ; vendor and device IDs
    call ne2k_config_read
    cmp eax, NE2K_VENDOR_DEVICE
    je .found
    inc ecx
    cmp ecx, 32
    jb .slot
    mov rcx, -1
    ; no PCI card: a card at the firmware's fixed base answers with the
    ; RTL8029 ID bytes 'P' 'C' in page 0 registers 0x0a and 0x0b
    mov dx, NE2K_FIXED_BASE + NE2K_CR
    mov al, NE2K_CR_STOP
    out dx, al
    mov dx, NE2K_FIXED_BASE + 0x0a
    in al, dx
    cmp al, 0x50
    jne .none
    mov dx, NE2K_FIXED_BASE + 0x0b
    in al, dx
    cmp al, 0x43
    jne .none
    mov eax, NE2K_FIXED_BASE
    ret
.found:
    mov esi, 0x10                    ; BAR0
    call ne2k_config_read
    test eax, 1                      ; an I/O BAR?
    jz .none
    and eax, 0xfffc
    ret
.none:
    xor eax, eax
    ret

; ne2k_init() -> rax = 0, or -ENODEV when there is no card
ne2k_init:
    push rbx
    call ne2k_find
    test eax, eax
    jz .absent
    mov [rip + ne2k_base], eax
    mov [rip + ne2k_slot], ecx
    ; reset: reading the reset port resets the card, which says so in ISR.RST
    mov esi, NE2K_RESET
    call ne2k_in
    mov esi, NE2K_RESET
    call ne2k_out
    mov ebx, 1000
.reset_wait:
    mov esi, NE2K_ISR
    call ne2k_in
    test eax, NE2K_ISR_RST
    jnz .reset_done
    dec ebx
    jnz .reset_wait
    jmp .absent
.reset_done:
    mov esi, NE2K_CR
    mov eax, NE2K_CR_STOP
    call ne2k_out
    mov esi, NE2K_DCR
    mov eax, 0x49                    ; word transfers, normal mode, FIFO threshold 8 bytes
    call ne2k_out
    mov esi, NE2K_RBCR0
    xor eax, eax
    call ne2k_out
    mov esi, NE2K_RBCR1
    xor eax, eax
    call ne2k_out
    mov esi, NE2K_RCR
    mov eax, 0x04                    ; our address and broadcasts
    call ne2k_out
    mov esi, NE2K_TCR
    xor eax, eax                     ; normal transmission, no loopback
    call ne2k_out
    mov esi, NE2K_TPSR
    mov eax, NE2K_TX_PAGE
    call ne2k_out
    mov esi, NE2K_PSTART
    mov eax, NE2K_RX_START
    call ne2k_out
    mov esi, NE2K_PSTOP
    mov eax, NE2K_RX_STOP
    call ne2k_out
    mov esi, NE2K_BNRY
    mov eax, NE2K_RX_STOP - 1        ; the page before CURR: the ring is empty
    call ne2k_out
    mov esi, NE2K_ISR
    mov eax, 0xff
    call ne2k_out
    mov esi, NE2K_IMR
    xor eax, eax                     ; no interrupts (polled until a kernel unmasks one)
    call ne2k_out
    ; the station address: the PROM at 0, each byte doubled (word mode reads both)
    mov edi, 0
    mov esi, 12
    mov eax, NE2K_CR_RREAD
    call ne2k_dma_start
    xor ebx, ebx
.prom:
    mov edx, [rip + ne2k_base]
    add edx, NE2K_DATA
    in ax, dx
    lea rcx, [rip + net_mac]
    mov [rcx + rbx], al
    inc ebx
    cmp ebx, 6
    jb .prom
    call ne2k_dma_done
    ; page 1: the station address filter, CURR, no multicast
    mov esi, NE2K_CR
    mov eax, NE2K_CR_PAGE1_STOP
    call ne2k_out
    xor ebx, ebx
.par:
    lea rcx, [rip + net_mac]
    movzx eax, byte [rcx + rbx]
    lea esi, [rbx + NE2K_PAR0]
    call ne2k_out
    inc ebx
    cmp ebx, 6
    jb .par
    mov esi, NE2K_CURR
    mov eax, NE2K_RX_START
    call ne2k_out
    xor ebx, ebx
.mar:
    lea esi, [rbx + NE2K_MAR0]
    xor eax, eax
    call ne2k_out
    inc ebx
    cmp ebx, 8
    jb .mar
    ; page 0, start
    mov esi, NE2K_CR
    mov eax, NE2K_CR_START
    call ne2k_out
    xor eax, eax
    pop rbx
    ret
.absent:
    mov rax, -ENODEV
    pop rbx
    ret

; ne2k_dma_start(edi = card address, esi = byte count, eax = CR command)
ne2k_dma_start:
    push rax
    push rdi
    push rsi
    mov eax, esi
    mov esi, NE2K_RBCR0
    call ne2k_out
    mov eax, [rsp]
    shr eax, 8
    mov esi, NE2K_RBCR1
    call ne2k_out
    mov eax, [rsp + 8]
    mov esi, NE2K_RSAR0
    call ne2k_out
    mov eax, [rsp + 8]
    shr eax, 8
    mov esi, NE2K_RSAR1
    call ne2k_out
    add rsp, 16
    pop rax
    mov esi, NE2K_CR
    jmp ne2k_out

; ne2k_dma_done(): wait for ISR.RDC (remote DMA complete) and acknowledge it
ne2k_dma_done:
    mov ecx, 1000
.wait:
    mov esi, NE2K_ISR
    call ne2k_in
    test eax, NE2K_ISR_RDC
    jnz .ack
    dec ecx
    jnz .wait
.ack:
    mov esi, NE2K_ISR
    mov eax, NE2K_ISR_RDC
    jmp ne2k_out

; ne2k_send(rdi = frame, rsi = length) -> rax = 0 or -EIO: copy the frame into
; the transmit buffer by remote DMA write, then start the transmitter (TXP)
ne2k_send:
    push rbx
    push r12
    mov rbx, rdi
    mov r12, rsi
    mov edi, NE2K_TX_PAGE << 8
    lea esi, [r12 + 1]
    and esi, -2                      ; whole words
    mov eax, NE2K_CR_RWRITE
    call ne2k_dma_start
    mov edx, [rip + ne2k_base]
    add edx, NE2K_DATA
    mov rsi, rbx
    lea rcx, [r12 + 1]
    shr rcx, 1
.word:
    mov ax, [rsi]
    out dx, ax
    add rsi, 2
    dec rcx
    jnz .word
    call ne2k_dma_done
    mov esi, NE2K_TPSR
    mov eax, NE2K_TX_PAGE
    call ne2k_out
    mov esi, NE2K_TBCR0
    mov eax, r12d
    call ne2k_out
    mov esi, NE2K_TBCR1
    mov eax, r12d
    shr eax, 8
    call ne2k_out
    mov esi, NE2K_CR
    mov eax, NE2K_CR_TXP
    call ne2k_out
    mov ebx, 1000
.tx_wait:
    mov esi, NE2K_ISR
    call ne2k_in
    test eax, NE2K_ISR_PTX | NE2K_ISR_TXE
    jnz .tx_done
    dec ebx
    jnz .tx_wait
.tx_done:
    mov ebx, eax
    mov esi, NE2K_ISR
    mov eax, NE2K_ISR_PTX | NE2K_ISR_TXE
    call ne2k_out
    xor eax, eax
    test ebx, NE2K_ISR_PTX
    jnz .out
    mov rax, -EIO
.out:
    pop r12
    pop rbx
    ret

; ne2k_poll(rdi = buffer, 2048 bytes) -> rax = length of the frame copied, 0
; if the ring is empty: the next frame is in the page after BNRY, unless that
; is CURR, where the card will put the next one. An idle poll costs one port
; read (ISR), so one VM exit in an HVM guest.
ne2k_poll:
    push rbx
    push r12
    push r13
    mov r12, rdi
    cmp dword [rip + ne2k_base], 0
    je .none
    ; one read of ISR tells whether anything arrived since the ring was
    ; last found empty; acknowledge PRX before draining, so a frame that
    ; arrives meanwhile raises it again
    cmp byte [rip + ne2k_draining], 0
    jne .ring
    mov esi, NE2K_ISR
    call ne2k_in
    test eax, NE2K_ISR_PRX
    jz .none
    mov esi, NE2K_ISR
    mov eax, NE2K_ISR_PRX
    call ne2k_out
    mov byte [rip + ne2k_draining], 1
.ring:
    mov esi, NE2K_CR
    mov eax, NE2K_CR_PAGE1
    call ne2k_out
    mov esi, NE2K_CURR
    call ne2k_in
    mov r13d, eax
    mov esi, NE2K_CR
    mov eax, NE2K_CR_START
    call ne2k_out
    mov esi, NE2K_BNRY
    call ne2k_in
    lea ebx, [rax + 1]
    cmp ebx, NE2K_RX_STOP
    jb .page
    mov ebx, NE2K_RX_START
.page:
    cmp ebx, r13d
    je .empty
    ; the 4-byte header: receive status, next page, byte count (header included)
    mov edi, ebx
    shl edi, 8
    mov esi, 4
    mov eax, NE2K_CR_RREAD
    call ne2k_dma_start
    mov edx, [rip + ne2k_base]
    add edx, NE2K_DATA
    in ax, dx
    movzx r13d, ax                   ; status | next page << 8
    in ax, dx
    movzx eax, ax
    mov [rip + ne2k_rx_count], eax
    call ne2k_dma_done
    mov eax, [rip + ne2k_rx_count]
    sub eax, 4
    cmp eax, 14
    jb .bad
    cmp eax, 2048 - 2
    ja .bad
    mov [rip + ne2k_rx_count], eax
    mov ecx, r13d
    shr ecx, 8
    cmp ecx, NE2K_RX_START
    jb .bad
    cmp ecx, NE2K_RX_STOP
    jae .bad
    ; the frame, after the header; remote DMA wraps from PSTOP to PSTART
    mov edi, ebx
    shl edi, 8
    add edi, 4
    lea esi, [rax + 1]
    and esi, -2
    mov eax, NE2K_CR_RREAD
    call ne2k_dma_start
    mov edx, [rip + ne2k_base]
    add edx, NE2K_DATA
    mov ecx, [rip + ne2k_rx_count]
    inc ecx
    shr ecx, 1
    mov rdi, r12
.word:
    in ax, dx
    mov [rdi], ax
    add rdi, 2
    dec ecx
    jnz .word
    call ne2k_dma_done
    ; hand the pages back: BNRY = the page before the next frame
    mov eax, r13d
    shr eax, 8
    dec eax
    cmp eax, NE2K_RX_START
    jae .bnry
    mov eax, NE2K_RX_STOP - 1
.bnry:
    mov esi, NE2K_BNRY
    call ne2k_out
    mov eax, [rip + ne2k_rx_count]
    jmp .out
.bad:
    ; a header that makes no sense: drop everything up to CURR
    mov esi, NE2K_CR
    mov eax, NE2K_CR_PAGE1
    call ne2k_out
    mov esi, NE2K_CURR
    call ne2k_in
    mov ebx, eax
    mov esi, NE2K_CR
    mov eax, NE2K_CR_START
    call ne2k_out
    lea eax, [rbx - 1]
    cmp eax, NE2K_RX_START
    jae .reset_bnry
    mov eax, NE2K_RX_STOP - 1
.reset_bnry:
    mov esi, NE2K_BNRY
    call ne2k_out
.empty:
    mov byte [rip + ne2k_draining], 0
.none:
    xor eax, eax
.out:
    pop r13
    pop r12
    pop rbx
    ret

.data
ne2k_base:      .dword 0
ne2k_slot:      .dword -1
ne2k_rx_count:  .dword 0
ne2k_draining:  .byte 0
.text
