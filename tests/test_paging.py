"""The x86-64 4-level walk: permissions, faults, A/D flags, large pages, 2-D walks."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.hw import ept as E
from lab.hw import pagebuild as B
from lab.hw import paging as P
from lab.hw import x86 as X
from lab.hw.memory import MachineMemory

MiB = 1 << 20


def machine(size=64 * MiB, first_table=0x100):
    mem = MachineMemory(size)
    alloc = B.FrameAllocator(mem, first_table)
    cr3 = alloc() << 12
    return mem, alloc, cr3


def leaf_slot(mem, cr3, va):
    slot, _entry, _level = B.find_leaf(mem, cr3, va)
    return slot


VA = 0x0000_7F12_3456_7000
PA = 0x123_4000


# -- constants and descriptions ---------------------------------------------------------------
def test_constants_are_the_sdm_bits():
    assert (X._PAGE_PRESENT, X._PAGE_RW, X._PAGE_USER, X._PAGE_PWT, X._PAGE_PCD) == (1, 2, 4, 8, 16)
    assert (X._PAGE_ACCESSED, X._PAGE_DIRTY, X._PAGE_PSE, X._PAGE_GLOBAL) == (32, 64, 128, 256)
    assert X._PAGE_NX == 1 << 63
    assert X.PADDR_MASK == 0x000F_FFFF_FFFF_F000
    assert X.MAXPHYADDR == 52
    assert (X.PFEC_page_present, X.PFEC_write_access, X.PFEC_user_mode, X.PFEC_reserved_bit, X.PFEC_insn_fetch) == (1, 2, 4, 8, 16)


def test_flag_names_and_describe():
    assert P.flag_names(0x203067, 1) == ["P", "RW", "US", "A", "D"]
    assert P.describe_entry(0x203067, 1) == "0x0000000000203067 P RW US A D -> frame 0x203"
    everything = 1 | 2 | 4 | 32 | 64 | 128 | 256 | (1 << 63)
    assert P.flag_names(everything, 2) == ["P", "RW", "US", "A", "D", "PS", "G", "NX"]
    assert P.flag_names(0x80 | 1, 1) == ["P", "PAT"]          # bit 7 of an L1 entry is PAT
    assert P.flag_names(0x1081, 2) == ["P", "PS", "PAT"]      # bit 12 of a large leaf is PAT
    assert P.describe_entry(0, 3) == "0x0000000000000000 not present"
    assert P.describe_entry(0x2003, 4).endswith("P RW -> table frame 0x2")
    assert P.describe_entry(0x2000E3, 2).endswith("-> 2 MiB frame 0x200")
    assert P.decode_error_code(0x1F) == ["P", "W", "U", "RSVD", "I"]


def test_is_canonical():
    assert X.is_canonical(0)
    assert X.is_canonical(0x0000_7FFF_FFFF_FFFF)
    assert not X.is_canonical(0x0000_8000_0000_0000)
    assert not X.is_canonical(0x0001_0000_0000_0000)
    assert X.is_canonical(0xFFFF_8000_0000_0000)
    assert X.is_canonical(0xFFFF_FFFF_FFFF_FFFF)
    assert not X.is_canonical(0xFFFF_7FFF_FFFF_FFFF)
    assert not X.is_canonical(-1)
    assert not X.is_canonical(1 << 64)
    assert X.canonical(0x8000_0000_0000) == 0xFFFF_8000_0000_0000


# -- a plain 4 KiB walk --------------------------------------------------------------------------
def test_native_4k_walk():
    mem, alloc, cr3 = machine()
    created = B.map_page(mem, alloc, cr3, VA, PA, user=True)
    assert len(created) == 3                       # L3, L2 and L1 tables
    r = P.walk(mem, cr3, VA + 0x123)
    assert r.ok and r.fault is None
    assert r.pa == PA + 0x123 and r.hpa == r.pa
    assert r.page_size == 4096
    assert r.mem_refs == 4
    assert [s.level for s in r.steps] == [4, 3, 2, 1]
    assert r.steps[0].table == cr3
    i4, i3, i2, i1, off = P.table_indexes(VA + 0x123)
    assert [s.index for s in r.steps] == [i4, i3, i2, i1]
    assert off == 0x123
    for s in r.steps:
        assert s.entry_addr == s.table + 8 * s.index
        assert s.table_hpa == s.table
        assert s.ept is None
    assert r.steps[1].table == created[0] << 12
    assert r.writable and r.user and not r.nx and not r.global_
    assert r.leaf_entry_addr == r.steps[-1].entry_addr
    # A second mapping in the same 2 MiB region needs no new table.
    assert B.map_page(mem, alloc, cr3, VA + 0x1000, PA + 0x1000) == []


def test_cr3_low_and_high_bits_are_not_the_address():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    r = P.walk(mem, cr3 | 0x18 | (1 << 63), VA)     # PWT/PCD, PCID no-flush bit
    assert r.pa == PA


def test_walk_text():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, 0x5000, 0x5000)
    r = P.walk(mem, cr3, 0x5123)
    lines = P.walk_steps_text(r)
    assert any(line.startswith(f"L4 table {cr3:#x} [  0] = ") for line in lines)
    assert "-> frame 0x5000 + 0x123 = 0x5123" in lines
    assert sum(line.startswith("L") for line in lines) == 4
    bad = P.walk(mem, cr3, 0x9000, access="w", cpl=3)
    assert bad.fault is not None
    assert P.walk_steps_text(bad)[-1].startswith("#PF error code 0x6 (W U)")
    nc = P.walk(mem, cr3, 0x8000_0000_0000)
    assert "not canonical" in P.walk_steps_text(nc)[0]


# -- permissions -----------------------------------------------------------------------------------
def expected_fault(cpl, access, wp, nxe, rw, us, nx):
    """The SDM's rules, stated plainly: None or (error code, reason start)."""
    user_mode = cpl == 3
    code = (2 if access == "w" else 0) | (4 if user_mode else 0) | (16 if access == "x" and nxe else 0)
    if nx and not nxe:
        return code | 1 | 8, "reserved bit"
    if user_mode and not us:
        return code | 1, "user access to a supervisor page"
    if access == "w" and not rw and (user_mode or wp):
        return code | 1, "write to a read-only page"
    if access == "x" and nx and nxe:
        return code | 1, "instruction fetch from a no-execute page"
    return None


