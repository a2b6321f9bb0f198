"""A 16550A UART: the guest's COM1 at ports 0x3F8-0x3FF, IRQ 4.

=======  ==========================  =====================================
offset   read                        write
=======  ==========================  =====================================
0        RBR receive buffer          THR transmit holding
         (DLL divisor low when LCR bit 7, DLAB, is set)
1        IER interrupt enable        IER (bits 0-3: RDA, THRE, RLS, MSI)
         (DLM divisor high when DLAB is set)
2        IIR interrupt identity      FCR FIFO control
3        LCR line control            LCR
4        MCR modem control           MCR (bit 4 loopback)
5        LSR line status             (ignored)
6        MSR modem status            (ignored)
7        SCR scratch                 SCR
=======  ==========================  =====================================

LSR bits: DR 0x01 (a byte is waiting), OE 0x02 (overrun, only in loopback),
THRE 0x20 and TEMT 0x40 (transmitter empty). IIR values: 0x01 nothing
pending, 0x06 line status, 0x04 data ready, 0x02 THR empty, 0x00 modem
status; bits 6-7 are set when the FIFOs are on.

Transmission takes no time: a byte written to THR is on the line at once, so
THRE and TEMT stay set and the baud rate (115200 / divisor) only shows in the
trace. Bytes sent go to the domain's serial log (what ``xl console`` shows for
an HVM guest), its newest ``OUTPUT_LIMIT`` bytes (a guest sends as much as it
likes; the log drops a sixteenth of it at a time from the front). Console input waits in a queue and enters the receive buffer
as room appears (one byte, or 16 with the FIFO on), as QEMU only hands the
UART what it can take, so input is never lost. IRQ 4 is up while an enabled
interrupt is pending (IIR is not 0x01) and down when none is: received data
until RBR is read, THR empty until IIR is read or a byte is written, line
status until LSR is read.
"""

from __future__ import annotations

from typing import Callable

from ..consolelog import XENCONSOLE_LIMIT
from . import DeviceContext, split_read, split_write

COM1 = 0x3F8
COM1_IRQ = 4

DR, OE, THRE, TEMT = 0x01, 0x02, 0x20, 0x40
IER_RDA, IER_THRE, IER_RLS, IER_MSI = 0x01, 0x02, 0x04, 0x08
IIR_NONE, IIR_RLS, IIR_RDA, IIR_THRE, IIR_MSI = 0x01, 0x06, 0x04, 0x02, 0x00
LCR_DLAB = 0x80
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
#: What the serial log keeps of a guest's output: as much as xenconsoled keeps of a console (console/limit)
OUTPUT_LIMIT = XENCONSOLE_LIMIT
UART_CLOCK = 1_843_200          # the crystal: 115200 baud at divisor 1
REG_NAMES = ("RBR/THR", "IER", "IIR/FCR", "LCR", "MCR", "LSR", "MSR", "SCR")


