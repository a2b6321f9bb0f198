"""The guest kernels' disk drivers: the emulated IDE disk (native and HVM), the Xen platform device's
unplug protocol (HVM with PV drivers), and the PV disk (blkfront) the PV-driver flavours reach after
the unplug, with their event delivery: the platform device's interrupt on the emulated PIC, or
PVHVM's callback vector and PV timer.

Besides the workload's own disk step (it writes sector 0 and reads it back), each test can splice a
self-test into a kernel flavour: its OP_BLK_INIT runs the flavour's driver, then a list of OP_BLK_RW
requests, keeping every result in memory. The test reads the results, the kernel's buffers, the disk
image and the trace of the run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.hw.diskimage import DiskImage
from lab.hw.boot import physical_of
from lab.isa.assembler import assemble_file
from lab.paths import KERNELS, MACHINES, PROGRAMS
from lab.session.build import native_machine
from lab.xen import abi
from test_machine import workload_sector
from xen_helpers import (CHECKSUM_LINE, EXIT_LINE, VMX_EXIT, events, peek, private_image_bytes, reading_host_images,
                         signed, small_host, write_cfg)

pytestmark = pytest.mark.machine       # every test here boots a whole machine

SECTOR = 512
SECTORS = 2048
EIO, ENODEV, EINVAL = 5, 19, 22
#: Linux's product number in the unplug protocol (public/hvm/pvdrivers.h)
PRODUCT_LINUX = 3
IDE_PORTS = set(range(0x1F0, 0x1F8)) | {0x3F6}
#: the NE2000's I/O BAR where the lab's firmware puts it (0xC100, 32 bytes)
NIC_PORTS = set(range(0xC100, 0xC120))
PING_OK = "workload: ping 10.0.0.1 ok"
IDE_LINE = f"blk: ide (primary master, LBA28, PIO) {SECTORS} sectors"
PV_LINE = f"blk: xen-blkfront {SECTORS} sectors"
DISK_OK = "workload: disk ok"
#: a bound on every run, far above what a guest here needs, so a guest that hangs fails instead
MAX_INSNS = 30_000_000
#: request kinds of the self-test besides 0 read / 1 write
PROBE_IDE = 2               # call ide_init directly (after an unplug it must find nothing)

SELFTEST = """
.text
selftest:
    call {orig}
    push rax
    push rbx
    mov [rip + st_init], rax
    lea rbx, [rip + st_script]
.next:
    mov rdi, [rbx]
    cmp rdi, -1
    je .end
    cmp rdi, 2
    je .probe
    mov rsi, [rbx + 8]
    lea rdx, [rip + st_buf]
    add rdx, [rbx + 16]
    mov rcx, [rbx + 24]
    call [rip + pv_ops + OP_BLK_RW]
    jmp .done
.probe:
    call ide_init
.done:
    mov [rbx + 32], rax
    add rbx, 40
    jmp .next
.end:
    pop rbx
    pop rax
    ret
.data
.align 8
st_init: .quad 0x5555
st_script:
{script}
.align 4096
st_buf:
{buf}
"""


def pattern(n: int, seed: int) -> bytes:
    """n bytes no two runs of a test confuse: a simple affine sequence."""
    return bytes((i * 7 + seed * 31 + (i >> 9)) & 0xFF for i in range(n))


def selftest_kernel(directory: Path, flavour: str, requests: list[tuple[int, int, int, int]],
                    buf: bytes = b"") -> Path:
    """``flavour`` (a file in machines/kernels) with the self-test spliced into its OP_BLK_INIT.

    ``requests``: (0 read / 1 write, sector, offset into the page-aligned 32 KiB buffer, sectors);
    ``buf``: the buffer's first bytes (the data to write)."""
    src = (KERNELS / flavour).read_text()
    init = re.search(r"^\.equ BLK_INIT_OP, (\w+)$", src, re.M)
    assert init, f"{flavour} names no BLK_INIT_OP"
    script = "\n".join(f"    .quad {d}, {s}, {o}, {c}, 0x5555" for d, s, o, c in requests) + "\n    .quad -1"
    data = buf.ljust(32768, b"\0")
    rows = "\n".join("    .byte " + ", ".join(str(b) for b in data[i:i + 64]) for i in range(0, len(data), 64))
    src = src.replace(init.group(0), ".equ BLK_INIT_OP, selftest")
    src = src.replace('.include "common/kernel.s"',
                      SELFTEST.format(orig=init.group(1), script=script, buf=rows)
                      + '\n.include "common/kernel.s"')
    path = directory / f"selftest_{flavour}"
    path.write_text(src)
    return path


