"""Smaller deviations from Xen that a hostile guest could lean on, each with Xen's answer."""

from __future__ import annotations

import struct

import pytest

from attack_support import GUESTS, Arena
from lab.xen import abi
from xen_helpers import events, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

SCHEDOP_remote_shutdown = 4


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def test_remote_shutdown_from_a_domu_is_eperm(arena):
    """common/sched/core.c: SCHEDOP_remote_shutdown passes xsm_schedop_shutdown(XSM_DM_PRIV)."""
    g = arena.pv
    g.write(g.buf(), struct.pack("<HxxI", arena.victim.dom.domid, 0))
    assert arena.call(g, "sched_op", SCHEDOP_remote_shutdown, g.buf()) == -abi.ERRNO["EPERM"]
    assert arena.victim.dom.alive
    arena.untouched()


def test_iret_to_user_mode_with_no_user_page_tables_crashes_the_guest(arena):
    """pv/iret.c do_iret(): "Guest switching to user mode with no user page tables" -> domain_crash."""
    g = arena.pv
    assert g.vcpu.guest_table_user == 0
    frame = struct.pack("<9Q", 0, 0, 0, 0, 0x400000, 0xE033, 0x202, 0x7FF000, 0xE02B)
    g.write(g.buf(256), frame)
    g.vcpu.cpu.regs[4] = g.buf(256)
    arena.call(g, "iret")
    assert g.dom.state == "crashed"
    assert "Guest switching to user mode with no user page tables" in g.dom.crash_reason
    arena.untouched()


def test_a_hypercall_page_outside_the_guests_memory_is_gp(tmp_path):
    """guest_wrmsr_xen(): the page must be the domain's RAM, taken writable; else WRMSR is #GP(0).
    The hostile kernel has no IDT, so the #GP ends it as a triple fault, and nothing is written."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "msr", "hvm", GUESTS / "hvm_bad_hypercall_msr.s", memory=16, hap=1))
    host.run(1_000_000)
    gps = [e for e in events(host, "trap", dom=dom.domid) if e.data.get("mnemonic") == "#GP"]
    assert gps and "hypercall page" in gps[0].data["reason"]
    assert dom.state == "crashed" and getattr(dom, "hypercall_page_gpa", None) is None
    assert host.domains[0].alive and host.mm.pv.check_invariants() == []


def test_iret_cannot_raise_privilege_or_return_to_xens_selectors(arena):
    """pv/iret.c do_iret(): CS and SS get RPL 3 forced ("force guest privilege"), IOPL is
    dropped from RFLAGS (the guest's IOPL is virtual), and a CS with RPL 0-2 means guest kernel
    mode, which for a 64-bit PV guest is ring 3 too: no frame reaches ring 0, 1 or 2."""
    from lab.hw import flags as F
    g = arena.pv
    cpu = g.vcpu.cpu
    for cs, ss in ((0xE008, 0xE010), (0xE030, 0x0), (0x0008, 0x0010)):    # Xen's, RPL 0, a null-ish GDT slot
        rip = g.addr("_start") if "_start" in g.sym else 0x400000
        frame = struct.pack("<9Q", 0, 0, 0, 0, rip, cs, 0x3202 | F.IOPL_MASK, g.buf(4096), ss)
        g.write(g.buf(256), frame)
        cpu.regs[4] = g.buf(256)
        arena.call(g, "iret")
        assert g.dom.alive
        assert cpu.cpl == 3 and g.vcpu.kernel_mode, f"cs {cs:#x}: still the guest kernel, in ring 3"
        assert cpu.rflags & F.IOPL_MASK == 0, "IOPL never reaches the real RFLAGS"
        assert cpu.rip == rip and cpu.regs[4] == g.buf(4096)
    arena.untouched()


def test_evtchn_reset_of_another_domain_is_eperm_and_of_its_own_closes_its_ports(arena):
    """common/event_channel.c EVTCHNOP_reset: xsm_evtchn_reset(XSM_TARGET): a domU resets only its
    own ports (evtchn_reset() closes each); the victim's stay as they were."""
    host, g = arena.host, arena.pv
    victim = arena.victim.dom.domid
    before = {p: port.state for p, port in host.evtchn.ports.get(victim, {}).items()}
    g.write(g.buf(), struct.pack("<H", victim))
    assert arena.call(g, "event_channel_op", abi.EVTCHNOP_reset, g.buf()) == -abi.ERRNO["EPERM"]
    g.write(g.buf(), struct.pack("<H", 0x7FEF))
    assert arena.call(g, "event_channel_op", abi.EVTCHNOP_reset, g.buf()) == -abi.ERRNO["ESRCH"]
    assert {p: port.state for p, port in host.evtchn.ports.get(victim, {}).items()} == before
    mine = [p for p, port in host.evtchn.ports.get(g.dom.domid, {}).items() if p and port.state != "closed"]
    assert mine
    g.write(g.buf(), struct.pack("<H", abi.DOMID_SELF))
    assert arena.call(g, "event_channel_op", abi.EVTCHNOP_reset, g.buf()) == 0
    assert all(host.evtchn.ports[g.dom.domid][p].state == "closed" for p in mine)
    assert host.domains[0].alive and g.dom.alive
    arena.untouched()
