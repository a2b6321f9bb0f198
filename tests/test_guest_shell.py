"""The guest shell (shell.s) typed at through each guest's console, and xenconsoled's console input."""

from __future__ import annotations

import pytest

from lab.xen.console import IN_CONS, IN_PROD
from test_guest_net import HVM_MAC, PV_MAC, command, net_host, shell_guest, type_line, wait_prompt
from xen_helpers import private_image_bytes, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

SECTOR = 512


def ring_indexes(host, dom) -> tuple[int, int]:
    base = dom.p2m[dom.console_pfn] << 12
    return (int.from_bytes(host.mem.read(base + IN_CONS, 4), "little"),
            int.from_bytes(host.mem.read(base + IN_PROD, 4), "little"))


def disk_and_ping(host, dom, image, sector: int, text: str) -> None:
    assert command(host, dom, f"disk write {sector} {text}") == f"sector {sector} written\n"
    data = private_image_bytes(host, image)
    assert data[sector * SECTOR:(sector + 1) * SECTOR] == text.encode().ljust(SECTOR, b"\0")
    assert command(host, dom, f"disk read {sector}") == f"sector {sector}: {text}\n"
    assert command(host, dom, f"disk read {sector + 1}") == f"sector {sector + 1}: \n"
    assert command(host, dom, "ping 0") == "ping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 1\n"


def test_hvm_shell_over_the_serial_port(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "h1", "hvm", mac=HVM_MAC, disk=True)
    boot = wait_prompt(host, dom)
    assert "xenlab shell" in boot
    disk_and_ping(host, dom, tmp_path / "h1.img", 5, "hello from the HVM shell")
    assert "disk read N" in command(host, dom, "help")
    assert command(host, dom, "frobnicate") == "unknown command; type help\n"
    assert command(host, dom, "disk read") == "usage: disk read N | disk write N TEXT\n"
    assert command(host, dom, "ping 10.0.0") == "usage: ping DOMID | ping A.B.C.D\n"
    assert command(host, dom, "disk read 99999999").startswith("disk: the disk has ")
    out = command(host, dom, "cpuid")
    assert out.startswith("cpuid: GenuineIntel / XenVMMXenVMM, both in ") and out.endswith(" cycles\n")
    # the input came through the emulated 16550: every key a port read, an ioreq
    assert any(e.kind == "ioreq" and e.get("port") == 0x3F8 and e.get("dir") == "in" for e in host.trace.iter_all())


def test_pv_shell_over_the_console_ring(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "p1", "pv", mac=PV_MAC, disk=True)
    wait_prompt(host, dom)
    disk_and_ping(host, dom, tmp_path / "p1.img", 3, "written by the PV guest")
    cons, prod = ring_indexes(host, dom)
    assert cons == prod > 0                          # the kernel read everything xenconsoled wrote
    stats = command(host, dom, "stats")
    assert "frames sent 2" in stats and "received 2" in stats
    mark = host.trace.seq
    out = command(host, dom, "syscall")
    assert out.startswith("getpid() = 1 (from user mode) in ")
    # a real system call from user mode: bounced through Xen, then the stub's call back to the shell
    calls = [e for e in host.trace.iter_all() if e.seq >= mark and e.kind == "syscall" and e.dom == dom.domid]
    assert [e.data["nr"] for e in calls] == [39, 513]
    assert all("Xen" in e.data["via"] for e in calls)
    assert command(host, dom, "syscall").startswith("getpid() = 1 (from user mode) in ")   # and again
    # a line typed with a correction (backspace) arrives corrected
    start = len(dom.console_output)
    type_line(host, dom, "pinf\x7fg 0")
    wait_prompt(host, dom, start + 8)
    assert dom.console_output[start:] == "pinf\b \bg 0\nping 10.0.0.1: echo reply from 00:16:3e:00:00:01 seq 2\nguest# "


def test_pvh_shell_disk_ping_and_counters(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "v1", "pvh", mac="00:16:3e:00:00:41", disk=True)
    boot = wait_prompt(host, dom)
    assert "IP 10.0.0.11" in boot
    disk_and_ping(host, dom, tmp_path / "v1.img", 7, "PVH sector")
    out = command(host, dom, "touch")
    assert out.startswith("touch: heap page 0x0000000010000000 faulted in; demand faults 1 in ")
    out = command(host, dom, "touch")
    assert out.startswith("touch: heap page 0x0000000010001000 faulted in; demand faults 2 in ")
    assert not [e for e in host.trace.iter_all() if e.kind == "ioreq" and e.dom == dom.domid]


