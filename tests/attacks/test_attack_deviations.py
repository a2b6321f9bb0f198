"""Smaller deviations from Xen that a hostile guest could lean on, each with Xen's answer."""

from __future__ import annotations

import struct

import pytest

from attack_support import GUESTS, Arena
from lab.xen import abi
from xen_helpers import events, small_host, write_cfg

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
