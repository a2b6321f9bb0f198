"""PV guests: page-type rules through the real hypercall path, the syscall bounce, crashes.

The page-table tests run tests/data/guests/pv_script.s, a PV kernel that makes
its hypercalls through the hypercall page Xen's builder wrote (``syscall`` in
guest kernel mode), with requests the test puts in its memory beforehand.
"""

from __future__ import annotations

import struct

import pytest

from lab.hw.boot import DIRECT_MAP
from xen_helpers import (ADDR, CHECKSUM_LINE, DOMID_SELF, EXIT_LINE, OP_UD2, PTE_P, PTE_RW, PTE_US, default_run,
                         dmesg_since, domid, entry_maddr, ept_violations, events, pv_mapping_violations,
                         script_guest, signed, small_host, stock_guests)

pytestmark = pytest.mark.machine       # every test here boots a whole machine


@pytest.fixture(scope="module")
def page_rules(tmp_path_factory):
    """A PV kernel tries every forbidden mapping through mmu_update, update_va_mapping and
    mmuext_op, next to an HVM guest that must not notice."""
    d = tmp_path_factory.mktemp("pt")
    host, xl = small_host()
    g = script_guest(xl, d, "attacker", "pv", memory=16)
    victim = stock_guests(xl, d)[1]
    dom = g.dom
    l4 = g.vcpu.guest_table
    spare_pfn = dom.mem_pages - 1                         # a page the kernel never touches
    spare_va = DIRECT_MAP + (spare_pfn << 12)
    spare_mfn = dom.p2m[spare_pfn]
    l1e = entry_maddr(host, l4, spare_va)
    l1 = l1e >> 12
    other = victim.p2m[0x200]
    xen = host.mm.m2p_frames[0]
    cases = {}

    def mmu(name: str, ptr: int, val: int, foreign: int = DOMID_SELF) -> None:
        off = 16 * len(cases)
        g.write(g.buf(off), struct.pack("<QQ", ptr, val))
        cases[name] = g.add("mmu_update", g.buf(off), 1, g.buf(8192 + off), foreign)

    mmu("l1 writable", l1e, (l1 << 12) | PTE_P | PTE_RW | PTE_US)
    mmu("l4 writable", l1e, (l4 << 12) | PTE_P | PTE_RW | PTE_US)
    mmu("l1 read-only", l1e, (l1 << 12) | PTE_P | PTE_US)
    mmu("recursive l4 read-only", (l4 << 12) + 300 * 8, (l4 << 12) | PTE_P | PTE_US)
    mmu("recursive l4 writable", (l4 << 12) + 301 * 8, (l4 << 12) | PTE_P | PTE_RW | PTE_US)
    mmu("other domain read-only", l1e, (other << 12) | PTE_P | PTE_US)
    mmu("other domain writable", l1e, (other << 12) | PTE_P | PTE_RW | PTE_US)
    mmu("xen read-only", l1e, (xen << 12) | PTE_P | PTE_US)
    mmu("xen writable", l1e, (host.mm.m2p_l3 << 12) | PTE_P | PTE_RW | PTE_US)
    mmu("slot 256", (l4 << 12) + 256 * 8, 0)
    mmu("slot 263", (l4 << 12) + 263 * 8, (spare_mfn << 12) | PTE_P | PTE_US)
    mmu("slot 271", (l4 << 12) + 271 * 8, 0)
    mmu("foreigndom", l1e, (other << 12) | PTE_P | PTE_US, victim.domid)
    mmu("own page back", l1e, (spare_mfn << 12) | PTE_P | PTE_RW | PTE_US)
    # update_va_mapping(va, val, flags): the same rule on the other path
    cases["uvm l1 writable"] = g.add("update_va_mapping", spare_va, (l1 << 12) | PTE_P | PTE_RW | PTE_US, 2)
    cases["uvm other domain"] = g.add("update_va_mapping", spare_va, (other << 12) | PTE_P | PTE_US, 2)
    cases["uvm own page"] = g.add("update_va_mapping", spare_va, (spare_mfn << 12) | PTE_P | PTE_RW | PTE_US, 2)

    def ext(name: str, cmd: int, arg1: int) -> None:
        off = 4096 + 24 * len(cases)
        g.write(g.buf(off), struct.pack("<I4xQQ", cmd, arg1, 0))
        cases[name] = g.add("mmuext_op", g.buf(off), 1, 0, DOMID_SELF)

    ext("pin a writable page as L1", 0, spare_mfn)
    ext("pin another domain's frame", 3, other)
    ext("new baseptr not an L4", 5, spare_mfn)
    ext("new baseptr another domain's", 5, other)
    ext("unpin what is not pinned", 4, spare_mfn)
    ext("flush", 6, 0)
    g.install()
    mark = host.dmesg.logged
    host.run()
    return host, g, victim, cases, dmesg_since(host, mark), (l4, l1, spare_va, spare_mfn)


