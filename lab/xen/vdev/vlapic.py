"""The local APIC Xen emulates for each HVM vCPU: arch/x86/hvm/vlapic.c.

Its registers are a 4 KiB page at the address IA32_APIC_BASE names (0xfee00000
after reset), reached through the MMIO handler ``vlapic_mmio_ops`` while the
APIC is enabled and not in x2APIC mode (``vlapic_range()``). Registers are
32 bits on 16-byte boundaries; an access that fits inside one register is
carried out (``vlapic_mmio_read()`` / ``vlapic_mmio_write()``), anything else,
and any offset past the timer's divide configuration (0x3e0), reads 0 and is
dropped, as Xen does.

Modelled: ID (vCPU id * 2 in bits 31:24), version (VLAPIC_VERSION 0x00050014:
six LVT entries), TPR, PPR, EOI, LDR, DFR, SVR, ISR and IRR (the vCPU's
in-service and requested vectors, which the event-channel upcall vector
uses), ESR (the errors since the last write, latched by a write; "receive
illegal vector" when a vector below 16 is to be raised, vlapic_set_irq()), ICR,
the six LVT entries with Xen's writable-bit masks, and the timer: initial
count, current count (counting down from the guest's time at
APIC_BUS_CYCLE_NS = 10 ns times the divisor, one-shot or periodic) and divide
configuration. The timer fires: its expiry is a timer of the vCPU in the
host's heap (``Vcpu.vlapic_timer``), and at expiry the vector in LVT timer is
raised in the vCPU's IRR, as Xen's periodic_time for the LAPIC source does
(hvm/vpt.c). Not modelled: the TSC-deadline mode (LVT timer mode 2: the counts
read 0 and nothing fires; CPUID does not offer it), the x2APIC MSRs of the
timer, IPIs through the ICR (its registers hold what the guest wrote), and the
software disable's effect on the upcall vector (the lab raises it whatever SVR
bit 8 says). Docs: docs/security.md, docs/hvm-devices.md.
"""

from __future__ import annotations

from .. import timers
from ..abi.hvm import APIC_BASE_EXTD, HVM_PARAM_VPT_ALIGN

#: vlapic.c / apicdef.h
VLAPIC_VERSION = 0x00050014
VLAPIC_LVT_NUM = 6
APIC_DEFAULT_PHYS_BASE = 0xFEE00000
APIC_BASE_ENABLE = 1 << 11
APIC_BUS_CYCLE_NS = 10

APIC_ID, APIC_LVR, APIC_TASKPRI, APIC_PROCPRI, APIC_EOI = 0x20, 0x30, 0x80, 0xA0, 0xB0
APIC_LDR, APIC_DFR, APIC_SPIV, APIC_ISR, APIC_TMR, APIC_IRR = 0xD0, 0xE0, 0xF0, 0x100, 0x180, 0x200
APIC_ESR, APIC_ICR, APIC_ICR2 = 0x280, 0x300, 0x310
APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR = 0x320, 0x330, 0x340, 0x350, 0x360, 0x370
APIC_TMICT, APIC_TMCCT, APIC_TDCR = 0x380, 0x390, 0x3E0

APIC_LVT_MASKED = 1 << 16
APIC_SEND_PENDING = 1 << 12
APIC_VECTOR_MASK = 0xFF
APIC_DM_MASK = 0x700
APIC_INPUT_POLARITY = 1 << 13
APIC_LVT_REMOTE_IRR = 1 << 14
APIC_LVT_LEVEL_TRIGGER = 1 << 15
APIC_TIMER_MODE_MASK = 3 << 17
APIC_TIMER_MODE_ONESHOT = 0
APIC_TIMER_MODE_PERIODIC = 1 << 17
APIC_TDR_DIV_MASK = 0xB
APIC_LDR_MASK = 0xFF << 24
APIC_SPIV_APIC_ENABLED = 1 << 8
APIC_ESR_RECVILL = 0x40
#: APIC_VECTOR_VALID(): vectors 0-15 are the CPU's exceptions, never an interrupt's
APIC_FIRST_VALID_VECTOR = 16
#: create_periodic_time() (hvm/vpt.c): a periodic timer fires at most every 0.1 ms
PT_MIN_PERIOD_NS = 100_000