class Uart16550:
    name = "serial"

    def __init__(self, ctx: DeviceContext, base: int = COM1, irq: int = COM1_IRQ,
                 on_output: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.base = base
        self.irq = irq
        self.on_output = on_output
        self.output = bytearray()         # the newest bytes the guest sent (at most output_limit)
        self.output_limit = OUTPUT_LIMIT
        self.pending = bytearray()        # console input not yet in the receive buffer
        self.reset()

    def reset(self) -> None:
        # QEMU's reset values: 9600 baud (divisor 12), OUT2 set, modem lines up.
        self.divisor = 12
        self.ier = 0
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.scr = 0
        self.fcr = 0
        self.rx = bytearray()
        self.overrun = False
        self.thr_ipending = False
        self.msr_delta = 0
        self.irq_pending = False

    def port_ranges(self) -> list[tuple[int, int]]:
        return [(self.base, self.base + 7)]

    @property
    def fifo(self) -> bool:
        return bool(self.fcr & 0x01)

    @property
    def baud(self) -> int:
        return UART_CLOCK // 16 // self.divisor if self.divisor else 0

    # -- state ------------------------------------------------------------------
    def _fill(self) -> None:
        room = (16 if self.fifo else 1) - len(self.rx)
        if room > 0 and self.pending:
            self.rx += self.pending[:room]
            del self.pending[:room]

    @property
    def lsr(self) -> int:
        return (DR if self.rx else 0) | (OE if self.overrun else 0) | THRE | TEMT

    @property
    def msr(self) -> int:
        if self.mcr & MCR_LOOP:
            m = self.mcr
            lines = ((MSR_CTS if m & MCR_RTS else 0) | (MSR_DSR if m & MCR_DTR else 0) |
                     (MSR_RI if m & MCR_OUT1 else 0) | (MSR_DCD if m & MCR_OUT2 else 0))
        else:
            lines = MSR_DCD | MSR_DSR | MSR_CTS
        return lines | self.msr_delta

    def iir_source(self) -> int:
        if self.ier & IER_RLS and self.overrun:
            return IIR_RLS
        if self.ier & IER_RDA and self.rx:
            return IIR_RDA
        if self.ier & IER_THRE and self.thr_ipending:
            return IIR_THRE
        if self.ier & IER_MSI and self.msr_delta:
            return IIR_MSI
        return IIR_NONE

    def _update_irq(self) -> None:
        """The line follows IIR (serial_update_irq() in QEMU's hw/char/serial.c): up while an
        enabled interrupt is pending, down when none is; only a change is signalled."""
        now = self.iir_source() != IIR_NONE
        if now != self.irq_pending:
            self.irq_pending = now
            self.ctx.set_irq_level(self.irq, now)

    # -- console input ------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Console input for the guest (``xl console`` keystrokes)."""
        self.pending += data
        self._fill()
        self._update_irq()

    # -- port access ----------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        return split_read(self._read, port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        split_write(self._write, port, size, value)

    def _read(self, port: int) -> int:
        off = port - self.base
        if not 0 <= off <= 7:
            return 0xFF
        dlab = self.lcr & LCR_DLAB
        if off == 0:
            if dlab:
                return self.divisor & 0xFF
            if not self.rx:
                return 0
            byte = self.rx.pop(0)
            self._fill()
            self._update_irq()
            self.ctx.note(f"serial: RBR -> {byte:#04x} {chr(byte)!r} ({len(self.rx) + len(self.pending)} more waiting)")
            return byte
        if off == 1:
            return (self.divisor >> 8) & 0xFF if dlab else self.ier
        if off == 2:
            src = self.iir_source()
            if src == IIR_THRE:
                self.thr_ipending = False        # reading IIR acknowledges a THRE interrupt
                self._update_irq()
            return src | (0xC0 if self.fifo else 0)
        if off == 3:
            return self.lcr
        if off == 4:
            return self.mcr
        if off == 5:
            value = self.lsr
            if self.overrun:
                self.overrun = False
                self._update_irq()
            return value
        if off == 6:
            value = self.msr
            self.msr_delta = 0
            self._update_irq()
            return value
        return self.scr

    def _write(self, port: int, value: int) -> None:
        off = port - self.base
        if not 0 <= off <= 7:
            return
        dlab = self.lcr & LCR_DLAB
        if off == 0:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._transmit(value)
        elif off == 1:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                old = self.ier
                self.ier = value & 0x0F
                if self.ier & IER_THRE and not old & IER_THRE:
                    self.thr_ipending = True     # the transmitter is empty: say so at once
                self._update_irq()
        elif off == 2:
            if value & 0x02:
                self.rx.clear()
            self.fcr = value & 0xC9
            self._fill()
            self._update_irq()
        elif off == 3:
            old = self.lcr
            self.lcr = value
            if old & LCR_DLAB and not value & LCR_DLAB:
                bits = 5 + (value & 3)
                if not value & 0x08:
                    parity = "N"
                elif value & 0x20:
                    parity = "S" if value & 0x10 else "M"      # stick parity
                else:
                    parity = "E" if value & 0x10 else "O"
                stop = 2 if value & 0x04 else 1
                self.ctx.note(f"serial: divisor {self.divisor}: {self.baud} baud, {bits}{parity}{stop}")
        elif off == 4:
            old = self.mcr
            self.mcr = value & 0x1F
            if (old ^ self.mcr) & MCR_LOOP:
                self.ctx.note(f"serial: loopback {'on' if self.mcr & MCR_LOOP else 'off'}")
        elif off == 7:
            self.scr = value

    def _transmit(self, byte: int) -> None:
        if self.mcr & MCR_LOOP:
            if len(self.rx) >= (16 if self.fifo else 1):
                self.overrun = True
            else:
                self.rx.append(byte)
            self.ctx.note(f"serial: THR <- {byte:#04x} looped back to RBR")
        else:
            self.output.append(byte)
            if len(self.output) > self.output_limit:
                # a guest sends as much as it likes: keep the newest, dropping a block at a time
                del self.output[:max(1, self.output_limit // 16)]
            self.ctx.note(f"serial: THR <- {byte:#04x} {chr(byte)!r} sent to the console")
            if self.on_output is not None:
                self.on_output(chr(byte))
        self.thr_ipending = True
        self._update_irq()

    @property
    def text(self) -> str:
        return self.output.decode("latin-1")
