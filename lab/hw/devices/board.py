"""The platform devices of the bare machine: PIC, PIT, debug console, I/O bus.

Only what a periodic tick and console output need, but each speaks its real
port protocol so a kernel programs it the way a real kernel does: the 8259A
PIC through its ICW/OCW sequence on ports 0x20/0x21, the 8254 PIT through
its mode/command register 0x43 and channel 0 at 0x40, and the debug console
on port 0xE9 (the port Bochs, QEMU and Xen's HVM guests use for early output).
"""

from __future__ import annotations

from typing import Any, Callable

from ..consolelog import ConsoleLog

PIT_HZ = 1_193_182     # the 8254's input clock


class Pic8259:
    """A master 8259A: eight IRQ lines, a vector base, a mask, in-service bits."""

    name = "pic"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.vector_base = 0x08       # the BIOS default; kernels remap it
        self.imr = 0xFF               # every line masked until programmed
        self.irr = 0
        self.isr = 0
        self.init_step = 0            # 0 = not initialising; 2..4 = expecting ICWn
        self.icw4_needed = False
        self.auto_eoi = False
        self.waiting = False          # an unmasked line is requesting (cheap for the CPU to poll)

    def _update(self) -> None:
        self.waiting = bool(self.irr & ~self.imr)

    # -- lines ------------------------------------------------------------
    def raise_irq(self, line: int) -> None:
        self.irr |= 1 << line
        self._update()

    def pending(self) -> int | None:
        ready = self.irr & ~self.imr
        if not ready:
            return None
        line = (ready & -ready).bit_length() - 1
        # A line of equal or higher priority in service blocks delivery.
        if self.isr and (self.isr & -self.isr).bit_length() - 1 <= line:
            return None
        return self.vector_base + line

    def ack(self) -> int | None:
        vector = self.pending()
        if vector is None:
            return None
        line = vector - self.vector_base
        self.irr &= ~(1 << line)
        if not self.auto_eoi:
            self.isr |= 1 << line
        self._update()
        return vector

    # -- ports ------------------------------------------------------------
    def port_out(self, port: int, value: int) -> None:
        if port == 0x20:
            if value & 0x10:              # ICW1: start initialisation
                self.init_step = 2
                self.icw4_needed = bool(value & 1)
                self.imr = 0
                self.isr = 0
                self.irr = 0
            elif value & 0x20:            # OCW2: EOI (specific or not)
                if value & 0x40:
                    self.isr &= ~(1 << (value & 7))
                elif self.isr:
                    self.isr &= self.isr - 1
        elif port == 0x21:
            if self.init_step == 2:
                self.vector_base = value & 0xF8
                self.init_step = 3
            elif self.init_step == 3:
                self.init_step = 4 if self.icw4_needed else 0
            elif self.init_step == 4:
                self.auto_eoi = bool(value & 2)
                self.init_step = 0
            else:
                self.imr = value
        self._update()

    def port_in(self, port: int) -> int:
        if port == 0x21:
            return self.imr
        return self.irr

    def snapshot(self) -> dict:
        return dict(self.__dict__)

    def restore(self, s: dict) -> None:
        self.__dict__.update(s)


