"""XENMEM_increase_reservation / decrease_reservation / populate_physmap from hostile guests
(xen/common/memory.c).

The result is the number of extents done: a frame that is not the caller's, another
domain's memory without the control domain's privilege (XSM_TARGET), an order above
max_order() or a domain at its max_pages stops the call where it is. Frames given back leave
the p2m at once and go back to Xen's heap wiped, once nothing references them any more.
"""

from __future__ import annotations

import struct

import pytest

from attack_support import DIRECT_MAP, Arena
from lab.xen import abi

M64 = 0xFFFF_FFFF_FFFF_FFFF

pytestmark = pytest.mark.machine       # every test here boots a whole machine

INC, DEC, POP = abi.XENMEM_increase_reservation, abi.XENMEM_decrease_reservation, abi.XENMEM_populate_physmap


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def _memop(arena, g, op: int, frames: list[int], nr: int | None = None, order: int = 0,
           domid: int = abi.DOMID_SELF) -> tuple[int, list[int]]:
    array = g.buf(64)
    g.write(array, struct.pack(f"<{len(frames)}Q", *frames))
    g.write(g.buf(), struct.pack("<QQIIH", array, len(frames) if nr is None else nr, order, 0, domid))
    rc = arena.call(g, "memory_op", op, g.buf())
    return rc, list(struct.unpack(f"<{len(frames)}Q", g.read(array, 8 * len(frames))))


def test_a_pv_guest_gives_back_only_its_own_frames_and_gets_no_more_than_max_pages(arena):
    host, g = arena.host, arena.pv
    dom = g.dom
    victim = arena.victim.dom
    assert _memop(arena, g, DEC, [victim.p2m[0x200]])[0] == 0, "the victim's frame is not the attacker's"
    assert _memop(arena, g, DEC, [victim.p2m[0x200]], domid=victim.domid)[0] == 0, "XSM_TARGET"
    assert _memop(arena, g, DEC, [1 << 40])[0] == 0
    pages = dom.mem_pages
    mine = [dom.p2m[0x300], dom.p2m[0x301]]
    host.mem.write(mine[0] << 12, b"secret" * 100)
    assert _memop(arena, g, DEC, mine + [victim.p2m[0x200]])[0] == 2, "stops at the first frame not its own"
    assert _memop(arena, g, DEC, mine)[0] == 0, "given back already"
    assert dom.mem_pages == pages - 2 and dom.p2m[0x300] is None and dom.p2m[0x301] is None
    # its own kernel mapping still holds them (get_page_from_l1e()): the guest's, never reused
    for mfn in mine:
        assert host.mm.pv.pages[mfn].owner == dom.domid and mfn not in host.free_frames
    for pfn in (0x300, 0x301):                       # as a balloon driver does: unmap, then they go
        assert arena.call(g, "update_va_mapping", DIRECT_MAP + (pfn << 12), 0, abi.UVMF_INVLPG) == 0
    for mfn in mine:
        assert mfn in host.free_frames and host.mm.pv.pages[mfn].owner is None
        assert host.mem.read(mfn << 12, 4096) == bytes(4096), "freed frames are wiped"
    # it may take two back, no more: max_pages (xl.cfg maxmem) bounds it
    rc, got = _memop(arena, g, INC, [0, 0, 0])
    assert rc == 2 and dom.mem_pages == pages == dom.max_pages
    assert all(host.mm.pv.pages[m].owner == dom.domid for m in got[:2]) and got[2] == 0
    assert _memop(arena, g, INC, [0])[0] == 0
    # nor may it grow the victim, or ask for large extents
    before = victim.mem_pages
    assert _memop(arena, g, INC, [0], domid=victim.domid)[0] == 0 and victim.mem_pages == before
    assert _memop(arena, g, DEC, [got[0]], order=10)[0] == 0
    assert _memop(arena, g, DEC, [got[0]], nr=1 << 27)[0] == 0, "too large to encode a continuation"
    assert host.mm.pv.pages[got[0]].owner == dom.domid
    arena.untouched()
    tables = host.mm.pv.check_invariants()
    assert tables == []
    arena.xl.destroy(dom.name)
    assert set(got[:2]) <= set(host.free_frames)
    assert host.mm.pv.check_invariants() == []


