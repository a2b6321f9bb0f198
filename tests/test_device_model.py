"""The device model in dom0: IDE, 16550, NE2000, PCI config space, the Xen platform device and unplug."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.hw.devices import RecordingContext
from lab.hw.devices.ide import ABRT, BSY, DRDY, DRQ, ERR, IDNF, IdeController, IdeDrive
from lab.hw.devices.nic import multicast_hash
from lab.hw.devices.serial import Uart16550
from lab.hw.diskimage import DEFAULT_SECTORS, DiskImage, DiskImageError, open_disk, resolve_target
from xen_helpers import private_image_bytes
from lab.dom0.qemu import DeviceModel, Qemu, disk_index
from lab.dom0.xenstored import Xenstored
from lab.dom0.xlcfg import load_config
from lab.hw.devices.board import Pic8259
from lab.session.scenario import boot_host

HVM_CFG = """
name = "g"
type = "hvm"
memory = 16
disk = ['format=raw, vdev=hda, access=rw, target=hda.img', 'format=raw, vdev=hdb, access=rw, target=hdb.img']
vif = ['mac=00:16:3e:00:00:01, bridge=xenbr0, model=ne2k_pci']
"""


def setup_dm(tmp_path: Path, cfg: str = HVM_CFG, mode: str | None = None, blacklist=()):
    host, xl = boot_host()
    dm = DeviceModel(host, image_dir=tmp_path, blacklist=blacklist)
    host.services.add(dm)
    conf = load_config(cfg, "t.cfg")
    dom = host.new_domain(conf.name, mode or conf.kernel_mode, 16, 1, config=conf)
    v = host.new_vcpu(dom, 0, host.make_cpu())
    if dom.type == "hvm":
        dom.devices["vpic"] = Pic8259()          # as build_hvm gives every HVM domain
    return host, dm, dom, v


class Port:
    """in/out through the device model, as Xen's exit handler calls it."""

    def __init__(self, dm: DeviceModel, v) -> None:
        self.dm, self.v = dm, v

    def inb(self, port: int) -> int:
        return self.dm.port_io(self.v, port, 1, "in", 0)

    def inw(self, port: int) -> int:
        return self.dm.port_io(self.v, port, 2, "in", 0)

    def inl(self, port: int) -> int:
        return self.dm.port_io(self.v, port, 4, "in", 0)

    def outb(self, port: int, value: int) -> None:
        self.dm.port_io(self.v, port, 1, "out", value)

    def outw(self, port: int, value: int) -> None:
        self.dm.port_io(self.v, port, 2, "out", value)

    def outl(self, port: int, value: int) -> None:
        self.dm.port_io(self.v, port, 4, "out", value)


def ioreq_states(host) -> list[str]:
    return [e.get("state") for e in host.trace.iter_all() if e.kind == "ioreq"]


# ------------------------------------------------------------------ disk images

def test_a_private_image_is_sparse_zeroed_and_keeps_writes(tmp_path):
    img = DiskImage.private(tmp_path / "disks", None, False, "private image of d.img")
    assert img.sectors == DEFAULT_SECTORS and img.read(7) == bytes(512)
    assert list((tmp_path / "disks").iterdir()) == [], "unnamed: nobody else can open it"
    img.write(7, b"\xab" * 512)
    assert img.read(7) == b"\xab" * 512 and img.read(8) == bytes(512)
    with pytest.raises(DiskImageError):
        img.read(DEFAULT_SECTORS)
    with pytest.raises(DiskImageError):
        img.write(-1, bytes(512))
    with pytest.raises(DiskImageError):
        img.write(0, b"short")
    ro = DiskImage.private(tmp_path / "disks", 8, True, "ro")
    with pytest.raises(DiskImageError):
        ro.write(0, bytes(512))


def test_a_target_is_looked_at_never_written(tmp_path, monkeypatch):
    """Only the size of an existing target is read; its content only when the learner asks."""
    cfg = tmp_path / "guest.cfg"
    cfg.write_text("name='x'\n")
    assert resolve_target("disk.img", cfg) == tmp_path / "disk.img"
    assert resolve_target(str(tmp_path / "abs.img"), cfg) == tmp_path / "abs.img"
    data = tmp_path / "data"
    notes: list[str] = []
    img = open_disk("/dev/vg/guest", base_dir=data, log=notes.append)
    assert img.sectors == DEFAULT_SECTORS
    assert notes == ["/dev/vg/guest: a private zero-filled image (16384 sectors)"]
    (tmp_path / "real.img").write_bytes(b"\x11" * 512 * 20)
    notes.clear()
    shared: dict = {}
    img = open_disk("real.img", config_file=cfg, base_dir=data, log=notes.append, shared=shared)
    assert img.sectors == 20 and img.read(0) == bytes(512) and "never opened" in notes[0]
    assert open_disk("real.img", config_file=cfg, base_dir=data, shared=shared) is img, "one image per target"
    img.write(0, b"\x22" * 512)
    assert (tmp_path / "real.img").read_bytes() == b"\x11" * 512 * 20
    monkeypatch.setenv("XENLAB_READ_HOST_IMAGES", "1")
    notes.clear()
    img = open_disk("real.img", config_file=cfg, base_dir=data, log=notes.append)
    assert img.read(19) == b"\x11" * 512 and "starting content read" in notes[0]
    img.write(19, bytes(512))
    assert (tmp_path / "real.img").read_bytes() == b"\x11" * 512 * 20
    assert not (tmp_path / "disk.img").exists()
    notes.clear()
    img = open_disk("x.img", base_dir=data, fmt="qcow2", log=notes.append)
    assert any("qcow2" in n for n in notes) and img.sectors == DEFAULT_SECTORS


def test_vdev_to_ide_position():
    assert disk_index("hda") == ("ide", 0)
    assert disk_index("xvda") == ("ide", 0)
    assert disk_index("hdd") == ("ide", 3)
    assert disk_index("sdb") == ("scsi", 1)
    assert disk_index("d2p0") == ("ide", 2)
    assert disk_index("nonsense") is None


# ------------------------------------------------------------------ IDE, on its own

def ide_with_disk(sectors: int = 64, readonly: bool = False):
    ctx = RecordingContext()
    ide = IdeController(ctx)
    img = DiskImage.in_memory(sectors, readonly=readonly)
    ide.attach(0, IdeDrive("hda", img))
    return ide, img, ctx


