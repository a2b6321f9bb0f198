"""The bare machine's PC: a PCI bus, an IDE disk, an NE2000 card and COM1 on its I/O ports.

They are the very devices an HVM guest's device model emulates (``lab/hw/devices``),
laid out as the lab's firmware lays them out for an HVM guest: the i440FX host bridge,
the PIIX3 ISA bridge and IDE function, the NIC at slot 4 with its I/O BAR at 0xC100.
On bare metal nothing stands between the CPU and them: a port access is one ``ioport``
event and the device's answer, with no VM exit and no ioreq. That is the baseline the
Xen modes' I/O is compared against.

The card's wire ends at a peer answering as 10.0.0.1 (dom0's address on a Xen host),
so the same programs that ping dom0 from a guest ping something here too.
"""

from __future__ import annotations

from collections import deque

from ..dom0.bridge import answer
from ..hw.devices.ide import IdeController, IdeDrive
from ..hw.devices.nic import BAR_SIZE as NIC_BAR_SIZE, Ne2000, ne2k_pci_function
from ..hw.devices.pci import PciHost, add_pc_chipset
from ..hw.devices.serial import Uart16550
from ..hw.diskimage import DiskImage
from ..dom0.qemu import FIRST_NIC_SLOT, NIC_IO_BAR, pci_irq

#: The bare machine's MAC: locally administered, in Xen's 00:16:3e range as the guests' are.
NATIVE_MAC = bytes.fromhex("00163e000002")


class NativeContext:
    """What the devices may do on bare metal: note (kept, bounded), log, raise a PIC line."""

    def __init__(self, machine) -> None:
        self.machine = machine
        self.notes: deque[str] = deque(maxlen=256)
        self.log_lines: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def log(self, text: str) -> None:
        self.log_lines.append(text)

    def set_irq_level(self, line: int, level: bool) -> None:
        # The bare machine has one edge-triggered 8259 (lines 0-7): a rise requests, a fall
        # does nothing; the IDE channels' 14/15 stay unwired, which the lab's drivers do not
        # need (they poll).
        if level and 0 <= line < 8:
            self.machine.pic.raise_irq(line)

    def set_pci_intx_level(self, function, level: bool) -> None:
        # No PCI interrupt router on the bare board: the pin reaches the 8259 line the
        # configuration space's interrupt line names.
        self.set_irq_level(function.get(0x3C, 1), level)


class NativePc:
    """The devices, attached to ``machine.bus``; their state goes with the machine's snapshots."""

    def __init__(self, machine, disk: DiskImage | None, nic: bool = True) -> None:
        self.ctx = NativeContext(machine)
        self.pci = PciHost(self.ctx)
        add_pc_chipset(self.pci)
        self.ide = IdeController(self.ctx)
        if disk is not None:
            self.ide.attach(0, IdeDrive("hda", disk, serial=1))
        self.nic: Ne2000 | None = None
        if nic:
            fn = self.pci.add(FIRST_NIC_SLOT, 0, ne2k_pci_function(pci_irq(FIRST_NIC_SLOT), NIC_IO_BAR))
            self.nic = Ne2000(self.ctx, NATIVE_MAC, fn, label="ne2k_pci 00:04.0")
            self.nic.on_send = self._wire
        # COM1: where the kernel's shell reads what the learner types (its output stays
        # on the debug port, which is the bare machine's console)
        self.serial = Uart16550(self.ctx, on_output=lambda ch: None)
        bus = machine.bus
        bus.attach(range(0xCF8, 0xD00), "pci", self.pci)
        for lo, hi in self.serial.port_ranges():
            bus.attach(range(lo, hi + 1), "serial", self.serial)
        for lo, hi in self.ide.port_ranges():
            bus.attach(range(lo, hi + 1), "ide", self.ide)
        if self.nic is not None:
            bus.attach(range(NIC_IO_BAR, NIC_IO_BAR + NIC_BAR_SIZE), "ne2k", self.nic)

    def _wire(self, frame: bytes) -> None:
        """The cable: the peer at 10.0.0.1 answers ARP and ping as dom0 does on a Xen host."""
        reply, _bad = answer(frame)
        if reply is not None and self.nic is not None:
            self.nic.receive(reply)
