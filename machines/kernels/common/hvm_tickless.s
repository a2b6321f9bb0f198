; The HVM kernels' time and interrupts, as Linux runs on an HVM guest without
; Xen's PV timer: the clock is the ACPI PM timer (drivers/clocksource/
; acpi_pm.c), a deadline is the local APIC timer in one-shot mode (the lapic
; clockevent, arch/x86/kernel/apic/apic.c), the 8254 PIT is never started,
; and an idle vCPU with nothing to time arms nothing and halts (NO_HZ idle).
; COM1 and the NE2000 are interrupt driven: the UART's receive interrupt (IER
; bit 0, ISA IRQ 4) and the card's packet-received interrupt (IMR.PRX, its PCI
; INTx line, which the firmware routed to the ISA IRQ in its configuration
; space's interrupt line) wake the idle kernel, which then reads what came.
;
; Xen emulates the local APIC (vlapic.c; the timer's expiry is a timer of
; the vCPU in Xen, vpt.c), the 8259A PICs (vpic.c) and the PM timer
; (pmtimer.c, 3.579545 MHz, at 0xb008 where hvmloader puts the PM1a block);
; QEMU in dom0 raises and lowers the UART's and the card's lines with dm_op
; (XEN_DMOP_set_isa_irq_level, XEN_DMOP_set_pci_intx_level).
;
;   lapic_timer_init()        (TIMER_INIT_OP) the local APIC mapped and on, its timer
;                             one-shot; the PICs remapped with every line masked but
;                             COM1's; COM1's receive interrupt on
;   pm_clock_ns() -> rax      (CLOCK_NS_OP) ns since the vCPU started, from the PM timer
;   lapic_timer_arm(rdi)      (TIMER_ARM_OP) one interrupt at deadline rdi (ns; 0: none)
;   hvm_idle()                (IDLE_OP) halt until an interrupt, unless one came since
;                             the last idle: no wake-up is lost between a look and the hlt
;   hvm_ne2k_init() -> rax    (NET_INIT_OP) ne2k_init, then the card's interrupt on
;
; The PM timer is 32 bits wide (it wraps every 1200 s); the clock adds up the
; distance between two reads, so it is right as long as it is read at least
; once per wrap: every wait reads it when it starts and each time it wakes.
; A one-shot count is at most 2^32 - 1 bus cycles of 10 ns (43 s): a longer
; wait wakes early, finds its deadline still ahead and idles on.
;
; Needs: set_gate, kernel_pml4, map_page, timer_tick; ne2k_init, ne2k_base,
; ne2k_slot and ne2k_config_read (ne2000.s).

.equ LAPIC_PHYS,          0xfee00000         ; IA32_APIC_BASE after reset
.equ LAPIC_VA,            DIRECT_MAP + 0xfee00000
.equ LAPIC_EOI,           0x0b0
.equ LAPIC_SVR,           0x0f0
.equ LAPIC_LVTT,          0x320
.equ LAPIC_TMICT,         0x380
.equ LAPIC_TDCR,          0x3e0
.equ LAPIC_SVR_ENABLE,    0x100
.equ LAPIC_SPURIOUS_VECTOR, 0xff
.equ LAPIC_TIMER_VECTOR,  0xec               ; Linux's LOCAL_TIMER_VECTOR
.equ LAPIC_TDCR_DIV_1,    0x0b               ; one count per bus cycle
.equ LAPIC_NS_PER_COUNT,  10                 ; Xen's APIC_BUS_CYCLE_NS
.equ LAPIC_MAX_COUNT,     0xffffffff
.equ LAPIC_SLACK_NS,      300                ; over one PM tick (279 ns): when the timer
                                             ; fires, the clock has reached the deadline
.equ PTE_PCD,             0x010
.equ PM_TMR_PORT,         0xb008             ; PM1a block at 0xb000 (ACPI_IOPORTS_LOCATION 1)
.equ PM_TMR_HZ,           3579545
.equ PIC_BASE,            0x20               ; IRQ n at vector 0x20 + n
.equ COM1_IRQ,            4
.equ COM1_IER,            0x3f9
.equ COM1_IER_RDA,        0x01
.equ NE2K_IMR_PRX,        0x01

.text

lapic_timer_init:
    ; the local APIC's page, uncached, in the direct map's slot
    mov rdi, [rip + kernel_pml4]
    mov rsi, LAPIC_VA
    mov rdx, LAPIC_PHYS | PTE_P | PTE_RW | PTE_PCD
    call map_page
    ; both 8259As: ICW1, vector base (0x20, 0x28), cascade on IRQ 2, 8086 mode;
    ; every line masked but COM1's (IRQ 0, the PIT's, stays masked: it never runs)
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, PIC_BASE
    out 0x21, al
    mov al, PIC_BASE + 8
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0xff & ~(1 << COM1_IRQ)
    out 0x21, al
    mov rdi, PIC_BASE + COM1_IRQ
    lea rsi, [rip + hvm_master_irq]
    call set_gate
    mov rdi, LAPIC_TIMER_VECTOR
    lea rsi, [rip + lapic_timer_irq]
    call set_gate
    mov rdi, LAPIC_SPURIOUS_VECTOR
    lea rsi, [rip + lapic_spurious_irq]
    call set_gate
    ; the local APIC on (SVR), its timer counting every bus cycle, one-shot, unmasked
    mov rax, LAPIC_VA
    mov dword [rax + LAPIC_SVR], LAPIC_SVR_ENABLE | LAPIC_SPURIOUS_VECTOR
    mov dword [rax + LAPIC_TDCR], LAPIC_TDCR_DIV_1
    mov dword [rax + LAPIC_LVTT], LAPIC_TIMER_VECTOR
    call pm_clock_ns                 ; the clock's first reading
    ; COM1 interrupts when a byte is received
    mov dx, COM1_IER
    mov al, COM1_IER_RDA
    out dx, al
    ret

