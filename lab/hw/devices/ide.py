"""An IDE (ATA) controller with hard disks, driven by PIO through port I/O.

The PIIX3 IDE function of QEMU's PC (PCI 8086:7010, class 0101, prog-if 0x80:
both channels in legacy "compatibility" mode) decodes the legacy ports:

=========  ===========  ==================================================
primary    secondary    register (read / write)
=========  ===========  ==================================================
0x1F0      0x170        data: 16-bit (or 32-bit) window on a 512-byte buffer
0x1F1      0x171        error / features
0x1F2      0x172        sector count (0 means 256)
0x1F3      0x173        LBA bits 7-0 / sector number
0x1F4      0x174        LBA bits 15-8 / cylinder low
0x1F5      0x175        LBA bits 23-16 / cylinder high
0x1F6      0x176        device: bit 4 selects master/slave, bit 6 LBA, bits 3-0 LBA 27-24 or head
0x1F7      0x177        status / command
0x3F6      0x376        alternate status / device control (bit 1 nIEN, bit 2 SRST)
=========  ===========  ==================================================

Status bits: BSY 0x80, DRDY 0x40, DF 0x20, DSC 0x10, DRQ 0x08, ERR 0x01.
Error bits: UNC 0x40 (the image could not be read or written), IDNF 0x10
(the address is outside the disk), ABRT 0x04 (command aborted).

Commands (ATA-6): READ SECTORS 0x20/0x21, WRITE SECTORS 0x30/0x31 (LBA28 or
CHS, 1-256 sectors, one DRQ block of 256 words per sector), READ VERIFY
SECTORS 0x40/0x41, IDENTIFY DEVICE 0xEC, FLUSH CACHE 0xE7/0xEA, EXECUTE
DEVICE DIAGNOSTIC 0x90, INITIALIZE DEVICE PARAMETERS 0x91, RECALIBRATE
0x1x, SET FEATURES 0xEF (a few subcommands), CHECK POWER MODE 0xE5, and the
idle/standby commands. Everything else, including IDENTIFY PACKET DEVICE,
the LBA48 commands and READ/WRITE MULTIPLE, ends with ERR and ABRT, as a disk
that does not implement them must answer.

What the lab leaves out, and says so: no bus-master DMA (BAR4 is not
implemented and IDENTIFY advertises no DMA modes), no LBA48, no CD-ROM/ATAPI,
and no IRQ 14 (the lab's emulated interrupt controller is the master 8259A
only), so drivers poll the status register. Each command runs to completion
inside its ioreq, so the guest never sees BSY after a command; it does see it
while it holds SRST in the device control register.
"""

from __future__ import annotations

from ..diskimage import SECTOR_SIZE, DiskImage, DiskImageError
from . import DeviceContext, ones, split_read, split_write

BSY, DRDY, DF, DSC, DRQ, ERR = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
UNC, IDNF, ABRT = 0x40, 0x10, 0x04
NIEN, SRST = 0x02, 0x04
SEL_DEV, SEL_LBA = 0x10, 0x40

PRIMARY = (0x1F0, 0x3F6)
SECONDARY = (0x170, 0x376)

FIRMWARE_REVISION = "2.5+"          # QEMU_HW_VERSION, what QEMU's IDE disks report
MODEL = "QEMU HARDDISK"

COMMAND_NAMES = {
    0x00: "NOP", 0x08: "DEVICE RESET", 0x20: "READ SECTORS", 0x21: "READ SECTORS (no retry)",
    0x24: "READ SECTORS EXT", 0x25: "READ DMA EXT", 0x29: "READ MULTIPLE EXT",
    0x30: "WRITE SECTORS", 0x31: "WRITE SECTORS (no retry)", 0x34: "WRITE SECTORS EXT",
    0x35: "WRITE DMA EXT", 0x39: "WRITE MULTIPLE EXT", 0x40: "READ VERIFY SECTORS",
    0x41: "READ VERIFY SECTORS (no retry)", 0x70: "SEEK", 0x90: "EXECUTE DEVICE DIAGNOSTIC",
    0x91: "INITIALIZE DEVICE PARAMETERS", 0xA0: "PACKET", 0xA1: "IDENTIFY PACKET DEVICE",
    0xB0: "SMART", 0xC4: "READ MULTIPLE", 0xC5: "WRITE MULTIPLE", 0xC6: "SET MULTIPLE MODE",
    0xC8: "READ DMA", 0xCA: "WRITE DMA", 0xE0: "STANDBY IMMEDIATE", 0xE1: "IDLE IMMEDIATE",
    0xE2: "STANDBY", 0xE3: "IDLE", 0xE5: "CHECK POWER MODE", 0xE7: "FLUSH CACHE",
    0xEA: "FLUSH CACHE EXT", 0xEC: "IDENTIFY DEVICE", 0xEF: "SET FEATURES",
}
SET_FEATURES_OK = {0x02, 0x82, 0x03, 0x55, 0xAA, 0x66, 0xCC}