class Run:
    """A guest (or the bare machine) that ran the self-test: its results, buffer and trace."""

    def __init__(self, host, dom, image: Path | None, read_mem) -> None:
        self.host, self.dom, self.image = host, dom, image
        self._read = read_mem

    def sym(self, name: str) -> int:
        return self.symbols[name]

    @property
    def init(self) -> int:
        return signed(int.from_bytes(self._read(self.sym("st_init"), 8), "little"))

    def result(self, i: int) -> int:
        return signed(int.from_bytes(self._read(self.sym("st_script") + 40 * i + 32, 8), "little"))

    def buf(self, offset: int, n: int) -> bytes:
        return self._read(self.sym("st_buf") + offset, n)

    def sectors(self, first: int, count: int) -> bytes:
        data = private_image_bytes(self.host, self.image)
        return data[first * SECTOR:(first + count) * SECTOR]


    def u64(self, name: str) -> int:
        return int.from_bytes(self._read(self.sym(name), 8), "little")


def make_image(path: Path, contents: dict[int, bytes]) -> Path:
    data = bytearray(SECTORS * SECTOR)
    for sector, blob in contents.items():
        data[sector * SECTOR:sector * SECTOR + len(blob)] = blob
    path.write_bytes(bytes(data))
    return path


def workload_sector_bytes() -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in workload_sector())


def run_guest(tmp_path: Path, flavour: str, requests=(), buf: bytes = b"", *, image: Path | None = None,
              blacklist=(), vif: bool = False, platform: bool = True, vendor: str = "intel") -> Run:
    host, xl = small_host(vendor=vendor)
    host.services.device_model.driver_blacklist = set(blacklist)
    kernel = selftest_kernel(tmp_path, flavour, list(requests), buf)
    keys = {"hap": 1}
    if image is not None:
        keys["disk"] = [f"format=raw, vdev=hda, access=rw, target={image}"]
    if vif:
        keys["vif"] = ["mac=00:16:3e:00:00:07, model=ne2k_pci"]
    if not platform:
        keys["xen_platform_pci"] = 0
    with reading_host_images():                 # the image files are the disks' starting content
        dom = xl.create(write_cfg(tmp_path, "g", "hvm", kernel, **keys))
        host.run(MAX_INSNS)
    assert dom.state == "shutdown", f"the guest did not finish:\n{dom.console_output}"
    run = Run(host, dom, image, lambda va, n: peek(host, dom, va, n))
    run.symbols = dom.images["kernel"].symbols
    return run


def guest_ioports(run: Run, ports=IDE_PORTS) -> list:
    return [e for e in events(run.host, "ioport", dom=run.dom.domid) if e.data["port"] in ports]


def ioreq_states(run: Run) -> list[str]:
    return [e.data.get("state", "") for e in events(run.host, "ioreq", dom=run.dom.domid)]


def unplug_seq(run: Run) -> int:
    return next(e.seq for e in events(run.host, "ioreq", dom=run.dom.domid)
                if "unplug mask" in e.data.get("state", ""))


def blk_ring(run: Run) -> list:
    """The block ring's traffic (requests and responses) as blkback saw it."""
    return [e for e in events(run.host, "ring_io", dom=run.dom.domid) if e.data["ring"].startswith("blkback")]


def hypercall_args(run: Run, name: str) -> list[list]:
    return [e.data["args"] for e in events(run.host, "hypercall", dom=run.dom.domid, name=name)]