; pm_clock_ns() -> rax = ns since the vCPU started. Clobbers rcx, rdx, r8.
pm_clock_ns:
    mov dx, PM_TMR_PORT
    in eax, dx
    mov r8d, [rip + pm_last]
    mov [rip + pm_last], eax
    sub eax, r8d                     ; ticks since the last reading, modulo 2^32
    add rax, [rip + pm_ticks]
    mov [rip + pm_ticks], rax
    mov rcx, 1000000000
    mul rcx
    mov rcx, PM_TMR_HZ
    div rcx
    ret

; lapic_timer_arm(rdi = deadline in pm_clock_ns time, 0 = none): one timer
; interrupt once the deadline has passed; a deadline already past fires at once
lapic_timer_arm:
    xor ecx, ecx                     ; an initial count of 0 stops the timer
    test rdi, rdi
    jz .load
    push rdi
    call pm_clock_ns
    pop rdi
    mov ecx, 1
    sub rdi, rax
    jbe .load
    lea rax, [rdi + LAPIC_SLACK_NS + LAPIC_NS_PER_COUNT - 1]
    xor edx, edx
    mov rcx, LAPIC_NS_PER_COUNT
    div rcx
    mov rcx, rax
    mov rax, LAPIC_MAX_COUNT
    cmp rcx, rax
    jbe .load
    mov rcx, rax
.load:
    mov rax, LAPIC_VA
    mov [rax + LAPIC_TMICT], ecx
    ret

; hvm_idle(): interrupts off while looking whether one came since the last
; idle (each handler sets hvm_irq_seen); if none did, sti;hlt (the interrupt
; shadow of sti lets none in before the hlt, and Xen's hlt does not block a
; vCPU with an interrupt to take). Interrupts are on again on return.
hvm_idle:
    cli
    cmp byte [rip + hvm_irq_seen], 0
    jne .awake
    sti
    hlt
.awake:
    mov byte [rip + hvm_irq_seen], 0
    sti
    ret

; hvm_ne2k_init() -> rax = 0 or -errno: the card as ne2k_init leaves it
; (polled), then its interrupt: the line from PCI configuration, a gate, the
; PIC line unmasked, and IMR.PRX. The kernel still reads frames in
; net_poll_all; the interrupt only ends its idle.
hvm_ne2k_init:
    call ne2k_init
    test rax, rax
    jnz .out
    call hvm_ne2k_line
    cmp rax, 15
    ja .polled                       ; no usable line: stay polled
    cmp rax, COM1_IRQ
    je .polled
    cmp rax, 2
    je .polled
    push rax
    mov rdi, rax
    add rdi, PIC_BASE
    lea rsi, [rip + hvm_master_irq]
    cmp rax, 8
    jb .gate
    lea rsi, [rip + hvm_slave_irq]
.gate:
    call set_gate
    pop rcx
    cmp ecx, 8
    jb .master
    sub ecx, 8
    mov edx, 1
    shl edx, cl
    not edx
    in al, 0xa1
    and al, dl
    out 0xa1, al
    mov ecx, 2                       ; and the cascade
.master:
    mov edx, 1
    shl edx, cl
    not edx
    in al, 0x21
    and al, dl
    out 0x21, al
    mov edx, [rip + ne2k_base]
    add edx, NE2K_IMR
    mov al, NE2K_IMR_PRX
    out dx, al
.polled:
    xor eax, eax
.out:
    ret

; hvm_ne2k_line() -> rax = the interrupt line (config offset 0x3c) of the card
; ne2k_init found, or -1 for a card without PCI configuration (the fixed base)
hvm_ne2k_line:
    mov ecx, [rip + ne2k_slot]
    cmp ecx, 32                      ; -1: no slot
    jae .none
    mov esi, 0x3c
    call ne2k_config_read
    and eax, 0xff
    ret
.none:
    mov rax, -1
    ret

; The interrupts. Each notes that it came (hvm_idle looks) and ends itself;
; the work (a byte, a frame, a deadline) is done by whoever waited.
lapic_timer_irq:
    push rax
    mov byte [rip + hvm_irq_seen], 1
    call timer_tick
    mov rax, LAPIC_VA
    mov dword [rax + LAPIC_EOI], 0
    pop rax
    iretq

; the local APIC's spurious vector takes no EOI
lapic_spurious_irq:
    iretq

hvm_master_irq:
    push rax
    mov byte [rip + hvm_irq_seen], 1
    mov al, 0x20                     ; EOI to the master 8259A
    out 0x20, al
    pop rax
    iretq

hvm_slave_irq:
    push rax
    mov byte [rip + hvm_irq_seen], 1
    mov al, 0x20                     ; EOI to the slave, then the master
    out 0xa0, al
    out 0x20, al
    pop rax
    iretq

.data
pm_last:        .quad 0                      ; the PM timer at the last reading
pm_ticks:       .quad 0                      ; PM ticks counted so far
hvm_irq_seen:   .byte 0
.text