def command_name(cmd: int) -> str:
    if 0x10 <= cmd <= 0x1F:
        return "RECALIBRATE"
    return COMMAND_NAMES.get(cmd, f"unknown command {cmd:#04x}")


def _ata_string(text: str, nbytes: int) -> bytes:
    """An ATA identify string: space padded, the two characters of each word swapped."""
    raw = text.encode("ascii")[:nbytes].ljust(nbytes, b" ")
    out = bytearray(nbytes)
    for i in range(0, nbytes, 2):
        out[i], out[i + 1] = raw[i + 1], raw[i]
    return bytes(out)


class IdeDrive:
    """One ATA hard disk on a channel, backed by a disk image."""

    def __init__(self, vdev: str, image: DiskImage, serial: int = 1) -> None:
        self.vdev = vdev
        self.image = image
        self.serial = serial
        self.heads, self.spt = 16, 63
        self.cyls = max(1, min(16383, image.sectors // (self.heads * self.spt)))
        self.reset()

    @property
    def sectors(self) -> int:
        return self.image.sectors

    @property
    def readonly(self) -> bool:
        return self.image.readonly

    def reset(self) -> None:
        self.status = DRDY | DSC
        self.error = 0x01                       # diagnostic code: no error
        self.buf = bytearray()
        self.pos = 0
        self.xfer: str | None = None            # "in" (device to host), "out", or None
        self.cmd = 0
        self.lba = 0
        self.remaining = 0

    def identify(self) -> bytes:
        """The 256-word IDENTIFY DEVICE block."""
        w = [0] * 256
        chs = self.cyls * self.heads * self.spt
        w[0] = 0x0040                            # fixed disk
        w[1], w[3], w[6] = self.cyls, self.heads, self.spt
        w[4], w[5] = 512 * self.spt, 512         # obsolete, but QEMU fills them
        w[20], w[21], w[22] = 3, 512, 4          # buffer type, size, ECC bytes (retired)
        w[47] = 0x8000                           # READ/WRITE MULTIPLE: not supported
        w[48] = 1                                # 32-bit data port transfers
        w[49] = (1 << 11) | (1 << 9)             # IORDY, LBA (no DMA)
        w[51] = w[52] = 0x200                    # PIO timing mode 2
        w[53] = 0x3                              # words 54-58 and 64-70 are valid
        w[54], w[55], w[56] = self.cyls, self.heads, self.spt
        w[57], w[58] = chs & 0xFFFF, chs >> 16
        lba28 = min(self.sectors, 0x0FFFFFFF)
        w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
        w[64] = 0x03                             # PIO modes 3 and 4
        w[65] = w[66] = w[67] = w[68] = 120
        w[80] = 0xF0                             # ATA/ATAPI-4 to -7
        w[81] = 0x16
        w[82] = (1 << 14) | (1 << 5)             # NOP, write cache
        w[83] = (1 << 14) | (1 << 12)            # FLUSH CACHE (no LBA48)
        w[84] = 1 << 14
        w[85] = (1 << 14) | (1 << 5)
        w[86] = 1 << 12
        w[87] = 1 << 14
        w[93] = 1 | (1 << 14) | 0x2000           # hardware reset result, as QEMU reports it
        data = bytearray(b"".join(x.to_bytes(2, "little") for x in w))
        data[20:40] = _ata_string(f"QM{self.serial:05d}", 20)
        data[46:54] = _ata_string(FIRMWARE_REVISION, 8)
        data[54:94] = _ata_string(MODEL, 40)
        data[510] = 0xA5                         # integrity word: signature and checksum
        data[511] = (-sum(data[:511])) & 0xFF
        return bytes(data)


class IdeChannel:
    """The task file of one channel, shared by its master and slave, and their drives."""

    def __init__(self, index: int, base: int, ctl: int, ctx: DeviceContext) -> None:
        self.index = index
        self.base = base
        self.ctl = ctl
        self.ctx = ctx
        self.drives: list[IdeDrive | None] = [None, None]
        self.feature = self.nsector = self.sector = self.lcyl = self.hcyl = 0
        self.select = 0xA0
        self.devctl = 0

    # -- helpers --------------------------------------------------------------
    @property
    def unit(self) -> int:
        return (self.select >> 4) & 1

    @property
    def current(self) -> IdeDrive | None:
        return self.drives[self.unit]

    @property
    def has_drives(self) -> bool:
        return self.drives.count(None) != len(self.drives)     # asked on every port lookup

    def label(self, unit: int | None = None) -> str:
        u = self.unit if unit is None else unit
        d = self.drives[u]
        where = f"IDE{self.index} {'slave' if u else 'master'}"
        return f"{where} ({d.vdev})" if d is not None else where

    def port_ranges(self) -> list[tuple[int, int]]:
        if not self.has_drives:
            return []
        return [(self.base, self.base + 7), (self.ctl, self.ctl)]

    def owns(self, port: int) -> bool:
        return self.base <= port <= self.base + 7 or port == self.ctl

    # -- port access ----------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == self.base:
            return self._data_read(size) if size in (2, 4) else ones(size)
        return split_read(self._read_byte, port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == self.base:
            if size in (2, 4):
                self._data_write(size, value)
            return
        split_write(self._write_byte, port, size, value)

    def _read_byte(self, port: int) -> int:
        if not self.owns(port):
            return 0xFF
        d = self.current
        if port == self.ctl:
            return d.status if d is not None else 0
        reg = port - self.base
        if reg == 1:
            return d.error if d is not None else 0
        if reg == 2:
            return self.nsector
        if reg == 3:
            return self.sector
        if reg == 4:
            return self.lcyl
        if reg == 5:
            return self.hcyl
        if reg == 6:
            return self.select
        if reg == 7:
            return d.status if d is not None else 0
        return 0xFF

    def _write_byte(self, port: int, value: int) -> None:
        if not self.owns(port):
            return
        if port == self.ctl:
            self._devctl(value)
            return
        reg = port - self.base
        if reg == 1:
            self.feature = value
        elif reg == 2:
            self.nsector = value
        elif reg == 3:
            self.sector = value
        elif reg == 4:
            self.lcyl = value
        elif reg == 5:
            self.hcyl = value
        elif reg == 6:
            self.select = value | 0xA0
        elif reg == 7:
            self._command(value)

    # -- device control and reset ---------------------------------------------
    def _devctl(self, value: int) -> None:
        old = self.devctl
        self.devctl = value
        if value & SRST and not old & SRST:
            for d in self.drives:
                if d is not None:
                    d.reset()
                    d.status = BSY | DSC
            self.ctx.note(f"IDE{self.index}: software reset asserted (SRST): drives BSY")
        elif old & SRST and not value & SRST:
            for d in self.drives:
                if d is not None:
                    d.status = DRDY | DSC
                    d.error = 0x01
            self._signature()
            self.ctx.note(f"IDE{self.index}: software reset done: ATA signature in the task file")

    def _signature(self) -> None:
        self.select = 0xA0
        self.nsector, self.sector, self.lcyl, self.hcyl = 1, 1, 0, 0

    # -- commands ---------------------------------------------------------------
    def _address(self, d: IdeDrive) -> int | None:
        """The starting sector the task file names (LBA28 or CHS); None if CHS is invalid."""
        if self.select & SEL_LBA:
            return ((self.select & 0x0F) << 24) | (self.hcyl << 16) | (self.lcyl << 8) | self.sector
        cyl = (self.hcyl << 8) | self.lcyl
        head = self.select & 0x0F
        if self.sector == 0 or self.sector > d.spt or head >= d.heads:
            return None
        return (cyl * d.heads + head) * d.spt + self.sector - 1

    def _set_address(self, d: IdeDrive, lba: int) -> None:
        if self.select & SEL_LBA:
            self.select = (self.select & 0xF0) | ((lba >> 24) & 0x0F)
            self.hcyl, self.lcyl, self.sector = (lba >> 16) & 0xFF, (lba >> 8) & 0xFF, lba & 0xFF
        else:
            cyl, rest = divmod(lba, d.heads * d.spt)
            head, sec = divmod(rest, d.spt)
            self.hcyl, self.lcyl = (cyl >> 8) & 0xFF, cyl & 0xFF
            self.select = (self.select & 0xF0) | (head & 0x0F)
            self.sector = sec + 1

    def _fail(self, d: IdeDrive, error: int, why: str) -> None:
        d.xfer = None
        d.buf = bytearray()
        d.pos = 0
        d.error = error
        d.status = DRDY | DSC | ERR
        names = "|".join(n for bit, n in ((UNC, "UNC"), (IDNF, "IDNF"), (ABRT, "ABRT")) if error & bit)
        self.ctx.note(f"{self.label()}: {command_name(d.cmd)}: error {error:#04x} ({names}): {why}")

    def _done(self, d: IdeDrive) -> None:
        d.xfer = None
        d.buf = bytearray()
        d.pos = 0
        d.status = DRDY | DSC

    def _command(self, cmd: int) -> None:
        d = self.current
        if d is None:
            self.ctx.note(f"{self.label()}: command {cmd:#04x} to an absent drive: ignored")
            return
        d.cmd = cmd
        d.error = 0
        name = command_name(cmd)
        if cmd in (0x20, 0x21, 0x30, 0x31, 0x40, 0x41):
            self._rw_command(d, cmd, name)
        elif cmd == 0xEC:
            d.buf = bytearray(d.identify())
            d.pos = 0
            d.xfer = "in"
            d.status = DRDY | DSC | DRQ
            self.ctx.note(f"{self.label()}: IDENTIFY DEVICE: model \"{MODEL}\", {d.sectors} sectors "
                          f"(CHS {d.cyls}/{d.heads}/{d.spt}); 256 words ready (DRQ)")
        elif cmd in (0xE7, 0xEA):
            self._done(d)
            self.ctx.note(f"{self.label()}: {name}: nothing cached, every write is already in the image")
        elif cmd == 0x90:
            for drive in self.drives:
                if drive is not None:
                    drive.reset()
            self._signature()
            self.ctx.note(f"IDE{self.index}: EXECUTE DEVICE DIAGNOSTIC: passed (error register 0x01)")
        elif cmd == 0x91 or 0x10 <= cmd <= 0x1F or cmd in (0xE0, 0xE1, 0xE2, 0xE3):
            self._done(d)
            self.ctx.note(f"{self.label()}: {name}: done")
        elif cmd == 0xE5:
            self.nsector = 0xFF
            self._done(d)
            self.ctx.note(f"{self.label()}: CHECK POWER MODE: active or idle (sector count 0xff)")
        elif cmd == 0xEF and self.feature in SET_FEATURES_OK:
            self._done(d)
            self.ctx.note(f"{self.label()}: SET FEATURES {self.feature:#04x}: accepted")
        else:
            self._fail(d, ABRT, "not implemented by this disk" if cmd in COMMAND_NAMES or cmd == 0xEF
                       else "no such command")

    def _rw_command(self, d: IdeDrive, cmd: int, name: str) -> None:
        count = self.nsector or 256
        lba = self._address(d)
        mode = "lba" if self.select & SEL_LBA else "chs"
        if lba is None:
            self._fail(d, IDNF, f"invalid CHS address (sector {self.sector}, head {self.select & 0x0F})")
            return
        self.ctx.note(f"{self.label()}: {name} {mode} {lba} count {count}")
        if lba + count > d.sectors:
            self._fail(d, IDNF, f"sectors {lba}..{lba + count - 1} are beyond the disk's {d.sectors}")
            return
        d.lba, d.remaining = lba, count
        if cmd in (0x40, 0x41):
            self._set_address(d, lba + count - 1)
            self.nsector = 0
            self._done(d)
            return
        if cmd in (0x30, 0x31):
            if d.readonly:
                self._fail(d, ABRT, "the disk is read-only (access=ro)")
                return
            d.xfer = "out"
            d.buf = bytearray()
            d.pos = 0
            d.status = DRDY | DSC | DRQ
            return
        self._load_sector(d)

    def _load_sector(self, d: IdeDrive) -> None:
        try:
            data = d.image.read(d.lba, 1)
        except DiskImageError as e:
            self._fail(d, UNC, str(e))
            return
        d.buf = bytearray(data)
        d.pos = 0
        d.xfer = "in"
        d.status = DRDY | DSC | DRQ
        self._set_address(d, d.lba)
        self.ctx.note(f"{self.label()}: sector {d.lba} read from the image: 256 words ready (DRQ)")

    # -- the data port ----------------------------------------------------------
    def _data_read(self, size: int) -> int:
        d = self.current
        if d is None or d.xfer != "in" or not d.status & DRQ:
            return 0                              # as QEMU: no transfer, reads 0
        chunk = bytes(d.buf[d.pos:d.pos + size]).ljust(size, b"\0")
        d.pos += size
        if d.pos >= len(d.buf):
            self._end_of_block(d)
        return int.from_bytes(chunk, "little")

    def _data_write(self, size: int, value: int) -> None:
        d = self.current
        if d is None or d.xfer != "out" or not d.status & DRQ:
            return
        d.buf += (value & ones(size)).to_bytes(size, "little")
        d.pos += size
        if d.pos >= SECTOR_SIZE:
            try:
                d.image.write(d.lba, bytes(d.buf[:SECTOR_SIZE]))
            except DiskImageError as e:
                self._fail(d, UNC, str(e))
                return
            self.ctx.note(f"{self.label()}: sector {d.lba} written to the image")
            self._set_address(d, d.lba)
            d.buf = bytearray()
            d.pos = 0
            d.remaining -= 1
            self.nsector = d.remaining & 0xFF
            d.lba += 1
            if d.remaining <= 0:
                self._done(d)

    def _end_of_block(self, d: IdeDrive) -> None:
        if d.cmd == 0xEC:
            self._done(d)
            return
        d.remaining -= 1
        self.nsector = d.remaining & 0xFF
        d.lba += 1
        if d.remaining > 0:
            self._load_sector(d)
        else:
            self._done(d)


class IdeController:
    """The PIIX3 IDE function: two channels, up to four disks (hda-hdd)."""

    name = "ide"

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx
        self.channels = [IdeChannel(0, *PRIMARY, ctx), IdeChannel(1, *SECONDARY, ctx)]

    def attach(self, index: int, drive: IdeDrive) -> None:
        """Put ``drive`` at position 0-3: primary master, primary slave, secondary master, secondary slave."""
        self.channels[index // 2].drives[index % 2] = drive

    def drives(self) -> list[tuple[int, IdeDrive]]:
        return [(i, ch.drives[i % 2]) for i, ch in ((i, self.channels[i // 2]) for i in range(4))
                if ch.drives[i % 2] is not None]

    def detach(self, keep_primary_master: bool) -> list[str]:
        """Unplug disks (all, or all but the primary master); return their names."""
        gone = []
        for i, d in self.drives():
            if keep_primary_master and i == 0:
                continue
            self.channels[i // 2].drives[i % 2] = None
            gone.append(d.vdev)
        return gone

    def port_ranges(self) -> list[tuple[int, int]]:
        return [r for ch in self.channels for r in ch.port_ranges()]

    def _channel(self, port: int) -> IdeChannel | None:
        for ch in self.channels:
            if ch.has_drives and ch.owns(port):
                return ch
        return None

    def io_read(self, port: int, size: int) -> int:
        ch = self._channel(port)
        return ch.io_read(port, size) if ch is not None else ones(size)

    def io_write(self, port: int, size: int, value: int) -> None:
        ch = self._channel(port)
        if ch is not None:
            ch.io_write(port, size, value)