# ------------------------------------------------------------------ IDE on an HVM guest

def test_hvm_guest_reads_and_writes_sectors_through_the_emulated_ide_disk(tmp_path):
    original = pattern(2 * SECTOR, 1)
    new = pattern(3 * SECTOR, 2)
    image = make_image(tmp_path / "hda.img", {1: original, 10: b"\xee" * (3 * SECTOR)})
    run = run_guest(tmp_path, "hvm.s", [(0, 1, 0x1000, 2),       # read sectors 1-2 into page 1
                                       (1, 10, 0, 3),            # write page 0 to sectors 10-12
                                       (0, 10, 0x2000, 3)],      # and read them back into page 2
                    buf=new, image=image)
    out = run.dom.console_output
    assert run.init == SECTORS and IDE_LINE in out
    assert [run.result(i) for i in range(3)] == [0, 0, 0]
    assert run.buf(0x1000, 2 * SECTOR) == original
    assert run.sectors(10, 3) == new                                  # the image file keeps the write
    assert run.buf(0x2000, 3 * SECTOR) == new
    assert run.sectors(13, 1) == bytes(SECTOR) and run.sectors(1, 2) == original
    # the workload's own disk step: sector 0 written, read back and folded into the checksum
    assert run.sectors(0, 1) == workload_sector_bytes()
    assert DISK_OK in out and CHECKSUM_LINE in out and EXIT_LINE in out
    # every IDE access left the guest as an I/O exit and went to the device model as an ioreq
    ide = guest_ioports(run)
    data_port = [e for e in ide if e.data["port"] == 0x1F0]
    assert len(data_port) == 256 * (1 + 2 + 3 + 3 + 2)               # IDENTIFY, 8 sectors, the workload's 2
    assert all(e.data["size"] == 2 and e.data["device"] == "device model (ioreq)" for e in data_port)
    io_exits = events(run.host, "vmexit", dom=run.dom.domid, reason="IO_INSTRUCTION")
    assert all(e.data["nr"] == VMX_EXIT["IO_INSTRUCTION"] for e in io_exits) and len(io_exits) >= len(ide)
    ioreqs = [e for e in events(run.host, "ioreq", dom=run.dom.domid) if e.data.get("port") in IDE_PORTS]
    assert len([e for e in ioreqs if e.data["state"] == "STATE_IORESP_READY"]) == len(ide)
    states = ioreq_states(run)
    assert sum("IDENTIFY DEVICE" in s for s in states) == 1
    assert any("READ SECTORS lba 1 count 2" in s for s in states)
    assert any("WRITE SECTORS lba 10 count 3" in s for s in states)
    assert any("WRITE SECTORS lba 0 count 1" in s for s in states)
    assert sum("written to the image" in s for s in states) == 3 + 1
    assert sum("FLUSH CACHE" in s for s in states) == 2                 # after each write command


def test_hvm_ide_driver_refuses_bad_requests_and_reports_device_errors(tmp_path):
    image = make_image(tmp_path / "hda.img", {})
    run = run_guest(tmp_path, "hvm.s", [(0, 0, 0, 0),                 # no sectors
                                       (0, 0, 0, 9),                  # more than a page
                                       (0, SECTORS - 1, 0, 2),        # runs off the end of the disk
                                       (1, SECTORS, 0, 1),            # starts beyond it
                                       (0, SECTORS - 1, 0, 1)],       # the last sector is fine
                    image=image)
    assert [run.result(i) for i in range(5)] == [-EINVAL, -EINVAL, -EIO, -EIO, 0]
    states = ioreq_states(run)
    assert not any(f"lba {SECTORS - 1} count 2" in s or f"lba {SECTORS} " in s for s in states)
    assert any(f"READ SECTORS lba {SECTORS - 1} count 1" in s for s in states)