EXPECTED = {
    "l1 writable": "EBUSY", "l4 writable": "EBUSY", "l1 read-only": None,
    "recursive l4 read-only": None, "recursive l4 writable": "EINVAL",
    "other domain read-only": "EBUSY", "other domain writable": "EBUSY",
    "xen read-only": "EBUSY", "xen writable": "EBUSY",
    "slot 256": "EINVAL", "slot 263": "EINVAL", "slot 271": "EINVAL",
    "foreigndom": "EPERM", "own page back": None,
    "uvm l1 writable": "EBUSY", "uvm other domain": "EBUSY", "uvm own page": None,
    "pin a writable page as L1": "EINVAL", "pin another domain's frame": "EINVAL",
    "new baseptr not an L4": "EINVAL", "new baseptr another domain's": "EINVAL",
    "unpin what is not pinned": "EINVAL", "flush": None,
}


def test_page_table_rules_refuse_and_allow_as_xen_does(page_rules):
    host, g, victim, cases, log, _ = page_rules
    assert g.steps_done == len(cases)
    assert g.dom.shutdown_reason == "poweroff"                # the script ran to its end
    calls = [e for e in events(host, "hypercall", dom=g.dom.domid) if e.data["name"] != "sched_op"]
    assert len(calls) == len(cases)
    got = {}
    for name, i in cases.items():
        ev = calls[i]
        assert signed(g.result(i)) == ev.data["ret"]
        got[name] = ev.data["errno"]
    assert got == EXPECTED
    # The refused mmu_update requests report 0 done; the accepted ones 1.
    assert g.u64(g.buf(8192 + 16 * cases["l1 writable"])) == 0
    assert g.u64(g.buf(8192 + 16 * cases["own page back"])) == 1


def test_page_table_refusals_are_logged_as_xen_logs_them(page_rules):
    _, g, _, _, log, (l4, l1, _, _) = page_rules
    lines = log.splitlines()
    assert all(line.startswith("(XEN) ") for line in lines if "d1v0" in line)
    assert f"(XEN) arch/x86/mm.c:2951:d{g.dom.domid}v0 Bad type (saw" in log
    assert f"for mfn {l1:05x}" in log
    assert "Could not get page type PGT_writable_page" in log
    assert "Attempt to create linear p.t. with write perms" in log
    assert "L4 update in Xen-private area, slot 0x100" in log
    assert "L4 update in Xen-private area, slot 0x107" in log
    assert "real_pg_owner" in log
    assert "d1v0 d1v0" not in log


def test_after_the_attempts_nothing_forbidden_is_mapped(page_rules):
    host, g, victim, _, _, (l4, l1, spare_va, spare_mfn) = page_rules
    assert host.mm.pv.check_invariants() == []
    assert pv_mapping_violations(host, g.dom) == []
    assert ept_violations(host, victim) == []
    # The accepted requests took effect: the recursive entry is there, read-only.
    assert host.mem.read_u64((l4 << 12) + 300 * 8) & ~0x60 == (l4 << 12) | PTE_P | PTE_US     # A/D aside
    assert host.mem.read_u64((l4 << 12) + 301 * 8) == 0
    entry = host.mem.read_u64(entry_maddr(host, l4, spare_va))
    assert (entry & ADDR) >> 12 == spare_mfn and entry & PTE_RW
    assert CHECKSUM_LINE in victim.console_output and EXIT_LINE in victim.console_output


def test_pagetable_events_show_each_refusal(page_rules):
    host, g, _, _, _, _ = page_rules
    refused = [e for e in events(host, "pagetable", dom=g.dom.domid) if e.data["result"] != "ok"]
    assert {e.data["result"] for e in refused} >= {"EBUSY", "EINVAL"}
    assert any("Bad type" in (e.data["message"] or "") for e in refused)


