"""The PC's devices: the board's PIC, PIT and debug port (``board``), and the
IDE disk, NE2000 NIC, 16550 UART, PCI host, ACPI PM block and Xen platform PCI
device that a bare PC carries and that QEMU, in dom0, emulates for an HVM guest.

They are hardware, so they live in the hardware layer: the bare machine plugs
them in directly (``lab.session.native_pc``) and the device model wraps them
(``lab.dom0.qemu``). Each device is plain Python that speaks its hardware's register protocol on
I/O ports. A device never reaches into Xen: it talks to the world through a
:class:`DeviceContext` that the device model gives it (a note for the trace,
a line for a log, an interrupt line to raise and lower, the serial console). Unit tests
hand devices a :class:`RecordingContext` instead and read what they did.

Every device answers any access, whatever its size or value, without raising:
a register it does not have reads as all ones (or as the hardware would) and a
write to it is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from .pci import PciFunction


class DeviceContext(Protocol):
    def note(self, text: str) -> None:
        """A device-level event: what the device did with the current access."""

    def log(self, text: str) -> None:
        """A line for the device model's log (QEMU's stderr / qemu-dm-NAME.log)."""

    def set_irq_level(self, line: int, level: bool) -> None:
        """An ISA device's interrupt ``line`` rises (True) or falls (False)."""

    def set_pci_intx_level(self, function: "PciFunction", level: bool) -> None:
        """A PCI function's interrupt pin (its INTx, config offset 0x3d) rises or falls."""


class RecordingContext:
    """A context that keeps everything (for tests and for devices used on their own)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.logs: list[str] = []
        self.irqs: list[tuple[int, bool]] = []          # (ISA line, level), each change
        self.intx: list[tuple["PciFunction", bool]] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def log(self, text: str) -> None:
        self.logs.append(text)

    def set_irq_level(self, line: int, level: bool) -> None:
        self.irqs.append((line, level))

    def set_pci_intx_level(self, function: "PciFunction", level: bool) -> None:
        self.intx.append((function, level))


def ones(size: int) -> int:
    """What a read of ``size`` bytes from nothing returns: all ones."""
    return (1 << (8 * size)) - 1


def split_read(read_byte: Callable[[int], int], port: int, size: int) -> int:
    """A multi-byte read of byte-wide registers, one byte per port, little endian."""
    value = 0
    for i in range(size):
        value |= (read_byte(port + i) & 0xFF) << (8 * i)
    return value


def split_write(write_byte: Callable[[int, int], None], port: int, size: int, value: int) -> None:
    for i in range(size):
        write_byte(port + i, (value >> (8 * i)) & 0xFF)