@pytest.mark.parametrize("cpl", [0, 3])
@pytest.mark.parametrize("access", ["r", "w", "x"])
@pytest.mark.parametrize("wp", [True, False])
@pytest.mark.parametrize("nxe", [True, False])
@pytest.mark.parametrize("rw", [True, False])
@pytest.mark.parametrize("us", [True, False])
@pytest.mark.parametrize("nx", [True, False])
def test_permission_matrix(cpl, access, wp, nxe, rw, us, nx):
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, rw=rw, user=us, nx=nx)
    r = P.walk(mem, cr3, VA + 8, access=access, cpl=cpl, wp=wp, nxe=nxe)
    want = expected_fault(cpl, access, wp, nxe, rw, us, nx)
    if want is None:
        assert r.fault is None and r.pa == PA + 8
    else:
        assert r.pa is None
        assert r.fault.error_code == want[0]
        assert r.fault.reason.startswith(want[1])
        assert r.fault.cr2 == VA + 8


def set_entry_bits(mem, step, set_bits=0, clear_bits=0):
    mem.write_u64(step.entry_addr, (step.entry | set_bits) & ~clear_bits)


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_user_needs_us_at_every_level(level):
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, user=True)
    steps = P.walk(mem, cr3, VA, set_ad=False).steps
    set_entry_bits(mem, steps[4 - level], clear_bits=X._PAGE_USER)
    r = P.walk(mem, cr3, VA, cpl=3)
    assert r.fault.error_code == X.PFEC_page_present | X.PFEC_user_mode
    assert r.fault.reason == f"user access to a supervisor page (US clear at L{level})"
    assert not r.user
    # The supervisor still reads it.
    assert P.walk(mem, cr3, VA, cpl=0).pa == PA


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_write_needs_rw_at_every_level(level):
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, user=True)
    steps = P.walk(mem, cr3, VA, set_ad=False).steps
    set_entry_bits(mem, steps[4 - level], clear_bits=X._PAGE_RW)
    r = P.walk(mem, cr3, VA, access="w", cpl=3)
    assert r.fault.error_code == X.PFEC_page_present | X.PFEC_write_access | X.PFEC_user_mode
    assert r.fault.reason == f"write to a read-only page (RW clear at L{level})"
    sup = P.walk(mem, cr3, VA, access="w", cpl=0, wp=True)
    assert sup.fault.error_code == X.PFEC_page_present | X.PFEC_write_access
    # CR0.WP clear: the supervisor may write read-only pages.
    assert P.walk(mem, cr3, VA, access="w", cpl=0, wp=False).pa == PA
    # CR0.WP never lets user mode write.
    assert P.walk(mem, cr3, VA, access="w", cpl=3, wp=False).fault is not None


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_nx_at_any_level_forbids_fetch(level):
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, user=True)
    steps = P.walk(mem, cr3, VA, set_ad=False).steps
    set_entry_bits(mem, steps[4 - level], set_bits=X._PAGE_NX)
    r = P.walk(mem, cr3, VA, access="x", cpl=3)
    assert r.fault.error_code == X.PFEC_page_present | X.PFEC_user_mode | X.PFEC_insn_fetch
    assert r.fault.reason == "instruction fetch from a no-execute page"
    assert r.fault.level == level
    assert P.walk(mem, cr3, VA, access="r", cpl=3).pa == PA
    assert P.walk(mem, cr3, VA, access="r", cpl=3).nx
    # Without EFER.NXE the NX bit is reserved.
    rs = P.walk(mem, cr3, VA, access="r", cpl=0, nxe=False)
    assert rs.fault.error_code == X.PFEC_page_present | X.PFEC_reserved_bit
    assert rs.fault.reason == f"reserved bit set in L{level} entry (NX without EFER.NXE)"


