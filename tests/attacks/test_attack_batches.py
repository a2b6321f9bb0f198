"""Class 3: a batched hypercall with a huge count is done one entry at a time, paid for entry by
entry, and preempted with continuations (xen/arch/x86/pv/mm.c do_mmu_update, common/multicall.c,
hypercall_create_continuation): it can neither freeze the lab nor run for free."""

from __future__ import annotations

import struct

import pytest

from attack_support import DIRECT_MAP, Arena
from lab.xen import abi
from lab.xen.hypercall_table import MMU_UPDATE_PREEMPTED, PREEMPT_BATCH, Preempted, dispatch
from xen_helpers import events

pytestmark = pytest.mark.machine       # every test here boots a whole machine

MMU_MACHPHYS_UPDATE = 1
ENTRIES = 3 * PREEMPT_BATCH // 2          # more than one batch's worth


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def _valid_requests(arena, n: int) -> tuple[int, int]:
    """n harmless MMU_MACHPHYS_UPDATE requests (the attacker's own frame, its own pfn) in the
    attacker's memory, followed by one it may not make; (their address, the pfn written)."""
    g = arena.pv
    first_pfn = 0xE00                       # free memory high in the guest, above its page tables
    tables = {m for m in arena.host.mm.pv.pages if arena.host.mm.pv.pages[m].type in (1, 2, 3, 4)}
    assert not tables & {g.dom.p2m[p] for p in range(first_pfn, first_pfn + 0x20)}
    mfn = g.dom.p2m[0xE80]
    req = struct.pack("<QQ", (mfn << 12) | MMU_MACHPHYS_UPDATE, 0xE80)
    g.write(DIRECT_MAP + (first_pfn << 12), req * n + struct.pack("<QQ", 7, 0))   # cmd 7: -ENOSYS
    return DIRECT_MAP + (first_pfn << 12), 0xE80


def test_a_huge_mmu_update_is_preempted_and_paid_for_entry_by_entry(arena):
    g, host = arena.pv, arena.host
    va, _ = _valid_requests(arena, ENTRIES)
    done_va = g.buf(64)
    v = g.vcpu
    ret = dispatch(host, v, 1, [va, 0x7FFF_FFFF, done_va, abi.DOMID_SELF, 0])
    assert isinstance(ret, Preempted), "no single call runs a whole huge batch"
    new_va, count, pdone, _fd, *_ = ret.args
    done = g.u64(done_va)
    assert 0 < done <= PREEMPT_BATCH and new_va == va + 16 * done
    assert count == (0x7FFF_FFFF - done) | MMU_UPDATE_PREEMPTED and pdone == done_va
    calls = 1
    while isinstance(ret, Preempted):
        ret = dispatch(host, v, 1, ret.args)
        calls += 1
    # Stopped at the first bad entry, with every good one done and counted across continuations.
    assert ret == -abi.ERRNO["ENOSYS"] and g.u64(done_va) == ENTRIES and calls >= 2
    ev = [e for e in events(host, "hypercall", dom=g.dom.domid) if e.data["name"] == "mmu_update"]
    assert sum(1 for e in ev if "continuation" in e.data.get("detail", {})) == calls - 1
    assert host.mm.pv.check_invariants() == []
    arena.untouched()


def test_the_guest_pays_for_the_work_it_causes(arena):
    """Run from the attacker's kernel: the cycles its vCPU is charged grow with the entries done."""
    g, host = arena.pv, arena.host
    va, _ = _valid_requests(arena, ENTRIES)
    g.add("mmu_update", va, 0x7FFF_FFFF, g.buf(64), abi.DOMID_SELF)
    arena.run(g, limit=2_000_000)
    assert g.u64(g.buf(64)) == ENTRIES
    per_entry = host.costs.ev("hypercall_batch_entry")
    assert per_entry > 0
    assert g.vcpu.cpu.cycles >= ENTRIES * per_entry
    # the kernel re-entered the hypercall after each continuation (the RIP was rewound)
    conts = [e for e in events(host, "hypercall", dom=g.dom.domid)
             if e.data["name"] == "mmu_update" and "continuation" in e.data.get("detail", {})]
    assert conts and g.steps_done >= 1
    arena.untouched()


def test_a_multicall_carrying_a_huge_batch_is_continued_inside_the_multicall(arena):
    g, host = arena.pv, arena.host
    va, _ = _valid_requests(arena, ENTRIES)
    entry = g.buf(1024)
    g.write(entry, struct.pack("<QQ6Q", 1, 0, va, 0x7FFF_FFFF, g.buf(64), abi.DOMID_SELF, 0, 0))
    ret = dispatch(host, g.vcpu, 13, [entry, 1, 0, 0, 0])
    assert isinstance(ret, Preempted) and ret.args[:2] == [entry, 1]
    # the preempted call's new arguments were written back into its entry
    assert struct.unpack("<Q", g.read(entry + 16, 8))[0] > va
    while isinstance(ret, Preempted):
        ret = dispatch(host, g.vcpu, 13, ret.args)
    assert ret == 0
    assert struct.unpack("<q", g.read(entry + 8, 8))[0] == -abi.ERRNO["ENOSYS"]
    assert g.u64(g.buf(64)) == ENTRIES
    arena.untouched()


def test_a_count_over_int_max_in_grant_ops_is_einval(arena):
    """do_grant_table_op(): (int)count < 0 is -EINVAL, before any entry is looked at."""
    g = arena.pv
    assert arena.call(g, "grant_table_op", 0, g.buf(), 0x8000_0000) == -abi.ERRNO["EINVAL"]
    assert arena.call(g, "grant_table_op", 2, g.buf(), 2) == -abi.ERRNO["EINVAL"]     # setup_table: count 1
    arena.untouched()
