"""Intel EPT: entries, the walk, A/D flags, violations and misconfigurations."""

from __future__ import annotations

import pytest

from lab.hw import ept as E
from lab.hw import pagebuild as B
from lab.hw.memory import MachineMemory

MiB = 1 << 20
GPA = 0x12_3000
HPA = 0x80_0000


def setup(size=64 * MiB, ad=True):
    mem = MachineMemory(size)
    alloc = B.FrameAllocator(mem, 0x10, 0x400)
    pml4 = alloc() << 12
    return mem, alloc, pml4, E.make_eptp(pml4, ad=ad)


def leaf_slot(mem, pml4, gpa):
    return B.ept_find_leaf(mem, pml4, gpa)[0]


# -- format -----------------------------------------------------------------------------------
def test_bits_and_memory_types():
    assert (E.EPT_R, E.EPT_W, E.EPT_X) == (1, 2, 4)
    assert E.EPT_MT_MASK == 0x38 and E.EPT_IGNORE_PAT == 0x40 and E.EPT_PS == 0x80
    assert (E.EPT_A, E.EPT_D) == (0x100, 0x200)
    assert (E.MT_UC, E.MT_WC, E.MT_WT, E.MT_WP, E.MT_WB) == (0, 1, 4, 5, 6)
    assert (E.EXIT_REASON_EPT_VIOLATION, E.EXIT_REASON_EPT_MISCONFIG) == (48, 49)
    assert E.EptViolation.exit_reason == 48 and E.EptMisconfig.exit_reason == 49


def test_make_eptp():
    assert E.make_eptp(0x5000) == 0x5000 | 6 | (3 << 3) | (1 << 6)
    assert E.make_eptp(0x5000, ad=False) == 0x501E
    assert E.eptp_root(E.make_eptp(0x5000)) == 0x5000
    assert "4-level walk" in E.describe_eptp(E.make_eptp(0x5000))


def test_flag_names():
    assert E.flag_names(0x5000 | 7 | (6 << 3), 1) == ["R", "W", "X", "WB"]
    assert E.flag_names(0x20_0000 | 7 | (6 << 3) | 0x80, 2) == ["R", "W", "X", "WB", "PS"]
    assert E.flag_names(0x5000 | 7 | 0x100, 4) == ["R", "W", "X", "A"]
    assert E.flag_names(0x5000 | 1 | (0 << 3) | 0x40 | 0x300, 1) == ["R", "UC", "IPAT", "A", "D"]
    assert E.describe_entry(0x5037, 1) == "0x0000000000005037 R W X WB -> frame 0x5"
    assert E.describe_entry(0, 2) == "0x0000000000000000 not present"


# -- walking ------------------------------------------------------------------------------------
def test_walk_4k():
    mem, alloc, pml4, eptp = setup()
    created = B.ept_map(mem, alloc, pml4, GPA, HPA)
    assert len(created) == 3
    res = E.ept_walk(mem, eptp, GPA + 0x45, "r")
    assert res.ok and res.hpa == HPA + 0x45
    assert res.mem_refs == 4 and [s.level for s in res.steps] == [4, 3, 2, 1]
    assert res.steps[0].table == pml4
    assert res.steps[-1].flags == ["R", "W", "X", "WB"]
    assert res.page_size == 4096 and res.perms() == "rwx" and res.memory_type == E.MT_WB
    assert res.violation is None and res.misconfig is None
    for s in res.steps:
        assert s.entry_addr == s.table + 8 * s.index


@pytest.mark.parametrize("size,refs", [(2 * MiB, 3), (1 << 30, 2)])
def test_walk_large_pages(size, refs):
    mem, alloc, pml4, eptp = setup(size=2048 * MiB)
    B.ept_map(mem, alloc, pml4, size, 0, page_size=size)
    res = E.ept_walk(mem, eptp, size + 0x1234, "w")
    assert res.hpa == 0x1234
    assert res.mem_refs == refs and res.page_size == size
    assert "PS" in res.steps[-1].flags


def test_accessed_and_dirty():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA)
    res = E.ept_walk(mem, eptp, GPA, "r")
    now = [mem.read_u64(s.entry_addr) for s in res.steps]
    assert all(v & E.EPT_A for v in now) and not any(v & E.EPT_D for v in now)
    res = E.ept_walk(mem, eptp, GPA, "w")
    assert mem.read_u64(res.steps[-1].entry_addr) & E.EPT_D
    assert not mem.read_u64(res.steps[0].entry_addr) & E.EPT_D


def test_no_ad_without_eptp_bit_6_or_when_inspecting():
    mem, alloc, pml4, _ = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA)
    before = mem.snapshot()
    E.ept_walk(mem, E.make_eptp(pml4, ad=False), GPA, "w")
    assert mem.snapshot() == before
    E.ept_walk(mem, E.make_eptp(pml4), GPA, "w", set_ad=False)
    assert mem.snapshot() == before


