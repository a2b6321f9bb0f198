"""The generic timer's virtual timer (CNTV_*), counting at CNTFRQ_EL0 from the core's cycles.

The virtual count is the physical count minus CNTVOFF_EL2, so a hypervisor
can give each guest a clock that started when it did. When the count
reaches CNTV_CVAL_EL0 with ENABLE set, ISTATUS reads 1 and, unless IMASK is
set, the virtual timer PPI (27) is asserted at the GIC: it stays asserted
while the condition holds, as a level-sensitive interrupt does.
"""

from __future__ import annotations

from ...isa.bits import M64
from .gic import PPI_VIRT_TIMER, Gic

ENABLE, IMASK, ISTATUS = 1, 2, 4


class GenericTimer:
    def __init__(self, cpu_hz: int, counter_hz: int) -> None:
        self.cpu_hz = cpu_hz
        self.counter_hz = counter_hz
        self.ctl = 0
        self.cval = 0
        self.voff = 0

    def physical_count(self, cycles: int) -> int:
        return cycles * self.counter_hz // self.cpu_hz

    def virtual_count(self, cycles: int) -> int:
        return (self.physical_count(cycles) - self.voff) & M64

    def firing(self, cycles: int) -> bool:
        return bool(self.ctl & ENABLE) and self.virtual_count(cycles) >= self.cval

    def read(self, name: str, cycles: int) -> int:
        if name == "cntfrq_el0":
            return self.counter_hz
        if name == "cntvct_el0":
            return self.virtual_count(cycles)
        if name == "cntv_ctl_el0":
            return (self.ctl & (ENABLE | IMASK)) | (ISTATUS if self.firing(cycles) else 0)
        if name == "cntv_cval_el0":
            return self.cval
        if name == "cntv_tval_el0":
            return (self.cval - self.virtual_count(cycles)) & 0xFFFFFFFF
        if name == "cntvoff_el2":
            return self.voff
        return 0

    def write(self, name: str, value: int, cycles: int) -> None:
        if name == "cntv_ctl_el0":
            self.ctl = value & (ENABLE | IMASK)
        elif name == "cntv_cval_el0":
            self.cval = value & M64
        elif name == "cntv_tval_el0":
            tval = value & 0xFFFFFFFF
            tval = tval - (1 << 32) if tval >> 31 else tval
            self.cval = (self.virtual_count(cycles) + tval) & M64
        elif name == "cntvoff_el2":
            self.voff = value & M64

    def tick(self, cycles: int, gic: Gic) -> None:
        if self.firing(cycles) and not self.ctl & IMASK:
            gic.raise_irq(PPI_VIRT_TIMER)