def test_giving_back_a_page_table_in_use_frees_it_only_when_nothing_uses_it(arena):
    """guest_remove_page(): a pinned table is unpinned, the allocation reference dropped; the
    loaded base pointer still holds it, so it stays the guest's, never reused, until it goes."""
    host, g = arena.host, arena.pv
    l4 = g.vcpu.guest_table
    assert _memop(arena, g, DEC, [l4])[0] == 1
    assert host.mm.pv.pages[l4].owner == g.dom.domid and l4 not in host.free_frames
    assert host.mm.pv.check_invariants() == []
    arena.untouched()
    arena.xl.destroy(g.dom.name)
    assert l4 in host.free_frames and host.mm.pv.pages[l4].owner is None
    assert host.mm.pv.check_invariants() == []


def test_an_hvm_guest_punches_holes_and_populates_them_within_its_limits(arena):
    """memory.c populate_physmap() -> guest_physmap_add_page() -> p2m_add_page() (x86/mm/p2m.c):
    populating a gfn that holds RAM gives it the new frame, the old frame's M2P entry becomes
    invalid and the old frame stays the domain's (in its page count, in no p2m slot) until the
    domain goes; max_pages bounds every new frame."""
    host, h = arena.host, arena.hvm
    dom = h.dom
    old = dom.gfn_to_mfn(0x300)
    assert _memop(arena, h, DEC, [0x300, 0x7_0000])[0] == 1, "a gfn that maps nothing stops it"
    assert dom.gfn_to_mfn(0x300) is None and old in host.free_frames
    assert _memop(arena, h, POP, [1 << 36])[0] == 0, "beyond the guest's physical address width"
    assert _memop(arena, h, POP, [0x300, 0x302])[0] == 1, "the second is over max_pages"
    new = dom.gfn_to_mfn(0x300)
    assert new is not None and host.mm.pv.pages[new].owner == dom.domid
    assert host.mem.read(new << 12, 4096) == bytes(4096)
    assert _memop(arena, h, POP, [0x8_0000])[0] == 0, "at max_pages"
    # a populated gfn: replaced, the old frame kept by the domain
    assert _memop(arena, h, DEC, [0x503])[0] == 1
    pages = dom.mem_pages
    before = dom.gfn_to_mfn(0x501)
    host.mem.write(before << 12, b"old contents")
    assert _memop(arena, h, POP, [0x501])[0] == 1
    after = dom.gfn_to_mfn(0x501)
    assert after not in (None, before) and host.mem.read(after << 12, 12) == bytes(12)
    assert dom.mem_pages == pages + 1 == dom.max_pages
    assert host.mm.pv.pages[before].owner == dom.domid and before not in host.free_frames
    assert host.mm.pv.m2p.get(before) is None and host.mm.pv.m2p[after] == 0x501
    assert before not in set(dom.p2m) | set(dom.physmap_extra.values())
    replaced = [e for e in host.trace.iter_all() if e.kind == "pagetable" and e.data.get("result") == "replaced"]
    assert replaced and replaced[-1].data["addr"] == 0x501 << 12
    arena.untouched()
    arena.xl.destroy(dom.name)
    assert before in host.free_frames and host.mm.pv.pages[before].owner is None
    assert host.mem.read(before << 12, 12) == bytes(12), "freed with the domain, wiped"
    assert host.mm.pv.check_invariants() == []


def test_extents_of_order_above_zero_up_to_the_callers_max_order(arena):
    """memory.c: an extent is 2**extent_order pages, up to max_order() of the caller (Kconfig
    DOMU_MAX_ORDER 9 for a domU); a larger order does nothing (the count done so far, no errno).
    A new extent is one aligned block of contiguous frames (alloc_domheap_pages()) within
    max_pages (assign_pages(): "Over-allocation"); decrease_reservation removes it page by page."""
    host, h, g = arena.host, arena.hvm, arena.pv
    dom = h.dom
    olds = [dom.gfn_to_mfn(0x600 + k) for k in range(4)]
    assert _memop(arena, h, DEC, [0x600], order=2)[0] == 1
    assert all(dom.gfn_to_mfn(0x600 + k) is None for k in range(4)) and set(olds) <= set(host.free_frames)
    assert _memop(arena, h, POP, [0x600], order=10)[0] == 0, "above DOMU_MAX_ORDER"
    assert _memop(arena, h, POP, [0x600], order=3)[0] == 0, "8 pages would pass max_pages"
    assert all(dom.gfn_to_mfn(0x600 + k) is None for k in range(4)), "nothing of it was done"
    assert _memop(arena, h, POP, [0x600], order=2)[0] == 1
    mfns = [dom.gfn_to_mfn(0x600 + k) for k in range(4)]
    assert mfns[0] % 4 == 0 and mfns == list(range(mfns[0], mfns[0] + 4)), "one aligned block"
    assert all(host.mm.pv.m2p[m] == 0x600 + k for k, m in enumerate(mfns))
    assert all(host.mem.read(m << 12, 4096) == bytes(4096) for m in mfns)
    # a PV guest: told the extent's first frame
    pv = g.dom
    got = []
    for pfn in (0x500, 0x501, 0x502, 0x503):              # room for one extent of four pages
        assert _memop(arena, g, DEC, [pv.p2m[pfn]])[0] == 1
        assert arena.call(g, "update_va_mapping", DIRECT_MAP + (pfn << 12), 0, abi.UVMF_INVLPG) == 0
    pages = pv.mem_pages
    rc, got = _memop(arena, g, INC, [0], order=2)
    assert rc == 1 and got[0] % 4 == 0 and pv.mem_pages == pages + 4
    assert all(host.mm.pv.pages[got[0] + k].owner == pv.domid for k in range(4))
    assert _memop(arena, g, INC, [0], order=0)[0] == 0, "at max_pages"
    assert _memop(arena, g, DEC, [got[0] + 1], order=2)[0] == 0, "its fourth page is not the guest's"
    assert all(host.mm.pv.pages[got[0] + k].owner is None for k in (1, 2, 3)), "the pages before it went"
    assert host.mm.pv.pages[got[0]].owner == pv.domid and pv.mem_pages == pages + 1
    arena.untouched()
    assert host.mm.pv.check_invariants() == []