def test_fetch_error_code_has_i_only_with_nxe():
    mem, alloc, cr3 = machine()
    r = P.walk(mem, cr3, VA, access="x", nxe=True)
    assert r.fault.error_code == X.PFEC_insn_fetch
    r = P.walk(mem, cr3, VA, access="x", nxe=False)
    assert r.fault.error_code == 0


def test_supervisor_may_use_user_pages():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, user=True)
    for access in "rwx":
        assert P.walk(mem, cr3, VA, access=access, cpl=0).pa == PA


def test_cpl_1_and_2_are_supervisor():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, user=False)
    for cpl in (0, 1, 2):
        assert P.walk(mem, cr3, VA, cpl=cpl).pa == PA
    assert P.walk(mem, cr3, VA, cpl=3).fault is not None


# -- not-present faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize("access,cpl,code", [("r", 0, 0), ("w", 0, 2), ("r", 3, 4), ("w", 3, 6),
                                             ("x", 3, 0x14), ("x", 0, 0x10)])
def test_not_present_error_codes(access, cpl, code):
    mem, alloc, cr3 = machine()
    r = P.walk(mem, cr3, VA, access=access, cpl=cpl)
    assert r.fault.error_code == code
    assert r.fault.cr2 == VA
    assert r.fault.reason == "not present at L4 (entry 0x0)"
    assert len(r.steps) == 1 and r.mem_refs == 1
    assert r.pa is None


def test_not_present_at_l2_and_l1():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    other_l2 = VA + (1 << 30)      # different L3 slot... same L4 => not present at L3
    r = P.walk(mem, cr3, other_l2)
    assert r.fault.reason == "not present at L3 (entry 0x0)"
    r = P.walk(mem, cr3, VA + (1 << 21))
    assert r.fault.reason == "not present at L2 (entry 0x0)"
    assert r.fault.level == 2
    r = P.walk(mem, cr3, VA + 0x1000)
    assert r.fault.reason == "not present at L1 (entry 0x0)"
    assert r.mem_refs == 4
    # A not-present entry with other bits keeps them in the reason.
    slot = leaf_slot(mem, cr3, VA)
    mem.write_u64(slot, PA | 2)
    r = P.walk(mem, cr3, VA, access="w")
    assert r.fault.reason == f"not present at L1 (entry {PA | 2:#x})"
    assert r.fault.error_code == X.PFEC_write_access


