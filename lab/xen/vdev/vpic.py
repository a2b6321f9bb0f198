"""The two 8259A PICs Xen emulates for an HVM domain: arch/x86/hvm/vpic.c.

``vpic_init()`` registers ports 0x20-0x21 (master) and 0xa0-0xa1 (slave)
with ``vpic_intercept_pic_io()``, which takes byte accesses only (any other
size reads all ones and drops the write), and the edge/level control
registers 0x4d0-0x4d1 with ``vpic_intercept_elcr_io()``. The master is the
lab's :class:`~lab.hw.devices.board.Pic8259` (``dom.devices["vpic"]``), the
one the lab's interrupt lines reach. The slave (``VpicPorts.slave``) is
cascaded into the master's IRQ 2 as ``vpic_update_int_output()`` wires it:
while the slave has an unmasked request it may deliver, its INT output holds
the master's IRQ 2 up (the master's ELCR keeps that line level-triggered),
and when it has none the line drops. ``vpic_ack_pending_irq()`` answers an
acknowledged IRQ 2 with the slave's own highest request and its vector.
"""

from __future__ import annotations

from ...hw.devices.board import Pic8259


def elcr_mask(master: bool, mb2: int) -> int:
    """vpic_elcr_mask(): IRQs 0, 1 and 2 (8 and 13 on the slave) are always edge-triggered."""
    return (0xF8 | (mb2 << 2)) if master else 0xDE


CASCADE_IRQ = 2


def _slave(dom) -> Pic8259 | None:
    ports = dom.devices.get("vpic_io")
    return ports.slave if isinstance(ports, VpicPorts) else None


def update_cascade(dom) -> None:
    """vpic_update_int_output() for the slave: its INT output drives the master's IRQ 2."""
    master, slave = dom.devices.get("vpic"), _slave(dom)
    if master is None or slave is None:
        return
    if slave.init_step == 0 and slave.pending() is not None:      # "Force line status to L when in init mode"
        if not master.irr & (1 << CASCADE_IRQ):
            master.raise_irq(CASCADE_IRQ)
    elif master.irr & (1 << CASCADE_IRQ):
        master.irr &= ~(1 << CASCADE_IRQ)
        master.waiting = bool(master.irr & ~master.imr)


def raise_isa_irq(dom, irq: int) -> int | None:
    """vpic_irq_positive_edge() for ISA IRQ 0-15: the vector the PIC that has the line names
    (what the guest will take once it acknowledges it), or None when the domain has no vPIC."""
    master = dom.devices.get("vpic")
    if master is None or not 0 <= irq < 16:
        return None
    if irq < 8:
        master.raise_irq(irq)
        return master.vector_base + irq
    slave = _slave(dom)
    if slave is None:
        return None
    slave.raise_irq(irq - 8)
    update_cascade(dom)
    return slave.vector_base + irq - 8


def pending_vector(dom, master: Pic8259) -> int | None:
    """The vector the vPIC would hand over now; through the cascade, the slave's."""
    vector = master.pending()
    if vector is not None and vector == master.vector_base + CASCADE_IRQ:
        slave = _slave(dom)
        if slave is not None:
            return slave.pending() if slave.pending() is not None else slave.vector_base + 7
    return vector


def ack(dom, master: Pic8259) -> int | None:
    """vpic_ack_pending_irq(): the master's INTA; IRQ 2 passes it on to the slave, and with
    nothing left there the slave answers its spurious IRQ 7."""
    vector = master.ack()
    if vector is None or vector != master.vector_base + CASCADE_IRQ:
        return vector
    slave = _slave(dom)
    if slave is None:
        return vector
    got = slave.ack()
    update_cascade(dom)
    return got if got is not None else slave.vector_base + 7


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
            if pic is self.slave:
                update_cascade(v.domain)        # a new mask, EOI or initialisation moves its output
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
