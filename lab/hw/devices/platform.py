"""The Xen platform PCI device (5853:0001) and the emulated-device unplug protocol.

The device tells a guest it runs on Xen and is where PV drivers start: Linux's
``xen-platform-pci`` and the Windows PV drivers bind to it. As QEMU's
``xen-platform`` it has class 0xFF80 (unassigned class, "other"), revision 1,
subsystem 5853:0001, interrupt pin INTA, an I/O BAR of 256 bytes (BAR0) and
a 16 MiB prefetchable memory BAR (BAR1, where PVHVM guests map the grant
table and shared info). ``xen_platform_pci = 0`` in xl.cfg leaves it out, and
with it the unplug protocol.

The fixed ports 0x10-0x1F (``docs/misc/hvm-emulated-unplug.pandoc``)::

    read  word  0x10  magic: 0x49d2, or 0xd249 once the drivers are blacklisted
    read  byte  0x12  protocol version: 1
    write word  0x12  PV driver product number (1 xensource-windows, 2 gplpv-windows,
                      3 linux, 0xffff experimental: public/hvm/pvdrivers.h)
    write dword 0x10  PV driver build number
    write word  0x10  unplug mask: bit 0 all IDE and SCSI disks, bit 1 all NICs,
                      bit 2 IDE disks except the primary master (bit 0 overrides it),
                      bit 3 all NVMe disks
    write byte  0x12  one character of a log line, sent on newline
    read  byte  0x10  platform flags; write byte 0x10 sets them (bit 0: ROM area read-only)

Other accesses read as all ones and are ignored when written. In BAR0,
offset 0 is the platform flags again and offset 8 the log port.

A driver build is blacklisted when (product name, build number) is in the
device model's blacklist or the xenstore node
``/mh/driver-blacklist/{product_name}/{build_number}`` exists and is readable,
as qemu-xen-traditional decided it (upstream QEMU never blacklists).
"""

from __future__ import annotations

from typing import Callable

from . import DeviceContext, ones
from .pci import PciFunction

XEN_VENDOR, XEN_PLATFORM_DEVICE = 0x5853, 0x0001
PLATFORM_CLASS = 0xFF80
PLATFORM_REVISION = 1
FIXED_BASE = 0x10
FIXED_END = 0x1F
MAGIC, MAGIC_BLACKLISTED = 0x49D2, 0xD249
PROTOCOL_VERSION = 1
BAR0_SIZE = 0x100
BAR1_SIZE = 0x1000000

UNPLUG_ALL_DISKS, UNPLUG_ALL_NICS, UNPLUG_AUX_IDE_DISKS, UNPLUG_NVME_DISKS = 1, 2, 4, 8
PRODUCTS = {0x0001: "xensource-windows", 0x0002: "gplpv-windows", 0x0003: "linux", 0xFFFF: "experimental"}
LOG_MAX = 4095


def describe_mask(mask: int) -> str:
    parts = []
    if mask & UNPLUG_ALL_DISKS:
        parts.append("all IDE and SCSI disks")
    if mask & UNPLUG_ALL_NICS:
        parts.append("all NICs")
    if mask & UNPLUG_AUX_IDE_DISKS:
        parts.append("IDE disks but the primary master" + (" (overridden by bit 0)" if mask & 1 else ""))
    if mask & UNPLUG_NVME_DISKS:
        parts.append("all NVMe disks")
    if mask & ~0xF:
        parts.append(f"undefined bits {mask & ~0xF:#x}")
    return ", ".join(parts) or "nothing"


