"""The bare machine's PC devices: the same IDE disk, PCI bus and NE2000 as an HVM guest's device model,
reached by plain port I/O (one ioport event each, no VM exit, no ioreq)."""

from __future__ import annotations

import pytest

from lab.hw.diskimage import DiskImage
from lab.session.build import native_machine

pytestmark = pytest.mark.machine       # every test here boots a whole machine


def pci_read(m, slot: int, reg: int) -> int:
    m.bus.port_out(m.cpu, 0xCF8, 4, 0x8000_0000 | slot << 11 | reg)
    return m.bus.port_in(m.cpu, 0xCFC, 4)


def ide_command(m, cmd: int, lba: int = 0, count: int = 1) -> None:
    m.bus.port_out(m.cpu, 0x1F6, 1, 0xE0 | (lba >> 24) & 0xF)
    m.bus.port_out(m.cpu, 0x1F2, 1, count)
    for i, port in enumerate((0x1F3, 0x1F4, 0x1F5)):
        m.bus.port_out(m.cpu, port, 1, (lba >> (8 * i)) & 0xFF)
    m.bus.port_out(m.cpu, 0x1F7, 1, cmd)


def test_pci_bus_lists_the_chipset_ide_and_the_nic():
    m = native_machine()
    assert pci_read(m, 0, 0) == 0x1237_8086          # i440FX host bridge
    assert pci_read(m, 1, 0) & 0xFFFF == 0x8086      # PIIX3 (ISA bridge, function 0)
    assert pci_read(m, 4, 0) == 0x8029_10EC          # ne2k_pci in slot 4
    assert pci_read(m, 4, 0x10) & ~3 == 0xC100       # its I/O BAR where the lab's firmware puts it
    assert pci_read(m, 3, 0) == 0xFFFF_FFFF          # no Xen platform device on bare metal


def test_ide_disk_writes_and_reads_back_by_port_io():
    disk = DiskImage.in_memory(sectors=64)
    m = native_machine(disk=disk)
    data = bytes(range(256)) * 2
    ide_command(m, 0x30, lba=5)                         # WRITE SECTORS
    assert m.bus.port_in(m.cpu, 0x1F7, 1) & 0x08        # DRQ: the drive wants the data
    for i in range(0, 512, 2):
        m.bus.port_out(m.cpu, 0x1F0, 2, int.from_bytes(data[i:i + 2], "little"))
    assert disk.read(5) == data
    ide_command(m, 0x20, lba=5)                         # READ SECTORS
    words = [m.bus.port_in(m.cpu, 0x1F0, 2) for _ in range(256)]
    assert b"".join(w.to_bytes(2, "little") for w in words) == data
    ios = [e for e in m.trace.iter_all() if e.kind == "ioport" and e.data["device"] == "ide"]
    assert len(ios) >= 2 * 256 and not [e for e in m.trace.iter_all() if e.kind in ("vmexit", "ioreq")]


def test_no_disk_means_the_ide_ports_float():
    m = native_machine(disk=None)
    assert m.bus.port_in(m.cpu, 0x1F7, 1) == 0xFF


def test_snapshot_restores_the_disk_and_the_card():
    disk = DiskImage.in_memory(sectors=16)
    m = native_machine(disk=disk)
    snap = m.snapshot()
    ide_command(m, 0x30, lba=1)
    for _ in range(256):
        m.bus.port_out(m.cpu, 0x1F0, 2, 0xABCD)
    assert m.pc.ide.drives()[0][1].image.read(1) == b"\xcd\xab" * 256
    m.restore(snap)
    assert m.pc.ide.drives()[0][1].image.read(1) == bytes(512)


