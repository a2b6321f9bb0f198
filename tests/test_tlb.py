"""The TLB: hits, invlpg, CR3 flushes that keep global pages, large pages, staleness."""

from __future__ import annotations

import json

from lab.hw import pagebuild as B
from lab.hw import paging as P
from lab.hw.memory import MachineMemory
from lab.hw.tlb import Tlb, TlbEntry

MiB = 1 << 20


def machine():
    mem = MachineMemory(64 * MiB)
    alloc = B.FrameAllocator(mem, 0x100)
    cr3 = alloc() << 12
    return mem, alloc, cr3


def fill(tlb, mem, cr3, va, access="r"):
    r = P.walk(mem, cr3, va, access=access)
    assert r.ok
    return tlb.insert(va, r)


def test_miss_then_hit_after_insert():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, 0x40_0000, 0x9000, user=True)
    tlb = Tlb()
    assert tlb.lookup(0x40_0123) is None
    e = fill(tlb, mem, cr3, 0x40_0123)
    assert e == TlbEntry(0x400, 0x9, 4096, True, True, False, False, False)
    hit = tlb.lookup(0x40_0FFF)
    assert hit is e
    assert hit.translate(0x40_0FFF) == 0x9FFF
    assert tlb.lookup(0x40_1000) is None
    assert tlb.stats["hits"] == 1 and tlb.stats["misses"] == 2
    assert tlb.probe(0x40_0000) is e and tlb.stats["hits"] == 1      # probing counts nothing


def test_faulting_walk_is_not_cached():
    mem, _alloc, cr3 = machine()
    tlb = Tlb()
    r = P.walk(mem, cr3, 0x1000)
    assert tlb.insert(0x1000, r) is None
    assert len(tlb) == 0


def test_invlpg_drops_only_that_page_global_or_not():
    mem, alloc, cr3 = machine()
    for i in range(3):
        B.map_page(mem, alloc, cr3, 0x1000 * (i + 1), 0x10000 + 0x1000 * i, global_=(i == 1))
    tlb = Tlb()
    for i in range(3):
        fill(tlb, mem, cr3, 0x1000 * (i + 1))
    assert tlb.invlpg(0x2abc) == 1                  # the global one
    assert tlb.lookup(0x2000) is None
    assert tlb.lookup(0x1000) is not None and tlb.lookup(0x3000) is not None
    assert tlb.invlpg(0x2000) == 0
    assert tlb.stats["invlpgs"] == 2


def test_cr3_flush_keeps_globals_and_full_flush_does_not():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, 0xFFFF_8000_0000_0000, 0x5000, global_=True)   # kernel, global
    B.map_page(mem, alloc, cr3, 0x40_0000, 0x6000, user=True)                  # user, not global
    tlb = Tlb()
    fill(tlb, mem, cr3, 0xFFFF_8000_0000_0000)
    fill(tlb, mem, cr3, 0x40_0000)
    assert tlb.flush() == 1                         # mov cr3
    assert tlb.lookup(0x40_0000) is None
    kept = tlb.lookup(0xFFFF_8000_0000_0000)
    assert kept is not None and kept.global_
    assert tlb.flush(include_global=True) == 1      # CR4.PGE toggled
    assert tlb.entries() == []
    assert tlb.stats["flushes"] == 2


def test_large_page_is_one_entry_and_invlpg_anywhere_in_it_drops_it():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, 0x4000_0000, 0x20_0000, page_size=P.PAGE_2M)
    tlb = Tlb()
    e = fill(tlb, mem, cr3, 0x4012_3456)
    assert e.page_size == P.PAGE_2M and e.vpn == 0x4000_0000 >> 12 and e.pfn == 0x200
    for va in (0x4000_0000, 0x4010_0000, 0x401F_F000):
        hit = tlb.lookup(va + 0x10)
        assert hit is e and hit.translate(va + 0x10) == va + 0x10 - 0x4000_0000 + 0x20_0000
    assert tlb.lookup(0x4020_0000) is None
    assert len(tlb.entries()) == 1
    assert tlb.invlpg(0x401F_F000) == 1
    assert tlb.lookup(0x4000_0000) is None


def test_1g_page_entry():
    mem = MachineMemory(2048 * MiB)
    alloc = B.FrameAllocator(mem, 0x100)
    cr3 = alloc() << 12
    B.map_page(mem, alloc, cr3, 0x40_0000_0000, 0x4000_0000, page_size=P.PAGE_1G)
    tlb = Tlb()
    fill(tlb, mem, cr3, 0x40_0000_0000)
    assert tlb.lookup(0x40_3FFF_FFFF).translate(0x40_3FFF_FFFF) == 0x7FFF_FFFF


