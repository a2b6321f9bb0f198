"""PCI configuration space, reached through configuration mechanism #1.

The guest writes an address to port 0xCF8 and reads or writes the register it
names through ports 0xCFC-0xCFF (PCI Local Bus Specification 3.0, 3.2.2.3.2)::

    bit 31      enable
    bits 23-16  bus        bits 15-11  device     bits 10-8  function
    bits 7-2    register (dword); the low two bits come from the data port used

Each function has 256 bytes of configuration space with a type 0 header:
vendor and device IDs, command and status, revision, class code, header type,
six base address registers (BARs), subsystem IDs and the interrupt line and
pin. Writes go through a per-byte write mask as in QEMU, so read-only
registers keep their value; a BAR keeps only the address bits its size allows,
which is how a guest sizes it (write all ones, read back). Only bus 0 exists. A
function that is not there reads as all ones, as on real hardware, and that is
how enumeration finds the end of the bus.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import DeviceContext, ones

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC

# Header registers (type 0)
VENDOR_ID, DEVICE_ID, COMMAND, STATUS = 0x00, 0x02, 0x04, 0x06
REVISION, PROG_IF, SUBCLASS, CLASS = 0x08, 0x09, 0x0A, 0x0B
CACHE_LINE, LATENCY, HEADER_TYPE = 0x0C, 0x0D, 0x0E
BAR0 = 0x10
SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID = 0x2C, 0x2E
ROM_ADDRESS, CAP_PTR = 0x30, 0x34
INTERRUPT_LINE, INTERRUPT_PIN = 0x3C, 0x3D

CMD_IO, CMD_MEMORY, CMD_MASTER = 0x1, 0x2, 0x4
#: Command bits a guest may change (QEMU's default wmask): I/O, memory, bus master,
#: parity, SERR, INTx disable.
CMD_WMASK = 0x0547
HEADER_MULTIFUNCTION = 0x80

#: QEMU gives its devices this subsystem when the device names none
#: (PCI_SUBVENDOR_ID_REDHAT_QUMRANET, PCI_SUBDEVICE_ID_QEMU).
QEMU_SUBSYSTEM = (0x1AF4, 0x1100)


@dataclass(frozen=True)
class Bar:
    index: int
    space: str               # "io" or "mem"
    size: int                # a power of two
    prefetch: bool = False


class PciFunction:
    """One function's configuration space."""

    def __init__(self, name: str, vendor: int, device: int, class_id: int, *, prog_if: int = 0,
                 revision: int = 0, subsystem: tuple[int, int] | None = QEMU_SUBSYSTEM, multifunction: bool = False,
                 interrupt_pin: int = 0, interrupt_line: int = 0, bars: tuple[Bar, ...] = (),
                 command: int = 0) -> None:
        self.name = name
        self.config = bytearray(256)
        self.wmask = bytearray(256)
        self.bars = {b.index: b for b in bars}
        self.present = True
        self._put(VENDOR_ID, 2, vendor)
        self._put(DEVICE_ID, 2, device)
        self._put(REVISION, 1, revision)
        self._put(PROG_IF, 1, prog_if)
        self._put(SUBCLASS, 2, class_id)
        self._put(HEADER_TYPE, 1, HEADER_MULTIFUNCTION if multifunction else 0)
        if subsystem is not None:
            self._put(SUBSYSTEM_VENDOR_ID, 2, subsystem[0])
            self._put(SUBSYSTEM_ID, 2, subsystem[1])
        self._put(INTERRUPT_PIN, 1, interrupt_pin)
        self._put(INTERRUPT_LINE, 1, interrupt_line)
        self._put(COMMAND, 2, command)
        self._mask(COMMAND, 2, CMD_WMASK)
        self._mask(CACHE_LINE, 1, 0xFF)
        self._mask(LATENCY, 1, 0xFF)
        self._mask(INTERRUPT_LINE, 1, 0xFF)
        for b in bars:
            off = BAR0 + 4 * b.index
            if b.space == "io":
                self._put(off, 4, 0x1)
                self._mask(off, 4, ~(b.size - 1) & 0xFFFFFFFC)
            else:
                self._put(off, 4, 0x8 if b.prefetch else 0x0)
                self._mask(off, 4, ~(b.size - 1) & 0xFFFFFFF0)

    def _put(self, off: int, size: int, value: int) -> None:
        self.config[off:off + size] = (value & ones(size)).to_bytes(size, "little")

    def _mask(self, off: int, size: int, value: int) -> None:
        self.wmask[off:off + size] = (value & ones(size)).to_bytes(size, "little")

    def get(self, off: int, size: int) -> int:
        return int.from_bytes(self.config[off:off + size], "little")

    # -- guest access ----------------------------------------------------------
    def read(self, off: int, size: int) -> int:
        value = 0
        for i in range(size):
            o = off + i
            value |= (self.config[o] if 0 <= o < 256 else 0xFF) << (8 * i)
        return value

    def write(self, off: int, size: int, value: int) -> None:
        for i in range(size):
            o = off + i
            if not 0 <= o < 256:
                continue
            m = self.wmask[o]
            self.config[o] = (self.config[o] & ~m & 0xFF) | ((value >> (8 * i)) & m)

    # -- what the device sees --------------------------------------------------
    @property
    def vendor(self) -> int:
        return self.get(VENDOR_ID, 2)

    @property
    def device(self) -> int:
        return self.get(DEVICE_ID, 2)

    @property
    def class_id(self) -> int:
        return self.get(SUBCLASS, 2)

    def set_bar(self, index: int, address: int) -> None:
        """Program a BAR as firmware would."""
        b = self.bars[index]
        off = BAR0 + 4 * index
        low = self.get(off, 4) & (0x3 if b.space == "io" else 0xF)
        self._put(off, 4, (address & ~(b.size - 1)) | low)

    def bar_address(self, index: int) -> int | None:
        """Where BAR ``index`` decodes now, or None (decoding off, unassigned, beyond 64 KiB for I/O)."""
        b = self.bars.get(index)
        if b is None or not self.present:
            return None
        cmd = self.get(COMMAND, 2)
        raw = self.get(BAR0 + 4 * index, 4)
        if b.space == "io":
            if not cmd & CMD_IO:
                return None
            base = raw & ~(b.size - 1) & 0xFFFFFFFC
            if base == 0 or base + b.size - 1 > 0xFFFF:
                return None
            return base
        if not cmd & CMD_MEMORY:
            return None
        base = raw & ~(b.size - 1) & 0xFFFFFFF0
        return base or None

    def describe(self) -> str:
        rev = self.get(REVISION, 1)
        return f"[{self.vendor:04x}:{self.device:04x}] class {self.class_id:04x} rev {rev:02x} {self.name}"