def test_console_input_fills_the_ring_and_waits_for_room(tmp_path):
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "p", "pv"))
    cons = host.services.xenconsoled
    text = "".join(chr(0x41 + i % 26) for i in range(1500))
    assert cons.console_input(dom, text)
    base = dom.p2m[dom.console_pfn] << 12
    assert ring_indexes(host, dom) == (0, 1024)                 # full: the rest waits
    assert host.mem.read(base, 1024) == text[:1024].encode()
    sends = [e for e in host.trace.iter_all() if e.kind == "evtchn" and e.get("op") == "send" and e.dom == 0]
    assert len(sends) == 1                                      # the guest was notified
    ring = [e for e in host.trace.iter_all() if e.kind == "ring_io" and e.get("ring") == "console"]
    assert [(e.dom, e.get("req_prod"), e.get("req_cons")) for e in ring] == [(dom.domid, 1024, 0)]
    # the guest reads 1000 bytes and notifies: xenconsoled moves what still waits
    host.mem.write(base + IN_CONS, (1000).to_bytes(4, "little"))
    port = next(p for p, d in cons.ports.items() if d == dom.domid)
    cons.notified(port)
    assert ring_indexes(host, dom) == (1000, 1500)
    assert len([e for e in host.trace.iter_all() if e.kind == "evtchn" and e.get("op") == "send" and e.dom == 0]) == 2
    assert host.mem.read(base + 1024 % 1024, 1) == text[1024].encode()      # wrapped to in[0]
    assert host.mem.read(base + (1499 % 1024), 1) == text[1499].encode()
    # nothing to type into: dom0, and a guest whose ring indexes are nonsense keeps its input
    assert not cons.console_input(host.domains[0], "x")
    host.mem.write(base + IN_CONS, (5000).to_bytes(4, "little"))
    assert cons.console_input(dom, "more")
    assert ring_indexes(host, dom) == (5000, 1500)


def test_shell_without_a_disk_or_a_network_card(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "bare", "pv")
    boot = wait_prompt(host, dom)
    assert "net: card up" not in boot
    assert command(host, dom, "ping 0") == "ping 10.0.0.1: no network card\n"
    assert command(host, dom, "disk read 1") == "disk: no disk\n"
    assert command(host, dom, "stats").startswith("syscalls 0, demand faults 0, timer ticks ")


def test_run_starts_the_workload_from_the_shell(tmp_path):
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "w", "pv")
    wait_prompt(host, dom)
    assert command(host, dom, "touch").startswith("touch: heap page 0x0000000010000000 faulted in; ")
    start = len(dom.console_output)
    type_line(host, dom, "run")
    host.run(20_000_000, stop=lambda: dom.state == "shutdown")
    out = dom.console_output[start:]
    assert out.startswith("run\nworkload: ") and "kernel: program exited with code 0" in out
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff"


def test_pvhvm_shell_reads_its_pv_console_and_its_serial_port(tmp_path):
    """drivers/tty/hvc/hvc_xen.c: a PVHVM guest's hvc0 is the console ring HVM_PARAM_CONSOLE_PFN
    names; xenconsoled writes what is typed into in[] and notifies HVM_PARAM_CONSOLE_EVTCHN, and
    the guest reads it there. Its COM1 (ttyS0, the device model's UART) still takes input too."""
    from lab.session.commands import type_into_console
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "m1", "pvhvm")
    wait_prompt(host, dom)
    # xl console -t pv: the ring and its event channel, no I/O exit
    start, mark = len(dom.console_output), host.trace.seq
    assert type_into_console(host, dom, "frobnicate\n", "pv") == "the console ring's in[] and its event channel"
    wait_prompt(host, dom, start + 10)
    assert dom.console_output[start:] == "frobnicate\nunknown command; type help\nguest# "
    cons, prod = ring_indexes(host, dom)
    assert cons == prod == len("frobnicate\n")                # the kernel read all of in[]
    new = [e for e in host.trace.iter_all() if e.seq >= mark and e.dom == dom.domid]
    assert not [e for e in new if e.kind == "ioreq" and e.get("port") == 0x3F8], "not through the UART"
    assert [e for e in new if e.kind == "ring_io" and e.get("ring") == "console"]
    # xl console (the primary, the serial port for an HVM guest) and -t serial: COM1
    start = len(dom.console_output)
    assert type_into_console(host, dom, "frobnicate\n") == "serial port 0x3f8 of its device model"
    wait_prompt(host, dom, start + 10)
    assert dom.console_output[start:].endswith("unknown command; type help\nguest# ")
    assert any(e.kind == "ioreq" and e.get("port") == 0x3F8 and e.get("dir") == "in" and e.seq >= mark
               for e in host.trace.iter_all())