def test_hvm_guest_without_a_disk_gets_enodev_and_the_same_checksum(tmp_path):
    run = run_guest(tmp_path, "hvm.s", [(0, 0, 0, 1)])
    out = run.dom.console_output
    assert run.init == -ENODEV and run.result(0) == -ENODEV
    assert "blk: no disk" in out and "workload: no disk" in out and CHECKSUM_LINE in out
    # the probe found the ports floating: one status read, nothing behind it
    assert all(e.data["device"] == "none" for e in guest_ioports(run))


def test_hvm_ide_on_an_amd_host(tmp_path):
    data = pattern(SECTOR, 5)
    image = make_image(tmp_path / "hda.img", {7: data})
    run = run_guest(tmp_path, "hvm.s", [(0, 7, 0, 1)], image=image, vendor="amd")
    assert run.result(0) == 0 and run.buf(0, SECTOR) == data
    assert events(run.host, "vmexit", dom=run.dom.domid, reason="IOIO")


# ------------------------------------------------------------------ the bare machine

def test_native_kernel_drives_the_same_ide_disk_with_plain_port_io(tmp_path):
    disk_path = make_image(tmp_path / "native.img", {3: pattern(SECTOR, 3)})
    new = pattern(2 * SECTOR, 4)
    kernel = selftest_kernel(tmp_path, "native.s", [(0, 3, 0x1000, 1), (1, 20, 0, 2)], buf=new)
    disk = DiskImage.in_memory(SECTORS)
    disk.load_from(disk_path)
    m = native_machine(kernel=kernel, disk=disk)
    m.run(MAX_INSNS)
    sym = assemble_file(kernel, include_dirs=[KERNELS, PROGRAMS]).symbols

    def read(name: str, off: int, n: int) -> bytes:
        return m.mem.read(physical_of(sym[name]) + off, n)

    assert int.from_bytes(read("st_init", 0, 8), "little") == SECTORS
    assert [signed(int.from_bytes(read("st_script", 40 * i + 32, 8), "little")) for i in range(2)] == [0, 0]
    assert read("st_buf", 0x1000, SECTOR) == pattern(SECTOR, 3)
    image = disk.read(0, SECTORS)
    assert image[20 * SECTOR:22 * SECTOR] == new and image[:SECTOR] == workload_sector_bytes()
    assert IDE_LINE in m.console.output and DISK_OK in m.console.output and CHECKSUM_LINE in m.console.output
    ide = [e for e in m.trace.iter_all() if e.kind == "ioport" and e.data["port"] in IDE_PORTS]
    assert len([e for e in ide if e.data["port"] == 0x1F0]) == 256 * (1 + 1 + 2 + 2)
    assert not [e for e in m.trace.iter_all() if e.kind in ("vmexit", "ioreq")]


# ------------------------------------------------------------------ the unplug protocol

def test_hvm_pvdrivers_unplugs_the_emulated_disk_and_nic(tmp_path):
    image = make_image(tmp_path / "hda.img", {})
    run = run_guest(tmp_path, "hvm_pvdrivers.s", [(PROBE_IDE, 0, 0, 0)], image=image, vif=True)
    out = run.dom.console_output
    assert "xenlab kernel (HVM guest with PV drivers, non-root ring 0)" in out
    assert "platform: unplugged emulated disks and NICs" in out
    dm = run.host.services.device_model
    log = dm.qemu_log(run.dom)
    assert "unplug: IDE disk hda removed" in log and "unplug: NIC ne2k_pci 00:04.0 removed" in log
    assert "xen_platform: xenlab PV drivers: unplugging emulated disks and NICs" in log   # logged via port 0x12
    # the protocol's steps, in order, as the platform device saw them
    states = [s for s in ioreq_states(run) if s.startswith("xen-platform")]
    steps = ["magic 0x49d2 read", "protocol version 1 read", f"PV driver product {PRODUCT_LINUX} (linux)",
             "PV driver build", "magic 0x49d2 read", "log line", "unplug mask 0x0003"]
    pos = 0
    for step in steps:
        while pos < len(states) and step not in states[pos]:
            pos += 1
        assert pos < len(states), f"{step!r} missing or out of order in {states}"
        pos += 1
    # found on the PCI bus through configuration mechanism #1
    pci = [e for e in events(run.host, "ioport", dom=run.dom.domid) if e.data["port"] == 0xCFC]
    assert any(e.data["dir"] == "in" and e.data["value"] == 0x0001_5853 for e in pci)
    # after the unplug the IDE ports answer nobody: the IDE driver probes and finds nothing
    assert run.result(0) == -ENODEV
    after = [e for e in guest_ioports(run) if e.seq > unplug_seq(run)]
    assert after and all(e.data["device"] == "none" for e in after)
    assert any(e.data["port"] == 0x1F7 and e.data["value"] == 0xFF for e in after)
    assert not dm.claims(run.dom, 0x1F7) and not dm.claims(run.dom, 0x1F0)
    assert [line for line in dm.lspci(run.dom) if "NE2000" in line] == []


