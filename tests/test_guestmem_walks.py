"""Xen's copies to and from a PV guest reuse earlier walks of its tables, and see every change
to them at once: a remapped, unmapped or read-only page behaves as a fresh walk says."""

from __future__ import annotations

import pytest

from lab.hw import paging
from lab.xen.guestmem import GuestFault, copy_from_guest, copy_to_guest, guest_va_to_maddr
from xen_helpers import entry_maddr, script_guest, small_host

pytestmark = pytest.mark.machine


@pytest.fixture
def guest(tmp_path):
    host, xl = small_host(mem_mib=96)
    g = script_guest(xl, tmp_path, "pv-a", "pv", memory=16)
    return host, g


def _fresh(host, v, va: int, write: bool) -> int | None:
    res = paging.walk(host.mem, v.guest_table << 12, va, access="w" if write else "r", cpl=0, set_ad=False)
    return res.pa if res.ok else None


def test_a_walk_is_reused_only_while_the_entries_it_read_are_unchanged(guest):
    host, g = guest
    v = g.vcpu
    va = g.buf(0) + 0x18
    copy_to_guest(host, v, va, b"first")
    assert len(v.cpu.xen_walks) >= 1                  # the walk was kept ...
    assert copy_from_guest(host, v, va, 5) == b"first"
    l1e_addr = entry_maddr(host, v.guest_table, va)
    l1e = host.mem.read_u64(l1e_addr)

    # ... but a remapping (as mmu_update writes it) is seen at once, without any flush.
    other = g.buf(0x1000) + 0x18
    copy_to_guest(host, v, other, b"second")
    host.mem.write_u64(l1e_addr, host.mem.read_u64(entry_maddr(host, v.guest_table, other)))
    assert guest_va_to_maddr(host, v, va) == _fresh(host, v, va, False)
    assert copy_from_guest(host, v, va, 6) == b"second"

    # A read-only mapping refuses Xen's writes; a read still goes through.
    host.mem.write_u64(l1e_addr, l1e & ~paging._PAGE_RW)
    assert copy_from_guest(host, v, va, 5) == b"first"
    with pytest.raises(GuestFault):
        copy_to_guest(host, v, va, b"x")

    # Not present: both fault, as the fresh walk does.
    host.mem.write_u64(l1e_addr, 0)
    assert _fresh(host, v, va, False) is None
    with pytest.raises(GuestFault):
        copy_from_guest(host, v, va, 1)

    host.mem.write_u64(l1e_addr, l1e)
    assert copy_from_guest(host, v, va, 5) == b"first"


def test_a_change_higher_up_the_tables_is_seen_too(guest):
    host, g = guest
    v = g.vcpu
    va = g.buf(0)
    copy_to_guest(host, v, va, b"abc")
    assert copy_from_guest(host, v, va, 3) == b"abc"   # both walks kept
    l2e_addr = entry_maddr(host, v.guest_table, va, level=2)
    l2e = host.mem.read_u64(l2e_addr)
    host.mem.write_u64(l2e_addr, 0)
    with pytest.raises(GuestFault):
        copy_from_guest(host, v, va, 3)
    with pytest.raises(GuestFault):
        copy_to_guest(host, v, va, b"x")
    host.mem.write_u64(l2e_addr, l2e)
    assert copy_from_guest(host, v, va, 3) == b"abc"


def test_the_kept_walks_stay_bounded(guest):
    host, g = guest
    v = g.vcpu
    for page in range(200):
        va = g.buf(0) + page * 0x1000
        if _fresh(host, v, va, False) is None:
            break
        copy_from_guest(host, v, va, 8)
    assert page > 64                                  # enough pages to overflow the bound
    assert len(v.cpu.xen_walks) <= 64
