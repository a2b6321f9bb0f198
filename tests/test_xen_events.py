"""Event channels delivered to a running PV kernel: VIRQ_TIMER, the upcall, the kernel's handler."""

from __future__ import annotations

import pytest

from lab.session.scenario import boot_host
from lab.xen import abi
from test_machine import expected_checksum

pytestmark = pytest.mark.machine       # every test here boots a whole machine

DIRECT_MAP = 0xFFFF888000000000


def kernel_u64(host, dom, symbol):
    pa = dom.images["kernel"].symbols[symbol] - DIRECT_MAP
    return host.mem.read_u64((dom.p2m[pa >> 12] << 12) + (pa & 0xFFF))


def test_virq_timer_reaches_the_pv_kernel_as_an_upcall():
    host, xl = boot_host()
    dom = xl.create("machines/pv-guest.cfg")
    host.run(60_000)
    ports = host.evtchn.ports[dom.domid]
    timer = [p for p, port in ports.items() if port.state == "virq" and port.virq == abi.VIRQ_TIMER]
    assert len(timer) == 1, "the PV kernel binds VIRQ_TIMER"
    # Xen's default 100 Hz ticker for a PV vCPU, stopped by the tickless kernel
    stops = [e for e in host.trace.iter_all() if e.kind == "hypercall" and e.dom == dom.domid
             and e.data["name"] == "vcpu_op" and e.data["args"][0] == "VCPUOP_stop_periodic_timer"]
    assert len(stops) == 1 and dom.vcpus[0].periodic_period == 0
    before = kernel_u64(host, dom, "ticks")
    mark = host.trace.seq                 # (the kernel's boot took upcalls of its own: xenstore replies)
    for _ in range(3):
        host.evtchn.send_virq(dom.domid, abi.VIRQ_TIMER, 0)
        host.run(3_000)
    assert kernel_u64(host, dom, "ticks") == before + 3
    upcalls = [e for e in host.trace.iter_all()
               if e.seq >= mark and e.kind == "trap" and e.data.get("mnemonic") == "event upcall"]
    assert len(upcalls) == 3 and all(e.dom == dom.domid and e.data["handler"] == "bounce" for e in upcalls)
    host.run(5_000_000)
    assert "timer ticks 3" in dom.console_output
    assert f"checksum {expected_checksum():#018x}" in dom.console_output


def test_a_masked_port_is_not_delivered_until_unmasked():
    host, xl = boot_host()
    dom = xl.create("machines/pv-guest.cfg")
    host.run(60_000)
    port = next(p for p, x in host.evtchn.ports[dom.domid].items() if x.state == "virq")
    base = dom.shared_info_mfn << 12
    mask_addr = base + 2560
    host.mem.write_u64(mask_addr, host.mem.read_u64(mask_addr) | (1 << port))
    before = kernel_u64(host, dom, "ticks")
    host.evtchn.send_virq(dom.domid, abi.VIRQ_TIMER, 0)
    host.run(3_000)
    assert kernel_u64(host, dom, "ticks") == before, "masked: pending but not delivered"
    assert host.mem.read_u64(base + 2048) >> port & 1
    host.evtchn.unmask(dom, port)
    host.run(3_000)
    assert kernel_u64(host, dom, "ticks") == before + 1, "unmask re-notifies a still-pending port"


def test_a_long_run_has_no_tick():
    # The tickless PV kernel stops Xen's periodic timer and arms no deadline while it
    # computes: however long the run, no timer event reaches it.
    host, xl = boot_host()
    from lab.dom0.xlcfg import load_config
    conf = load_config("machines/pv-guest.cfg")
    conf.cmdline = "rounds=90"
    dom = xl.create(conf)
    host.run(40_000_000)
    assert dom.state == "shutdown"
    assert max(host.clock) > host.cpu_hz // 100               # longer than a period of 10 ms
    ticks = int(dom.console_output.split("timer ticks ")[1].split()[0])
    assert ticks == 0


