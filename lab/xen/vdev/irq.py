"""An HVM domain's interrupt lines, as the device model drives them: arch/x86/hvm/irq.c.

QEMU in dom0 raises and lowers the lines of the devices it emulates with
dm_op (xen/arch/x86/hvm/dm.c): ``XEN_DMOP_set_isa_irq_level`` for an ISA
device (the UART's IRQ 4) calls ``hvm_isa_irq_assert()`` /
``hvm_isa_irq_deassert()``, and ``XEN_DMOP_set_pci_intx_level`` for a PCI
device (the NE2000's INTA) calls ``hvm_pci_intx_assert()`` /
``hvm_pci_intx_deassert()``. Levels, not edges: a source that is already
asserted asserting again changes nothing.

Xen counts the sources of each GSI (``gsi_assert_count``) and of each PCI
interrupt link (``pci_link_assert_count``), so a shared line rises with its
first source and falls with its last. An ISA IRQ is GSI ``isa_irq`` (IRQ 0
is GSI 2, ``hvm_isa_irq_to_gsi()``); a PCI device's INTx pin is GSI
``((device << 2) + (device >> 3) + intx) % 32 + 16`` (``hvm_pci_intx_gsi()``)
and, through the link ``(device + intx) % 4`` (``hvm_pci_intx_link()``), the
ISA IRQ the link is routed to. A line's rise is a positive edge
on the vPIC (``vpic_irq_positive_edge()``: its IRR bit set, vCPU 0 kicked when
the line is unmasked) and on the vIOAPIC pin; its fall a negative edge
(``vpic_irq_negative_edge()``: the IRR bit cleared, a request not yet taken is
withdrawn). The lab's vIOAPIC does not deliver (docs/hvm-devices.md): the GSI
is counted, the guest's interrupt comes through the vPIC.

The links' routing (``hvm_irq->pci_link.route``) is set with
``XEN_DMOP_set_pci_link_route`` (``hvm_set_pci_link_route()``): on a Xen host
hvmloader's ``pci_setup()`` writes the PIIX3's PIRQ route registers
(0x60-0x63) and QEMU passes each write on as that dm_op. The lab's domain
starts with hvmloader's routing in place (links A-D to ISA IRQs 5, 10, 11,
5); a route changed later moves the link's asserted sources with it.
"""

from __future__ import annotations

from .. import abi
from . import vpic

#: dm.c: ISA IRQs 0-15, PCI devices 0-31 on segment 0 bus 0, INTA-INTD
NR_ISAIRQS = 16
NR_PCI_DEVICES = 32
NR_PCI_INTX = 4
#: hvm_irq->nr_gsis for a domU (VIOAPIC_NUM_PINS)
NR_GSIS = 48
#: hvmloader routes PCI interrupt links A-D to ISA IRQs 5, 10, 11, 5 (PCI_ISA_IRQ_MASK 0x0c20)
PCI_LINK_ROUTE = (5, 10, 11, 5)
#: asm/hvm/irq.h: NR_LINK
NR_LINKS = 4
IF = 1 << 9


def isa_irq_to_gsi(isa_irq: int) -> int:
    """hvm_isa_irq_to_gsi(): ISA IRQ 0 (the PIT) is wired to IOAPIC pin 2."""
    return isa_irq if isa_irq else 2


def pci_intx_gsi(device: int, intx: int) -> int:
    """hvm_pci_intx_gsi()."""
    return (((device << 2) + (device >> 3) + intx) & 31) + 16


def pci_intx_link(device: int, intx: int) -> int:
    """hvm_pci_intx_link()."""
    return (device + intx) & 3


class HvmIrq:
    """struct hvm_irq, the part the device model's lines use."""

    def __init__(self) -> None:
        self.isa_irq = 0                        # bitmap: ISA IRQs asserted by dm_op
        self.pci_intx = 0                       # bitmap: device * 4 + intx asserted
        self.gsi_assert_count = [0] * NR_GSIS
        self.pci_link_assert_count = [0] * NR_LINKS
        #: pci_link.route: the ISA IRQ each link A-D is routed to, 0 for none (hvmloader's to start)
        self.pci_link_route = list(PCI_LINK_ROUTE)


def state(dom) -> HvmIrq:
    irq = dom.devices.get("hvm_irq")
    if not isinstance(irq, HvmIrq):
        irq = dom.devices["hvm_irq"] = HvmIrq()
    return irq


def link_route(dom, link: int) -> int:
    """The ISA IRQ PCI interrupt link ``link`` is routed to now (0: none); read without
    creating the domain's line state (hvmloader's routing when it has none)."""
    irq = dom.devices.get("hvm_irq")
    return irq.pci_link_route[link] if isinstance(irq, HvmIrq) else PCI_LINK_ROUTE[link]


def _positive_edge(host, dom, isa_irq: int, what: str) -> None:
    """assert_irq(): the vPIC line rises; an unmasked request kicks vCPU 0."""
    v = dom.vcpus[0] if dom.vcpus else None
    vector = vpic.raise_isa_irq(dom, isa_irq)
    if vector is None:
        return
    host.emit(v, "interrupt", vector=vector, source=f"{what}: ISA IRQ {isa_irq} asserted on the emulated PIC")
    master = dom.devices.get("vpic")
    if v is None or master is None or not master.waiting:
        return
    cpu = v.cpu
    src = cpu.irq_source if cpu is not None else None
    if src is not None and hasattr(src, "hint"):
        src.hint = True
    if v.blocked and cpu is not None and cpu.rflags & IF:
        cpu.halted = False
        host.wake(v, "interrupt")


