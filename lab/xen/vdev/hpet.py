"""The HPET Xen emulates for an HVM domain: arch/x86/hvm/hpet.c.

1 KiB of MMIO at 0xfed00000 (HPET_BASE_ADDRESS, HPET_MMAP_SIZE), registered
by ``hpet_init()`` for every HVM domain, which sets HVM_PARAM_HPET_ENABLED;
libxl then writes xl.cfg's ``hpet`` (on by default) to the param. The handler
claims its range either way (``hpet_range()``): with the param clear every
read is all ones and every write is dropped, in Xen, never the device model; so is an access that is not naturally aligned or is
wider than 8 bytes (``hpet_check_access_length()``). A narrower access reads
or merges into its part of the 64-bit register (``hpet_fixup_reg()``).

Modelled, as ``hpet_read64()`` / ``hpet_write()`` have them: the general
capabilities and ID (0x80860001 with three timers, 64-bit counter, legacy
replacement, and a period of 16,000,000 fs: the HPET runs at 1/16 of Xen's
1 GHz system time), the general configuration (ENABLE and LEGACY are
writable), the interrupt status (write 1 to clear), the main counter
(running from the guest's time while enabled, held and writable while not),
and the three timers' configuration (with Xen's writable bits and its fixed
capabilities: routes 20-23, 64-bit, periodic) and comparators (a periodic
timer's comparator write sets its period, clamped to at least 100 us, unless
SETVAL is set). Not modelled: the timers' interrupts.
"""

from __future__ import annotations

from ...isa.bits import M64
from ..abi.hvm import HVM_PARAM_HPET_ENABLED