def ide_cmd(ide, cmd: int, lba: int = 0, count: int = 1, lba_mode: bool = True, unit: int = 0) -> int:
    ide.io_write(0x1F6, 1, (0xE0 if lba_mode else 0xA0) | (unit << 4) | ((lba >> 24) & 0xF))
    ide.io_write(0x1F2, 1, count & 0xFF)
    ide.io_write(0x1F3, 1, lba & 0xFF)
    ide.io_write(0x1F4, 1, (lba >> 8) & 0xFF)
    ide.io_write(0x1F5, 1, (lba >> 16) & 0xFF)
    ide.io_write(0x1F7, 1, cmd)
    return ide.io_read(0x1F7, 1)


def read_words(ide, n: int = 256) -> bytes:
    return b"".join(ide.io_read(0x1F0, 2).to_bytes(2, "little") for _ in range(n))


def test_ide_identify_block():
    ide, img, ctx = ide_with_disk(sectors=20160)
    status = ide_cmd(ide, 0xEC)
    assert status & DRQ and status & DRDY and not status & (BSY | ERR)
    block = read_words(ide)
    assert not ide.io_read(0x1F7, 1) & DRQ
    w = [int.from_bytes(block[i:i + 2], "little") for i in range(0, 512, 2)]

    def ata_str(a: int, b: int) -> str:
        return b"".join(block[i:i + 2][::-1] for i in range(2 * a, 2 * b, 2)).decode().strip()
    assert ata_str(27, 47) == "QEMU HARDDISK"
    assert ata_str(10, 20) == "QM00001"
    assert w[0] == 0x0040 and w[49] & (1 << 9)              # fixed disk, LBA supported
    assert w[60] | (w[61] << 16) == 20160
    assert (w[1], w[3], w[6]) == (20, 16, 63)
    assert block[510] == 0xA5 and sum(block) % 256 == 0     # integrity word
    assert any("IDENTIFY DEVICE" in n for n in ctx.notes)


def test_ide_write_then_read_round_trip_to_the_image():
    ide, img, ctx = ide_with_disk()
    status = ide_cmd(ide, 0x30, lba=5, count=2)
    assert status & DRQ
    payload = bytes((i * 7) & 0xFF for i in range(1024))
    for i in range(0, 1024, 2):
        ide.io_write(0x1F0, 2, int.from_bytes(payload[i:i + 2], "little"))
    assert ide.io_read(0x1F7, 1) == DRDY | 0x10                # done, no DRQ, no error
    assert img.read(5, 2) == payload
    assert ide_cmd(ide, 0x20, lba=5, count=2) & DRQ
    assert read_words(ide, 512) == payload
    assert not ide.io_read(0x1F7, 1) & DRQ
    assert "IDE0 master (hda): READ SECTORS lba 5 count 2" in ctx.notes
    # 32-bit data port transfers work too
    ide_cmd(ide, 0x20, lba=5, count=1)
    first = ide.io_read(0x1F0, 4)
    assert first.to_bytes(4, "little") == payload[:4]


def test_ide_chs_addressing_maps_to_the_same_sector():
    ide, img, ctx = ide_with_disk(sectors=2016)
    img.write(63 + 2, b"\x5a" * 512)                            # cylinder 0, head 1, sector 3
    ide.io_write(0x1F6, 1, 0xA0 | 1)
    ide.io_write(0x1F2, 1, 1)
    ide.io_write(0x1F3, 1, 3)
    ide.io_write(0x1F4, 1, 0)
    ide.io_write(0x1F5, 1, 0)
    ide.io_write(0x1F7, 1, 0x20)
    assert read_words(ide) == b"\x5a" * 512


def test_ide_errors_out_of_range_bad_counts_and_garbage():
    ide, img, ctx = ide_with_disk(sectors=64)
    assert ide_cmd(ide, 0x20, lba=64) & ERR
    assert ide.io_read(0x1F1, 1) == IDNF
    assert ide_cmd(ide, 0x30, lba=0x0FFFFFFF) & ERR             # the top of LBA28
    # count 0 means 256 sectors: beyond a 64-sector disk from anywhere
    assert ide_cmd(ide, 0x20, lba=0, count=0) & ERR and ide.io_read(0x1F1, 1) == IDNF
    assert any("count 256" in n for n in ctx.notes)
    # a garbage command is aborted
    for cmd in (0x00, 0x24, 0xC8, 0xFF, 0x5A):
        status = ide_cmd(ide, cmd)
        assert status & ERR and ide.io_read(0x1F1, 1) == ABRT, hex(cmd)
    # a bad CHS address (sector 0) is IDNF
    assert ide_cmd(ide, 0x20, lba=0, lba_mode=False) & ERR
    # the drive still works afterwards
    assert not ide_cmd(ide, 0x20, lba=63) & ERR
    assert read_words(ide) == bytes(512)


def test_ide_count_256_on_a_big_enough_disk():
    ide, img, ctx = ide_with_disk(sectors=300)
    img.write(255, b"\x01" * 512)
    assert ide_cmd(ide, 0x20, lba=0, count=0) & DRQ
    data = read_words(ide, 256 * 256)
    assert len(data) == 256 * 512 and data[-512:] == b"\x01" * 512
    assert not ide.io_read(0x1F7, 1) & (DRQ | ERR)


def test_ide_read_only_disk_refuses_writes():
    ide, img, ctx = ide_with_disk(readonly=True)
    assert ide_cmd(ide, 0x30, lba=1) & ERR
    assert ide.io_read(0x1F1, 1) == ABRT


def test_ide_absent_slave_reset_and_data_without_drq():
    ide, img, ctx = ide_with_disk()
    assert ide.io_read(0x1F0, 2) == 0                           # no transfer: reads 0, as QEMU
    ide.io_write(0x1F6, 1, 0xB0)                                # select the (absent) slave
    assert ide.io_read(0x1F7, 1) == 0
    ide.io_write(0x1F7, 1, 0xEC)                                # ignored
    ide.io_write(0x1F6, 1, 0xA0)
    ide.io_write(0x3F6, 1, 0x04)                                # SRST
    assert ide.io_read(0x3F6, 1) & BSY
    ide.io_write(0x3F6, 1, 0x00)
    assert ide.io_read(0x1F7, 1) & DRDY and not ide.io_read(0x1F7, 1) & BSY
    assert [ide.io_read(p, 1) for p in (0x1F2, 0x1F3, 0x1F4, 0x1F5)] == [1, 1, 0, 0]   # ATA signature
    assert ide.io_read(0x170, 1) == 0xFF                         # the empty secondary channel
    assert ide.port_ranges() == [(0x1F0, 0x1F7), (0x3F6, 0x3F6)]