def test_blacklisted_pv_drivers_keep_the_emulated_ide_disk(tmp_path):
    data = pattern(SECTOR, 9)
    image = make_image(tmp_path / "hda.img", {4: data})
    build = assemble_file(KERNELS / "hvm_pvdrivers.s",
                          include_dirs=[KERNELS, PROGRAMS]).symbols["XEN_PV_DRIVER_BUILD"]
    run = run_guest(tmp_path, "hvm_pvdrivers.s", [(0, 4, 0, 1)], image=image, vif=True,
                    blacklist={("linux", build)})
    out = run.dom.console_output
    assert "platform: the device model blacklists these PV drivers (magic 0xd249)" in out
    assert "unplugged" not in out
    states = ioreq_states(run)
    assert any("magic 0xd249 read" in s for s in states)
    assert not any("unplug mask" in s for s in states)
    assert run.host.services.device_model.claims(run.dom, 0x1F7)
    # so the kernel keeps the emulated disk, and no PV disk is connected
    assert run.init == SECTORS and run.result(0) == 0 and run.buf(0, SECTOR) == data
    assert IDE_LINE in out and DISK_OK in out and CHECKSUM_LINE in out
    assert any("READ SECTORS lba 4 count 1" in s for s in states)
    assert not blk_ring(run)
    # and the emulated NIC: the ping goes out through the NE2000's ports, not netfront
    assert guest_ioports(run, NIC_PORTS) and PING_OK in out and "netfront" not in out


def test_without_the_platform_device_the_kernel_keeps_the_emulated_disk(tmp_path):
    image = make_image(tmp_path / "hda.img", {1: b"boot"})
    run = run_guest(tmp_path, "hvm_pvdrivers.s", [(0, 1, 0, 1)], image=image, platform=False)
    assert "platform: no Xen platform PCI device" in run.dom.console_output
    assert run.init == SECTORS and run.buf(0, 4) == b"boot"
    assert not any(s.startswith("xen-platform") for s in ioreq_states(run))


# ------------------------------------------------------------------ PV disk after the unplug

def pv_disk_run(tmp_path: Path, flavour: str) -> tuple[Run, bytes, bytes]:
    original = pattern(2 * SECTOR, 11)
    new = pattern(8 * SECTOR, 12)
    image = make_image(tmp_path / "hda.img", {5: original})
    run = run_guest(tmp_path, flavour, [(0, 5, 0x1000, 2),             # read sectors 5-6
                                       (1, 100, 0, 8),                 # a whole page to sectors 100-107
                                       (0, 100, 0x2000, 8),            # and back
                                       (0, 0, 0, 9),                   # too many sectors
                                       (0, SECTORS, 0x3000, 1)],       # beyond the disk: the backend says no
                    buf=new, image=image, vif=True)
    return run, original, new