def test_page_fault_as_cpu_exception():
    mem, alloc, cr3 = machine()
    f = P.walk(mem, cr3, VA, access="w", cpl=3).fault
    exc = f.as_fault()
    assert exc.vector == 14 and exc.error_code == 6 and exc.cr2 == VA
    assert f.describe().startswith("#PF error code 0x6 (W U)")


# -- reserved bits --------------------------------------------------------------------------------------
def test_ps_in_l4_is_reserved():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    l4 = P.walk(mem, cr3, VA, set_ad=False).steps[0]
    set_entry_bits(mem, l4, set_bits=X._PAGE_PSE)
    r = P.walk(mem, cr3, VA, access="w", cpl=0)
    assert r.fault.error_code == X.PFEC_page_present | X.PFEC_reserved_bit | X.PFEC_write_access
    assert r.fault.reason == "reserved bit set in L4 entry (PS)"
    assert r.mem_refs == 1


def test_reserved_low_bits_of_large_pages():
    mem, alloc, cr3 = machine(size=4096 * MiB)
    B.map_page(mem, alloc, cr3, 0x4000_0000, 0x4000_0000, page_size=P.PAGE_1G)
    B.map_page(mem, alloc, cr3, 0x20_0000, 0x20_0000, page_size=P.PAGE_2M)
    assert P.walk(mem, cr3, 0x4000_0000).fault is None
    assert P.walk(mem, cr3, 0x20_0000).fault is None
    slot1g = leaf_slot(mem, cr3, 0x4000_0000)
    mem.write_u64(slot1g, mem.read_u64(slot1g) | (1 << 13))
    r = P.walk(mem, cr3, 0x4000_0000, cpl=3)
    assert r.fault.error_code == X.PFEC_page_present | X.PFEC_reserved_bit | X.PFEC_user_mode
    assert r.fault.reason == "reserved bit set in L3 entry (bits 29:13 of a 1 GiB page)"
    slot2m = leaf_slot(mem, cr3, 0x20_0000)
    mem.write_u64(slot2m, mem.read_u64(slot2m) | (1 << 20))
    r = P.walk(mem, cr3, 0x20_0000)
    assert r.fault.reason == "reserved bit set in L2 entry (bits 20:13 of a 2 MiB page)"
    # Bit 12 of a large leaf is PAT, not reserved; nor are the ignored bits 62:52.
    mem.write_u64(slot2m, 0x20_0000 | 0x1083 | (0x7FF << 52))
    r = P.walk(mem, cr3, 0x20_0123)
    assert r.fault is None and r.pa == 0x20_0123


def test_reserved_bit_fault_beats_permission_fault():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, user=False, rw=False)
    slot = leaf_slot(mem, cr3, VA)
    mem.write_u64(slot, mem.read_u64(slot) | X._PAGE_NX)
    r = P.walk(mem, cr3, VA, access="w", cpl=3, nxe=False)
    assert r.fault.error_code == X.PFEC_page_present | X.PFEC_reserved_bit | X.PFEC_write_access | X.PFEC_user_mode


# -- accessed and dirty ------------------------------------------------------------------------------------
def test_read_sets_accessed_everywhere_and_no_dirty():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    r = P.walk(mem, cr3, VA, access="r")
    for s in r.steps:
        assert not s.entry & X._PAGE_ACCESSED           # as read, before the update
        now = mem.read_u64(s.entry_addr)
        assert now & X._PAGE_ACCESSED
        assert not now & X._PAGE_DIRTY
    assert not r.dirty


def test_write_sets_dirty_in_leaf_only():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    r = P.walk(mem, cr3, VA, access="w")
    values = [mem.read_u64(s.entry_addr) for s in r.steps]
    assert all(v & X._PAGE_ACCESSED for v in values)
    assert [bool(v & X._PAGE_DIRTY) for v in values] == [False, False, False, True]
    assert r.dirty and r.leaf_entry == values[-1]
    r2 = P.walk(mem, cr3, VA, access="w")
    assert r2.steps[-1].entry == values[-1]


def test_no_ad_updates_when_inspecting_or_faulting():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, rw=False)
    before = mem.snapshot()
    r = P.walk(mem, cr3, VA, access="r", set_ad=False)
    assert r.pa == PA
    assert mem.snapshot() == before
    r = P.walk(mem, cr3, VA, access="w")           # faults: RW clear
    assert r.fault is not None
    assert mem.snapshot() == before