class Pit8254:
    """Channel 0 of the 8254 in rate-generator or square-wave mode, on IRQ 0."""

    def __init__(self, cpu_hz: int, now: Callable[[], int]) -> None:
        self.cpu_hz = cpu_hz
        self.now = now
        self.reset()

    def reset(self) -> None:
        self.divisor = 0
        self.mode = 0
        self.latch_low: int | None = None
        self.access = 3
        self.start_cycle = 0
        self.fired = 0
        self.running = False

    def period_cycles(self) -> int:
        div = self.divisor or 0x10000
        return max(1, div * self.cpu_hz // PIT_HZ)

    def next_fire(self) -> int | None:
        if not self.running:
            return None
        return self.start_cycle + (self.fired + 1) * self.period_cycles()

    def tick(self, now: int, raise_irq: Callable[[int], None]) -> int:
        """Fire every period that has elapsed by ``now``; return how many fired."""
        n = 0
        while self.running and self.next_fire() <= now:
            self.fired += 1
            n += 1
            raise_irq(0)
        return n

    def port_in(self, port: int) -> int:
        return 0xFF   # reading back the count is not modelled

    def port_out(self, port: int, value: int) -> None:
        now = self.now()
        if port == 0x43:
            channel = value >> 6
            if channel != 0:
                return
            self.access = (value >> 4) & 3
            self.mode = (value >> 1) & 7
            self.latch_low = None
            self.running = False
        elif port == 0x40:
            if self.access == 3:
                if self.latch_low is None:
                    self.latch_low = value
                    return
                self.divisor = self.latch_low | (value << 8)
                self.latch_low = None
            elif self.access == 1:
                self.divisor = value
            else:
                self.divisor = value << 8
            self.start_cycle = now
            self.fired = 0
            self.running = self.mode in (2, 3)

    def snapshot(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "now"}

    def restore(self, s: dict) -> None:
        self.__dict__.update(s)


class DebugConsole:
    """Port 0xE9: each byte written is a character of console output.

    Bounded as the Xen host's consoles are (lab/hw/consolelog.py): the output
    keeps its newest ``XENCONSOLE_LIMIT`` characters, and a line with no newline
    is handed on once it is ``LINE_MAX`` long, so a kernel printing without
    end costs the same per byte and holds the same memory after an hour as
    after a second."""

    #: A held line is passed on at this length (Xen holds a guest's line in 256 bytes,
    #: struct domain_console in xen/include/xen/sched.h; the bare machine does the same).
    LINE_MAX = 255

    def __init__(self, on_line: Callable[[str], object]) -> None:
        self.on_line = on_line
        self.buffer = ""
        self.log = ConsoleLog()

    @property
    def output(self) -> str:
        """What is kept of everything printed (all of it below the bound)."""
        return self.log.text

    def port_in(self, port: int) -> int:
        return 0xE9   # Bochs convention: reading the port tells software it exists

    def port_out(self, port: int, value: int) -> None:
        self.put(value)

    def put(self, value: int) -> None:
        ch = chr(value & 0xFF)
        self.log.append(ch)
        if ch == "\n":
            self.on_line(self.buffer)
            self.buffer = ""
        else:
            self.buffer += ch          # at most LINE_MAX long: the copy is bounded
            if len(self.buffer) >= self.LINE_MAX:
                self.on_line(self.buffer)
                self.buffer = ""

    def flush(self) -> None:
        if self.buffer:
            self.on_line(self.buffer)
            self.buffer = ""


class IoBus:
    """Routes port I/O to the device that claims the port; unclaimed reads are all ones.

    Two kinds of device plug in: the platform's own byte-wide ones
    (``port_in(port)`` / ``port_out(port, value)``) and PC devices that see the
    access size (``io_read(port, size)`` / ``io_write(port, size, value)``), as
    an IDE data port or a PCI configuration register must.
    """

    def __init__(self, emit: Callable[..., Any], now: Callable[[], int]) -> None:
        self.emit = emit
        self.now = now
        self.devices: list[tuple[range, str, Any, bool]] = []

    def attach(self, ports: range, name: str, device: Any) -> None:
        self.devices.append((ports, name, device, hasattr(device, "io_read")))

    def _find(self, port: int) -> tuple[str | None, Any, bool]:
        for ports, name, dev, sized in self.devices:
            if port in ports:
                return name, dev, sized
        return None, None, False

    def port_in(self, cpu, port: int, size: int) -> int:
        name, dev, sized = self._find(port)
        mask = (1 << (8 * size)) - 1
        if dev is None:
            value = mask
        else:
            value = (dev.io_read(port, size) if sized else dev.port_in(port)) & mask
        self.emit("ioport", port=port, size=size, dir="in", value=value, device=name or "none")
        return value

    def port_out(self, cpu, port: int, size: int, value: int) -> None:
        name, dev, sized = self._find(port)
        self.emit("ioport", port=port, size=size, dir="out", value=value, device=name or "none")
        if dev is not None:
            if sized:
                dev.io_write(port, size, value & ((1 << (8 * size)) - 1))
            else:
                dev.port_out(port, value)


class PowerControl:
    """ACPI PM1a control at port 0x604, as QEMU's q35 machine has it: SLP_EN|S5 powers off."""

    SLP_EN = 0x2000

    def __init__(self, power_off: Callable[[], None]) -> None:
        self.power_off = power_off

    def port_in(self, port: int) -> int:
        return 0

    def port_out(self, port: int, value: int) -> None:
        if value & self.SLP_EN:
            self.power_off()