def check_pv_disk(run: Run, original: bytes, new: bytes) -> None:
    out = run.dom.console_output
    assert "platform: unplugged emulated disks and NICs" in out
    assert "unplug: IDE disk hda removed" in run.host.services.device_model.qemu_log(run.dom)
    assert run.init == SECTORS and PV_LINE in out
    assert [run.result(i) for i in range(5)] == [0, 0, 0, -EINVAL, -EIO]
    assert run.buf(0x1000, 2 * SECTOR) == original
    assert run.sectors(100, 8) == new and run.buf(0x2000, 8 * SECTOR) == new
    assert run.sectors(0, 1) == workload_sector_bytes()
    assert DISK_OK in out and CHECKSUM_LINE in out and EXIT_LINE in out
    # the network card is a PV one too: netfront, and not one port access to the NE2000
    assert "netfront: connected" in out and PING_OK in out and not guest_ioports(run, NIC_PORTS)
    # the disk went through the ring, never through the device model
    ring = [e.data for e in blk_ring(run) if e.data["op"].startswith("request")]
    assert [(d["op"], d["sector"]) for d in ring] == [("request READ", 5), ("request WRITE", 100),
                                                      ("request READ", 100), ("request READ", SECTORS),
                                                      ("request WRITE", 0), ("request READ", 0)]
    assert not [e for e in events(run.host, "ioreq", dom=run.dom.domid)
                if e.data.get("port") in IDE_PORTS and e.seq > unplug_seq(run)]
    assert not [s for s in ioreq_states(run) if s.startswith("IDE")]      # the IDE device never did a thing
    # shared_info and the grant table were added to the guest's physmap, as HVM guests get them
    physmap = [a[1] for a in hypercall_args(run, "memory_op") if a[0] == "XENMEM_add_to_physmap"]
    assert any(a.startswith("XENMAPSPACE_shared_info") for a in physmap)
    assert any(a.startswith("XENMAPSPACE_grant_table") for a in physmap)


def test_hvm_pvdrivers_reads_and_writes_its_disk_through_blkfront(tmp_path):
    run, original, new = pv_disk_run(tmp_path, "hvm_pvdrivers.s")
    check_pv_disk(run, original, new)
    # events came as the platform device's interrupt: GSI 5 on the emulated PIC, vector 0x25
    assert ["HVMOP_set_param", "HVM_PARAM_CALLBACK_IRQ", "0x5"] in hypercall_args(run, "hvm_op")
    assert "GSI 5" in run.dom.console_output
    irqs = events(run.host, "interrupt", dom=run.dom.domid)
    assert irqs and {e.data["vector"] for e in irqs} == {0x25}
    assert run.u64("callback_irqs") >= 1
    # each handled interrupt was acknowledged: an EOI to the PIC's command port
    eois = [e for e in events(run.host, "ioport", dom=run.dom.domid)
            if e.data["port"] == 0x20 and e.data["dir"] == "out" and e.data["value"] == 0x20]
    assert len(eois) == run.u64("callback_irqs")


def test_pvhvm_reads_and_writes_its_disk_through_blkfront_with_the_callback_vector(tmp_path):
    run, original, new = pv_disk_run(tmp_path, "pvhvm.s")
    check_pv_disk(run, original, new)
    out = run.dom.console_output
    assert "xenlab kernel (PVHVM guest, non-root ring 0, callback vector)" in out
    via = (2 << 56) | abi.HYPERVISOR_CALLBACK_VECTOR
    assert ["HVMOP_set_param", "HVM_PARAM_CALLBACK_IRQ", f"{via:#x}"] in hypercall_args(run, "hvm_op")
    irqs = events(run.host, "interrupt", dom=run.dom.domid)
    assert irqs and {e.data["vector"] for e in irqs} == {0xF3}
    # no PIC involved: no EOI, and the 8259A has every line masked
    assert not [e for e in events(run.host, "ioport", dom=run.dom.domid)
                if e.data["port"] == 0x20 and e.data["value"] == 0x20 and e.data["dir"] == "out"]
    assert not [e for e in events(run.host, "ioport", dom=run.dom.domid) if 0x40 <= e.data["port"] <= 0x43]