def test_the_card_reaches_a_peer_that_answers_arp_like_dom0():
    from lab.dom0.bridge import DOM0_IP, DOM0_MAC
    m = native_machine()
    nic = m.pc.nic
    nic.cmd = 0x22                    # started, so it accepts what comes back
    nic.start, nic.stop, nic.curpag, nic.boundary = 0x4600, 0x8000, 0x47, 0x46   # ring in packet RAM
    nic.rxcr = 0x04                   # accept broadcast and our own address
    nic.phys[:] = nic.mac
    arp = (b"\xff" * 6 + nic.mac + b"\x08\x06" + bytes.fromhex("0001080006040001") + nic.mac
           + bytes([10, 0, 0, 2]) + bytes(6) + DOM0_IP)
    nic.send(arp)
    (reply,) = nic.received
    assert reply[:6] == nic.mac and reply[6:12] == DOM0_MAC and reply[20:22] == b"\x00\x02"
    snap = m.snapshot()
    m.restore(snap)
    m.pc.nic.send(arp)                # after a restore the cable still ends at the live card
    assert len(m.pc.nic.received) == 2


def test_the_native_shell_answers_on_com1_and_pings_the_peer(tmp_path):
    from lab.paths import MACHINES
    from lab.session.commands import execute
    from lab.session.targets import build_target
    from lab.session.session import Session
    scenario = tmp_path / "shell.toml"
    scenario.write_text(f'[native]\nkernel = "{MACHINES / "kernels/native.s"}"\n'
                        f'program = "{MACHINES / "programs/workload.s"}"\nshell = true\n')
    s = Session(build_target([str(scenario)])[1])
    execute(s, "run 500000")
    assert "xenlab shell" in s.console() and "workload:" not in s.console()
    for line in ("ping 10.0.0.1", "disk write 2 native", "disk read 2"):
        assert "typed" in execute(s, f"console {line}")
        execute(s, "run 1000000")
    out = s.console()
    assert "echo reply from 00:16:3e:00:00:01" in out and "sector 2: native" in out
    # straight to the image through the IDE registers, never through a hypervisor
    assert s.machine.pc.ide.drives()[0][1].image.read(2).startswith(b"native")


def test_the_shells_system_call_comes_from_user_mode_and_costs_no_hypervisor(tmp_path):
    from lab.paths import MACHINES
    from lab.session.commands import execute
    from lab.session.targets import build_target
    from lab.session.session import Session
    scenario = tmp_path / "shell.toml"
    scenario.write_text(f'[native]\nkernel = "{MACHINES / "kernels/native.s"}"\n'
                        f'program = "{MACHINES / "programs/workload.s"}"\nshell = true\n')
    s = Session(build_target([str(scenario)])[1])
    execute(s, "run 500000")
    mark = s.machine.trace.seq
    execute(s, "console syscall")
    execute(s, "run 500000")
    assert "getpid() = 1 (from user mode) in " in s.console()
    calls = [e for e in s.machine.trace.iter_all() if e.seq >= mark and e.kind == "syscall"]
    assert [e.data["nr"] for e in calls] == [39, 513] and all(e.data["via"] == "syscall" for e in calls)
    execute(s, "console syscall")                 # the shell's stack survived: it works again
    execute(s, "run 500000")
    assert s.console().count("(from user mode)") == 2


def test_the_bare_boards_8259_takes_the_cards_and_the_uarts_rises_only():
    # The bare board has no PCI interrupt router and an edge-triggered 8259: INTA reaches the
    # line in the card's interrupt line register, a rise requests, a fall takes nothing back.
    m = native_machine()
    pic, nic, uart = m.pic, m.pc.nic, m.pc.serial
    nic.io_write(0xC100 + 0x0F, 1, 0x80 | 0x40)     # IMR: RDC (and RST, which never interrupts)
    nic.io_write(0xC100 + 0x0A, 1, 0)               # a remote read of nothing: RDC at once
    nic.io_write(0xC100 + 0x0B, 1, 0)
    nic.io_write(0xC100, 1, 0x0A)
    assert pic.irr & (1 << 5)                       # slot 4's line, 5
    nic.io_write(0xC100 + 0x07, 1, 0x40)            # acknowledged: INTA falls
    assert nic.irq_level is False and pic.irr & (1 << 5)
    uart.io_write(0x3F9, 1, 0x01)
    uart.feed(b"k")
    assert pic.irr & (1 << 4)
    assert uart.io_read(0x3F8, 1) == ord("k") and uart.irq_pending is False and pic.irr & (1 << 4)