def test_bind_ipi_notifies_the_same_domain_and_global_virqs_go_to_dom0():
    from xen_helpers import hypercall
    host, xl = boot_host()
    dom = xl.create("machines/pv-guest.cfg")
    host.run(60_000)
    v = dom.vcpus[0]
    ev = host.evtchn
    port = ev.bind_ipi(dom.domid, 0)
    assert port > 0 and ev.status(dom.domid, port)[0] == abi.EVTCHNSTAT_ipi
    assert ev.bind_ipi(dom.domid, 5) == -abi.ERRNO["ENOENT"]          # no such vCPU
    base = dom.shared_info_mfn << 12
    assert not host.mem.read_u64(base + 2048 + (port // 64) * 8) >> (port % 64) & 1
    assert ev.send(dom.domid, port) == 0                              # an IPI to itself
    assert host.mem.read_u64(base + 2048 + (port // 64) * 8) >> (port % 64) & 1
    # VIRQ_CON_RING is global: a domU may bind it, but Xen sends it to dom0 only
    assert ev.bind_virq(dom.domid, abi.VIRQ_CON_RING, 1) == -abi.ERRNO["EINVAL"]   # global: vCPU 0 only
    guest_port = ev.bind_virq(dom.domid, abi.VIRQ_CON_RING, 0)
    got = []
    dom0_port = ev.bind_virq(0, abi.VIRQ_CON_RING, 0)
    ev.bind_service(0, dom0_port, lambda p: got.append(p))
    mark = host.dmesg.logged
    host.log("a line on Xen's console")
    host.run(2_000_000)                        # dom0's services run when dom0 is scheduled
    xen_lines = [line for line in host.dmesg.since(mark) if line.startswith("(XEN)")]
    assert got and set(got) == {dom0_port} and len(got) == len(xen_lines)    # one per line of Xen's
    word, bit = divmod(guest_port, 64)
    assert not host.mem.read_u64(base + 2048 + word * 8) >> bit & 1


def test_typing_at_xens_console_raises_virq_console_for_dom0_to_read():
    host, xl = boot_host()
    ev = host.evtchn
    got = []
    port = ev.bind_virq(0, abi.VIRQ_CONSOLE, 0)
    ev.bind_service(0, port, lambda p: got.append(p))
    from lab.session.commands import type_into_console
    type_into_console(host, host.domains[0], "xl list\n")
    host.run(100_000)
    assert got == [port]
    assert bytes(host.console_input) == b"xl list\n"      # waiting for dom0's CONSOLEIO_read


def test_unmask_renotifies_only_a_port_that_was_masked():
    """common/event_2l.c evtchn_2l_unmask(): only if test_and_clear of the mask bit found it set
    and the port is pending does Xen set the selector bit and mark the vCPU's upcall pending."""
    from lab.xen.vcpu_info import maddr
    host, xl = boot_host()
    dom = xl.create("machines/pv-guest.cfg")
    host.run(60_000)
    port = next(p for p, x in host.evtchn.ports[dom.domid].items() if x.state == "virq")
    base = dom.shared_info_mfn << 12
    word, bit = divmod(port, 64)
    vi = maddr(host, dom, 0)                           # vCPU 0's vcpu_info
    host.mem.write_u64(base + 2048 + 8 * word, host.mem.read_u64(base + 2048 + 8 * word) | (1 << bit))
    host.mem.write_u64(base + 2560 + 8 * word, host.mem.read_u64(base + 2560 + 8 * word) & ~(1 << bit))
    host.mem.write_u64(vi + 8, 0)                      # evtchn_pending_sel
    host.mem.write(vi, b"\x00")                        # evtchn_upcall_pending
    assert host.evtchn.unmask(dom, port) == 0
    assert host.mem.read_u64(vi + 8) == 0 and host.mem.read(vi, 1) == b"\x00", "not masked: no notification"
    host.mem.write_u64(base + 2560 + 8 * word, host.mem.read_u64(base + 2560 + 8 * word) | (1 << bit))
    assert host.evtchn.unmask(dom, port) == 0
    assert host.mem.read_u64(vi + 8) >> word & 1 and host.mem.read(vi, 1) == b"\x01"