class XenPlatform:
    name = "xen-platform"

    def __init__(self, ctx: DeviceContext, pci: PciFunction,
                 unplug: Callable[[int], list[str]], blacklisted: Callable[[str, int], bool],
                 xen_log: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.pci = pci
        self._unplug = unplug
        self._blacklisted = blacklisted
        self._xen_log = xen_log
        self.flags = 0
        self.product: int | None = None
        self.build: int | None = None
        self.drivers_blacklisted = False
        self.unplug_mask = 0               # every bit the guest has written, or-ed
        self.log_lines: list[str] = []
        self._log = bytearray()

    def port_ranges(self) -> list[tuple[int, int]]:
        out = [(FIXED_BASE, FIXED_END)]
        b = self.pci.bar_address(0)
        if b is not None:
            out.append((b, b + BAR0_SIZE - 1))
        return out

    # -- BAR1, its memory space ------------------------------------------------------------
    mmio_name = "xen-platform BAR1 (platform_mmio)"

    def mmio_read(self, off: int, size: int) -> int:
        """QEMU's platform_mmio_read() (hw/i386/xen/xen_platform.c): nothing there, reads 0."""
        self.ctx.note(f"xen-platform: read of BAR1 offset {off:#x}: nothing is emulated there, QEMU answers 0")
        return 0

    def mmio_write(self, off: int, size: int, value: int) -> None:
        """platform_mmio_write(): the write is dropped."""
        self.ctx.note(f"xen-platform: write of {value:#x} to BAR1 offset {off:#x}: QEMU drops it")

    # -- port access ---------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if FIXED_BASE <= port <= FIXED_END:
            return self._fixed_read(port - FIXED_BASE, size)
        b = self.pci.bar_address(0)
        if b is not None and port == b and size == 1:
            return self.flags
        return ones(size)

    def io_write(self, port: int, size: int, value: int) -> None:
        if FIXED_BASE <= port <= FIXED_END:
            self._fixed_write(port - FIXED_BASE, size, value & ones(size))
            return
        b = self.pci.bar_address(0)
        if b is None or size != 1:
            return
        if port == b:
            self._set_flags(value & 0xFF)
        elif port == b + 8:
            self._log_byte(value & 0xFF)

    def _fixed_read(self, off: int, size: int) -> int:
        if size == 2 and off == 0:
            magic = MAGIC_BLACKLISTED if self.drivers_blacklisted else MAGIC
            self.ctx.note(f"xen-platform: magic {magic:#06x} read at 0x10"
                          + (" (these drivers are blacklisted)" if self.drivers_blacklisted
                             else " (the unplug protocol is here)"))
            return magic
        if size == 1 and off == 2:
            self.ctx.note(f"xen-platform: protocol version {PROTOCOL_VERSION} read at 0x12")
            return PROTOCOL_VERSION
        if size == 1 and off == 0:
            return self.flags
        return ones(size)

    def _fixed_write(self, off: int, size: int, value: int) -> None:
        if size == 2 and off == 0:
            self._do_unplug(value)
        elif size == 2 and off == 2:
            self.product = value
            name = PRODUCTS.get(value, "unknown product")
            self.ctx.note(f"xen-platform: PV driver product {value} ({name}) written at 0x12")
        elif size == 4 and off == 0:
            self.build = value
            name = PRODUCTS.get(self.product or 0)
            self.drivers_blacklisted = name is not None and self._blacklisted(name, value)
            verdict = ("blacklisted: the magic now reads 0xd249" if self.drivers_blacklisted
                       else "not blacklisted")
            self.ctx.note(f"xen-platform: PV driver build {value} written at 0x10 "
                          f"({name or 'no known product'}): {verdict}")
        elif size == 1 and off == 0:
            self._set_flags(value)
        elif size == 1 and off == 2:
            self._log_byte(value)
        else:
            self.ctx.note(f"xen-platform: {size}-byte write of {value:#x} at {FIXED_BASE + off:#x}: ignored")

    def _set_flags(self, value: int) -> None:
        self.flags = value & 0x01
        self.ctx.note(f"xen-platform: platform flags {self.flags:#x} "
                      f"(ROM area 0xC0000-0xFFFFF {'read-only' if self.flags else 'read-write'})")

    def _do_unplug(self, mask: int) -> None:
        self.unplug_mask |= mask
        gone = self._unplug(mask)
        what = ", ".join(gone) if gone else "no device was there to unplug"
        extra = " (by blacklisted drivers)" if self.drivers_blacklisted else ""
        self.ctx.note(f"xen-platform: unplug mask {mask:#06x} written at 0x10{extra}: {describe_mask(mask)}: {what}")

    def _log_byte(self, value: int) -> None:
        if value == 0x0A or len(self._log) >= LOG_MAX:
            line = self._log.decode("latin-1")
            self._log.clear()
            self.log_lines.append(line)
            self._xen_log(line)
            self.ctx.note(f"xen-platform: log line from the guest's PV drivers: {line!r}")
        else:
            self._log.append(value)
