"""An NE2000-compatible network card (QEMU's ``ne2k_pci``: Realtek RTL8029, PCI 10ec:8029).

The card is a National Semiconductor DP8390 with 32 KiB of packet memory
that the host reaches only through "remote DMA" on a data port, so a driver
moves every byte with port I/O: exactly what an emulated NIC costs an HVM
guest. Its I/O BAR (256 bytes, at 0xC100 as the lab's firmware assigns it)
holds:

* 0x00-0x0F: the DP8390 registers, in four pages chosen by CR bits 7-6.
  Page 0 write: CR, PSTART, PSTOP, BNRY, TPSR, TBCR0/1, ISR (write 1 to clear),
  RSAR0/1, RBCR0/1, RCR, TCR, DCR, IMR. Page 0 read: CR, BNRY, TSR, ISR,
  CRDA0/1, the RTL8029 ID bytes 0x50 0x43, RSR. Page 1: PAR0-5 (station
  address), CURR, MAR0-7 (multicast filter). Page 2 reads back PSTART, PSTOP,
  TPSR, RCR, TCR, DCR, IMR.
* 0x10: the data port. Each access moves one byte, or one word when DCR bit 0
  (WTS) is set, between the port and packet memory at RSAR, counting RBCR
  down; at zero ISR.RDC (0x40) is set.
* 0x1F: the reset port: reading it resets the card (ISR.RST, 0x80).

Memory: addresses 0-31 are the station address PROM (each of its 16 bytes
doubled, bytes 14-15 'W' for word mode), 0x4000-0xBFFF the packet RAM.

Sending one frame: load it into RAM by remote write (RSAR = TPSR << 8, RBCR =
length, CR = 0x12, then the data), set TPSR and TBCR, write CR = 0x26 (TXP).
The frame leaves through :meth:`Ne2000.send` at once; TSR = PTX and ISR.PTX
(0x02) say so. With TCR bits 1-2 set (loopback) it comes back in instead.

Receiving one frame (:meth:`Ne2000.receive`, called by whatever connects the
card to a network): if the card is started (CR.STA, not STP) and the receive
filter (RCR: AB broadcast, AM multicast through the MAR hash, PRO
promiscuous, else the station address) accepts it, the frame is padded to 60
bytes and stored in the ring between PSTART and PSTOP at CURR behind a 4-byte
header (RSR, next page, count = length + 4), CURR moves on, and ISR.PRX
(0x01) is set; a full ring drops the frame. Reading it back is a remote read
from BNRY.

Its PCI interrupt pin, INTA, is up while ISR & IMR has a bit set and down
when it has none (writing 1s to ISR acknowledges); Xen routes INTA of slot 4
through PCI link 0 to ISA IRQ 5, which the firmware writes into the
interrupt line register. Not modelled: the network tally counters, CRC and
alignment errors, the FIFO, and timing (a send completes within its ioreq).
"""

from __future__ import annotations

from typing import Callable

from . import DeviceContext, ones
from .pci import CMD_IO, CMD_MASTER, Bar, PciFunction

NE2K_VENDOR, NE2K_DEVICE = 0x10EC, 0x8029
BAR_SIZE = 0x100
MEM_SIZE = 0xC000
PMEM_START, PMEM_END = 0x4000, 0xC000
MIN_FRAME = 60

# CR bits
STP, STA, TXP, RD_READ, RD_WRITE, RD_ABORT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# ISR bits
PRX, PTX, RXE, TXE, OVW, CNT, RDC, RST = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
# RCR bits
RCR_AB, RCR_AM, RCR_PRO = 0x04, 0x08, 0x10
RSR_PRX, RSR_PHY = 0x01, 0x20
TSR_PTX = 0x01


def ne2k_pci_function(irq_line: int, io_bar: int) -> PciFunction:
    """The card's PCI function as QEMU's ne2k_pci has it (class 0200, INTA), its I/O BAR at ``io_bar``."""
    fn = PciFunction("NE2000 (ne2k_pci)", NE2K_VENDOR, NE2K_DEVICE, 0x0200, interrupt_pin=1,
                     interrupt_line=irq_line, command=CMD_IO | CMD_MASTER, bars=(Bar(0, "io", BAR_SIZE),))
    fn.set_bar(0, io_bar)
    return fn


