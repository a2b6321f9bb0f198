"""Xen's copies to and from a guest reuse earlier walks of its tables, and see every change
to them at once: a remapped, unmapped or read-only page behaves as a fresh walk says (for an
HVM guest, a change of its p2m too)."""

from __future__ import annotations

import pytest

from lab.hw import paging
from lab.hw.x86 import X86_CR0_PG
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


# ------------------------------------------------------------------ HVM: walks through the p2m
TABLES_GPA = 0x800000          # the guest's L4, L3, L2, L1 (above its kernel's image)
DATA_GPA = 0x900000
HVM_VA = 0x7F00_0000_1000


@pytest.fixture
def hvm_guest(tmp_path):
    host, xl = small_host(mem_mib=96)
    g = script_guest(xl, tmp_path, "hvm-a", "hvm", memory=16)
    dom, cpu = g.dom, g.vcpu.cpu
    for level, gpa in zip((4, 3, 2), range(TABLES_GPA, TABLES_GPA + 0x3000, 0x1000)):
        _set_gpa_entry(host, dom, gpa, HVM_VA, level, gpa + 0x1000 | 3)
    _set_gpa_entry(host, dom, TABLES_GPA + 0x3000, HVM_VA, 1, DATA_GPA | 3)
    cpu.cr3 = TABLES_GPA
    cpu.cr0 |= X86_CR0_PG
    return host, g


def _set_gpa_entry(host, dom, table_gpa: int, va: int, level: int, value: int) -> None:
    slot = (va >> (12 + 9 * (level - 1))) & 511
    host.mem.write_u64((dom.gfn_to_mfn(table_gpa >> 12) << 12) + slot * 8, value)


def test_an_hvm_walk_is_reused_while_its_entries_and_p2m_entries_are_unchanged(hvm_guest):
    host, g = hvm_guest
    v, dom = g.vcpu, g.dom
    va = HVM_VA + 0x18
    copy_to_guest(host, v, va, b"first")
    assert any(k[-1] == "p2m" for k in v.cpu.xen_walks)          # the walk was kept ...
    assert copy_from_guest(host, v, va, 5) == b"first"
    assert guest_va_to_maddr(host, v, va) == (dom.gfn_to_mfn(DATA_GPA >> 12) << 12) + 0x18

    # ... but the guest's remapping is seen at once,
    _set_gpa_entry(host, dom, TABLES_GPA + 0x3000, HVM_VA, 1, (DATA_GPA + 0x1000) | 3)
    assert guest_va_to_maddr(host, v, va) == (dom.gfn_to_mfn((DATA_GPA >> 12) + 1) << 12) + 0x18
    _set_gpa_entry(host, dom, TABLES_GPA + 0x3000, HVM_VA, 1, DATA_GPA | 3)
    assert copy_from_guest(host, v, va, 5) == b"first"

    # and so is a p2m change under the page, or under one of the tables.
    page, spare = DATA_GPA >> 12, (DATA_GPA >> 12) + 2
    dom.p2m[page], dom.p2m[spare] = dom.p2m[spare], dom.p2m[page]
    assert guest_va_to_maddr(host, v, va) == (dom.gfn_to_mfn(page) << 12) + 0x18
    assert copy_from_guest(host, v, va, 5) != b"first"
    dom.p2m[page], dom.p2m[spare] = dom.p2m[spare], dom.p2m[page]
    assert copy_from_guest(host, v, va, 5) == b"first"
    l1 = (TABLES_GPA + 0x3000) >> 12
    dom.p2m[l1], dom.p2m[spare] = dom.p2m[spare], dom.p2m[l1]     # the L1 now holds zeroes
    with pytest.raises(GuestFault):
        copy_from_guest(host, v, va, 5)
    dom.p2m[l1], dom.p2m[spare] = dom.p2m[spare], dom.p2m[l1]
    assert copy_from_guest(host, v, va, 5) == b"first"

    # A table entry that goes away faults, as a fresh walk does.
    _set_gpa_entry(host, dom, TABLES_GPA + 0x2000, HVM_VA, 2, 0)
    with pytest.raises(GuestFault):
        copy_to_guest(host, v, va, b"x")