@pytest.mark.parametrize("hap", [1, 0])
def test_a_gfn_given_back_never_reaches_the_frame_its_next_owner_got(tmp_path, hap):
    """An HVM guest gives a gfn back, the frame goes to a domain created afterwards, and the
    guest reads the gfn again: the p2m entry is gone (EPT entry cleared, shadows dropped and
    every TLB of the domain flushed, p2m_remove_page()), so the gfn is p2m_mmio_dm and the read
    is emulated as MMIO (hvm_hap_nested_page_fault() / sh_page_fault() -> handle_mmio()):
    no ioreq server claims it and Xen's null_handler (hvm/emulate.c) answers all ones. The new
    owner's data is never read. A gfn far beyond RAM ends the same way; one in the Xen platform
    device's BAR goes to QEMU as an ioreq, which answers 0 (xen_platform.c platform_mmio_read)."""
    from xen_helpers import OP_LOAD, OP_STORE, ScriptGuest, events, small_host, write_cfg
    from attack_support import SCRIPT_GUESTS
    host, xl = small_host(ept=bool(hap))
    for gpa, answer in ((0x800000, M64), (0xF0000000, 0), (1 << 35, M64)):
        dom = xl.create(write_cfg(tmp_path, f"hvm-{gpa:x}", "hvm", SCRIPT_GUESTS / "hvm_script.s", memory=16,
                                  hap=hap), paused=True)
        g = ScriptGuest(host, dom)
        secret = None
        if gpa == 0x800000:
            g.write(g.buf(64), struct.pack("<Q", gpa >> 12))
            g.write(g.buf(), struct.pack("<QQIIH", g.buf(64), 1, 0, 0, abi.DOMID_SELF))
            freed = dom.gfn_to_mfn(gpa >> 12)
            assert hypercall_as(host, g, DEC) == 1 and freed in host.free_frames
            heir = xl.create(write_cfg(tmp_path, "heir", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16),
                             paused=True)
            assert freed in set(heir.p2m), "the frame went to the domain created next"
            secret = b"heir's secret".ljust(8 * 2, b"\0")
            host.mem.write(freed << 12, secret)
        load = g.add(OP_LOAD, gpa)
        g.add(OP_STORE, gpa, 0x5EC2E7)
        again = g.add(OP_LOAD, gpa)
        g.install()
        host.unpause(dom)
        host.run(1_500_000)
        assert dom.state == "shutdown", (gpa, dom.state, dom.crash_reason)
        assert g.steps_done == 3 and g.result(load) == g.result(again) == answer
        copies = events(host, "ioreq", dom=dom.domid, type="IOREQ_TYPE_COPY", state="STATE_IOREQ_READY")
        assert len(copies) == (3 if gpa == 0xF0000000 else 0)
        assert host.domains[0].alive and host.mm.pv.check_invariants() == []
        if secret is not None:
            assert host.mem.read(freed << 12, 16) == secret and heir.alive
        xl.destroy(dom.name)


def hypercall_as(host, g, op: int) -> int:
    from xen_helpers import hypercall
    return hypercall(host, g.vcpu, "memory_op", op, g.buf())
