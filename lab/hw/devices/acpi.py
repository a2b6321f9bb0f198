"""The PIIX4 ACPI power-management function's PM1a control register, as qemu-xen has it.

Xen's HVM ACPI register blocks live where ``public/hvm/ioreq.h`` puts them:
PM1a_EVT at 0xb000 (``ACPI_PM1A_EVT_BLK_ADDRESS_V1``, the qemu-xen layout that
hvmloader selects through ``HVM_PARAM_ACPI_IOPORTS_LOCATION``; 0x1f40 in the
old V0 layout), PM1a_CNT four bytes on, the PM timer four more on. Xen itself
emulates the event block and the timer (``xen/arch/x86/hvm/pmtimer.c``); the
control block, whose sleep bits power the machine off, is QEMU's
(``acpi_pm1_cnt_write``): SLP_EN with SLP_TYP 0, the S5 package of Xen's
DSDT, asks for a power-off, which QEMU passes to Xen as a remote shutdown.
"""

from __future__ import annotations

from typing import Callable

from . import DeviceContext

ACPI_PM1A_EVT_BLK_ADDRESS_V0 = 0x1F40
ACPI_PM1A_EVT_BLK_ADDRESS_V1 = 0xB000
#: PM1a_CNT is 4 bytes after PM1a_EVT (ACPI_PM1A_CNT_BLK_ADDRESS_Vn).
PM1A_CNT_OFFSET = 4
SLP_EN = 1 << 13
SLP_TYP_SHIFT, SLP_TYP_MASK = 10, 7
#: SLP_TYP for S5 (soft off) in Xen's DSDT (tools/libacpi/dsdt.asl: _S5 is {0, 0}).
SLP_TYP_S5 = 0
SCI_EN = 1


class AcpiPmControl:
    name = "acpi-pm"

    def __init__(self, ctx: DeviceContext, power_off: Callable[[], None],
                 evt_base: int = ACPI_PM1A_EVT_BLK_ADDRESS_V1) -> None:
        self.ctx = ctx
        self.power_off = power_off
        self.base = evt_base + PM1A_CNT_OFFSET
        self.cnt = SCI_EN                       # ACPI mode: hvmloader's tables have no SMI_CMD

    def port_ranges(self) -> list[tuple[int, int]]:
        return [(self.base, self.base + 1)]

    def io_read(self, port: int, size: int) -> int:
        return (self.cnt >> (8 * (port - self.base))) & ((1 << (8 * size)) - 1)

    def io_write(self, port: int, size: int, value: int) -> None:
        shift = 8 * (port - self.base)
        mask = ((1 << (8 * size)) - 1) << shift
        self.cnt = (self.cnt & ~mask & 0xFFFF) | ((value << shift) & mask & 0xFFFF)
        if not self.cnt & SLP_EN:
            return
        typ = (self.cnt >> SLP_TYP_SHIFT) & SLP_TYP_MASK
        self.cnt &= ~SLP_EN                     # SLP_EN is write-only: it reads back as 0
        if typ == SLP_TYP_S5:
            self.ctx.note("ACPI PM1a_CNT: SLP_EN, SLP_TYP 0 (S5): power off")
            self.ctx.log("acpi: guest entered S5, requesting shutdown")
            self.power_off()
        else:
            self.ctx.note(f"ACPI PM1a_CNT: SLP_EN, SLP_TYP {typ}: sleep state not supported, ignored")