class PciHost:
    """The host bridge's configuration mechanism on ports 0xCF8-0xCFF, and bus 0."""

    name = "pci"

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx
        self.address = 0
        self.functions: dict[tuple[int, int], PciFunction] = {}

    def add(self, slot: int, fn: int, function: PciFunction) -> PciFunction:
        self.functions[(slot, fn)] = function
        return function

    def lookup(self, bus: int, slot: int, fn: int) -> PciFunction | None:
        if bus != 0:
            return None
        f = self.functions.get((slot, fn))
        return f if f is not None and f.present else None

    def remove(self, function: PciFunction) -> None:
        """Hot-unplug: the function vanishes from the bus (its config space reads all ones)."""
        function.present = False

    def port_ranges(self) -> list[tuple[int, int]]:
        return [(CONFIG_ADDRESS, CONFIG_DATA + 3)]

    @staticmethod
    def bdf(bus: int, slot: int, fn: int) -> str:
        return f"{bus:02x}:{slot:02x}.{fn}"

    def _target(self, port: int) -> tuple[PciFunction | None, str, int]:
        a = self.address
        bus, slot, fn = (a >> 16) & 0xFF, (a >> 11) & 0x1F, (a >> 8) & 0x7
        reg = (a & 0xFC) | (port & 3)
        return self.lookup(bus, slot, fn), self.bdf(bus, slot, fn), reg

    def io_read(self, port: int, size: int) -> int:
        if port < CONFIG_DATA:
            if port == CONFIG_ADDRESS and size == 4:
                return self.address
            return ones(size)                  # only a dword access reaches CONFIG_ADDRESS
        if not self.address & 0x80000000:
            self.ctx.note(f"PCI: config data read with the enable bit clear in {self.address:#010x}: all ones")
            return ones(size)
        f, where, reg = self._target(port)
        if f is None:
            self.ctx.note(f"PCI: read {where} reg {reg:#04x}: no such function, all ones")
            return ones(size)
        value = f.read(reg, size)
        self.ctx.note(f"PCI: read {where} reg {reg:#04x} size {size} = {value:#x} ({f.name})")
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        if port < CONFIG_DATA:
            if port == CONFIG_ADDRESS and size == 4:
                self.address = value & 0xFFFFFFFF
            return
        if not self.address & 0x80000000:
            return
        f, where, reg = self._target(port)
        if f is None:
            self.ctx.note(f"PCI: write {where} reg {reg:#04x}: no such function, ignored")
            return
        f.write(reg, size, value)
        self.ctx.note(f"PCI: write {where} reg {reg:#04x} size {size} = {value:#x} ({f.name}); "
                      f"now {f.read(reg & 0xFC, 4):#010x}")

    def enumerate(self) -> list[str]:
        """What ``lspci -nn`` would list, in bus order."""
        out = []
        for (slot, fn) in sorted(self.functions):
            f = self.functions[(slot, fn)]
            if f.present:
                out.append(f"{self.bdf(0, slot, fn)} {f.describe()}")
        return out


def add_pc_chipset(pci: PciHost) -> PciFunction:
    """QEMU's PC chipset on bus 0: the i440FX host bridge (00:00.0), the PIIX3 ISA bridge
    (00:01.0) and the PIIX3 IDE function (00:01.1, legacy ports, both channels decoded).
    Returns the IDE function."""
    pci.add(0, 0, PciFunction("i440FX host bridge", 0x8086, 0x1237, 0x0600, revision=0x02))
    pci.add(1, 0, PciFunction("PIIX3 ISA bridge", 0x8086, 0x7000, 0x0601, multifunction=True))
    ide_fn = pci.add(1, 1, PciFunction("PIIX3 IDE", 0x8086, 0x7010, 0x0101, prog_if=0x80,
                                       command=CMD_IO | CMD_MASTER))
    ide_fn._put(0x40, 2, 0x8000)          # IDETIM: primary channel decode enable
    ide_fn._put(0x42, 2, 0x8000)          # IDETIM: secondary channel decode enable
    return ide_fn