LVT_MASK = APIC_LVT_MASKED | APIC_SEND_PENDING | APIC_VECTOR_MASK
LINT_MASK = LVT_MASK | APIC_DM_MASK | APIC_INPUT_POLARITY | APIC_LVT_REMOTE_IRR | APIC_LVT_LEVEL_TRIGGER
#: vlapic_lvt_mask[]: the bits of each LVT entry a write may set
LVT_WRITABLE = (LVT_MASK | APIC_TIMER_MODE_MASK, LVT_MASK | APIC_DM_MASK, LVT_MASK | APIC_DM_MASK,
                LINT_MASK, LINT_MASK, LVT_MASK)

REGISTER_NAMES = {
    APIC_ID: "ID", APIC_LVR: "version", APIC_TASKPRI: "TPR", APIC_PROCPRI: "PPR", APIC_EOI: "EOI",
    APIC_LDR: "LDR", APIC_DFR: "DFR", APIC_SPIV: "SVR", APIC_ESR: "ESR", APIC_ICR: "ICR low",
    APIC_ICR2: "ICR high", APIC_LVTT: "LVT timer", APIC_LVTTHMR: "LVT thermal", APIC_LVTPC: "LVT perfmon",
    APIC_LVT0: "LVT LINT0", APIC_LVT1: "LVT LINT1", APIC_LVTERR: "LVT error", APIC_TMICT: "timer initial count",
    APIC_TMCCT: "timer current count", APIC_TDCR: "timer divide config",
}


def register_name(offset: int) -> str:
    off = offset & ~0xF
    if APIC_ISR <= off < APIC_ISR + 0x80:
        return f"ISR[{(off - APIC_ISR) >> 4}]"
    if APIC_TMR <= off < APIC_TMR + 0x80:
        return f"TMR[{(off - APIC_TMR) >> 4}]"
    if APIC_IRR <= off < APIC_IRR + 0x80:
        return f"IRR[{(off - APIC_IRR) >> 4}]"
    return REGISTER_NAMES.get(off, f"reserved {off:#x}")


class VlapicState:
    """One vCPU's vLAPIC registers (the regs page, as far as the lab keeps it)."""

    def __init__(self, vcpu_id: int) -> None:
        # vlapic_reset() and vlapic_do_init()
        self.regs: dict[int, int] = {APIC_ID: (vcpu_id * 2) << 24, APIC_LVR: VLAPIC_VERSION, APIC_DFR: 0xFFFF_FFFF,
                                     APIC_SPIV: 0xFF}
        for i in range(VLAPIC_LVT_NUM):
            self.regs[APIC_LVTT + 0x10 * i] = APIC_LVT_MASKED
        self.timer_divisor = 2                  # vlapic_set_tdcr(0): divide by 2
        self.timer_last_update: int | None = None   # guest ns when the count was (re)loaded; None: stopped
        # struct periodic_time of the timer (vpt.c): its next expiry in guest ns and its period (0: one-shot)
        self.timer_scheduled = 0
        self.timer_period = 0
        self.pending_esr = 0                    # errors since the last ESR write (hw.pending_esr)