HPET_BASE_ADDRESS = 0xFED00000
HPET_MMAP_SIZE = 1024
HPET_TIMER_NUM = 3
HPET_ID, HPET_CFG, HPET_STATUS, HPET_COUNTER = 0x000, 0x010, 0x020, 0x0F0
HPET_ID_64BIT, HPET_ID_LEGSUP, HPET_ID_NUMBER_SHIFT = 0x2000, 0x8000, 8
HPET_CFG_ENABLE, HPET_CFG_LEGACY = 0x001, 0x002
HPET_TN_LEVEL, HPET_TN_ENABLE, HPET_TN_PERIODIC = 0x002, 0x004, 0x008
HPET_TN_PERIODIC_CAP, HPET_TN_64BIT_CAP, HPET_TN_SETVAL = 0x010, 0x020, 0x040
HPET_TN_32BIT, HPET_TN_ROUTE = 0x100, 0x3E00
#: HPET_TN_INT_ROUTE_CAP_VAL: "can be routed to IOAPIC.redirect_table[23..20]"
HPET_TN_INT_ROUTE_CAP_VAL = 0x00F00000 << 32
S_TO_NS, S_TO_FS = 10**9, 10**15
STIME_PER_HPET_TICK = 16
#: hpet_set(): capability, with femtoseconds per tick in bits 63:32
CAPABILITY = (0x80860001 | ((HPET_TIMER_NUM - 1) << HPET_ID_NUMBER_SHIFT) | HPET_ID_64BIT | HPET_ID_LEGSUP
              | ((S_TO_FS * STIME_PER_HPET_TICK // S_TO_NS) << 32))
TIMER_CONFIG_RESET = HPET_TN_INT_ROUTE_CAP_VAL | HPET_TN_64BIT_CAP | HPET_TN_PERIODIC_CAP
#: 100 us in ticks: the shortest period hpet_write() lets a periodic timer have
MIN_PERIOD_TICKS = 100_000 // STIME_PER_HPET_TICK

REGISTER_NAMES = {HPET_ID: "capabilities and ID", HPET_CFG: "general configuration",
                  HPET_STATUS: "interrupt status", HPET_COUNTER: "main counter"}


def register_name(offset: int) -> str:
    off = offset & ~7
    if off in REGISTER_NAMES:
        return REGISTER_NAMES[off]
    if 0x100 <= off < 0x100 + 0x20 * HPET_TIMER_NUM:
        n, part = divmod(off - 0x100, 0x20)
        return f"timer {n} " + {0: "configuration", 8: "comparator", 0x10: "FSB route"}.get(part, "reserved")
    return f"reserved {off:#x}"


def _enabled(v) -> bool:
    """HVM_PARAM_HPET_ENABLED, set by hpet_init() and then by the toolstack from xl.cfg's hpet."""
    return bool(v.domain.hvm_params.get(HVM_PARAM_HPET_ENABLED))


class Hpet:
    """One domain's HPET and its MMIO handler (hpet_mmio_ops)."""

    name = "vHPET (in Xen: hpet.c)"

    def __init__(self) -> None:
        self.config = 0
        self.isr = 0
        self.mc64 = 0                           # the main counter while halted
        self.mc_offset = 0                      # counter = guest ticks + offset while enabled
        self.timer_config = [TIMER_CONFIG_RESET] * HPET_TIMER_NUM
        self.cmp = [M64] * HPET_TIMER_NUM
        self.comparator64 = [M64] * HPET_TIMER_NUM
        self.period = [0] * HPET_TIMER_NUM
        self.fsb = [0] * HPET_TIMER_NUM

    def register_name(self, gpa: int) -> str:
        return register_name((gpa - HPET_BASE_ADDRESS) & (HPET_MMAP_SIZE - 1))

    def check(self, v, gpa: int) -> bool:
        return HPET_BASE_ADDRESS <= gpa < HPET_BASE_ADDRESS + HPET_MMAP_SIZE

    @staticmethod
    def _guest_ticks(host, v) -> int:
        """guest_time_hpet(): the guest's time in ns over STIME_PER_HPET_TICK."""
        return v.cpu.cycles * S_TO_NS // host.cpu_hz // STIME_PER_HPET_TICK

    def _counter(self, now: int) -> int:
        return (now + self.mc_offset) & M64 if self.config & HPET_CFG_ENABLE else self.mc64

    def _comparator(self, n: int, now: int) -> int:
        """hpet_get_comparator(): a running periodic timer's comparator moves on by whole periods."""
        comparator = self.comparator64[n]
        if self.config & HPET_CFG_ENABLE and self.timer_config[n] & HPET_TN_PERIODIC and self.period[n]:
            elapsed = (self._counter(now) - comparator) & M64
            if elapsed < 1 << 63:
                comparator = (comparator + (elapsed + self.period[n]) // self.period[n] * self.period[n]) & M64
                self.comparator64[n] = comparator
        if self.timer_config[n] & HPET_TN_32BIT:
            comparator &= 0xFFFF_FFFF
        self.cmp[n] = comparator
        return comparator

    def _read64(self, offset: int, now: int) -> int:
        off = offset & ~7
        if off == HPET_ID:
            return CAPABILITY
        if off == HPET_CFG:
            return self.config
        if off == HPET_STATUS:
            return self.isr
        if off == HPET_COUNTER:
            return self._counter(now)
        if 0x100 <= off < 0x100 + 0x20 * HPET_TIMER_NUM:
            n, part = divmod(off - 0x100, 0x20)
            if part == 0:
                return self.timer_config[n]
            if part == 8:
                return self._comparator(n, now)
            if part == 0x10:
                return self.fsb[n]
        return 0

    def _sanitize_route(self, n: int) -> None:
        """timer_sanitize_int_route(): a route the timer cannot take becomes its first possible one
        (0 while the timer is disabled); legacy replacement routes timers 0 and 1 itself."""
        cfg = self.timer_config[n]
        cap = cfg >> 32
        if (n <= 1 and self.config & HPET_CFG_LEGACY) or (1 << ((cfg & HPET_TN_ROUTE) >> 9)) & cap:
            return
        cfg &= ~HPET_TN_ROUTE
        if cfg & HPET_TN_ENABLE and cap:
            cfg |= ((cap & -cap).bit_length() - 1) << 9
        self.timer_config[n] = cfg

    @staticmethod
    def _bad_access(offset: int, size: int) -> bool:
        return bool(offset & (size - 1)) or size > 8

    def read(self, host, v, gpa: int, size: int) -> int:
        offset = (gpa - HPET_BASE_ADDRESS) & (HPET_MMAP_SIZE - 1)
        if not _enabled(v) or self._bad_access(offset, size):
            return (1 << (8 * size)) - 1        # ~0, as the caller's size sees it
        val = self._read64(offset, self._guest_ticks(host, v))
        if size != 8:
            val = (val >> (8 * (offset & 7))) & ((1 << (8 * size)) - 1)
        return val

    def write(self, host, v, gpa: int, size: int, value: int) -> None:
        offset = (gpa - HPET_BASE_ADDRESS) & (HPET_MMAP_SIZE - 1)
        if not _enabled(v) or self._bad_access(offset, size):
            return
        now = self._guest_ticks(host, v)
        old = self._read64(offset, now)
        shift = 8 * (offset & 7)
        new = value & M64
        if size != 8:
            mask = ((1 << (8 * size)) - 1) << shift
            new = ((value << shift) & mask) | (old & ~mask)
        off = offset & ~7
        if off == HPET_CFG:
            self.config = (new & (HPET_CFG_ENABLE | HPET_CFG_LEGACY)) | (old & ~(HPET_CFG_ENABLE | HPET_CFG_LEGACY))
            if not old & HPET_CFG_ENABLE and new & HPET_CFG_ENABLE:
                self.mc_offset = (self.mc64 - now) & M64
                for n in range(HPET_TIMER_NUM):
                    c = self.cmp[n]
                    self.comparator64[n] = c & 0xFFFF_FFFF if self.timer_config[n] & HPET_TN_32BIT else c
            elif old & HPET_CFG_ENABLE and not new & HPET_CFG_ENABLE:
                self.mc64 = (self.mc_offset + now) & M64
            for n in range(HPET_TIMER_NUM):
                self._sanitize_route(n)
        elif off == HPET_STATUS:
            self.isr &= ~((value << shift) & ((1 << HPET_TIMER_NUM) - 1))
        elif off == HPET_COUNTER:
            self.mc64 = new
            if self.config & HPET_CFG_ENABLE:
                # "writing main counter but it's not halted!": the running count is not changed
                pass
        elif 0x100 <= off < 0x100 + 0x20 * HPET_TIMER_NUM:
            n, part = divmod(off - 0x100, 0x20)
            if part == 0:
                writable = HPET_TN_LEVEL | HPET_TN_ENABLE | HPET_TN_PERIODIC | HPET_TN_SETVAL | HPET_TN_32BIT \
                    | HPET_TN_ROUTE
                self.timer_config[n] = (new & writable) | (old & ~writable)
                self._sanitize_route(n)
                if new & HPET_TN_32BIT:
                    self.cmp[n] &= 0xFFFF_FFFF
                    self.period[n] &= 0xFFFF_FFFF
            elif part == 8:
                if self.timer_config[n] & HPET_TN_PERIODIC and not self.timer_config[n] & HPET_TN_SETVAL:
                    max_period = (0xFFFF_FFFF if self.timer_config[n] & HPET_TN_32BIT else M64) >> 1
                    self.period[n] = min(max(new, MIN_PERIOD_TICKS), max_period)
                else:
                    self.timer_config[n] &= ~HPET_TN_SETVAL
                    self.comparator64[n] = new
                    self.cmp[n] = new & 0xFFFF_FFFF if self.timer_config[n] & HPET_TN_32BIT else new
            elif part == 0x10:
                self.fsb[n] = new
        # other offsets: "Ignore writes to unsupported and reserved registers."