def multicast_hash(mac: bytes) -> int:
    """The 6-bit index into MAR0-7: the top bits of the Ethernet CRC, computed MSB first."""
    crc = 0xFFFFFFFF
    for byte in mac:
        for bit in range(8):
            top = (crc >> 31) & 1
            crc = (crc << 1) & 0xFFFFFFFF
            if top ^ ((byte >> bit) & 1):
                crc ^= 0x04C11DB7
    return crc >> 26


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class Ne2000:
    name = "ne2k_pci"

    def __init__(self, ctx: DeviceContext, mac: bytes, pci: PciFunction, label: str = "ne2k_pci") -> None:
        self.ctx = ctx
        self.mac = bytes(mac[:6]).ljust(6, b"\0")
        self.pci = pci
        self.label = label
        self.mem = bytearray(MEM_SIZE)
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        #: Where sent frames go (the bridge in dom0, later); None: nowhere.
        self.on_send: Callable[[bytes], None] | None = None
        self.cmd = STP | RD_ABORT
        self.start = self.stop = 0
        self.boundary = self.curpag = 0
        self.tpsr = self.tcnt = self.tsr = 0
        self.rsar = self.rcnt = 0
        self.rsr = self.rxcr = self.txcr = self.dcfg = 0
        self.isr = self.imr = 0
        self.phys = bytearray(6)
        self.mult = bytearray(8)
        self.irq_level = False
        self.hard_reset()

    # -- where the card is -------------------------------------------------------
    @property
    def present(self) -> bool:
        return self.pci.present

    @property
    def base(self) -> int | None:
        return self.pci.bar_address(0)

    def port_ranges(self) -> list[tuple[int, int]]:
        b = self.base
        return [(b, b + BAR_SIZE - 1)] if b is not None else []

    # -- reset and interrupts ------------------------------------------------------
    def hard_reset(self) -> None:
        self.isr = RST
        prom = bytearray(16)
        prom[0:6] = self.mac
        prom[14] = prom[15] = 0x57                 # 'W': a word-wide (NE2000) card
        for i in range(16):
            self.mem[2 * i] = self.mem[2 * i + 1] = prom[i]

    def _update_irq(self) -> None:
        """INTA follows ISR & IMR (ne2000_update_irq() in QEMU's hw/net/ne2000.c); only a
        change is signalled."""
        level = bool(self.isr & self.imr & 0x7F)
        if level != self.irq_level:
            self.irq_level = level
            self.ctx.set_pci_intx_level(self.pci, level)

    # -- port access -----------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        b = self.base
        if b is None:
            return ones(size)
        off = port - b
        if off < 0x10 and size == 1:
            return self._reg_read(off)
        if off == 0x10:
            return self._data_read() & ones(size)
        if off == 0x1F and size == 1:
            self.hard_reset()
            self.ctx.note(f"{self.label}: reset port read: card reset (ISR.RST)")
            return 0
        return ones(size)

    def io_write(self, port: int, size: int, value: int) -> None:
        b = self.base
        if b is None:
            return
        off = port - b
        if off < 0x10 and size == 1:
            self._reg_write(off, value & 0xFF)
        elif off == 0x10:
            self._data_write(value & ones(size))

    def _reg_read(self, off: int) -> int:
        page = self.cmd >> 6
        if off == 0:
            return self.cmd
        if page == 0:
            return {3: self.boundary, 4: self.tsr, 7: self.isr, 8: self.rsar & 0xFF, 9: self.rsar >> 8,
                    0xA: 0x50, 0xB: 0x43, 0xC: self.rsr}.get(off, 0)
        if page == 1:
            if 1 <= off <= 6:
                return self.phys[off - 1]
            if off == 7:
                return self.curpag
            return self.mult[off - 8]
        if page == 2:
            return {1: self.start >> 8, 2: self.stop >> 8, 4: self.tpsr, 0xC: self.rxcr, 0xD: self.txcr,
                    0xE: self.dcfg, 0xF: self.imr}.get(off, 0)
        return {3: 0x00, 5: 0x40, 6: 0x40}.get(off, 0)      # RTL8029 CONFIG0/2/3: 10BaseT, full duplex

    def _reg_write(self, off: int, v: int) -> None:
        if off == 0:
            self._command(v)
            return
        page = self.cmd >> 6
        if page == 0:
            if off == 1:
                self.start = v << 8
            elif off == 2:
                self.stop = v << 8
            elif off == 3:
                self.boundary = v
            elif off == 4:
                self.tpsr = v
            elif off == 5:
                self.tcnt = (self.tcnt & 0xFF00) | v
            elif off == 6:
                self.tcnt = (self.tcnt & 0x00FF) | (v << 8)
            elif off == 7:
                self.isr &= ~(v & 0x7F)
                self._update_irq()
            elif off == 8:
                self.rsar = (self.rsar & 0xFF00) | v
            elif off == 9:
                self.rsar = (self.rsar & 0x00FF) | (v << 8)
            elif off == 0xA:
                self.rcnt = (self.rcnt & 0xFF00) | v
            elif off == 0xB:
                self.rcnt = (self.rcnt & 0x00FF) | (v << 8)
            elif off == 0xC:
                self.rxcr = v
            elif off == 0xD:
                self.txcr = v
            elif off == 0xE:
                self.dcfg = v
            elif off == 0xF:
                self.imr = v
                self._update_irq()
        elif page == 1:
            if 1 <= off <= 6:
                self.phys[off - 1] = v
            elif off == 7:
                self.curpag = v
            else:
                self.mult[off - 8] = v

    def _command(self, v: int) -> None:
        self.cmd = v
        if v & STP:
            return
        self.isr &= ~RST
        if v & (RD_READ | RD_WRITE) and self.rcnt == 0:
            self.isr |= RDC                              # nothing to move: done at once
        if v & TXP:
            self._transmit()
        self._update_irq()

    # -- packet memory and remote DMA ---------------------------------------------------
    def _mem_read(self, addr: int) -> int:
        if addr < 32 or PMEM_START <= addr < PMEM_END:
            return self.mem[addr]
        return 0xFF

    def _mem_write(self, addr: int, value: int) -> None:
        if addr < 32 or PMEM_START <= addr < PMEM_END:
            self.mem[addr] = value

    def _dma_step(self, n: int) -> None:
        self.rsar = (self.rsar + n) & 0xFFFF
        if self.stop and self.rsar == self.stop:
            self.rsar = self.start
        if self.rcnt <= n:
            self.rcnt = 0
            self.isr |= RDC
            self._update_irq()
        else:
            self.rcnt -= n

    def _data_read(self) -> int:
        if self.dcfg & 0x01:
            a = self.rsar & ~1
            value = self._mem_read(a) | (self._mem_read(a + 1) << 8)
            self._dma_step(2)
        else:
            value = self._mem_read(self.rsar)
            self._dma_step(1)
        return value

    def _data_write(self, value: int) -> None:
        if self.dcfg & 0x01:
            a = self.rsar & ~1
            self._mem_write(a, value & 0xFF)
            self._mem_write(a + 1, (value >> 8) & 0xFF)
            self._dma_step(2)
        else:
            self._mem_write(self.rsar, value & 0xFF)
            self._dma_step(1)

    # -- the network side ----------------------------------------------------------------
    def _transmit(self) -> None:
        index = self.tpsr << 8
        if index >= PMEM_END:
            index -= PMEM_END - PMEM_START
        if self.tcnt == 0 or index < PMEM_START or index + self.tcnt > PMEM_END:
            self.ctx.note(f"{self.label}: transmit of {self.tcnt} bytes at {index:#06x}: outside packet RAM, "
                          f"nothing sent")
        else:
            frame = bytes(self.mem[index:index + self.tcnt])
            if self.txcr & 0x06:
                self.ctx.note(f"{self.label}: transmit {len(frame)} bytes in loopback")
                self.receive(frame)
            else:
                self.send(frame)
        self.tsr = TSR_PTX
        self.isr |= PTX
        self.cmd &= ~TXP

    def send(self, frame: bytes) -> None:
        """A frame the guest sent: kept in :attr:`sent` and handed to :attr:`on_send`."""
        self.sent.append(frame)
        dst, src = frame[0:6], frame[6:12]
        self.ctx.note(f"{self.label}: sent frame of {len(frame)} bytes {mac_text(src)} -> {mac_text(dst)}")
        if self.on_send is not None:
            self.on_send(frame)

    def accepts(self, dst: bytes) -> bool:
        if self.rxcr & RCR_PRO:
            return True
        if dst == b"\xff" * 6:
            return bool(self.rxcr & RCR_AB)
        if dst[0] & 1:
            if not self.rxcr & RCR_AM:
                return False
            h = multicast_hash(dst)
            return bool(self.mult[h >> 3] & (1 << (h & 7)))
        return dst == bytes(self.phys)

    def receive(self, frame: bytes) -> bool:
        """A frame from the network for the guest; False when the card drops it."""
        frame = bytes(frame)
        why = None
        if not self.present:
            why = "the card is unplugged"
        elif self.cmd & STP or not self.cmd & STA:
            why = "the card is stopped"
        elif len(frame) < 14:
            why = "a runt frame"
        elif not (PMEM_START <= self.start < self.stop <= PMEM_END):
            why = f"the receive ring {self.start:#06x}-{self.stop:#06x} is not in packet RAM"
        elif not self.accepts(frame[:6]):
            why = f"the filter (RCR {self.rxcr:#04x}) does not accept {mac_text(frame[:6])}"
        if why is None:
            frame = frame.ljust(MIN_FRAME, b"\0")
            total = len(frame) + 4
            index = self.curpag << 8
            if not self.start <= index < self.stop:
                index = self.start
            need = (total + 4 + 255) & ~0xFF
            boundary = self.boundary << 8
            avail = boundary - index if index < boundary else (self.stop - self.start) - (index - boundary)
            if avail <= need:
                why = "the receive ring is full"
        if why is not None:
            self.ctx.note(f"{self.label}: incoming frame of {len(frame)} bytes dropped: {why}")
            return False
        nxt = index + need
        if nxt >= self.stop:
            nxt -= self.stop - self.start
        self.rsr = RSR_PRX | (RSR_PHY if frame[0] & 1 else 0)
        data = bytes([self.rsr, nxt >> 8, total & 0xFF, total >> 8]) + frame
        a = index
        for byte in data:
            self.mem[a] = byte
            a += 1
            if a >= self.stop:
                a = self.start
        self.curpag = nxt >> 8
        self.isr |= PRX
        self.received.append(frame)
        self.ctx.note(f"{self.label}: received frame of {len(frame)} bytes from {mac_text(frame[6:12])} "
                      f"into ring page {index >> 8:#04x}; CURR now {self.curpag:#04x}")
        self._update_irq()
        return True
