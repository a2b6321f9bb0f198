"""Real configs of real sizes: a host of several GiB, guests of hundreds of MiB and more."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.paths import KERNELS, MACHINES
from lab.session.scenario import boot_host, load_scenario
from lab.session.xlcommand import run_xl
from lab.xen.heap import FreeFrames
from lab.xen.host import HostConfig


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.just("pop"), st.integers(1, 40)), max_size=40))
def test_free_frames_hand_out_what_a_list_would(ops):
    # The heap as a range plus a stack gives the frames a reversed list with pop() and
    # append() gives: ascending fresh frames, a freed one reused first.
    heap, model = FreeFrames(100, 200), list(range(199, 99, -1))
    for op in ops:
        if op == "pop":
            if model:
                assert heap.pop() == model.pop()
        else:
            n = min(op, len(model))
            got = heap.take(n)
            want = [model.pop() for _ in range(n)]
            assert got == want
            for mfn in want[::2]:                 # give back every other one
                heap.append(mfn)
                model.append(mfn)
        assert len(heap) == len(model) and list(heap) == model
        assert all(m in heap for m in model[:5])


def test_shipped_scenarios_have_a_host_of_several_gib():
    sc = load_scenario(MACHINES / "default.toml")
    assert sc.host.mem_mib == 8192


def test_a_real_pvh_config_of_512_mib_and_4_vcpus_boots(tmp_path):
    # The audit's example: refused on a 512 MiB host, it must boot on a realistic one,
    # and xl info / xl list report it (xl_info.c); vCPUs 1-3 wait offline.
    host, xl = boot_host(HostConfig(mem_mib=8192))
    cfg = tmp_path / "real.cfg"
    cfg.write_text(f'name = "real-pvh"\ntype = "pvh"\nmemory = 512\nvcpus = 4\nkernel = "{KERNELS / "pvh.s"}"\n')
    dom = xl.create(cfg)
    assert dom.mem_mib == 512 and len(dom.vcpus) == 4
    assert [v.runstate for v in dom.vcpus[1:]] == ["offline"] * 3
    info = {k.strip(): v for k, v in (line.split(":", 1) for line in run_xl(xl, ["info"]).splitlines())}
    assert int(info["total_memory"].strip()) == 8192
    assert int(info["free_memory"].strip()) == host.free_pages >> 8 < 8192 - 512 - 64
    row = next(line.split() for line in run_xl(xl, ["list"]).splitlines() if line.startswith("real-pvh"))
    assert row[1:4] == [str(dom.domid), "512", "1"]              # one vCPU online
    vcpus = [line.split() for line in run_xl(xl, ["vcpu-list"]).splitlines() if line.startswith("real-pvh")]
    assert len(vcpus) == 4 and [r[4][0] for r in vcpus[1:]] == ["-"] * 3      # not online


def test_a_large_pv_guest_gets_an_initial_mapping_and_its_m2p(tmp_path):
    # The PV builder maps the boot area (the first 64 MiB here) and tells the kernel that is
    # its memory; the M2P and the P2M list cover every page.
    host, xl = boot_host(HostConfig(mem_mib=2048))
    cfg = tmp_path / "pv.cfg"
    cfg.write_text(f'name = "big-pv"\ntype = "pv"\nmemory = 160\nkernel = "{KERNELS / "pv.s"}"\n')
    dom = xl.create(cfg)
    last = dom.p2m[-1]
    assert host.mm.pv.m2p[last] == dom.mem_pages - 1
    m2p_page, idx = divmod(last * 8, 4096)
    assert host.mem.read_u64((host.mm.m2p_frames[m2p_page] << 12) + idx) == dom.mem_pages - 1
    # the kernel's direct map ends at 64 MiB: the last page below is mapped, the next is not
    from lab.hw.boot import DIRECT_MAP
    from lab.hw.pagebuild import find_leaf
    cr3 = dom.vcpus[0].cpu.cr3
    assert find_leaf(host.mem, cr3, DIRECT_MAP + (64 << 20) - 4096) is not None
    assert find_leaf(host.mem, cr3, DIRECT_MAP + (64 << 20)) is None
    assert host.mm.pv.pages[last].owner == dom.domid and host.mm.pv.pages[last].allocated


@pytest.mark.parametrize("gtype", ["hvm"])
def test_large_hvm_guest_has_ept_entries_for_all_its_memory(tmp_path, gtype):
    from lab.hw.pagebuild import ept_find_leaf
    host, xl = boot_host(HostConfig(mem_mib=2048))
    cfg = tmp_path / "hvm.cfg"
    cfg.write_text(f'name = "big"\ntype = "hvm"\nmemory = 24\nkernel = "{KERNELS / "hvm.s"}"\n')
    dom = xl.create(cfg)
    for gfn in (0, 511, 512, dom.mem_pages - 1):
        slot, entry, level = ept_find_leaf(host.mem, dom.ept_root << 12, gfn << 12)
        assert level == 1 and entry >> 12 & ((1 << 40) - 1) == dom.p2m[gfn] and entry & 7 == 7
    assert ept_find_leaf(host.mem, dom.ept_root << 12, dom.mem_pages << 12) is None