class Vlapic:
    """The vLAPICs of a domain's vCPUs and their MMIO handler (vlapic_mmio_ops)."""

    name = "vLAPIC (in Xen: vlapic.c)"

    def __init__(self, nr_vcpus: int) -> None:
        self.vcpus = [VlapicState(i) for i in range(nr_vcpus)]

    def register_name(self, gpa: int) -> str:
        return register_name(gpa & 0xFFF)

    # -- vlapic_range() ------------------------------------------------------------------
    def check(self, v, gpa: int) -> bool:
        cpu = v.cpu
        if cpu is None or not 0 <= v.id < len(self.vcpus):
            return False
        base = cpu.apic_base & ~0xFFF & 0x000F_FFFF_FFFF_F000
        return bool(cpu.apic_base & APIC_BASE_ENABLE) and not cpu.apic_base & APIC_BASE_EXTD \
            and base <= gpa < base + 0x1000

    # -- time ------------------------------------------------------------------------------
    @staticmethod
    def _guest_ns(host, v) -> int:
        return v.cpu.cycles * 1_000_000_000 // host.cpu_hz

    def _timer_mode(self, s: VlapicState) -> int | None:
        mode = s.regs[APIC_LVTT] & APIC_TIMER_MODE_MASK
        return mode if mode in (APIC_TIMER_MODE_ONESHOT, APIC_TIMER_MODE_PERIODIC) else None

    def _tmcct(self, host, v, s: VlapicState) -> int:
        """vlapic_get_tmcct(): the initial count less the bus cycles passed since it was loaded."""
        tmict = s.regs.get(APIC_TMICT, 0)
        if not tmict or s.timer_last_update is None:
            return 0
        passed = (self._guest_ns(host, v) - s.timer_last_update) // (APIC_BUS_CYCLE_NS * s.timer_divisor)
        if self._timer_mode(s) == APIC_TIMER_MODE_PERIODIC:
            passed %= tmict
        return tmict - passed if passed < tmict else 0

    # -- vlapic_read_aligned() -------------------------------------------------------------
    def read_register(self, host, v, offset: int) -> int:
        s = self.vcpus[v.id]
        if offset == APIC_PROCPRI:
            return self._ppr(v, s)
        if APIC_ISR <= offset < APIC_ISR + 0x80:
            return (v.lapic_isr >> (32 * ((offset - APIC_ISR) >> 4))) & 0xFFFF_FFFF
        if APIC_IRR <= offset < APIC_IRR + 0x80:
            return (v.lapic_irr >> (32 * ((offset - APIC_IRR) >> 4))) & 0xFFFF_FFFF
        if offset in (APIC_TMCCT, APIC_TMICT):
            if self._timer_mode(s) is None:
                return 0                        # a TSC-deadline or reserved mode: no count
            if offset == APIC_TMCCT:
                return self._tmcct(host, v, s)
        return s.regs.get(offset, 0)

    def tpr(self, v) -> int:
        """The vCPU's task priority: a local APIC vector whose class is not above it waits."""
        if not 0 <= v.id < len(self.vcpus):
            return 0
        return self.vcpus[v.id].regs.get(APIC_TASKPRI, 0)

    @staticmethod
    def _ppr(v, s: VlapicState) -> int:
        """vlapic_get_ppr(): the TPR, or the class of the highest vector in service if higher."""
        tpr = s.regs.get(APIC_TASKPRI, 0)
        isrv = v.lapic_isr.bit_length() - 1 if v.lapic_isr else 0
        return tpr & 0xFF if (tpr & 0xF0) >= (isrv & 0xF0) else isrv & 0xF0

    # -- the MMIO handler ------------------------------------------------------------------
    def read(self, host, v, gpa: int, size: int) -> int:
        """vlapic_mmio_read(): an access that fits one 32-bit register below 0x3f0; else 0."""
        offset = gpa & 0xFFF
        align = offset & 0xF
        if align + size > 4 or offset > APIC_TDCR + 3:
            return 0
        reg = self.read_register(host, v, offset & ~0xF)
        return (reg >> (8 * align)) & ((1 << (8 * size)) - 1)

    def write(self, host, v, gpa: int, size: int, value: int) -> None:
        """vlapic_mmio_write(): a narrower write merges into the register's current value."""
        offset = gpa & 0xFFF
        align = offset & 0xF
        offset &= ~0xF
        if align + size > 4 or offset > APIC_TDCR:
            return
        value &= (1 << (8 * size)) - 1
        if size < 4:
            keep = self.read_register(host, v, offset) & ~(((1 << (8 * size)) - 1) << (8 * align))
            value = keep | (value << (8 * align))
        self.write_register(host, v, offset, value & 0xFFFF_FFFF)

    def write_register(self, host, v, reg: int, val: int) -> None:
        """vlapic_reg_write()."""
        s = self.vcpus[v.id]
        r = s.regs
        if reg == APIC_ID:
            r[APIC_ID] = val
        elif reg == APIC_ESR:
            r[APIC_ESR] = s.pending_esr         # a write latches the errors since the last one
            s.pending_esr = 0
        elif reg == APIC_TASKPRI:
            r[APIC_TASKPRI] = val & 0xFF
        elif reg == APIC_EOI:
            eoi(host, v)
        elif reg == APIC_LDR:
            r[APIC_LDR] = val & APIC_LDR_MASK
        elif reg == APIC_DFR:
            r[APIC_DFR] = val | 0x0FFF_FFFF
        elif reg == APIC_SPIV:
            r[APIC_SPIV] = val & 0x3FF
            if not val & APIC_SPIV_APIC_ENABLED:
                # software disabled: every LVT entry masked
                for i in range(VLAPIC_LVT_NUM):
                    r[APIC_LVTT + 0x10 * i] = r.get(APIC_LVTT + 0x10 * i, 0) | APIC_LVT_MASKED
        elif reg == APIC_ICR:
            r[APIC_ICR] = val & ~APIC_SEND_PENDING
        elif reg == APIC_ICR2:
            r[APIC_ICR2] = val & 0xFF00_0000
        elif APIC_LVTT <= reg <= APIC_LVTERR:
            if reg == APIC_LVTT:
                tdt = 2 << 17                   # APIC_TIMER_MODE_TSC_DEADLINE
                if ((r.get(APIC_LVTT, 0) & APIC_TIMER_MODE_MASK) == tdt) != ((val & APIC_TIMER_MODE_MASK) == tdt):
                    r[APIC_TMICT] = 0
                self._update_timer(host, v, s, val, tmict_updated=False, old_divisor=s.timer_divisor)
            if not r.get(APIC_SPIV, 0) & APIC_SPIV_APIC_ENABLED:
                val |= APIC_LVT_MASKED
            r[reg] = val & LVT_WRITABLE[(reg - APIC_LVTT) >> 4]
        elif reg == APIC_TMICT:
            if self._timer_mode(s) is None:
                return
            r[APIC_TMICT] = val
            self._update_timer(host, v, s, r[APIC_LVTT], tmict_updated=True, old_divisor=s.timer_divisor)
        elif reg == APIC_TDCR:
            old = s.timer_divisor
            val &= APIC_TDR_DIV_MASK
            r[APIC_TDCR] = val
            s.timer_divisor = 1 << ((((val & 3) | ((val & 8) >> 1)) + 1) & 7)
            self._update_timer(host, v, s, r[APIC_LVTT], tmict_updated=False, old_divisor=old)
        # every other offset (read-only or reserved) ignores the write, as in Xen

    def _update_timer(self, host, v, s: VlapicState, lvtt: int, tmict_updated: bool, old_divisor: int) -> None:
        """vlapic_update_timer(): (re)start the count from now, or stop it."""
        mode = lvtt & APIC_TIMER_MODE_MASK
        tmict = s.regs.get(APIC_TMICT, 0)
        now = self._guest_ns(host, v)
        period = tmict * APIC_BUS_CYCLE_NS * old_divisor
        delta = 0
        if tmict_updated:
            delta = period
        elif period and s.timer_last_update is not None:
            passed = now - s.timer_last_update
            if self._timer_mode(s) == APIC_TIMER_MODE_PERIODIC:
                passed %= period
            if passed < period:
                delta = period - passed
        if delta and mode in (APIC_TIMER_MODE_ONESHOT, APIC_TIMER_MODE_PERIODIC):
            if s.timer_divisor != old_divisor:
                period = tmict * APIC_BUS_CYCLE_NS * s.timer_divisor
                delta = delta * s.timer_divisor // old_divisor
            # the count was loaded (period - delta) ns ago
            s.timer_last_update = now - (period - delta)
            self._create_periodic_time(host, v, s, now, delta, period if mode == APIC_TIMER_MODE_PERIODIC else 0)
        else:
            # destroy_periodic_time(): the count reads 0 until the initial count is written again
            s.timer_last_update = None
            timers.stop_timer(v, timers.VLAPIC)

    # -- the timer's interrupt (hvm/vpt.c) -------------------------------------------------
    def _create_periodic_time(self, host, v, s: VlapicState, now: int, delta: int, period: int) -> None:
        """create_periodic_time(): the first expiry ``delta`` ns from now; a periodic timer of
        at least 0.1 ms, its first tick aligned to its period when HVM_PARAM_VPT_ALIGN is set
        (align_timer()), else put half a delta later to keep off the other timers' ticks."""
        if period:
            period = max(period, PT_MIN_PERIOD_NS)
        scheduled = now + delta
        if period:
            if v.domain.hvm_params.get(HVM_PARAM_VPT_ALIGN):
                scheduled = scheduled + (period - 1) - ((scheduled - 1) % period)
            else:
                scheduled += delta >> 1
        s.timer_period = period
        self._arm(host, v, s, scheduled)

    @staticmethod
    def _arm(host, v, s: VlapicState, scheduled: int) -> None:
        s.timer_scheduled = scheduled
        # the first cycle at which the vCPU's time (cycles * 10^9 // hz, in ns) has reached it
        timers.set_timer(host, v, timers.VLAPIC, -(-scheduled * host.cpu_hz // 1_000_000_000))
        if v.cpu is not None and v.runstate == "running":
            # the run in progress was bounded by the earlier deadlines: end it at the next
            # block, so that one this close fires on time (Xen reprograms its timer at once)
            v.cpu.yield_now = True

    def timer_expired(self, host, v, now: int) -> None:
        """pt_timer_fn() then pt_update_irq() for the LAPIC source: the vector in LVT timer is
        raised in the IRR unless the timer is masked (pt_irq_masked(): LVT timer's mask bit, or
        the local APIC disabled), which suspends it until LVT timer is written again. A periodic
        timer runs on a period later; periods that went by unseen (the vCPU was not running)
        are one interrupt, not a burst. vlapic_pt_cb(): the count reloads at each tick."""
        if not 0 <= v.id < len(self.vcpus):
            return
        s = self.vcpus[v.id]
        lvtt = s.regs.get(APIC_LVTT, 0)
        cpu = v.cpu
        enabled = cpu is not None and bool(cpu.apic_base & APIC_BASE_ENABLE) \
            and bool(s.regs.get(APIC_SPIV, 0) & APIC_SPIV_APIC_ENABLED)
        if not enabled or lvtt & APIC_LVT_MASKED:
            return
        fired = s.timer_scheduled
        if s.timer_period:
            s.timer_last_update = fired
            now_ns = now * 1_000_000_000 // host.cpu_hz
            nxt = fired + s.timer_period
            if nxt <= now_ns:
                nxt += ((now_ns - nxt) // s.timer_period + 1) * s.timer_period
            self._arm(host, v, s, nxt)
        set_irq(host, v, lvtt & APIC_VECTOR_MASK, "vLAPIC timer")

    def error(self, host, v, err_bit: int) -> None:
        """vlapic_error(): latch the error; an unmasked LVT error entry with a valid vector is
        raised (one whose vector is invalid adds "receive illegal vector" instead)."""
        s = self.vcpus[v.id]
        if s.pending_esr & err_bit:
            return
        s.pending_esr |= err_bit
        lvterr = s.regs.get(APIC_LVTERR, APIC_LVT_MASKED)
        if lvterr & APIC_LVT_MASKED:
            return
        if lvterr & APIC_VECTOR_MASK >= APIC_FIRST_VALID_VECTOR:
            set_irq(host, v, lvterr & APIC_VECTOR_MASK, "vLAPIC error")
        else:
            s.pending_esr |= APIC_ESR_RECVILL


def set_irq(host, v, vec: int, source: str) -> None:
    """vlapic_set_irq(): a vector below 16 is refused with "receive illegal vector" in the ESR;
    any other goes into the IRR, and the vCPU is kicked if it was not already there."""
    if vec < APIC_FIRST_VALID_VECTOR:
        vlapic = v.domain.devices.get("vlapic")
        if vlapic is not None and 0 <= v.id < len(vlapic.vcpus):
            vlapic.error(host, v, APIC_ESR_RECVILL)
        return
    host.emit(v, "interrupt", vector=vec, source=f"{source}: vector {vec:#x} raised in the vLAPIC")
    if v.lapic_irr >> vec & 1:
        return
    v.lapic_irr |= 1 << vec
    # vcpu_kick(): the interrupt source is told to look, a vCPU blocked in hlt wakes
    cpu = v.cpu
    src = cpu.irq_source if cpu is not None else None
    if src is not None and hasattr(src, "hint"):
        src.hint = True
    if v.blocked:
        if cpu is not None:
            cpu.halted = False
        host.wake(v, "interrupt")


def eoi(host, v) -> None:
    """vlapic_EOI_set(): end the highest vector in service."""
    if v.lapic_isr:
        v.lapic_isr &= ~(1 << (v.lapic_isr.bit_length() - 1))
    src = v.cpu.irq_source if v.cpu is not None else None
    if v.lapic_irr and src is not None and hasattr(src, "hint"):
        src.hint = True                         # a vector held back by the one in service may go now
