"""Xen's intercept table: which of Xen's own emulated devices takes an HVM access.

Every port or MMIO access an HVM vCPU makes that leaves the guest reaches
``hvmemul_do_io()`` (arch/x86/hvm/emulate.c), which asks ``hvm_io_intercept()``
(arch/x86/hvm/intercept.c) first: each device Xen emulates itself registered
a handler when the domain was built, a port range with
``register_portio_handler()`` or an MMIO range with ``register_mmio_handler()``
(a ``struct hvm_mmio_ops`` whose ``check`` says whether an address is its).
The first handler that accepts the access carries it out, in Xen. Only when
none does (or the handler answers X86EMUL_UNHANDLEABLE, as the RTC does for
CMOS bytes past its clock) does the access go on to an ioreq server, the
device model in dom0, and when no server claims it either, to Xen's
``null_handler`` (reads all ones, writes dropped).

The handlers hold device keys, not callables: the devices live in
``dom.devices`` and their state goes with the domain's snapshots.
"""

from __future__ import annotations

from typing import Any

#: How the trace's ``emulator`` field names who carried an access out.
EMULATOR_XEN = "xen"
EMULATOR_DM = "device model"


def _ones(size: int) -> int:
    return (1 << (8 * size)) - 1


class PortioHandler:
    """register_portio_handler(d, port, size, action): the ports [port, port + size)."""

    def __init__(self, port: int, size: int, device: str) -> None:
        self.port = port
        self.size = size
        self.device = device

    def accept(self, dom, port: int, size: int) -> bool:
        # hvm_portio_accept(): the whole access must lie inside the range.
        return self.port <= port and port + size <= self.port + self.size


class MovablePortioHandler(PortioHandler):
    """A port handler whose range follows an HVM param (pmtimer_change_ioport())."""

    def __init__(self, device: str, size: int, offset: int) -> None:
        super().__init__(0, size, device)
        self.offset = offset

    def accept(self, dom, port: int, size: int) -> bool:
        base = dom.devices[self.device].base(dom) + self.offset
        return base <= port and port + size <= base + self.size


class IoIntercept:
    """One domain's table of Xen-internal I/O handlers, in registration order.

    A port access asks only the handlers that could take it: those whose range holds
    its first port, and those whose range moves (an HVM param places them), still in
    registration order. That dispatch table is worked out from the handlers once
    and again whenever they are not the ones it was made from.
    """

    NOT_STATE = ("_by_port", "_dispatch_from")

    def __init__(self) -> None:
        self.portio: list[PortioHandler] = []
        self.mmio: list[str] = []                   # device keys; each device's check() decides
        self._by_port: dict[int, tuple[PortioHandler, ...]] = {}
        self._dispatch_from: list[PortioHandler] = []

    def port_handlers(self, port: int) -> tuple[PortioHandler, ...]:
        """The handlers that may accept an access starting at ``port``, in registration order."""
        if self._dispatch_from != self.portio:      # new handlers, or others restored
            self._by_port = {}
            self._dispatch_from = list(self.portio)
        found = self._by_port.get(port)
        if found is None:
            if len(self._by_port) >= 1024:          # bounded, whatever ports a guest tries
                self._by_port.clear()
            found = self._by_port[port] = tuple(
                h for h in self._dispatch_from
                if isinstance(h, MovablePortioHandler) or h.port <= port < h.port + h.size)
        return found

    def register_portio_handler(self, port: int, size: int, device: str) -> None:
        self.portio.append(PortioHandler(port, size, device))

    def register_movable_portio_handler(self, device: str, offset: int, size: int) -> None:
        self.portio.append(MovablePortioHandler(device, size, offset))

    def register_mmio_handler(self, device: str) -> None:
        self.mmio.append(device)

    def claimed_ports(self, dom) -> list[tuple[int, int, str]]:
        """(first port, last port, device) of every port handler, for the docs and ``xl``-style views."""
        out = []
        for h in self.portio:
            port = h.port
            if isinstance(h, MovablePortioHandler):
                port = dom.devices[h.device].base(dom) + h.offset
            out.append((port, port + h.size - 1, h.device))
        return out


def table(dom) -> IoIntercept | None:
    found = dom.devices.get("intercept")
    return found if isinstance(found, IoIntercept) else None


def port_io(host, v, port: int, size: int, direction: str, value: int) -> tuple[int, str] | None:
    """hvm_io_intercept() for a port access: (the value read or written, the device's name),
    or None when no Xen handler carried it out (it goes on to the device model)."""
    dom = v.domain
    tab = table(dom)
    if tab is None:
        return None
    for h in tab.port_handlers(port):
        if not h.accept(dom, port, size):
            continue
        device = dom.devices.get(h.device)
        if device is None:
            continue
        if direction == "in":
            # hvm_portio_read(): the handler starts from ~0 and may leave it so.
            got = device.port_read(host, v, port, size)
            if got is None:
                return None                     # X86EMUL_UNHANDLEABLE: on to the ioreq servers
            return got & _ones(size), device.name
        done = device.port_write(host, v, port, size, value & _ones(size))
        if done is False:
            return None
        return value & _ones(size), device.name
    return None


def mmio_handler(host, v, gpa: int, size: int) -> Any | None:
    """hvm_find_io_handler() for an MMIO access: the device whose check() takes its first byte.

    hvm_mmio_accept(): a device that takes the first byte but not the last is an access
    across the end of its range, and Xen crashes the domain for it.
    """
    dom = v.domain
    tab = table(dom)
    if tab is None:
        return None
    for key in tab.mmio:
        device = dom.devices.get(key)
        if device is None or not device.check(v, gpa):
            continue
        if size > 1 and not device.check(v, gpa + size - 1):
            host.crash(dom, f"{device.name}: a {size}-byte access at {gpa:#x} crosses the end of its "
                            f"MMIO range (hvm_mmio_accept)", v)
            return None
        return device
    return None


def register_name(device, gpa: int) -> str:
    """The register of an MMIO device an address names, for the trace."""
    named = getattr(device, "register_name", None)
    if named is not None:
        return named(gpa)
    return f"offset {gpa & 0xFFF:#x}"