# ------------------------------------------------------------------ 16550

def test_serial_output_and_line_status():
    ctx = RecordingContext()
    out = []
    u = Uart16550(ctx, on_output=out.append)
    lsr = u.io_read(0x3FD, 1)
    assert lsr & 0x20 and lsr & 0x40 and not lsr & 0x01           # THRE, TEMT, no data
    for ch in b"hi\n":
        u.io_write(0x3F8, 1, ch)
    assert "".join(out) == "hi\n" and u.text == "hi\n"
    assert u.io_read(0x3FD, 1) & 0x60 == 0x60
    u.io_write(0x3FF, 1, 0x5A)
    assert u.io_read(0x3FF, 1) == 0x5A                            # scratch
    assert u.io_read(0x3FE, 1) & 0xB0 == 0xB0                     # DCD, DSR, CTS


def test_serial_divisor_latch_and_lcr():
    ctx = RecordingContext()
    u = Uart16550(ctx)
    u.io_write(0x3FB, 1, 0x80)                                    # DLAB
    u.io_write(0x3F8, 1, 0x01)
    u.io_write(0x3F9, 1, 0x00)
    assert (u.io_read(0x3F8, 1), u.io_read(0x3F9, 1)) == (1, 0)
    u.io_write(0x3FB, 1, 0x03)                                    # 8N1, DLAB off
    assert u.baud == 115200 and u.io_read(0x3FB, 1) == 0x03
    assert any("115200 baud, 8N1" in n for n in ctx.notes)
    assert u.output == b""                                        # divisor writes sent nothing


def test_serial_input_queue_interrupts_and_iir():
    ctx = RecordingContext()
    u = Uart16550(ctx)
    assert u.io_read(0x3FA, 1) == 0x01                            # nothing pending
    u.io_write(0x3F9, 1, 0x01)                                    # enable RDA interrupts
    u.feed(b"ok")
    assert ctx.irqs == [(4, True)]                                # IRQ 4 up while data waits
    assert u.io_read(0x3FD, 1) & 0x01 and u.io_read(0x3FA, 1) == 0x04
    assert u.io_read(0x3F8, 1) == ord("o")
    assert ctx.irqs == [(4, True)]                                # "k" still waits: still up
    assert u.io_read(0x3F8, 1) == ord("k")
    assert ctx.irqs == [(4, True), (4, False)]                    # the last byte read: down
    assert not u.io_read(0x3FD, 1) & 0x01 and u.io_read(0x3FA, 1) == 0x01
    u.io_write(0x3F9, 1, 0x02)                                    # THRE interrupt: pending at once
    assert u.io_read(0x3FA, 1) == 0x02
    assert u.io_read(0x3FA, 1) == 0x01                            # reading IIR acknowledged it
    u.io_write(0x3FA, 1, 0x07)                                    # FIFO on
    assert u.io_read(0x3FA, 1) & 0xC0 == 0xC0


def test_serial_loopback():
    ctx = RecordingContext()
    u = Uart16550(ctx)
    u.io_write(0x3FC, 1, 0x10 | 0x0B)
    u.io_write(0x3F8, 1, 0x41)
    assert u.output == b"" and u.io_read(0x3F8, 1) == 0x41
    u.io_write(0x3F8, 1, 0x42)
    u.io_write(0x3F8, 1, 0x43)                                    # no FIFO: overrun
    assert u.io_read(0x3FD, 1) & 0x02
    assert not u.io_read(0x3FD, 1) & 0x02                         # cleared by reading LSR


# ------------------------------------------------------------------ PCI

def pci_read(p: Port, bus: int, dev: int, fn: int, reg: int, size: int = 4) -> int:
    p.outl(0xCF8, 0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xFC))
    port = 0xCFC + (reg & 3)
    return {1: p.inb, 2: p.inw, 4: p.inl}[size](port)


def pci_write(p: Port, dev: int, fn: int, reg: int, value: int) -> None:
    p.outl(0xCF8, 0x80000000 | (dev << 11) | (fn << 8) | (reg & 0xFC))
    p.outl(0xCFC, value)


def scan(p: Port) -> dict[str, tuple[int, int]]:
    found = {}
    for dev in range(32):
        for fn in range(8):
            ident = pci_read(p, 0, dev, fn, 0)
            if ident == 0xFFFFFFFF:
                if fn == 0:
                    break
                continue
            cls = pci_read(p, 0, dev, fn, 8) >> 16
            found[f"00:{dev:02x}.{fn}"] = (ident, cls)
            if fn == 0 and not pci_read(p, 0, dev, 0, 0x0E, 1) & 0x80:
                break
    return found