# ---------------------------------------------------------------- the syscall bounce
def test_a_pv_system_call_is_bounced_through_xen():
    host, _ = default_run()
    pv = host.domain_by_name("pv-guest")
    v = pv.vcpus[0]
    kernel_cr3, user_cr3 = v.guest_table << 12, v.guest_table_user << 12
    assert kernel_cr3 and user_cr3 and kernel_cr3 != user_cr3
    evs = [e for e in host.trace.iter_all() if e.dom == pv.domid]
    starts = [i for i, e in enumerate(evs) if e.kind == "syscall"]
    assert len(starts) == 76
    bounced = 0
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(evs)
        seq = evs[i:end]
        assert seq[0].data["via"].startswith("syscall -> Xen")
        # 1. Xen bounces it: a trap event with handler "bounce"
        trap = seq[1]
        assert (trap.kind, trap.data["mnemonic"], trap.data["handler"], trap.data["cpl"]) == \
            ("trap", "syscall", "bounce", 3)
        # 2. toggle_guest_mode: CR3 to the kernel's tables (a tlb flush and a ring event)
        k = next(j for j, e in enumerate(seq) if e.kind == "ring")
        assert seq[k - 1].kind == "tlb" and seq[k - 1].data["addr"] == kernel_cr3
        assert "user -> kernel" in seq[k].data["why"] and f"cr3 {kernel_cr3:#x}" in seq[k].data["why"]
        assert seq[k].data["root"] is True
        if seq[0].data["nr"] == 60:                       # exit does not come back
            continue
        # 3. HYPERVISOR_iret back to user mode, through the user tables
        iret = max(j for j, e in enumerate(seq) if e.kind == "hypercall" and e.data["name"] == "iret")
        back = max(j for j, e in enumerate(seq[:iret]) if e.kind == "ring")
        assert back > k
        assert "kernel -> user" in seq[back].data["why"] and f"cr3 {user_cr3:#x}" in seq[back].data["why"]
        assert seq[back - 1].kind == "tlb" and seq[back - 1].data["addr"] == user_cr3
        assert seq[iret].data["nr"] == 23 and seq[iret].data["ret"] == 0
        # In user mode until the next system call: no kernel event after the iret but page faults.
        assert all(e.kind in ("trap", "tlb", "ring", "hypercall", "pagetable", "sched", "evtchn", "console")
                   for e in seq[iret + 1:])
        bounced += 1
    assert bounced == 75                  # every system call but exit returns to user mode


def test_the_pv_kernel_sets_itself_up_with_hypercalls():
    host, _ = default_run()
    pv = domid(host, "pv-guest")
    calls = events(host, "hypercall", dom=pv)
    first = {}
    for e in calls:
        first.setdefault(e.data["name"], e)
    for name in ("set_trap_table", "stack_switch", "callback_op", "update_va_mapping", "mmuext_op"):
        assert first[name].data["ret"] == 0, name
    assert any("14->" in a for a in first["set_trap_table"].data["args"])
    callbacks = [str(a) for e in calls if e.data["name"] == "callback_op" for a in e.data["args"]]
    assert any(a.startswith("syscall ->") for a in callbacks)
    # One HYPERVISOR_iret into user mode, one per page fault and one per returning syscall.
    irets = [e for e in calls if e.data["name"] == "iret"]
    pfs = [e for e in events(host, "trap", dom=pv) if e.data["mnemonic"] == "#PF"]
    assert len(pfs) == 32 and all(e.data["handler"] == "bounce" for e in pfs)
    assert len(irets) >= 1 + 32 + 70


# ---------------------------------------------------------------- a PV kernel with no trap handler
def test_a_pv_kernel_without_a_trap_handler_crashes_alone(tmp_path):
    host, xl = small_host()
    pv, hvm = stock_guests(xl, tmp_path)
    bad = script_guest(xl, tmp_path, "no-handlers", "pv", memory=16)
    bad.add("xen_version", 0, 0)
    bad.add(OP_UD2)
    bad.add("xen_version", 0, 0)
    bad.install()
    mark = host.dmesg.logged
    host.run()
    dom = bad.dom
    assert dom.state == "crashed" and bad.steps_done == 1
    assert "#UD" in dom.crash_reason and "no handler in the trap table" in dom.crash_reason
    assert f"(XEN) d{dom.domid}v0 domain_crash called: unhandled #UD" in dmesg_since(host, mark)
    crash = events(host, "domain", op="crash")
    assert [e.data["name"] for e in crash] == ["no-handlers"]
    trap = events(host, "trap", dom=dom.domid)[-1]
    assert (trap.data["mnemonic"], trap.data["handler"]) == ("#UD", "xen")
    for g in (pv, hvm):
        assert g.state == "shutdown" and g.shutdown_reason == "poweroff"
        assert CHECKSUM_LINE in g.console_output and EXIT_LINE in g.console_output
    assert host.domains[0].alive
    line = next(ln for ln in xl.list().splitlines() if ln.startswith("no-handlers"))
    assert line.split()[4] == "---sc-"
    assert host.mm.pv.check_invariants() == []


def test_hypervisor_iret_with_a_bad_frame_crashes_only_the_caller(tmp_path):
    from xen_helpers import hypercall
    host, xl = small_host()
    g = script_guest(xl, tmp_path, "bad-iret", "pv", memory=16)
    other = script_guest(xl, tmp_path, "bystander", "pv", memory=16)
    other.add("xen_version", 0, 0)
    other.install()
    g.vcpu.cpu.regs[4] = 0x1000                                # the iret frame is not mapped
    assert hypercall(host, g.vcpu, "iret") == 0
    assert g.dom.state == "crashed" and "iret with a bad stack" in g.dom.crash_reason
    host.run()
    assert other.steps_done == 1 and other.dom.shutdown_reason == "poweroff"
    assert host.mm.pv.check_invariants() == []