def _negative_edge(dom, isa_irq: int) -> None:
    """deassert_irq() -> vpic_irq_negative_edge(): a request the guest has not taken goes."""
    master = dom.devices.get("vpic")
    if master is None or isa_irq == vpic.CASCADE_IRQ:
        return
    if isa_irq < 8:
        master.irr &= ~(1 << isa_irq)
        master.waiting = bool(master.irr & ~master.imr)
        return
    ports = dom.devices.get("vpic_io")
    slave = getattr(ports, "slave", None)
    if slave is not None:
        slave.irr &= ~(1 << (isa_irq - 8))
        slave.waiting = bool(slave.irr & ~slave.imr)
        vpic.update_cascade(dom)


def isa_irq_assert(host, dom, isa_irq: int, what: str = "XEN_DMOP_set_isa_irq_level") -> None:
    s = state(dom)
    gsi = isa_irq_to_gsi(isa_irq)
    if s.isa_irq >> isa_irq & 1:
        return
    s.isa_irq |= 1 << isa_irq
    s.gsi_assert_count[gsi] += 1
    if s.gsi_assert_count[gsi] == 1:
        _positive_edge(host, dom, isa_irq, what)


def isa_irq_deassert(host, dom, isa_irq: int) -> None:
    s = state(dom)
    gsi = isa_irq_to_gsi(isa_irq)
    if not s.isa_irq >> isa_irq & 1:
        return
    s.isa_irq &= ~(1 << isa_irq)
    s.gsi_assert_count[gsi] -= 1
    if s.gsi_assert_count[gsi] == 0:
        _negative_edge(dom, isa_irq)


def pci_intx_assert(host, dom, device: int, intx: int) -> None:
    s = state(dom)
    bit = 1 << (device * 4 + intx)
    if s.pci_intx & bit:
        return
    s.pci_intx |= bit
    s.gsi_assert_count[pci_intx_gsi(device, intx)] += 1     # the vIOAPIC pin (not delivered)
    link = pci_intx_link(device, intx)
    isa_irq = s.pci_link_route[link]
    s.pci_link_assert_count[link] += 1
    if s.pci_link_assert_count[link] == 1 and isa_irq:
        s.gsi_assert_count[isa_irq] += 1
        if s.gsi_assert_count[isa_irq] == 1:
            _positive_edge(host, dom, isa_irq, f"XEN_DMOP_set_pci_intx_level: 00:{device:02x}.0 "
                                               f"INT{'ABCD'[intx]}, link {link}")


def pci_intx_deassert(host, dom, device: int, intx: int) -> None:
    s = state(dom)
    bit = 1 << (device * 4 + intx)
    if not s.pci_intx & bit:
        return
    s.pci_intx &= ~bit
    s.gsi_assert_count[pci_intx_gsi(device, intx)] -= 1
    link = pci_intx_link(device, intx)
    isa_irq = s.pci_link_route[link]
    s.pci_link_assert_count[link] -= 1
    if s.pci_link_assert_count[link] == 0 and isa_irq:
        s.gsi_assert_count[isa_irq] -= 1
        if s.gsi_assert_count[isa_irq] == 0:
            _negative_edge(dom, isa_irq)


def set_isa_irq_level(host, dom, isa_irq: int, level: int) -> str | None:
    """dm.c set_isa_irq_level(): None when done, else why it is -EINVAL."""
    if not 0 <= isa_irq < NR_ISAIRQS:
        return f"ISA IRQ {isa_irq} is not 0-15"
    if level == 0:
        isa_irq_deassert(host, dom, isa_irq)
    elif level == 1:
        isa_irq_assert(host, dom, isa_irq)
    else:
        return f"level {level} is not 0 or 1"
    return None


def set_pci_intx_level(host, dom, segment: int, bus: int, device: int, intx: int, level: int) -> str | None:
    """dm.c set_pci_intx_level(): None when done, else why it is -EINVAL."""
    if segment != 0 or bus != 0 or not 0 <= device < NR_PCI_DEVICES or not 0 <= intx < NR_PCI_INTX:
        return f"{segment:04x}:{bus:02x}:{device:02x} INT{intx} is not a device of segment 0 bus 0"
    if level == 0:
        pci_intx_deassert(host, dom, device, intx)
    elif level == 1:
        pci_intx_assert(host, dom, device, intx)
    else:
        return f"level {level} is not 0 or 1"
    return None


def set_pci_link_route(host, dom, link: int, isa_irq: int) -> int:
    """hvm_set_pci_link_route() (xen/arch/x86/hvm/irq.c), for XEN_DMOP_set_pci_link_route:
    route PCI interrupt link ``link`` (0-3) to ISA IRQ ``isa_irq`` (1-15; 0 disables it).

    A link with asserted sources moves them: the old ISA IRQ loses one (its line falls with
    its last source) and the new one gains one (its line rises with its first). Returns 0,
    or -EINVAL for a link above 3 or an IRQ above 15."""
    if not 0 <= link < NR_LINKS or not 0 <= isa_irq < NR_ISAIRQS:
        return -abi.ERRNO["EINVAL"]
    s = state(dom)
    old = s.pci_link_route[link]
    if old != isa_irq:
        s.pci_link_route[link] = isa_irq
        if s.pci_link_assert_count[link]:
            if old:
                s.gsi_assert_count[old] -= 1
                if s.gsi_assert_count[old] == 0:
                    _negative_edge(dom, old)
            if isa_irq:
                s.gsi_assert_count[isa_irq] += 1
                if s.gsi_assert_count[isa_irq] == 1:
                    _positive_edge(host, dom, isa_irq, f"XEN_DMOP_set_pci_link_route: link {link}")
    # dprintk(XENLOG_G_INFO, ...): a debug build logs every route set, changed or not
    host.log(f"arch/x86/hvm/irq.c:368: Dom{dom.domid} PCI link {link} changed {old} -> {isa_irq}")
    return 0
