"""The ACPI PM1a event block and PM timer Xen emulates for an HVM domain: arch/x86/hvm/pmtimer.c.

The block sits where HVM_PARAM_ACPI_IOPORTS_LOCATION says (public/hvm/ioreq.h:
0x1f40 for version 0, 0xb000 for version 1, which hvmloader picks for
qemu-xen), and the handlers move with the param (``pmtimer_change_ioport()``).
``handle_evt_io()`` takes PM1a_STS (write 1 to clear) and PM1a_EN at base+0
to base+3, byte by byte; ``handle_pmt_io()`` takes the 32-bit TMR_VAL at
base+8, counting at 3.579545 MHz (FREQUENCE_PMTIMER) with the guest's time:
any access to it but a 4-byte read reads all ones. PM1a_CNT at base+4, the
sleep control between them, is not Xen's: it goes to the device model.
Not modelled: the SCI the timer's bit 31 raises.
"""

from __future__ import annotations

from .. import abi

ACPI_PM1A_EVT_BLK_ADDRESS_V0 = 0x1F40
ACPI_PM1A_EVT_BLK_ADDRESS_V1 = 0xB000
#: FREQUENCE_PMTIMER
PMTIMER_HZ = 3_579_545
EVT_OFFSET, EVT_SIZE, TMR_OFFSET, TMR_SIZE = 0, 4, 8, 4


def acpi_pm_base(dom) -> int:
    """Where this HVM domain's PM1a event block is, as pmtimer.c places it."""
    if dom.hvm_params.get(abi.HVM_PARAM_ACPI_IOPORTS_LOCATION, 0) == 1:
        return ACPI_PM1A_EVT_BLK_ADDRESS_V1
    return ACPI_PM1A_EVT_BLK_ADDRESS_V0


class PmTimer:
    """struct hvm_hw_acpi: PM1a_STS, PM1a_EN; TMR_VAL comes from the guest's time."""

    name = "ACPI PM1a event block / PM timer (in Xen: pmtimer.c)"

    def __init__(self) -> None:
        self.pm1a_sts = 0
        self.pm1a_en = 0

    @staticmethod
    def base(dom) -> int:
        return acpi_pm_base(dom)

    def port_read(self, host, v, port: int, size: int) -> int | None:
        off = port - acpi_pm_base(v.domain)
        if off >= TMR_OFFSET:
            if size != 4:
                return 0xFFFF_FFFF              # "HVM_PMT bad access"
            cycles = v.cpu.cycles if v.cpu else 0
            return (cycles * PMTIMER_HZ // host.cpu_hz) & 0xFFFF_FFFF
        data = (self.pm1a_sts | (self.pm1a_en << 16)) >> (8 * off)
        return data & ((1 << (8 * size)) - 1)

    def port_write(self, host, v, port: int, size: int, value: int) -> bool:
        off = port - acpi_pm_base(v.domain)
        if off >= TMR_OFFSET:
            return True                         # the timer is read-only: dropped
        for k in range(size):
            byte = (value >> (8 * k)) & 0xFF
            addr = off + k
            if addr == 0:
                self.pm1a_sts &= ~byte
            elif addr == 1:
                self.pm1a_sts &= ~(byte << 8)
            elif addr == 2:
                self.pm1a_en = (self.pm1a_en & 0xFF00) | byte
            elif addr == 3:
                self.pm1a_en = (self.pm1a_en & 0xFF) | (byte << 8)
        return True