def test_bad_access_kind():
    mem, _alloc, _pml4, eptp = setup()
    with pytest.raises(ValueError):
        E.ept_walk(mem, eptp, 0, "rw")


# -- violations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("perms,access,qual", [
    ("x", "r", E.EPTQ_READ | E.EPTQ_EXECUTABLE),                       # execute-only page, read
    ("r", "w", E.EPTQ_WRITE | E.EPTQ_READABLE),                        # read-only page, write
    ("rx", "w", E.EPTQ_WRITE | E.EPTQ_READABLE | E.EPTQ_EXECUTABLE),
    ("rw", "x", E.EPTQ_FETCH | E.EPTQ_READABLE | E.EPTQ_WRITABLE),     # data page, fetch
    ("", "r", E.EPTQ_READ),                                            # not present
    ("", "w", E.EPTQ_WRITE),
    ("", "x", E.EPTQ_FETCH),
])
def test_violation_qualification(perms, access, qual):
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms=perms)
    before = mem.snapshot()
    res = E.ept_walk(mem, eptp, GPA + 8, access)
    v = res.violation
    assert v is not None and res.hpa is None and res.misconfig is None
    assert isinstance(v, E.EptViolation) and v.exit_reason == 48
    assert v.gpa == GPA + 8 and v.gla is None
    assert v.qualification == qual
    assert len(v.steps) == 4
    assert mem.snapshot() == before                      # a violation sets no A/D flags
    # With a guest linear address behind the access, bits 7 and 8 are set.
    v2 = E.ept_walk(mem, eptp, GPA + 8, access, gla=0x40_0008).violation
    assert v2.qualification == qual | E.EPTQ_GLA_VALID | E.EPTQ_GLA_FINAL
    assert v2.gla == 0x40_0008


def test_allowed_accesses_pass():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="x")
    assert E.ept_walk(mem, eptp, GPA, "x").ok           # execute-only is allowed
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="r")
    assert E.ept_walk(mem, eptp, GPA, "r").ok


def test_not_present_higher_up():
    mem, _alloc, _pml4, eptp = setup()
    res = E.ept_walk(mem, eptp, GPA, "r", gla=0x1000)
    v = res.violation
    assert len(v.steps) == 1 and res.mem_refs == 1
    assert v.qualification == E.EPTQ_READ | E.EPTQ_GLA_VALID | E.EPTQ_GLA_FINAL
    assert "not present at EPT L4" in v.reason


def test_permissions_are_anded_over_levels():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="rwx")
    l3 = E.ept_walk(mem, eptp, GPA, "r", set_ad=False).steps[1]
    mem.write_u64(l3.entry_addr, l3.entry & ~E.EPT_W)
    res = E.ept_walk(mem, eptp, GPA, "w")
    assert res.violation.qualification == E.EPTQ_WRITE | E.EPTQ_READABLE | E.EPTQ_EXECUTABLE
    assert res.perms() == "r-x"


def test_table_access_qualification_and_ad_as_write():
    mem, alloc, pml4, _ = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="r")
    eptp_ad = E.make_eptp(pml4, ad=True)
    eptp_plain = E.make_eptp(pml4, ad=False)
    # Without EPT A/D a guest page-table read is a read.
    assert E.ept_walk(mem, eptp_plain, GPA, "r", gla=0x7000, is_table_access=True).ok
    # With EPT A/D it is treated as a write (SDM: guest paging-structure accesses).
    res = E.ept_walk(mem, eptp_ad, GPA, "r", gla=0x7000, is_table_access=True)
    q = res.violation.qualification
    assert q == E.EPTQ_READ | E.EPTQ_WRITE | E.EPTQ_READABLE | E.EPTQ_GLA_VALID
    assert E.decode_qualification(q) == ["data read", "data write", "gpa readable",
                                         "guest linear address valid",
                                         "access to a guest paging-structure entry"]
    B.ept_set_perms(mem, pml4, GPA, "rw")
    res = E.ept_walk(mem, eptp_ad, GPA, "r", is_table_access=True)
    assert res.ok and mem.read_u64(res.steps[-1].entry_addr) & E.EPT_D


def test_decode_qualification():
    assert E.decode_qualification(0) == []
    assert E.decode_qualification(0x181 | 0x38) == [
        "data read", "gpa readable", "gpa writable", "gpa executable", "guest linear address valid",
        "access to the translated linear address"]


def test_translator_raises():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="r")
    tt = E.EptTranslator(mem, eptp)
    hpa, steps = tt(GPA, "r")
    assert hpa == HPA and len(steps) == 4
    with pytest.raises(E.EptViolation) as ei:
        tt(GPA, "w", gla=0x5000)
    assert ei.value.qualification & E.EPTQ_GLA_FINAL
    assert "EPT_VIOLATION (48)" in ei.value.describe()