@pytest.mark.machine
def test_pci_enumeration_lists_the_platform_device(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    found = scan(p)
    assert found == {
        "00:00.0": (0x12378086, 0x0600), "00:01.0": (0x70008086, 0x0601), "00:01.1": (0x70108086, 0x0101),
        "00:01.3": (0x71138086, 0x0680),                                   # xenfv's PIIX4 ACPI
        "00:03.0": (0x00015853, 0xFF80), "00:04.0": (0x802910EC, 0x0200),
    }
    assert pci_read(p, 0, 3, 0, 0x08) & 0xFF == 1                  # revision 1
    assert pci_read(p, 0, 3, 0, 0x2C) == 0x00015853                # subsystem 5853:0001
    assert pci_read(p, 0, 3, 0, 0x3D, 1) == 1                      # INTA
    assert pci_read(p, 1, 0, 0, 0) == 0xFFFFFFFF                   # no bus 1
    assert pci_read(p, 0, 9, 0, 0) == 0xFFFFFFFF                   # nothing in slot 9
    assert pci_read(p, 0, 3, 0, 0x00, 2) == 0x5853 and pci_read(p, 0, 3, 0, 0x02, 2) == 0x0001
    assert any("PCI: read 00:03.0 reg 0x00" in (s or "") for s in ioreq_states(host))
    assert dm.lspci(dom)[4].startswith("00:03.0 [5853:0001] class ff80 rev 01")


@pytest.mark.machine
def test_pci_bar_sizing_read_only_registers_and_bad_accesses(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    assert pci_read(p, 0, 3, 0, 0x10) == 0xC001                    # platform BAR0: I/O at 0xC000
    assert pci_read(p, 0, 3, 0, 0x14) == 0xF0000008                # BAR1: prefetchable memory
    pci_write(p, 3, 0, 0x10, 0xFFFFFFFF)
    assert pci_read(p, 0, 3, 0, 0x10) == 0xFFFFFF01                # 256 bytes of I/O
    pci_write(p, 3, 0, 0x14, 0xFFFFFFFF)
    assert pci_read(p, 0, 3, 0, 0x14) == 0xFF000008                # 16 MiB
    pci_write(p, 3, 0, 0x10, 0xC000)
    pci_write(p, 3, 0, 0x00, 0x12345678)                           # IDs are read-only
    assert pci_read(p, 0, 3, 0, 0x00) == 0x00015853
    assert pci_read(p, 0, 3, 0, 0xF8) == 0                          # device-specific space: zeros
    p.outl(0xCF8, 0x80000000 | (3 << 11) | 0xFC)
    assert p.inl(0xCFF) == 0xFFFFFF00                              # runs past the 256 bytes: ones
    p.outl(0xCF8, 0x00001800)                                      # enable bit clear
    assert p.inl(0xCFC) == 0xFFFFFFFF
    p.outb(0xCF8, 0x12)                                            # only dword accesses hit CONFIG_ADDRESS
    assert p.inl(0xCF8) == 0x00001800 and p.inw(0xCFA) == 0xFFFF


@pytest.mark.machine
def test_pci_bar_moves_the_nic_ports(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    assert dm.claims(dom, 0xC100) and not dm.claims(dom, 0xD000)
    pci_write(p, 4, 0, 0x10, 0xD000)
    assert dm.claims(dom, 0xD000) and not dm.claims(dom, 0xC100)
    pci_write(p, 4, 0, 0x04, 0)                                    # I/O decoding off
    assert not dm.claims(dom, 0xD000)


@pytest.mark.machine
def test_a_moved_bar_answers_at_its_new_ports_only(tmp_path):
    # Each port is asked once before the move, so a remembered answer that outlived the
    # configuration write would show.
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    cr = p.inb(0xC100)                                             # the NE2000's CR at BAR0
    assert cr != 0xFF and p.inb(0xD000) == 0xFF
    pci_write(p, 4, 0, 0x10, 0xD000)
    assert p.inb(0xC100) == 0xFF and p.inb(0xD000) == cr
    assert p.inb(0xD000 + 0x1F) != 0xFF and p.inb(0xD000 + 0x20) == 0xFF   # 32 ports, no more
    pci_write(p, 4, 0, 0x04, 0)                                    # I/O decoding off
    assert p.inb(0xD000) == 0xFF
    pci_write(p, 4, 0, 0x04, 1)                                    # and on again
    assert p.inb(0xD000) == cr


@pytest.mark.machine
def test_port_decoding_comes_back_with_a_restored_snapshot(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    cr = p.inb(0xC100)
    snap = host.snapshot()
    pci_write(p, 4, 0, 0x10, 0xD000)
    p.outw(0x10, 0x0001)                                           # unplug the disks
    assert p.inb(0xC100) == 0xFF and p.inb(0xD000) == cr and p.inb(0x1F7) == 0xFF
    host.restore(snap)
    assert p.inb(0xC100) == cr and p.inb(0xD000) == 0xFF           # the BAR where it was saved
    assert p.inb(0x1F7) != 0xFF and dm.claims(dom, 0x1F0)          # and the disks back


# ------------------------------------------------------------------ platform device and unplug

@pytest.mark.machine
def test_unplug_protocol_step_by_step(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    assert p.inw(0x10) == 0x49D2                                   # 1. magic
    assert p.inb(0x12) == 1                                        # 2. protocol version
    p.outw(0x12, 3)                                                # 3. product: linux
    p.outl(0x10, 0x060100)                                         # 4. build number
    assert p.inw(0x10) == 0x49D2                                   # 5. not blacklisted
    for ch in b"xen: unplugging emulated devices\n":                # log bytes to Xen's log
        p.outb(0x12, ch)
    assert any("PV driver log: xen: unplugging emulated devices" in line for line in host.dmesg)
    assert dm.claims(dom, 0x1F0) and dm.claims(dom, 0x3F6) and dm.claims(dom, 0xC100)
    status, cr = p.inb(0x1F7), p.inb(0xC100)
    assert status != 0xFF and cr != 0xFF
    assert 0x802910EC in [pci_read(p, 0, d, 0, 0) for d in range(8)]
    p.outw(0x10, 0x0003)                                           # 6. unplug disks and NICs
    assert not dm.claims(dom, 0x1F0) and not dm.claims(dom, 0x3F6) and not dm.claims(dom, 0xC100)
    assert p.inb(0x1F7) == 0xFF and p.inb(0xC100) == 0xFF          # nothing answers there now
    assert pci_read(p, 0, 4, 0, 0) == 0xFFFFFFFF                    # the NIC's function is gone
    assert pci_read(p, 0, 1, 1, 0) == 0x70108086                    # the IDE controller stays, drive-less
    assert pci_read(p, 0, 3, 0, 0) == 0x00015853
    assert dm.claims(dom, 0x3F8)                                   # the serial port is not unpluggable
    states = [s for s in ioreq_states(host) if s and s.startswith("xen-platform")]
    assert [s.split(":")[1].strip().split(" ")[0] for s in states][:4] == ["magic", "protocol", "PV", "PV"]
    assert "IDE disk hda" in states[-1] and "IDE disk hdb" in states[-1] and "NIC ne2k_pci 00:04.0" in states[-1]


@pytest.mark.machine
def test_unplug_bit2_keeps_the_primary_master(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    q = dm.instance(dom)
    p.outw(0x10, 0x0004)
    assert [d.vdev for _, d in q.ide.drives()] == ["hda"]
    assert dm.claims(dom, 0x1F0) and dm.claims(dom, 0xC100)
    p.outb(0x1F6, 0xB0)                                            # the slave is gone
    assert p.inb(0x1F7) == 0
    p.outw(0x10, 0x0008)                                           # NVMe: none here, nothing happens
    assert [d.vdev for _, d in q.ide.drives()] == ["hda"]
    p.outw(0x10, 0x0005)                                           # bit 0 overrides bit 2
    assert q.ide.drives() == [] and not dm.claims(dom, 0x1F0)


@pytest.mark.machine
def test_blacklisted_drivers_see_the_reversed_magic(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path, blacklist={("linux", 42)})
    p = Port(dm, v)
    assert p.inw(0x10) == 0x49D2
    p.outw(0x12, 3)
    p.outl(0x10, 42)
    assert p.inw(0x10) == 0xD249
    p.outl(0x10, 43)                                               # another build is fine
    assert p.inw(0x10) == 0x49D2
    p.outw(0x12, 1)                                                # xensource-windows build 42 is fine
    p.outl(0x10, 42)
    assert p.inw(0x10) == 0x49D2


@pytest.mark.machine
def test_platform_odd_accesses_and_hidden_device(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    assert p.inl(0x10) == 0xFFFFFFFF and p.inw(0x12) == 0xFFFF and p.inb(0x1F) == 0xFF
    p.outb(0x10, 1)
    assert p.inb(0x10) == 1 and p.inb(0xC000) == 1                 # platform flags, also in BAR0
    p.outl(0x14, 0xDEADBEEF)                                       # ignored
    cfg = HVM_CFG.replace('name = "g"', 'name = "g"\nxen_platform_pci = 0')
    host, dm, dom, v = setup_dm(tmp_path, cfg)
    p = Port(dm, v)
    assert not dm.claims(dom, 0x10) and not dm.claims(dom, 0x12)
    assert 0x00015853 not in [pci_read(p, 0, d, 0, 0) for d in range(8)]


# ------------------------------------------------------------------ NE2000

NIC = 0xC100
GUEST_MAC = bytes.fromhex("00163e000001")
PEER_MAC = bytes.fromhex("00163e0000aa")


def nic_init(p: Port) -> None:
    p.outb(NIC + 0x1F, p.inb(NIC + 0x1F))                          # reset
    p.outb(NIC, 0x21)                                              # page 0, stop, abort DMA
    p.outb(NIC + 0x0E, 0x49)                                       # DCR: word transfers
    p.outb(NIC + 0x0A, 0)
    p.outb(NIC + 0x0B, 0)
    p.outb(NIC + 0x0C, 0x04)                                       # RCR: accept broadcast
    p.outb(NIC + 0x0D, 0x00)                                       # TCR: normal
    p.outb(NIC + 0x01, 0x46)                                       # PSTART
    p.outb(NIC + 0x02, 0x80)                                       # PSTOP
    p.outb(NIC + 0x03, 0x46)                                       # BNRY
    p.outb(NIC + 0x07, 0xFF)                                       # clear ISR
    p.outb(NIC + 0x0F, 0x03)                                       # IMR: PRX, PTX
    p.outb(NIC, 0x61)                                              # page 1
    for i, b in enumerate(GUEST_MAC):
        p.outb(NIC + 1 + i, b)
    p.outb(NIC + 0x07, 0x47)                                       # CURR
    p.outb(NIC, 0x22)                                              # page 0, start


def remote(p: Port, addr: int, count: int, write: bool) -> None:
    p.outb(NIC + 0x0A, count & 0xFF)
    p.outb(NIC + 0x0B, count >> 8)
    p.outb(NIC + 0x08, addr & 0xFF)
    p.outb(NIC + 0x09, addr >> 8)
    p.outb(NIC, 0x12 if write else 0x0A)


@pytest.mark.machine
def test_nic_prom_send_and_receive_by_port_io(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    nic = dm.nic(dom)
    nic_init(p)
    # the station address PROM, read a byte at a time
    p.outb(NIC + 0x0E, 0x48)
    remote(p, 0, 12, write=False)
    prom = bytes(p.inb(NIC + 0x10) for _ in range(12))
    assert prom[::2] == GUEST_MAC
    p.outb(NIC + 0x0E, 0x49)
    # send one frame
    sent = []
    nic.on_send = sent.append
    frame = PEER_MAC + GUEST_MAC + b"\x08\x00" + bytes(range(46))
    remote(p, 0x4000, len(frame), write=True)
    for i in range(0, len(frame), 2):
        p.outw(NIC + 0x10, int.from_bytes(frame[i:i + 2], "little"))
    assert p.inb(NIC + 0x07) & 0x40                                # remote DMA complete
    p.outb(NIC + 0x04, 0x40)                                       # TPSR
    p.outb(NIC + 0x05, len(frame))
    p.outb(NIC + 0x06, 0)
    p.outb(NIC, 0x26)                                              # transmit
    assert sent == [frame] and nic.sent == [frame]
    assert p.inb(NIC + 0x07) & 0x02 and p.inb(NIC + 0x04) & 0x01   # ISR.PTX, TSR.PTX
    # receive one frame for us, one broadcast, and drop one for someone else
    p.outb(NIC + 0x07, 0xFF)                                       # acknowledge everything
    irqs_before = len([e for e in host.trace.iter_all() if e.kind == "interrupt"])
    reply = GUEST_MAC + PEER_MAC + b"\x08\x00" + b"pong"
    assert nic.receive(reply)
    assert not nic.receive(bytes.fromhex("00163e0000ff") + PEER_MAC + b"\x08\x00")
    assert len([e for e in host.trace.iter_all() if e.kind == "interrupt"]) > irqs_before
    assert p.inb(NIC + 0x07) & 0x01                                # ISR.PRX
    remote(p, 0x4700, 4, write=False)
    hdr = b"".join(p.inw(NIC + 0x10).to_bytes(2, "little") for _ in range(2))
    status, nxt, count = hdr[0], hdr[1], hdr[2] | (hdr[3] << 8)
    assert status & 0x01 and nxt == 0x48 and count == 64           # padded to 60 bytes, plus the header
    remote(p, 0x4704, 60, write=False)
    body = b"".join(p.inw(NIC + 0x10).to_bytes(2, "little") for _ in range(30))
    assert body == reply.ljust(60, b"\0")
    assert nic.receive(b"\xff" * 6 + PEER_MAC + b"\x08\x06")       # broadcast accepted (RCR.AB)
    assert any("received frame of 60 bytes" in (s or "") for s in ioreq_states(host))


@pytest.mark.machine
def test_nic_inta_is_a_level_qemu_passes_to_xen_by_slot_and_pin(tmp_path):
    """ISR & IMR drives INTA; each change is XEN_DMOP_set_pci_intx_level for 00:04.0 INTA,
    which Xen routes through link 0 to ISA IRQ 5, whatever the interrupt line register says."""
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    nic = dm.nic(dom)
    nic_init(p)
    p.outb(NIC, 0x22)                                              # page 0, start
    pci_write(p, 4, 0, 0x3C, 0x0E)                                 # a line the guest made up
    pic = dom.devices["vpic"]
    seq = host.trace.seq

    def ops():
        return [e.data["args"][1:] for e in host.trace.iter_all()
                if e.seq >= seq and e.kind == "hypercall" and e.data["name"] == "dm_op"]
    assert nic.receive(GUEST_MAC + PEER_MAC + b"\x08\x00" + b"ping")
    assert ops() == [["XEN_DMOP_set_pci_intx_level", 0, 0, 4, 0, 1]]
    assert pic.irr & (1 << 5) and not pic.irr & (1 << 6)
    assert nic.receive(GUEST_MAC + PEER_MAC + b"\x08\x00" + b"pong")
    assert len(ops()) == 1                                         # already up: nothing new
    p.outb(NIC + 0x07, 0x01)                                       # PRX acknowledged: down
    assert ops()[-1] == ["XEN_DMOP_set_pci_intx_level", 0, 0, 4, 0, 0]
    assert not pic.irr & (1 << 5)                                  # the untaken request withdrawn
    assert dom.devices["hvm_irq"].pci_intx == 0


@pytest.mark.machine
def test_nic_stopped_or_unplugged_drops_frames_and_multicast_hash(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    nic = dm.nic(dom)
    assert not nic.receive(GUEST_MAC + PEER_MAC + b"\x08\x00")     # never started
    nic_init(p)
    p.outw(0x10, 0x0002)                                           # unplug NICs
    assert not nic.receive(GUEST_MAC + PEER_MAC + b"\x08\x00")
    assert 0 <= multicast_hash(bytes.fromhex("01005e000001")) < 64


# ------------------------------------------------------------------ the device model as a service

@pytest.mark.machine
def test_ioreq_life_cycle_cost_and_dom0_work(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    before = len(host.trace)
    assert p.inb(0x3FD) & 0x60 == 0x60
    evs = host.trace.since(before)
    assert [e.get("state") for e in evs if e.kind == "ioreq"] == [
        "STATE_IOREQ_READY", "STATE_IOREQ_INPROCESS", "STATE_IORESP_READY"]
    assert evs[-1].get("value") == 0x60 and evs[-1].get("port") == 0x3FD and evs[-1].get("dir") == "in"
    assert evs[-1].get("cost") == host.costs.ev("ioreq_round_trip")
    assert host.dom0_work and host.dom0_work[-1][0] == "qemu-dm: ioreqs"
    p.outb(0x3F8, ord("x"))
    qemu_work = [w for w in host.dom0_work if w[0] == "qemu-dm: ioreqs"]
    assert len(qemu_work) == 1                                     # coalesced until dom0 runs it
    assert qemu_work[0][1]() == 2 * (host.costs.ev("ioreq_round_trip") // 2)


@pytest.mark.machine
def test_pv_and_pvh_domains_have_no_device_model(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path, 'name="p"\ntype="pvh"\n', mode="pvh")
    assert not dm.claims(dom, 0x1F0) and not dm.claims(dom, 0x3F8) and not dm.claims(dom, 0xCF8)
    assert dm.instance(dom) is None and dm.port_io(v, 0x1F0, 2, "in", 0) == 0xFFFF
    host, dm, dom, v = setup_dm(tmp_path, 'name="p"\ntype="pv"\n', mode="pv")
    assert not dm.claims(dom, 0x3F8)


@pytest.mark.machine
def test_console_input_reaches_the_guest_and_serial_output_the_console(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    p = Port(dm, v)
    assert dm.console_input(dom, "ls\n")
    got = []
    while p.inb(0x3FD) & 0x01:
        got.append(p.inb(0x3F8))
    assert bytes(got) == b"ls\n"
    for ch in b"$ ok\n":
        p.outb(0x3F8, ch)
    assert dom.console_output.endswith("$ ok\n") and dm.serial_output(dom) == "$ ok\n"
    assert any(e.kind == "console" and e.get("text") == "$ ok" for e in host.trace.iter_all())


@pytest.mark.machine
def test_device_model_instances_follow_the_domain(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    q = dm.instance(dom)
    assert dm.instance(dom) is q and any("device model" in line for line in host.dmesg)
    # both disks are private images: the targets the config names are never created
    assert [d.image.name for _i, d in q.ide.drives()] == ["private image of hda.img", "private image of hdb.img"]
    assert not (tmp_path / "hda.img").exists() and not (tmp_path / "hdb.img").exists()
    host.destroy(dom)
    assert dom.domid not in dm.instances


# ------------------------------------------------------------------ malicious guests

PORTS = st.sampled_from([0x10, 0x11, 0x12, 0x13, 0x1F, 0x170, 0x1F0, 0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6,
                         0x1F7, 0x3F6, 0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0xCF8, 0xCF9,
                         0xCFC, 0xCFD, 0xCFE, 0xCFF, 0xC000, 0xC008, 0xC100, 0xC107, 0xC110, 0xC11F, 0xC1FF])
ACCESS = st.tuples(PORTS, st.sampled_from([1, 2, 4]), st.sampled_from(["in", "out"]),
                   st.integers(0, 0xFFFFFFFF))


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    return setup_dm(tmp_path_factory.mktemp("fuzz"))


@settings(max_examples=60, deadline=None)
@given(st.lists(ACCESS, max_size=120))
@pytest.mark.machine
def test_malicious_port_io_never_raises(fuzz_env, accesses):
    host, dm, dom, v = fuzz_env
    q = Qemu(dm, dom)                                   # a fresh machine for each example
    dm.instances[dom.domid] = q
    for port, size, direction, value in accesses:
        result = q.io(port, size, direction, value)     # directly: a device bug would raise here
        assert 0 <= result < (1 << (8 * size))
    dm.nic(dom).receive(b"\xff" * 64)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 255)), max_size=40),
       st.sampled_from([0x20, 0x30, 0x40, 0xEC, 0xE7, 0x90, 0xEF, 0x00, 0xFF]))
def test_ide_task_file_garbage_gives_device_errors_only(regs, cmd):
    ide, img, ctx = ide_with_disk(sectors=32)
    for reg, value in regs:
        if reg != 7:
            ide.io_write(0x1F0 + reg, 1, value)
    ide.io_write(0x1F7, 1, cmd)
    for _ in range(300):
        status = ide.io_read(0x1F7, 1)
        if not status & DRQ:
            break
        ide.io_write(0x1F0, 2, 0xBEEF) if ide.channels[0].current.xfer == "out" else ide.io_read(0x1F0, 2)
    assert ide.io_read(0x1F7, 1) & (BSY | DRQ) == 0 or ide.channels[0].current.remaining > 0


# ------------------------------------------------------------------ end to end: a guest that uses the disk

GUEST = """
.org 0x100000
_start:
    mov dx, 0x1f6
    mov al, 0xe0
    out dx, al
    mov dx, 0x1f2
    mov al, 1
    out dx, al
    mov dx, 0x1f3
    mov al, 5
    out dx, al
    mov dx, 0x1f4
    mov al, 0
    out dx, al
    mov dx, 0x1f5
    out dx, al
    mov dx, 0x1f7
    mov al, 0x30                ; WRITE SECTORS
    out dx, al
.w_drq:
    in al, dx
    test al, 8
    jz .w_drq
    mov dx, 0x1f0
    xor ecx, ecx
.w_loop:
    mov eax, ecx
    add eax, 0x4100
    out dx, ax
    inc ecx
    cmp ecx, 256
    jb .w_loop
    mov dx, 0x1f2               ; the write counted the sector count down to 0: set it again
    mov al, 1
    out dx, al
    mov dx, 0x1f3
    mov al, 5
    out dx, al
    mov dx, 0x1f7
    mov al, 0x20                ; READ SECTORS
    out dx, al
.r_drq:
    in al, dx
    test al, 8
    jz .r_drq
    mov dx, 0x1f0
    xor ecx, ecx
    xor r8, r8
.r_loop:
    in ax, dx
    and eax, 0xffff
    add r8, rax
    inc ecx
    cmp ecx, 256
    jb .r_loop
    mov dx, 0x1f0
    in ax, dx                   ; after the transfer: no data
    mov r9, rax
    lea rsi, [rip + msg]
.print:
    mov al, [rsi]
    test al, al
    jz .done
    mov dx, 0x3f8
    out dx, al
    inc rsi
    jmp .print
.done:
    cli
    hlt
msg: .asciz "disk ok\\n"
"""

PROBE = """
.org 0x100000
_start:
    mov dx, 0x1f0
    in ax, dx
    mov r9, rax
    mov dx, 0x1f7
    in al, dx
    mov r10, rax
    cli
    hlt
"""


def run_guest(tmp_path: Path, source: str, gtype: str, extra: str = ""):
    (tmp_path / "guest.s").write_text(source)
    (tmp_path / "guest.cfg").write_text(
        f'name = "t"\ntype = "{gtype}"\nmemory = 16\nkernel = "guest.s"\non_poweroff = "preserve"\n'
        "disk = ['format=raw, vdev=hda, access=rw, target=disk.img']\n" + extra)
    host, xl = boot_host()
    DeviceModel.install(host)
    dom = xl.create(tmp_path / "guest.cfg")
    host.run(2_000_000)
    return host, dom


@pytest.mark.machine
def test_end_to_end_hvm_guest_writes_and_reads_a_sector(tmp_path):
    host, dom = run_guest(tmp_path, GUEST, "hvm")
    assert dom.state == "shutdown"
    cpu = dom.vcpus[0].cpu
    assert cpu.regs[8] == sum(0x4100 + i for i in range(256))      # read back what it wrote
    assert cpu.regs[9] & 0xFFFF == 0                                # data port with no transfer
    assert "disk ok\n" in dom.console_output
    # the data landed in the disk's private image; the target beside the config is never made
    data = private_image_bytes(host, tmp_path / "disk.img")
    assert not (tmp_path / "disk.img").exists()
    assert data[5 * 512:6 * 512] == b"".join((0x4100 + i).to_bytes(2, "little") for i in range(256))
    assert data[:5 * 512] == bytes(5 * 512)
    # the trace: IO_INSTRUCTION exits, each followed by an ioreq's three states
    evs = [e for e in host.trace.iter_all() if e.dom == dom.domid]
    io_exits = [e for e in evs if e.kind == "vmexit" and e.get("reason") == "IO_INSTRUCTION"]
    ready = [e for e in evs if e.kind == "ioreq" and e.get("state") == "STATE_IOREQ_READY"]
    assert len(ready) > 512 and len(io_exits) >= len(ready)
    states = [e.get("state") for e in evs if e.kind == "ioreq" and e.get("state", "").startswith("STATE_")]
    assert states == ["STATE_IOREQ_READY", "STATE_IOREQ_INPROCESS", "STATE_IORESP_READY"] * len(ready)
    seq = [e for e in evs if e.kind in ("vmexit", "ioreq", "ioport")]
    first = next(i for i, e in enumerate(seq) if e.kind == "ioreq")
    assert seq[first - 1].kind == "vmexit" and seq[first - 1].get("reason") == "IO_INSTRUCTION"
    assert [e.kind for e in seq[first:first + 4]] == ["ioreq", "ioreq", "ioreq", "ioport"]
    assert seq[first + 3].get("device") == "device model (ioreq)"
    notes = [e.get("state") for e in evs if e.kind == "ioreq"]
    w = notes.index("IDE0 master (hda): WRITE SECTORS lba 5 count 1")
    assert notes.index("IDE0 master (hda): sector 5 written to the image") > w
    assert notes.index("IDE0 master (hda): READ SECTORS lba 5 count 1") > w
    assert any(e.kind == "console" and e.get("text") == "disk ok" for e in evs)
    assert host.domains[0].vcpus[0].run_cycles > 0                  # dom0 did QEMU's share


@pytest.mark.machine
def test_each_ioreq_looks_its_device_up_once(tmp_path, monkeypatch):
    """Xen asks which QEMU device took the port once, and the ioreq goes to that device."""
    lookups = []
    device_at = Qemu.device_at
    monkeypatch.setattr(Qemu, "device_at", lambda self, port: lookups.append(port) or device_at(self, port))
    host, dom = run_guest(tmp_path, GUEST, "hvm")
    assert "disk ok\n" in dom.console_output
    asked = [e.get("port") for e in host.trace.iter_all() if e.kind == "ioport" and e.dom == dom.domid
             and (e.get("emulator") == "device model" or e.get("device") == "none")]
    assert len(asked) > 500 and lookups == asked


@pytest.mark.machine
def test_end_to_end_every_run_starts_from_the_same_disk(tmp_path):
    """A private image starts zero-filled on every host, whatever an earlier run wrote: replays
    see the same disk."""
    host, _ = run_guest(tmp_path, GUEST, "hvm")
    written = private_image_bytes(host, tmp_path / "disk.img")
    assert written != bytes(len(written))
    host, dom = run_guest(tmp_path, PROBE, "hvm")
    data = private_image_bytes(host, tmp_path / "disk.img")
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(bytes(len(data))).hexdigest()
    assert dom.vcpus[0].cpu.regs[10] & 0xFF == 0x50                  # DRDY | DSC: the disk is there


@pytest.mark.machine
def test_end_to_end_pvh_guest_has_no_device_model(tmp_path):
    host, dom = run_guest(tmp_path, PROBE, "pvh")
    cpu = dom.vcpus[0].cpu
    assert cpu.regs[9] & 0xFFFF == 0xFFFF and cpu.regs[10] & 0xFF == 0xFF
    assert not [e for e in host.trace.iter_all() if e.kind == "ioreq" and e.dom == dom.domid]
    io = [e for e in host.trace.iter_all() if e.kind == "ioport" and e.dom == dom.domid and e.get("port") == 0x1F0]
    assert io and io[0].get("device") == "none"
    assert host.services.device_model.instance(dom, create=False) is None   # no QEMU (blkback serves the disk)


@pytest.mark.machine
def test_blacklist_read_from_xenstore(tmp_path):
    host, dm, dom, v = setup_dm(tmp_path)
    xs = Xenstored.install(host)
    xs.dom0_request("write", "/mh/driver-blacklist/linux/7", "1")
    p = Port(dm, v)
    assert p.inw(0x10) == 0x49D2
    p.outw(0x12, 3)
    p.outl(0x10, 7)
    assert p.inw(0x10) == 0xD249
    p.outl(0x10, 8)
    assert p.inw(0x10) == 0x49D2
    assert any(e.kind == "xenstore" and "/mh/driver-blacklist/linux/8" in str(e.get("path"))
               for e in host.trace.iter_all())


ACPI_GUEST = """
.org 0x100000
_start:
    mov dx, 0x604                    ; q35's PM1a_CNT: nothing there on Xen's HVM machine
    mov ax, 0x2000
    out dx, ax
    mov dx, 0xb000                   ; PM1a_STS, PM1a_EN: Xen's (hvm/pmtimer.c)
    mov ax, 0x0100
    out dx, ax                       ; write-to-clear: nothing was set
    mov dx, 0xb002
    out dx, ax                       ; PWRBTN_EN
    in ax, dx
    mov r12, rax
    mov dx, 0xb008                   ; TMR_VAL twice: it counts up at 3.579545 MHz
    in eax, dx
    mov r13, rax
    in eax, dx
    mov r14, rax
    mov dx, 0xb004                   ; PM1a_CNT (ACPI_PM1A_CNT_BLK_ADDRESS_V1): SLP_EN, SLP_TYP 0 (S5)
    mov ax, 0x2000
    out dx, ax
.hang:
    jmp .hang
"""


def test_hvm_acpi_power_off_goes_through_the_device_model(tmp_path):
    # public/hvm/ioreq.h puts the qemu-xen ACPI blocks at 0xb000; Xen emulates the event
    # block and the PM timer (hvm/pmtimer.c), QEMU the sleep register, and QEMU's power-off
    # reaches Xen as dom0's dm_op (XEN_DMOP_remote_shutdown).
    host, dom = run_guest(tmp_path, ACPI_GUEST, "hvm")
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff"
    cpu = dom.vcpus[0].cpu
    assert cpu.regs[12] & 0xFFFF == 0x0100
    assert 0 < cpu.regs[13] < cpu.regs[14] <= 0xFFFF_FFFF
    io = {e.get("port"): e.get("device") for e in host.trace.iter_all() if e.kind == "ioport" and e.dom == dom.domid}
    by = {e.get("port"): e.get("emulator") for e in host.trace.iter_all() if e.kind == "ioport" and e.dom == dom.domid}
    assert io[0x604] == "none"
    assert io[0xB000] == io[0xB002] == io[0xB008] == "ACPI PM1a event block / PM timer (in Xen: pmtimer.c)"
    assert by[0xB000] == by[0xB002] == by[0xB008] == "xen"
    assert io.get(0xB004, "device model (ioreq)") == "device model (ioreq)"
    assert by.get(0xB004, "device model") == "device model"
    notes = [e.get("state") for e in host.trace.iter_all() if e.kind == "ioreq" and e.get("port") == 0xB004]
    assert notes[:2] == ["STATE_IOREQ_READY", "STATE_IOREQ_INPROCESS"]
    assert "ACPI PM1a_CNT: SLP_EN, SLP_TYP 0 (S5): power off" in notes
    dm_ops = [e for e in host.trace.iter_all() if e.kind == "hypercall" and e.get("name") == "dm_op"]
    assert len(dm_ops) == 1 and dm_ops[0].dom == 0 and dm_ops[0].get("nr") == 41
    assert dom.hvm_params[19] == 1                                   # HVM_PARAM_ACPI_IOPORTS_LOCATION: V1
    assert "acpi: guest entered S5, requesting shutdown" in host.services.device_model.qemu_log(dom)