def test_ad_updates_write_only_changed_entries():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA, accessed=True, dirty=True)
    P.walk(mem, cr3, VA, access="w")
    written = []
    leaf_mfn = leaf_slot(mem, cr3, VA) >> 12
    mem.watched.add(leaf_mfn)
    mem.on_watched_write = written.append
    P.walk(mem, cr3, VA, access="w")
    assert written == []


# -- large pages --------------------------------------------------------------------------------------------
def test_2m_page():
    mem, alloc, cr3 = machine()
    created = B.map_page(mem, alloc, cr3, 0x4000_0000, 0x20_0000, page_size=P.PAGE_2M, user=True,
                         global_=True)
    assert len(created) == 2
    r = P.walk(mem, cr3, 0x4012_3456, access="w", cpl=3)
    assert r.pa == 0x32_3456
    assert r.page_size == P.PAGE_2M
    assert r.mem_refs == 3 and len(r.steps) == 3
    assert r.global_
    assert "PS" in r.steps[-1].flags
    assert mem.read_u64(r.leaf_entry_addr) & X._PAGE_DIRTY
    assert "-> 2 MiB page 0x200000 + 0x123456 = 0x323456" in P.walk_steps_text(r)


def test_1g_page():
    mem, alloc, cr3 = machine(size=2048 * MiB)
    created = B.map_page(mem, alloc, cr3, 0xFFFF_8000_4000_0000, 0x4000_0000, page_size=P.PAGE_1G)
    assert len(created) == 1
    r = P.walk(mem, cr3, 0xFFFF_8000_7FFF_FFF8)
    assert r.pa == 0x7FFF_FFF8
    assert r.page_size == P.PAGE_1G
    assert r.mem_refs == 2


def test_cannot_map_4k_inside_a_large_page():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, 0x20_0000, 0x20_0000, page_size=P.PAGE_2M)
    with pytest.raises(ValueError):
        B.map_page(mem, alloc, cr3, 0x20_1000, 0x5000)
    with pytest.raises(ValueError):
        B.map_page(mem, alloc, cr3, 0x20_1000, 0x20_1000, page_size=P.PAGE_2M)   # misaligned


def test_unmap_page():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    old = B.unmap_page(mem, cr3, VA)
    assert old & X.PADDR_MASK == PA
    assert P.walk(mem, cr3, VA).fault.reason == "not present at L1 (entry 0x0)"
    assert B.unmap_page(mem, cr3, VA) == 0


# -- non-canonical ------------------------------------------------------------------------------------------
def test_noncanonical_is_gp_not_pf():
    mem, alloc, cr3 = machine()
    r = P.walk(mem, cr3, 0x0000_8000_0000_0000)
    assert r.noncanonical
    assert r.fault is None and r.pa is None and r.steps == [] and r.mem_refs == 0


# -- recursive mapping ------------------------------------------------------------------------------------------
def test_recursive_l4_slot_exposes_the_tables():
    mem, alloc, cr3 = machine()
    B.map_page(mem, alloc, cr3, VA, PA)
    rec = 510
    mem.write_u64(cr3 + rec * 8, cr3 | X._PAGE_PRESENT | X._PAGE_RW)
    i4, i3, i2, i1, _ = P.table_indexes(VA)
    real = P.walk(mem, cr3, VA, set_ad=False).steps
    # The L1 table covering VA appears at [rec][i4][i3][i2].
    l1_va = X.canonical((rec << 39) | (i4 << 30) | (i3 << 21) | (i2 << 12))
    r = P.walk(mem, cr3, l1_va + i1 * 8, set_ad=False)
    assert r.pa == real[3].entry_addr
    assert mem.read_u64(r.pa) == real[3].entry
    # The L4 itself appears at [rec][rec][rec][rec].
    l4_va = X.canonical((rec << 39) | (rec << 30) | (rec << 21) | (rec << 12))
    r = P.walk(mem, cr3, l4_va + rec * 8, set_ad=False)
    assert r.pa == cr3 + rec * 8
    assert all(s.table == cr3 for s in r.steps)
    # The window is supervisor-only because the recursive entry lacks US.
    assert P.walk(mem, cr3, l4_va, cpl=3, set_ad=False).fault.reason == \
        "user access to a supervisor page (US clear at L4)"


