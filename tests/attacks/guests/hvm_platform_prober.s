; A hostile HVM kernel that pokes every register of the devices Xen emulates itself.
;
; hvmloader leaves it in ring 0 with paging off, so its addresses are guest-physical.
; It reads and writes the local APIC (0xfee00000), the IO-APIC (0xfec00000) and the
; HPET (0xfed00000), the PICs, the ELCR, the speaker port and the RTC, records each
; answer in `results` (one quadword each), then sprays every byte of the three MMIO
; pages with all ones (unmodelled and read-only registers included) and every byte of
; the ports, and last reads a quadword that starts in the IO-APIC's range and ends
; past it: Xen crashes the domain for that access
; (hvm_mmio_accept()).

.data
.org 0x300000
results:
    .zero 512
spray_done:
    .quad 0

.bss
.org 0x340000

.text
.org 0x200000
_start:
    lea rbx, [rip + results]
    ; ---- the local APIC
    mov rsi, 0xfee00000
    mov eax, [rsi + 0x20]                ; ID
    mov [rbx], rax
    mov eax, [rsi + 0x30]                ; version
    mov [rbx + 8], rax
    mov eax, 0x12345678
    mov [rsi + 0x80], eax                ; TPR keeps its low byte
    mov eax, [rsi + 0x80]
    mov [rbx + 16], rax
    mov eax, [rsi + 0xf0]                ; SVR after reset
    mov [rbx + 24], rax
    mov eax, 0x1ff
    mov [rsi + 0xf0], eax                ; software enable, spurious vector 0xff
    mov eax, [rsi + 0xf0]
    mov [rbx + 32], rax
    mov eax, [rsi + 0x320]               ; LVT timer after reset: masked
    mov [rbx + 40], rax
    mov eax, 0xfff20030                  ; periodic, vector 0x30, and bits Xen does not keep
    mov [rsi + 0x320], eax
    mov eax, [rsi + 0x320]
    mov [rbx + 48], rax
    mov eax, 0xb                         ; divide by 1
    mov [rsi + 0x3e0], eax
    mov eax, [rsi + 0x3e0]
    mov [rbx + 56], rax
    mov eax, 1000000
    mov [rsi + 0x380], eax               ; initial count
    mov eax, [rsi + 0x380]
    mov [rbx + 64], rax
    mov eax, [rsi + 0x390]               ; current count: counting down
    mov [rbx + 72], rax
    mov eax, [rsi + 0x400]               ; past the divide configuration: reads 0
    mov [rbx + 80], rax
    xor eax, eax
    mov al, [rsi + 0x30]                 ; a byte of the version register
    mov [rbx + 88], rax
    mov rax, [rsi + 0x30]                ; a quadword: wider than a register, reads 0
    mov [rbx + 96], rax
    mov eax, 0
    mov [rsi + 0xb0], eax                ; EOI with nothing in service
    ; ---- the IO-APIC
    mov rsi, 0xfec00000
    mov eax, 1
    mov [rsi], eax                       ; IOREGSEL = version
    mov eax, [rsi + 0x10]
    mov [rbx + 104], rax
    mov eax, 0x10
    mov [rsi], eax                       ; redirection entry 0, low half
    mov eax, [rsi + 0x10]
    mov [rbx + 112], rax
    mov eax, 0x5031                      ; delivery status and remote IRR are read-only
    mov [rsi + 0x10], eax
    mov eax, [rsi + 0x10]
    mov [rbx + 120], rax
    mov eax, 0x80                        ; entry 56: the domain has 48
    mov [rsi], eax
    mov eax, [rsi + 0x10]
    mov [rbx + 128], rax
    mov eax, [rsi + 0x20]                ; neither IOREGSEL nor IOWIN
    mov [rbx + 136], rax
    ; ---- the HPET
    mov rsi, 0xfed00000
    mov rax, [rsi]                       ; capabilities and ID
    mov [rbx + 144], rax
    mov rax, 0x12345
    mov [rsi + 0x108], rax               ; timer 0 comparator (one-shot)
    mov rax, [rsi + 0x108]
    mov [rbx + 152], rax
    mov eax, 1
    mov [rsi + 0x10], eax                ; ENABLE: the main counter runs
    mov rax, [rsi + 0xf0]
    mov [rbx + 160], rax
    mov rcx, 200
.wait:
    dec rcx
    jnz .wait
    mov rax, [rsi + 0xf0]
    mov [rbx + 168], rax
    mov eax, [rsi + 2]                   ; misaligned: all ones
    mov [rbx + 176], rax
    ; ---- the PICs, the ELCR, the speaker port, the RTC
    mov al, 0x5a
    out 0xa1, al                         ; the slave's mask
    xor eax, eax
    in al, 0xa1
    mov [rbx + 184], rax
    mov dx, 0x4d0
    mov al, 0xff
    out dx, al                           ; master ELCR: IRQs 0-2 stay edge
    mov dx, 0x4d1
    out dx, al                           ; slave ELCR: IRQs 8 and 13 stay edge
    mov dx, 0x4d0
    xor eax, eax
    in ax, dx                            ; both at once
    mov [rbx + 192], rax
    mov al, 3
    out 0x61, al                         ; gate 2 and speaker data on
    xor eax, eax
    in al, 0x61
    and al, 0xef                         ; the refresh clock toggles by itself
    mov [rbx + 200], rax
    mov al, 0x0b
    out 0x70, al
    xor eax, eax
    in al, 0x71                          ; register B: 24-hour mode
    mov [rbx + 208], rax
    mov al, 0x0d
    out 0x70, al
    xor eax, eax
    in al, 0x71                          ; register D: valid RAM and time
    mov [rbx + 216], rax
    mov al, 0x40
    out 0x70, al
    xor eax, eax
    in al, 0x71                          ; CMOS memory: the device model's, nobody claims it
    mov [rbx + 224], rax
    xor eax, eax
    in ax, 0x20                          ; a word from the PIC: all ones
    mov [rbx + 232], rax
    ; ---- spray: all ones over every byte of the three pages (quadwords too on the HPET)
    mov al, 0xff
    mov rdi, 0xfee00000
    mov rcx, 4096
    rep stosb
    mov rdi, 0xfec00000
    mov rcx, 256
    rep stosb
    mov rdi, 0xfed00000
    mov rcx, 1024
    rep stosb
    mov rax, -1
    mov rdi, 0xfed00000
    mov rcx, 128
    rep stosq
    mov dx, 0x20
    mov al, 0xff
    out dx, al
    mov dx, 0x21
    out dx, al
    mov dx, 0x43
    out dx, al
    mov dx, 0x70
    out dx, al
    mov dx, 0x71
    out dx, al
    mov dx, 0x4d0
    mov eax, 0xffffffff
    out dx, eax
    mov qword [rip + spray_done], 1
    ; ---- a quadword that starts in the IO-APIC's 256 bytes and ends past them (an access
    ; across a page boundary Xen would split; this one is inside one page)
    mov rsi, 0xfec000fc
    mov rax, [rsi]
    mov qword [rip + spray_done], 2
.hang:
    jmp .hang