def test_stale_entry_until_invlpg():
    """Changing a PTE does not change what the TLB says until the page is invalidated."""
    mem, alloc, cr3 = machine()
    va = 0x40_0000
    B.map_page(mem, alloc, cr3, va, 0xA000)
    tlb = Tlb()
    fill(tlb, mem, cr3, va)
    B.map_page(mem, alloc, cr3, va, 0xB000)         # the kernel remaps the page...
    assert P.walk(mem, cr3, va, set_ad=False).pa == 0xB000
    assert tlb.lookup(va).translate(va) == 0xA000     # ...but the TLB still has the old frame
    tlb.invlpg(va)
    assert tlb.lookup(va) is None
    fill(tlb, mem, cr3, va)
    assert tlb.lookup(va).translate(va) == 0xB000     # fresh


def test_stale_entry_after_unmap_until_cr3_flush():
    mem, alloc, cr3 = machine()
    va = 0x40_0000
    B.map_page(mem, alloc, cr3, va, 0xA000)
    tlb = Tlb()
    fill(tlb, mem, cr3, va)
    B.unmap_page(mem, cr3, va)
    assert P.walk(mem, cr3, va).fault is not None
    assert tlb.lookup(va) is not None                  # stale: the access would still succeed
    tlb.flush()
    assert tlb.lookup(va) is None


def test_fifo_replacement_per_size_class():
    mem, alloc, cr3 = machine()
    tlb = Tlb(capacity=2)
    for i in range(3):
        B.map_page(mem, alloc, cr3, 0x1000 * (i + 1), 0x1000 * (i + 1))
    B.map_page(mem, alloc, cr3, 0x4000_0000, 0x20_0000, page_size=P.PAGE_2M)
    fill(tlb, mem, cr3, 0x4000_0000)
    for i in range(3):
        fill(tlb, mem, cr3, 0x1000 * (i + 1))
    assert tlb.probe(0x1000) is None                  # oldest 4 KiB entry evicted
    assert tlb.probe(0x2000) is not None and tlb.probe(0x3000) is not None
    assert tlb.probe(0x4000_0000) is not None         # the 2 MiB set is separate
    assert tlb.stats["evictions"] == 1
    # Re-inserting refreshes an entry's place in the queue.
    fill(tlb, mem, cr3, 0x2000)
    fill(tlb, mem, cr3, 0x1000)
    assert tlb.probe(0x3000) is None and tlb.probe(0x2000) is not None


def test_entries_sorted_by_vpn():
    mem, alloc, cr3 = machine()
    tlb = Tlb()
    for va in (0x9000, 0x3000, 0x6000):
        B.map_page(mem, alloc, cr3, va, va)
    B.map_page(mem, alloc, cr3, 0x20_0000, 0x20_0000, page_size=P.PAGE_2M)
    for va in (0x20_0000, 0x9000, 0x3000, 0x6000):
        fill(tlb, mem, cr3, va)
    assert [e.vpn for e in tlb.entries()] == [0x3, 0x6, 0x9, 0x200]
    assert tlb.entries()[0].describe() == "0x3000 -> 0x3000 4K RW S"


def test_dirty_and_permission_checks_on_an_entry():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, 0x1000, 0x1000, user=True)
    B.map_page(mem, alloc, cr3, 0x2000, 0x2000, rw=False, nx=True)
    tlb = Tlb()
    clean = fill(tlb, mem, cr3, 0x1000, "r")
    assert not clean.dirty
    assert clean.allows("r", 3) and not clean.allows("w", 3)   # a write must walk to set D
    dirty = fill(tlb, mem, cr3, 0x1000, "w")
    assert dirty.dirty and dirty.allows("w", 3)
    assert tlb.lookup(0x1000) is dirty
    ro = fill(tlb, mem, cr3, 0x2000, "r")
    assert not ro.allows("r", 3)                               # supervisor page
    assert not ro.allows("x", 0) and ro.allows("x", 0, nxe=False)
    assert not ro.allows("w", 0)


def test_snapshot_restore_round_trip():
    mem, alloc, cr3 = machine()
    tlb = Tlb(capacity=4)
    for va in (0x1000, 0x2000):
        B.map_page(mem, alloc, cr3, va, va, global_=(va == 0x2000))
        fill(tlb, mem, cr3, va)
    tlb.lookup(0x1000)
    snap = tlb.snapshot()
    assert json.loads(json.dumps(snap)) == snap          # plain data
    before = (tlb.entries(), dict(tlb.stats))
    tlb.flush(include_global=True)
    tlb.lookup(0x5000)
    tlb.restore(snap)
    assert (tlb.entries(), tlb.stats) == before
    assert tlb.capacity == 4
    # Restoring keeps the FIFO order.
    other = Tlb()
    other.restore(json.loads(json.dumps(snap)))
    assert other.snapshot() == snap


def test_deterministic():
    def run():
        mem, alloc, cr3 = machine()
        tlb = Tlb(capacity=8)
        for i in range(40):
            va = ((i * 7919) % 97) << 12
            B.map_page(mem, alloc, cr3, va, va, global_=(i % 5 == 0))
            fill(tlb, mem, cr3, va)
            if i % 11 == 0:
                tlb.flush()
            if i % 13 == 0:
                tlb.invlpg(va)
        return tlb.snapshot()
    assert run() == run()
