"""Class 3: the tables a guest can make Xen grow (EPT, shadows) come from its own paging pool,
sized as libxl sizes it (libxl_get_required_shadow_memory(), xl.cfg shadow_memory); when the
pool runs out only that guest notices (-ENOMEM from the p2m update, or its domain crashed)."""

from __future__ import annotations

import struct

import pytest

from attack_support import GUESTS, SCRIPT_GUESTS, Arena
from lab.xen import abi
from lab.xen.paging_pool import HAP_MIN_PAGES, pool_of, required_pages
from xen_helpers import events, frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine


def test_pool_sizes_follow_libxl_and_shadow_memory():
    # 1 MiB per vCPU plus 2 pages per MiB, at least 256 pages under HAP (hap_enable())
    assert required_pages(32, 1) == 256 + 64
    assert required_pages(16, 2, hap=False) == 512 + 32
    assert required_pages(4, 1) >= HAP_MIN_PAGES
    assert required_pages(512, 4, shadow_memory_mib=8) == 8 * 256
    # sh_min_allocation(): never below 128 pages per vCPU, a page per MiB and one for the 1:1 map
    assert required_pages(16, 2, shadow_memory_mib=0, hap=False) == 512 + 32
    assert required_pages(64, 4, shadow_memory_mib=1, hap=False) == 4 * 128 + 64 + 1


def test_remapping_gfns_far_apart_exhausts_only_the_guests_own_pool(tmp_path):
    arena = Arena(tmp_path)
    host, h = arena.host, arena.hvm
    pool = pool_of(host, h.dom)
    heap_before, pool_before = len(host.free_frames), len(pool.frames)
    results = []
    for i in range(1, pool.pages):
        gpfn = i << 27                                   # a new 512 GiB region every time: 3 new tables
        h.write(h.buf(), struct.pack("<HHIQQ", abi.DOMID_SELF, 0, abi.XENMAPSPACE_shared_info, 0, gpfn))
        rc = arena.call(h, "memory_op", abi.XENMEM_add_to_physmap, h.buf())
        results.append(rc)
        if rc:
            break
    assert results[-1] == -abi.ERRNO["ENOMEM"] and results[:-1] == [0] * (len(results) - 1)
    assert len(pool.frames) <= pool.pages and pool.free < 3
    assert heap_before - len(host.free_frames) == len(pool.frames) - pool_before, "the pool's frames, no more"
    # p2m-ept.c ept_set_entry(): a gfn past the 48-bit guest physical width is -EINVAL, never an alias
    h.write(h.buf(), struct.pack("<HHIQQ", abi.DOMID_SELF, 0, abi.XENMAPSPACE_shared_info, 0, 1 << 36))
    assert arena.call(h, "memory_op", abi.XENMEM_add_to_physmap, h.buf()) == -abi.ERRNO["EINVAL"]
    assert h.dom.alive and host.domains[0].alive
    arena.untouched()
    tables = list(pool.frames)
    arena.xl.destroy(h.dom.name)
    assert not pool.frames and set(tables) <= set(host.free_frames), "its tables went back to the heap"


def test_a_shadow_guest_whose_pool_is_empty_is_crashed_alone(tmp_path):
    host, xl = small_host(ept=False)
    victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16), paused=True)
    dom = xl.create(write_cfg(tmp_path, "shadowed", "hvm", SCRIPT_GUESTS / "hvm_script.s", memory=16, hap=0,
                              shadow_memory=1), paused=True)
    pool = pool_of(host, dom)
    assert pool.pages == 256                              # shadow_memory = 1 (MiB)
    while pool.free:                                      # earlier shadows took every page
        pool.alloc()
    xl.unpause(dom.name)
    host.run(2_000_000)
    assert dom.state == "crashed" and "paging pool" in dom.crash_reason
    assert victim.alive and host.domains[0].alive
    assert host.mm.pv.check_invariants() == []


def test_fresh_cr3_loads_recycle_the_shadow_guests_own_pool(tmp_path):
    """mm/shadow/common.c _shadow_prealloc(): before an exit builds shadows Xen makes room in the
    domain's own pool, unpinning the top-level shadows of address spaces no vCPU has loaded (and,
    if that is not enough, every shadow: shadow_blow_tables()). A guest that loads 640 fresh CR3s
    with a 256-page pool keeps running, its pool never grows and nobody else notices."""
    host, xl = small_host(ept=False)
    victim = xl.create(write_cfg(tmp_path, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16), paused=True)
    before = frames_digest(host, frames_of(victim))
    dom = xl.create(write_cfg(tmp_path, "storm", "hvm", GUESTS / "hvm_shadow_cr3_storm.s", memory=16, hap=0,
                              shadow_memory=1))
    pool = pool_of(host, dom)
    heap_before = len(host.free_frames)
    host.run(20_000_000)
    loads = int.from_bytes(host.mem.read((dom.p2m[0x300] << 12), 8), "little")
    assert dom.state == "shutdown" and loads == 640, (dom.state, dom.crash_reason, loads)
    shadow = dom.extra["shadow"]
    recycled = [e for e in events(host, "pagetable", dom=dom.domid) if e.data["op"] == "shadow recycle"]
    assert recycled and all(e.data["result"] == "recycled" for e in recycled)
    assert shadow.stats["shadows recycled"] > 0
    assert len(pool.frames) <= pool.pages == 256
    assert heap_before - len(host.free_frames) <= pool.pages, "shadows came from the pool, not Xen's heap"
    # What is left is consistent: every shadow frame is the pool's, every leaf maps the guest's own RAM
    assert set(shadow.frames) <= set(pool.frames) and not set(shadow.frames) & set(pool.spare)
    own = set(dom.p2m)
    assert all(mfn in own for _, _, mfn in shadow.leaves())
    for slots in shadow.rmap.values():
        assert all(slot >> 12 in shadow.frames for slot in slots), "a reverse map into a freed shadow"
    assert victim.alive and host.domains[0].alive
    assert frames_digest(host, frames_of(victim)) == before
    assert host.mm.pv.check_invariants() == []
