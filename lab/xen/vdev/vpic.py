"""The two 8259A PICs Xen emulates for an HVM domain: arch/x86/hvm/vpic.c.

``vpic_init()`` registers ports 0x20-0x21 (master) and 0xa0-0xa1 (slave)
with ``vpic_intercept_pic_io()``, which takes byte accesses only (any other
size reads all ones and drops the write), and the edge/level control
registers 0x4d0-0x4d1 with ``vpic_intercept_elcr_io()``. The master is the
lab's :class:`~lab.hw.devices.board.Pic8259` (``dom.devices["vpic"]``), the
one the lab's interrupt lines reach. The slave takes its initialisation and
mask like Xen's, but its lines are not cascaded into the master's IRQ 2 in
the lab (no lab device raises IRQs 8-15).
"""

from __future__ import annotations

from ...hw.devices.board import Pic8259


def elcr_mask(master: bool, mb2: int) -> int:
    """vpic_elcr_mask(): IRQs 0, 1 and 2 (8 and 13 on the slave) are always edge-triggered."""
    return (0xF8 | (mb2 << 2)) if master else 0xDE


class VpicPorts:
    """The vPIC's port handlers; the master's and slave's state, and the two ELCRs."""

    name = "vPIC (in Xen: vpic.c)"

    def __init__(self) -> None:
        self.slave = Pic8259()
        self.elcr = [1 << 2, 0]                 # vpic_reset(): the master's IRQ 2 is level

    def _pic(self, dom, port: int) -> Pic8259 | None:
        return self.slave if port & 0x80 else dom.devices.get("vpic")

    def port_read(self, host, v, port: int, size: int) -> int | None:
        if port in (0x4D0, 0x4D1):
            return self._elcr_read(port, size)
        pic = self._pic(v.domain, port)
        if size != 1 or pic is None:
            return 0xFFFF_FFFF                  # "PIC_IO bad access size"
        return pic.port_in(0x20 | (port & 1))

    def port_write(self, host, v, port: int, size: int, value: int) -> bool:
        if port in (0x4D0, 0x4D1):
            self._elcr_write(port, size, value)
            return True
        pic = self._pic(v.domain, port)
        if size == 1 and pic is not None:
            pic.port_out(0x20 | (port & 1), value & 0xFF)
        return True

    # -- vpic_intercept_elcr_io(): a 2-byte access at 0x4d0 covers both -------------------
    def _elcr_read(self, port: int, size: int) -> int:
        out = 0
        for k in range(size):
            i = (port & 1) + k
            if i > 1:
                break
            out |= (self.elcr[i] & elcr_mask(i == 0, 0)) << (8 * k)   # the hard-wired slave IR unseen
        return out

    def _elcr_write(self, port: int, size: int, value: int) -> None:
        for k in range(size):
            i = (port & 1) + k
            if i > 1:
                break
            data = (value >> (8 * k)) & elcr_mask(i == 0, 1)
            if i == 0:
                data |= 1 << 2
            self.elcr[i] = data