# -- 2-D walks (guest tables under EPT) -----------------------------------------------------------------------------
GUEST_BASE = 0x100_0000      # guest-physical 0 lives at host-physical 16 MiB


class GuestView:
    """Guest-physical view of memory, for building the guest's own tables."""

    def __init__(self, mem):
        self.mem = mem

    def read_u64(self, gpa):
        return self.mem.read_u64(gpa + GUEST_BASE)

    def write_u64(self, gpa, value):
        self.mem.write_u64(gpa + GUEST_BASE, value)


def hvm_machine(ept_page_size=4096, ad=True):
    mem = MachineMemory(64 * MiB)
    ealloc = B.FrameAllocator(mem, 0x10, 0x100)
    pml4 = ealloc() << 12
    for gpa in range(0, 4 * MiB, ept_page_size):
        B.ept_map(mem, ealloc, pml4, gpa, gpa + GUEST_BASE, page_size=ept_page_size)
    eptp = E.make_eptp(pml4, ad=ad)
    gnext = [0x100]

    def galloc():
        g = gnext[0]
        gnext[0] += 1
        return g
    gcr3 = galloc() << 12
    return mem, eptp, pml4, GuestView(mem), galloc, gcr3


def test_2d_walk_makes_24_memory_references():
    mem, eptp, _pml4, gview, galloc, gcr3 = hvm_machine()
    B.map_page(gview, galloc, gcr3, VA, 0x30_0000, user=True)
    r = P.walk(mem, gcr3, VA + 0x10, access="w", cpl=3, table_translate=E.EptTranslator(mem, eptp))
    assert r.ok
    assert r.pa == 0x30_0010
    assert r.hpa == 0x30_0010 + GUEST_BASE
    assert r.mem_refs == 24 == (4 + 1) * (4 + 1) - 1
    assert all(len(s.ept) == 4 for s in r.steps)
    assert len(r.final_ept) == 4
    assert r.steps[0].table == gcr3 and r.steps[0].table_hpa == gcr3 + GUEST_BASE
    # Guest A/D flags are written at the host-physical address of each entry.
    for s in r.steps:
        assert mem.read_u64(s.entry_hpa) & X._PAGE_ACCESSED
    assert mem.read_u64(r.steps[-1].entry_hpa) & X._PAGE_DIRTY
    text = P.walk_steps_text(r)
    assert sum("through EPT" in line for line in text) == 5
    assert any(line.startswith("    EPT L4") for line in text)
    assert f"-> hPA {r.hpa:#x}" in text


def test_2d_walk_with_a_callable_that_only_takes_gpa_and_access():
    mem, eptp, _pml4, gview, galloc, gcr3 = hvm_machine()
    B.map_page(gview, galloc, gcr3, VA, 0x30_0000)
    seen = []

    def tt(gpa, access):
        seen.append((gpa, access))
        res = E.ept_walk(mem, eptp, gpa, access)
        if res.exit:
            raise res.exit
        return res.hpa, res.steps
    r = P.walk(mem, gcr3, VA, access="x", table_translate=tt)
    assert r.hpa == 0x30_0000 + GUEST_BASE and r.mem_refs == 24
    assert [a for _g, a in seen] == ["r", "r", "r", "r", "x"]


def test_2d_walk_with_2m_ept_pages_is_shorter():
    mem, eptp, _pml4, gview, galloc, gcr3 = hvm_machine(ept_page_size=P.PAGE_2M)
    B.map_page(gview, galloc, gcr3, VA, 0x30_0000)
    r = P.walk(mem, gcr3, VA, table_translate=E.EptTranslator(mem, eptp))
    assert r.mem_refs == 5 * 3 + 4
    assert r.host_page_size == P.PAGE_2M