def test_pvhvm_times_with_the_pv_timer(tmp_path):
    host, xl = small_host()
    dom = xl.create(MACHINES / "pvhvm-guest.cfg")
    host.run(MAX_INSNS, stop=lambda: "workload: system calls" in dom.console_output)
    assert "pvhvm: PV timer: VIRQ_TIMER, one-shot deadlines (tickless)" in dom.console_output
    ports = host.evtchn.ports[dom.domid]
    assert [p for p, port in ports.items() if port.state == "virq" and port.virq == abi.VIRQ_TIMER]
    # no periodic timer (an HVM vCPU has none unless asked) and nothing armed: no tick
    assert dom.vcpus[0].periodic_period == 0 and dom.vcpus[0].timer_deadline is None
    ticks = dom.images["kernel"].symbols["ticks"]

    def count() -> int:
        return int.from_bytes(peek(host, dom, ticks, 8), "little")

    assert count() == 0
    for i in range(3):
        host.evtchn.send_virq(dom.domid, abi.VIRQ_TIMER, 0)
        host.run(3_000)
        assert count() == i + 1
    assert all(e.data["vector"] == 0xF3 for e in events(host, "interrupt", dom=dom.domid))
    host.run(MAX_INSNS)
    assert "timer ticks 3" in dom.console_output and CHECKSUM_LINE in dom.console_output


# ------------------------------------------------------------------ the stock configs

def stock_with_disk(tmp_path: Path, cfg: str, image: Path | None) -> Path:
    # the stock config's own disk (an image in the lab's data directory) is replaced
    text = "".join(line for line in (MACHINES / cfg).read_text().splitlines(keepends=True)
                   if not line.startswith("disk ="))
    if image is not None:
        text += f"disk = ['format=raw, vdev=hda, access=rw, target={image}']\n"
    path = tmp_path / cfg
    path.write_text(text)
    return path


def test_stock_configs_run_the_workload_with_and_without_a_disk(tmp_path):
    for cfg, flavour, mode in (("hvm-pvdrivers-guest.cfg", "HVM guest with PV drivers, non-root ring 0",
                                "hvm-pvdrivers"),
                               ("pvhvm-guest.cfg", "PVHVM guest, non-root ring 0, callback vector", "pvhvm")):
        for with_disk in (True, False):
            image = make_image(tmp_path / f"{mode}.img", {}) if with_disk else None
            host, xl = small_host()
            dom = xl.create(stock_with_disk(tmp_path, cfg, image))
            host.run(MAX_INSNS)
            out = dom.console_output
            assert dom.mode == mode and dom.type == "hvm"
            assert f"xenlab kernel ({flavour})" in out
            assert "platform: unplugged emulated disks and NICs" in out
            assert CHECKSUM_LINE in out and EXIT_LINE in out
            if with_disk:
                assert PV_LINE in out and DISK_OK in out
                assert private_image_bytes(host, image)[:SECTOR] == workload_sector_bytes()
            else:
                assert "blk: no disk" in out and "workload: no disk" in out


@pytest.mark.parametrize("cfg", ["hvm-pvdrivers-guest.cfg", "pvhvm-guest.cfg"])
@pytest.mark.parametrize("vendor, ept, hap", [("amd", True, 1), ("intel", True, 0)])
def test_pv_disk_flavours_on_amd_and_with_shadow_paging(tmp_path, cfg, vendor, ept, hap):
    image = make_image(tmp_path / "hda.img", {})
    path = stock_with_disk(tmp_path, cfg, image)
    path.write_text(path.read_text().replace("hap = 1", f"hap = {hap}"))
    host, xl = small_host(vendor=vendor, ept=ept)
    dom = xl.create(path)
    host.run(MAX_INSNS)
    out = dom.console_output
    assert PV_LINE in out and DISK_OK in out and CHECKSUM_LINE in out
    assert private_image_bytes(host, image)[:SECTOR] == workload_sector_bytes()
    exits = {e.data["reason"] for e in events(host, "vmexit", dom=dom.domid)}
    assert ("VMMCALL" in exits) == (vendor == "amd") and ("VMCALL" in exits) == (vendor == "intel")