# -- misconfigurations -----------------------------------------------------------------------------
def test_write_without_read_is_a_misconfig():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="w")
    res = E.ept_walk(mem, eptp, GPA, "r")
    m = res.misconfig
    assert isinstance(m, E.EptMisconfig) and m.exit_reason == 49
    assert res.violation is None and res.hpa is None
    assert m.level == 1 and "write permission without read" in m.reason
    assert m.gpa == GPA


def test_write_without_read_in_a_table_entry_is_a_misconfig():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA)
    l4 = E.ept_walk(mem, eptp, GPA, "r", set_ad=False).steps[0]
    mem.write_u64(l4.entry_addr, (l4.entry & ~E.EPT_R) | E.EPT_W)
    res = E.ept_walk(mem, eptp, GPA, "r")
    assert res.misconfig.level == 4 and res.mem_refs == 1


@pytest.mark.parametrize("mt", [2, 3, 7])
def test_reserved_memory_type_is_a_misconfig(mt):
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, mtype=mt)
    res = E.ept_walk(mem, eptp, GPA, "r")
    assert res.misconfig is not None and f"reserved memory type {mt}" in res.misconfig.reason


@pytest.mark.parametrize("mt", [0, 1, 4, 5, 6])
def test_valid_memory_types(mt):
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, mtype=mt)
    res = E.ept_walk(mem, eptp, GPA, "r")
    assert res.ok and res.memory_type == mt
    assert E.MT_NAMES[mt] in res.steps[-1].flags


def test_other_reserved_bits_are_misconfigs():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA)
    steps = E.ept_walk(mem, eptp, GPA, "r", set_ad=False).steps
    mem.write_u64(steps[0].entry_addr, steps[0].entry | E.EPT_PS)          # PS in a PML4 entry
    assert "PML4" in E.ept_walk(mem, eptp, GPA, "r").misconfig.reason
    mem.write_u64(steps[0].entry_addr, steps[0].entry)
    mem.write_u64(steps[1].entry_addr, steps[1].entry | (6 << 3))          # MT in a table entry
    assert "bits 6:3" in E.ept_walk(mem, eptp, GPA, "r").misconfig.reason
    mem.write_u64(steps[1].entry_addr, steps[1].entry)
    B.ept_map(mem, alloc, pml4, 0x40_0000, 0x40_0000, page_size=2 * MiB)
    slot = leaf_slot(mem, pml4, 0x40_0000)
    mem.write_u64(slot, mem.read_u64(slot) | 0x1000)                        # misaligned 2 MiB page
    assert "bits 20:12" in E.ept_walk(mem, eptp, 0x40_0000, "r").misconfig.reason


def test_misconfig_wins_over_permissions():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA, perms="rx", mtype=2)
    res = E.ept_walk(mem, eptp, GPA, "w")
    assert res.misconfig is not None and res.violation is None


# -- building --------------------------------------------------------------------------------------
def test_ept_map_reuses_tables_and_accepts_an_eptp():
    mem, alloc, pml4, eptp = setup()
    assert len(B.ept_map(mem, alloc, pml4, GPA, HPA)) == 3
    assert B.ept_map(mem, alloc, eptp, GPA + 0x1000, HPA + 0x1000) == []
    assert E.ept_walk(mem, eptp, GPA + 0x1000, "r").hpa == HPA + 0x1000
    with pytest.raises(ValueError):
        B.ept_map(mem, alloc, pml4, GPA + 1, HPA)
    with pytest.raises(ValueError):
        B.ept_map(mem, alloc, pml4, GPA, HPA, perms="rq")


def test_ept_unmap_and_set_perms():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA)
    old = B.ept_set_perms(mem, pml4, GPA, "r")
    assert old & E.EPT_RWX == 7
    assert E.ept_walk(mem, eptp, GPA, "r", set_ad=False).perms() == "r--"
    assert B.ept_unmap(mem, pml4, GPA) & E.EPT_ADDR_MASK == HPA
    assert E.ept_walk(mem, eptp, GPA, "r").violation is not None
    assert B.ept_unmap(mem, pml4, GPA) == 0
    assert B.ept_set_perms(mem, pml4, GPA, "rw") == 0


def test_steps_text():
    mem, alloc, pml4, eptp = setup()
    B.ept_map(mem, alloc, pml4, GPA, HPA)
    res = E.ept_walk(mem, eptp, GPA + 0x10, "r")
    lines = E.ept_steps_text(res)
    assert len(lines) == 5
    assert lines[0].startswith(f"EPT L4 PML4 {pml4:#x} [  0] = ")
    assert lines[-1] == f"-> host frame {HPA:#x} + {GPA & 0xFFF | 0x10:#x} = hPA {HPA + 0x10:#x} (rwx)"
    bad = E.ept_walk(mem, eptp, 0x4000_0000, "w", gla=0x1234)
    lines = E.ept_steps_text(bad, indent="  ")
    assert lines[-1].startswith("  EPT_VIOLATION (48) gpa 0x40000000 gla 0x1234 qualification 0x182")
    assert E.ept_steps_text(bad.violation)[-1] == lines[-1].strip()