def test_2d_walk_ept_violation_on_a_guest_table():
    mem, eptp, pml4, gview, galloc, gcr3 = hvm_machine()
    B.map_page(gview, galloc, gcr3, VA, 0x30_0000)
    l3_gpa = P.walk(gview, gcr3, VA, set_ad=False).steps[1].table
    B.ept_unmap(mem, pml4, l3_gpa)
    r = P.walk(mem, gcr3, VA, table_translate=E.EptTranslator(mem, eptp))
    v = r.ept_violation
    assert v is not None and r.fault is None and r.pa is None
    assert v.guest_level == 3
    assert v.gpa == l3_gpa + 8 * P.table_indexes(VA)[1]
    assert v.gla == VA
    q = v.qualification
    assert q & E.EPTQ_GLA_VALID and not q & E.EPTQ_GLA_FINAL     # a paging-structure access
    assert q & E.EPTQ_READ
    assert not q & (E.EPTQ_READABLE | E.EPTQ_WRITABLE | E.EPTQ_EXECUTABLE)
    assert r.mem_refs == 4 + 1 + 4
    assert "access to a guest paging-structure entry" in E.decode_qualification(q)
    assert any("EPT_VIOLATION (48)" in line for line in P.walk_steps_text(r))


def test_2d_walk_ept_violation_on_the_final_address():
    mem, eptp, pml4, gview, galloc, gcr3 = hvm_machine()
    B.map_page(gview, galloc, gcr3, VA, 0x30_0000)
    B.ept_set_perms(mem, pml4, 0x30_0000, "r")      # log-dirty style: read-only
    tt = E.EptTranslator(mem, eptp)
    assert P.walk(mem, gcr3, VA, access="r", table_translate=tt).ok
    r = P.walk(mem, gcr3, VA + 4, access="w", table_translate=tt)
    v = r.ept_violation
    assert v.guest_level is None and v.gpa == 0x30_0004 and v.gla == VA + 4
    assert v.qualification == (E.EPTQ_WRITE | E.EPTQ_READABLE | E.EPTQ_GLA_VALID | E.EPTQ_GLA_FINAL)
    # The callable that knows nothing of the walk gets the linear-address bits filled in too.

    def bare(gpa, access):
        res = E.ept_walk(mem, eptp, gpa, access)
        if res.exit:
            raise res.exit
        return res.hpa, res.steps
    r2 = P.walk(mem, gcr3, VA + 4, access="w", table_translate=bare)
    assert r2.ept_violation.qualification == v.qualification


def test_2d_walk_guest_fault_is_a_guest_page_fault():
    mem, eptp, _pml4, gview, galloc, gcr3 = hvm_machine()
    r = P.walk(mem, gcr3, VA, access="w", cpl=3, table_translate=E.EptTranslator(mem, eptp))
    assert r.fault.error_code == 6 and r.ept_exit is None
    assert r.mem_refs == 4 + 1


def test_2d_walk_set_ad_false_changes_nothing():
    mem, eptp, _pml4, gview, galloc, gcr3 = hvm_machine()
    B.map_page(gview, galloc, gcr3, VA, 0x30_0000)
    before = mem.snapshot()
    r = P.walk(mem, gcr3, VA, access="w", set_ad=False,
               table_translate=E.EptTranslator(mem, eptp, set_ad=False))
    assert r.ok and mem.snapshot() == before


# -- property: map then walk ------------------------------------------------------------------------------------------
canonical_pages = st.one_of(
    st.integers(0, (1 << 35) - 1).map(lambda n: n << 12),
    st.integers(0, (1 << 35) - 1).map(lambda n: X.canonical((1 << 47) | (n << 12))),
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.lists(st.tuples(canonical_pages, st.integers(0x400, 0x2FFF), st.booleans(), st.booleans(),
                                st.booleans(), st.booleans()),
                      min_size=1, max_size=12, unique_by=lambda t: t[0]),
       offset=st.integers(0, 4095))
def test_map_page_then_walk(pages, offset):
    mem, alloc, cr3 = machine(first_table=0x3000)
    for va, pfn, rw, user, nx, glob in pages:
        B.map_page(mem, alloc, cr3, va, pfn << 12, rw=rw, user=user, nx=nx, global_=glob)
    for va, pfn, rw, user, nx, glob in pages:
        r = P.walk(mem, cr3, va + offset, set_ad=False)
        assert r.pa == (pfn << 12) + offset
        assert (r.writable, r.user, r.nx, r.global_) == (rw, user, nx, glob)
        assert (P.walk(mem, cr3, va, access="w", cpl=3, set_ad=False).fault is None) == (rw and user)
        assert (P.walk(mem, cr3, va, access="x", set_ad=False).fault is None) == (not nx)
