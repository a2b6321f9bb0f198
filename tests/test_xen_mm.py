"""PV direct paging: Xen's page-table validation, reference counts and hypercalls."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.hw.memory import MachineMemory
from lab.xen import abi as A
from lab.xen.mm import (BASE_DISALLOW_MASK, L1_DISALLOW_MASK, MmuAction, PvMM, get_pte_flags,
                        put_pte_flags)

P, RW, US, PWT, PCD, AC, DT, PSE, G = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
PAT = PSE
NX = 1 << 63
TBL = P | RW | US | AC          # how a kernel links tables
D0, D1, D2 = 0, 1, 2
FRAMES = 0x40

# d1's frames
L4, L3, L2, L1, DATA0, DATA1, SPARE_L1, SPARE = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17
L4B, L4C = 0x18, 0x19
D2_FRAME = 0x30
XEN_FRAME = 0x38
IO_FRAME = 0x3A
D0_FRAME = 0x3C


def e(mfn: int, flags: int) -> int:
    return (mfn << 12) | flags


def slot(mfn: int, i: int) -> int:
    return (mfn << 12) | (i << 3)


class Env:
    def __init__(self, **kw):
        self.mem = MachineMemory(FRAMES * 4096)
        self.logs: list[str] = []
        self.events: list[dict] = []
        self.mm = PvMM(self.mem, log=self.logs.append, emit=lambda **k: self.events.append(k), **kw)
        for mfn in range(0x10, 0x30):
            self.mm.assign(mfn, D1)
        for mfn in range(0x30, 0x38):
            self.mm.assign(mfn, D2)
        for mfn in (0x38, 0x39):
            self.mm.assign(mfn, A.DOMID_XEN)
        for mfn in (0x3A, 0x3B):
            self.mm.assign(mfn, A.DOMID_IO)
        for mfn in range(0x3C, 0x40):
            self.mm.assign(mfn, D0)

    def put(self, table: int, i: int, value: int) -> None:
        self.mem.write_u64(slot(table, i), value)

    def get(self, table: int, i: int) -> int:
        return self.mem.read_u64(slot(table, i))

    def tree(self) -> None:
        """L4 -> L3 -> L2 -> L1 -> two data pages; the tables mapped read-only."""
        self.put(L4, 0, e(L3, TBL))
        self.put(L3, 0, e(L2, TBL))
        self.put(L2, 0, e(L1, TBL))
        self.put(L1, 0, e(DATA0, P | RW | US | AC))
        self.put(L1, 1, e(DATA1, P | US | AC))
        for i, t in enumerate((L4, L3, L2, L1), start=2):
            self.put(L1, i, e(t, P | AC))           # read-only views of the tables

    def pin(self, mfn: int, level: int = 4, dom: int = D1) -> tuple[int, int]:
        return self.mm.mmuext_op(dom, [{"cmd": A.MMUEXT_PIN_L1_TABLE + level - 1, "arg1": mfn}])

    def ok(self) -> None:
        assert self.mm.check_invariants() == []

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.logs)


@pytest.fixture
def env() -> Env:
    return Env()


def info(env: Env, mfn: int):
    return env.mm.frame_info(mfn)


# ------------------------------------------------------------------------------- masks
def test_disallow_masks_are_xens():
    # arch_init_memory(): ~(P|RW|US|A|D|AVAIL|AVAIL_HIGH|NX) in Xen's 24-bit flag view
    assert BASE_DISALLOW_MASK == 0xFF000198
    assert L1_DISALLOW_MASK == 0xFF000098            # G allowed in L1 entries
    assert get_pte_flags(NX | (1 << 52) | 0x867) == (1 << 23) | (1 << 12) | 0x867
    assert put_pte_flags(get_pte_flags(NX | (0x7FF << 52) | 0xFFF)) == NX | (0x7FF << 52) | 0xFFF


# ------------------------------------------------------------------------------- pinning
def test_pin_l4_whose_tables_are_read_only(env):
    env.tree()
    assert env.pin(L4) == (0, 1)
    for mfn, typ in ((L4, 4), (L3, 3), (L2, 2), (L1, 1)):
        pg = info(env, mfn)
        assert pg.type == typ and pg.type_count == 1 and pg.validated
    assert info(env, L4).pinned
    # L4: allocated + pin + the RO view in L1; L3: allocated + L4's entry + RO view
    assert info(env, L4).count == 3 and info(env, L3).count == 3
    assert info(env, DATA0).type == A.PGT_writable_page and info(env, DATA0).type_count == 1
    assert info(env, DATA1).type == A.PGT_none and info(env, DATA1).count == 2
    assert env.mm.type_info(L4) == (4 << 61) | A.PGT_pinned | A.PGT_validated | 1
    env.ok()


def test_table_mapped_writable_cannot_be_pinned(env):
    env.put(SPARE_L1, 0, e(DATA0, P | RW))
    assert env.pin(SPARE_L1, 1) == (0, 1)            # DATA0 is now a writable page
    rc, done = env.pin(DATA0, 1)
    assert (rc, done) == (-A.EINVAL, 0)
    assert env.logged(f"Bad type (saw e400000000000001 != exp 2000000000000000) for mfn 000{DATA0:x}")
    assert env.logged(f"Error -22 while pinning mfn 000{DATA0:x}")
    assert info(env, DATA0).type == A.PGT_writable_page and not info(env, DATA0).pinned
    env.ok()


def test_tree_with_a_writable_view_of_a_table_fails_validation(env):
    env.tree()
    env.put(L1, 4, e(L2, P | RW))                    # the L2 mapped writable
    rc, done = env.pin(L4)
    # get_page_from_l1e fails with -EBUSY (could_not_pin) in current Xen
    assert (rc, done) == (-A.EBUSY, 0)
    assert env.logged("Bad type (saw 4000000000000001 != exp e000000000000000) for mfn 00012")
    assert env.logged("Could not get page type PGT_writable_page")
    assert env.logged("Error getting mfn 00012 (pfn ffffffffffffffff) from L1 entry "
                      "0000000000012003 for l1e_owner d1, pg_owner d1")
    assert env.logged("Failure -16 in promote_l1_table: slot 0x4")
    # a debug build's gdprintk: file:line:vcpu (xen/include/xen/lib.h; lines of Xen master)
    assert env.logs[0] == ("(XEN) arch/x86/mm.c:2951:d1v0 Bad type (saw 4000000000000001 != exp "
                           "e000000000000000) for mfn 00012 (pfn ffffffffffffffff)")
    assert "(XEN) arch/x86/mm.c:1357:d1v0 Failure -16 in promote_l1_table: slot 0x4" in env.logs
    # everything unwound
    for mfn in (L4, L3, L2, L1, DATA0, DATA1):
        assert info(env, mfn).type_count == 0 and info(env, mfn).count == 1
    assert any(ev["op"] == "validate" and ev["result"] == "EBUSY" for ev in env.events)
    env.ok()


def test_pinned_l1_cannot_map_a_table_writable(env):
    env.tree()
    env.pin(L4)
    rc, done = env.mm.mmu_update(D1, [(slot(L1, 6), e(L3, P | RW | US))])
    assert (rc, done) == (-A.EBUSY, 0)
    assert env.logged("Bad type (saw 6400000000000001 != exp e000000000000000) for mfn 00011")
    assert env.get(L1, 6) == 0
    ev = env.events[-1]
    assert ev["kind"] == "pagetable" and ev["op"] == "MMU_NORMAL_PT_UPDATE"
    assert ev["result"] == "EBUSY" and ev["message"].startswith("Bad type")
    env.ok()


def test_read_only_mapping_of_a_table_is_fine(env):
    env.tree()
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L1, 6), e(L3, P | US))]) == (0, 1)
    assert env.get(L1, 6) == e(L3, P | US)
    assert info(env, L3).count == 4 and info(env, L3).type_count == 1
    env.ok()


def test_a_page_with_writable_mappings_cannot_become_a_table(env):
    env.tree()
    env.pin(L4)
    rc, _ = env.mm.mmu_update(D1, [(slot(L2, 1), e(DATA0, TBL))])
    assert rc == -A.EINVAL
    assert env.logged("Bad type (saw e400000000000001 != exp 2000000000000000) for mfn 00014")
    env.ok()


def test_unpin_drops_the_references_and_the_table_can_then_be_mapped_writable(env):
    env.tree()
    env.pin(L4)
    env.pin(SPARE_L1, 1)
    assert env.mm.mmu_update(D1, [(slot(SPARE_L1, 0), e(L2, P | RW))])[0] == -A.EBUSY
    assert env.mm.mmuext_op(D1, [{"cmd": A.MMUEXT_UNPIN_TABLE, "arg1": L4}]) == (0, 1)
    for mfn in (L4, L3, L2, L1):
        pg = info(env, mfn)
        assert pg.type_count == 0 and not pg.validated and not pg.pinned and pg.count == 1
    assert info(env, DATA0).type_count == 0 and info(env, DATA1).count == 1
    assert env.mm.mmu_update(D1, [(slot(SPARE_L1, 0), e(L2, P | RW))]) == (0, 1)
    assert info(env, L2).type == A.PGT_writable_page
    env.ok()


def test_pinning_twice_and_unpinning_errors(env):
    env.tree()
    assert env.pin(L4) == (0, 1)
    assert env.pin(L4) == (-A.EINVAL, 0)
    assert env.logged("mfn 00010 already pinned")
    assert info(env, L4).type_count == 1 and info(env, L4).count == 3
    assert env.mm.mmuext_op(D1, [{"cmd": A.MMUEXT_UNPIN_TABLE, "arg1": L3}]) == (-A.EINVAL, 0)
    assert env.logged("mfn 00011 not pinned")
    assert env.mm.mmuext_op(D1, [{"cmd": A.MMUEXT_UNPIN_TABLE, "arg1": D2_FRAME}]) == (-A.EINVAL, 0)
    assert env.logged("mfn 00030 bad, or bad owner d1")
    assert env.logged("Error mfn 00030: rd=d1 od=d2 caf=8000000000000001 taf=0000000000000000")
    env.ok()


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_pin_each_level(env, level):
    t = SPARE_L1
    if level == 1:
        env.put(t, 0, e(DATA0, P | RW))
    else:
        env.put(t, 0, e(SPARE, TBL))                 # an empty frame is a valid L(level-1)
    assert env.pin(t, level) == (0, 1)
    assert info(env, t).type == level
    # pinning the same frame as another level fails: type count is not 0
    other = 1 if level != 1 else 2
    assert env.pin(t, other)[0] == -A.EINVAL
    env.ok()


# ------------------------------------------------------------------------------- linear tables
def test_recursive_l4_read_only_is_allowed(env):
    env.tree()
    env.put(L4, 5, e(L4, P | AC))
    assert env.pin(L4) == (0, 1)
    assert info(env, L4).count == 3           # a table mapping itself takes no reference
    assert env.mm.mmu_update(D1, [(slot(L4, 6), e(L4, P | US))]) == (0, 1)
    assert info(env, L4).count == 3
    env.ok()


def test_recursive_l4_writable_is_refused(env):
    env.tree()
    env.put(L4, 5, e(L4, P | RW))
    assert env.pin(L4) == (-A.EINVAL, 0)
    assert env.logged("Attempt to create linear p.t. with write perms")
    env.put(L4, 5, 0)
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L4, 5), e(L4, P | RW | US))]) == (-A.EINVAL, 0)
    env.ok()


def test_read_only_self_map_cannot_be_made_writable_through_the_fast_path(env):
    """XSA-182: RW is not among the flags a guest may flip without revalidation."""
    env.tree()
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L4, 5), e(L4, P | AC))]) == (0, 1)
    assert env.mm.mmu_update(D1, [(slot(L4, 5), e(L4, P | AC | RW))]) == (-A.EINVAL, 0)
    assert env.get(L4, 5) == e(L4, P | AC)
    # flags on the whitelist do take the fast path
    assert env.mm.mmu_update(D1, [(slot(L4, 5), e(L4, P | AC | US | DT))]) == (0, 1)
    env.ok()


def test_linear_mapping_of_another_l4(env):
    env.tree()
    env.pin(L4)
    env.pin(L4B)
    assert env.mm.mmu_update(D1, [(slot(L4, 7), e(L4B, P))]) == (0, 1)
    assert info(env, L4B).type_count == 2 and info(env, L4B).linear == -1
    assert info(env, L4).linear == 1
    # XSA-240: a table used as linear may not hold linear entries itself...
    env.pin(L4C)
    assert env.mm.mmu_update(D1, [(slot(L4B, 1), e(L4C, P))]) == (-A.EINVAL, 0)
    # ...and a table holding linear entries may not be used as linear
    assert env.mm.mmu_update(D1, [(slot(L4C, 1), e(L4, P))]) == (-A.EINVAL, 0)
    env.ok()
    assert env.mm.mmu_update(D1, [(slot(L4, 7), 0)]) == (0, 1)
    assert info(env, L4B).type_count == 1 and info(env, L4B).linear == 0 == info(env, L4).linear
    env.ok()


def test_l2_self_map_read_only(env):
    env.tree()
    env.put(L2, 3, e(L2, P))
    assert env.pin(L4) == (0, 1)
    env.ok()


# ------------------------------------------------------------------------------- ownership
def test_mapping_another_domains_frame_is_refused(env):
    env.tree()
    env.pin(L4)
    rc, done = env.mm.mmu_update(D1, [(slot(L1, 7), e(D2_FRAME, P | US))])
    assert (rc, done) == (-A.EBUSY, 0)
    assert env.logged("pg_owner d1 l1e_owner d1, but real_pg_owner d2")
    assert info(env, D2_FRAME).count == 1
    env.ok()


def test_xens_frames_are_refused(env):
    env.tree()
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(XEN_FRAME, P))])[0] == -A.EBUSY
    # xen/arch/x86/mm.c get_page_from_l1e() prints the owners with %pd
    assert env.logged("pg_owner d1 l1e_owner d1, but real_pg_owner d[XEN]")
    # nor as a table
    assert env.mm.mmu_update(D1, [(slot(L2, 1), e(XEN_FRAME, TBL))])[0] == -A.EINVAL
    assert env.logged("Error mfn 00038: rd=d1 od=d[XEN]")
    # even dom0, mapping Xen's frame writable through DOMID_XEN, cannot make it writable
    env.put(D0_FRAME, 0, 0)
    assert env.pin(D0_FRAME, 1, dom=D0) == (0, 1)
    assert env.mm.mmu_update(D0, [(slot(D0_FRAME, 0), e(XEN_FRAME, P | RW))], A.DOMID_XEN)[0] == -A.EBUSY
    assert env.mm.mmu_update(D0, [(slot(D0_FRAME, 0), e(XEN_FRAME, P))], A.DOMID_XEN) == (0, 1)
    env.ok()


def test_free_frames_are_refused(env):
    env.tree()
    env.pin(L4)
    env.mm.release(0x2F)
    assert info(env, 0x2F).owner is None
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(0x2F, P))])[0] == -A.EBUSY
    assert env.logged("but real_pg_owner NULL")           # %pd of no owner
    env.ok()


def test_mmio_needs_io_rights(env):
    env.tree()
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(IO_FRAME, P | RW))]) == (-A.EPERM, 0)
    assert env.logged("d1 non-privileged attempt to map MMIO space 0003a")
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(0x12345, P))]) == (-A.EPERM, 0)
    # dom0 may; cacheable MMIO is forced to UC (PCD|PWT)
    assert env.pin(D0_FRAME, 1, dom=D0) == (0, 1)
    assert env.mm.mmu_update(D0, [(slot(D0_FRAME, 0), e(IO_FRAME, P | RW))]) == (0, 1)
    assert env.get(D0_FRAME, 0) == e(IO_FRAME, P | RW | PCD | PWT)
    assert env.mm.mmu_update(D0, [(slot(D0_FRAME, 1), e(IO_FRAME, P | PAT))]) == (0, 1)
    assert env.get(D0_FRAME, 1) == e(IO_FRAME, P | PAT)        # WC stays WC
    assert info(env, IO_FRAME).count == 1                       # MMIO holds no references
    env.ok()


def test_grant_ok_hook_admits_a_granted_frame_in_its_one_slot():
    env = Env(grant_ok=lambda d, mfn, w, at: d == D1 and mfn == D2_FRAME and at == slot(L1, 7))
    env.tree()
    env.pin(L4)
    # anywhere else, the same frame is another domain's: refused
    assert env.mm.mmu_update(D1, [(slot(L1, 8), e(D2_FRAME, P | RW))]) == (-A.EBUSY, 0)
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(D2_FRAME, P | RW))]) == (0, 1)
    pg = info(env, D2_FRAME)
    assert pg.count == 2 and pg.type == A.PGT_writable_page and pg.type_count == 1
    env.ok()
    assert env.mm.mmu_update(D1, [(slot(L1, 7), 0)]) == (0, 1)
    assert info(env, D2_FRAME).count == 1
    env.ok()


def test_foreigndom(env):
    env.pin(D0_FRAME, 1, dom=D0)
    # the control domain maps a guest's frame (the toolstack's privcmd mapping)
    assert env.mm.mmu_update(D0, [(slot(D0_FRAME, 0), e(DATA0, P | RW))], D1) == (0, 1)
    assert info(env, DATA0).type == A.PGT_writable_page and info(env, DATA0).count == 2
    # a guest may not
    env.pin(SPARE_L1, 1)
    assert env.mm.mmu_update(D1, [(slot(SPARE_L1, 0), e(D2_FRAME, P))], D2) == (-A.EPERM, 0)
    assert env.mm.mmu_update(D1, [(slot(SPARE_L1, 0), e(DATA1, P))], D1) == (-A.ESRCH, 0)
    assert env.logged("Cannot specify itself as foreign domain")
    assert env.mm.mmu_update(D0, [], 77) == (-A.ESRCH, 0)
    assert env.logged("Unknown domain d77")
    # page directories cannot be updated with a foreign page owner
    env.put(0x3D, 0, 0)
    assert env.pin(0x3D, 2, dom=D0) == (0, 1)
    assert env.mm.mmu_update(D0, [(slot(0x3D, 0), e(SPARE_L1, TBL))], D1) == (-A.EINVAL, 0)
    env.ok()


# ------------------------------------------------------------------------------- flags and slots
def test_xen_l4_slots_are_refused(env):
    env.tree()
    env.pin(L4)
    env.pin(SPARE, 3)
    for s in (256, 263, 271):
        assert env.mm.mmu_update(D1, [(slot(L4, s), e(SPARE, TBL))]) == (-A.EINVAL, 0)
        assert env.logged(f"L4 update in Xen-private area, slot {s:#x}")
    for s in (255, 272):
        assert env.mm.mmu_update(D1, [(slot(L4, s), e(SPARE, TBL))]) == (0, 1)
    env.ok()


def test_validation_ignores_and_overwrites_xen_slots(env):
    env.tree()
    env.put(L4, 256, e(DATA0, P | RW))        # would be refused anywhere else
    assert env.pin(L4) == (0, 1)
    assert env.get(L4, 256) == 0
    env.ok()


def test_xen_l4_slots_hook():
    env = Env(xen_l4_slots=lambda l4, d: {258: e(l4, P | RW | AC | DT)})
    env.tree()
    env.pin(L4)
    assert env.get(L4, 258) == e(L4, P | RW | AC | DT)      # Xen's own linear map
    env.ok()


@pytest.mark.parametrize("table,level,bad,msg", [
    (L2, 2, PSE, "Bad L2 flags 80"),
    (L3, 3, PSE, "Bad L3 flags 80"),
    (L4, 4, PSE, "Bad L4 flags 80"),
    (L2, 2, G, "Bad L2 flags 100"),
    (L3, 3, PCD, "Bad L3 flags 10"),
])
def test_bad_directory_flags(env, table, level, bad, msg):
    env.tree()
    env.pin(L4)
    env.pin(SPARE, level - 1)
    assert env.mm.mmu_update(D1, [(slot(table, 9), e(SPARE, TBL | bad))]) == (-A.EINVAL, 0)
    assert env.logged(msg)
    env.ok()


def test_pse_in_l2_refused_at_validation(env):
    env.tree()
    env.put(L2, 1, e(0x200, P | RW | PSE))
    assert env.pin(L4) == (-A.EINVAL, 0)
    assert env.logged("Bad L2 flags 80")
    env.ok()


def test_l1_flags(env):
    env.tree()
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(DATA1, P | PAT))]) == (-A.EINVAL, 0)
    assert env.logged("Bad L1 flags 0x80")
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(DATA1, P | PCD | PWT))]) == (-A.EINVAL, 0)
    assert env.logged("Bad L1 flags 0x18")
    # allowed: G, NX, A, D, software bits 9-11 and 52-62
    good = e(DATA1, P | US | G | AC | DT | 0xE00) | NX | (0x7FF << 52)
    assert env.mm.mmu_update(D1, [(slot(L1, 7), good)]) == (0, 1)
    # dom0 (cache-flush rights) may set cache attributes
    env.pin(D0_FRAME, 1, dom=D0)
    assert env.mm.mmu_update(D0, [(slot(D0_FRAME, 0), e(0x3D, P | PCD | PAT))]) == (0, 1)
    env.ok()


def test_adjust_guest_entries():
    env = Env(adjust_guest=lambda d: d == D1)
    env.tree()
    env.put(L1, 8, e(DATA1, P))                       # a kernel page
    assert env.pin(L4) == (0, 1)
    assert env.get(L1, 8) == e(DATA1, P | US) | (1 << 52)
    assert env.get(L1, 0) == e(DATA0, P | RW | US | AC | G)     # a user page is made global
    assert env.get(L4, 0) & (US | AC) == US | AC
    env.ok()


# ------------------------------------------------------------------------------- mmu_update
def test_mmu_update_partial_failure_reports_done(env):
    env.tree()
    env.pin(L4)
    reqs = [(slot(L1, 7), e(DATA1, P)), (slot(L1, 8), e(DATA1, P | PAT)), (slot(L1, 9), e(DATA1, P))]
    assert env.mm.mmu_update(D1, reqs) == (-A.EINVAL, 1)
    assert env.get(L1, 7) == e(DATA1, P) and env.get(L1, 8) == 0 and env.get(L1, 9) == 0
    assert [ev["result"] for ev in env.events[-2:]] == ["ok", "EINVAL"]
    env.ok()


def test_mmu_update_replaces_and_releases(env):
    env.tree()
    env.pin(L4)
    assert env.mm.mmu_update(D1, [(slot(L1, 0), e(DATA1, P | RW))]) == (0, 1)
    assert info(env, DATA0).type_count == 0 and info(env, DATA0).count == 1
    assert info(env, DATA1).type == A.PGT_writable_page
    # dropping the only link to the L3 devalidates the whole subtree
    assert env.mm.mmu_update(D1, [(slot(L4, 0), 0)]) == (0, 1)
    for mfn in (L3, L2, L1):
        assert info(env, mfn).type_count == 0 and not info(env, mfn).validated
    assert any(a.kind == "tlb_flush" and a.scope == "all" for a in env.mm.actions)
    env.ok()


def test_mmu_update_preserve_ad(env):
    env.tree()
    env.pin(L4)
    env.mm.mmu_update(D1, [(slot(L1, 7), e(DATA1, P | US | AC | DT))])
    cmd = A.MMU_PT_UPDATE_PRESERVE_AD
    assert env.mm.mmu_update(D1, [(slot(L1, 7) | cmd, e(DATA1, P | US))]) == (0, 1)
    assert env.get(L1, 7) == e(DATA1, P | US | AC | DT)
    assert env.mm.mmu_update(D1, [(slot(L1, 7), e(DATA1, P | US))]) == (0, 1)
    assert env.get(L1, 7) == e(DATA1, P | US)
    env.ok()


def test_mmu_update_on_an_ordinary_page_is_a_checked_write(env):
    assert env.mm.mmu_update(D1, [(slot(SPARE, 3), 0x1234)]) == (0, 1)
    assert env.get(SPARE, 3) == 0x1234
    assert info(env, SPARE).type == A.PGT_writable_page and info(env, SPARE).type_count == 0
    assert env.mm.mmu_update(D1, [(slot(D2_FRAME, 0), 1)]) == (-A.EINVAL, 0)
    assert env.logged("Could not get page for normal update")
    env.ok()


def test_machphys_update(env):
    cmd = A.MMU_MACHPHYS_UPDATE
    assert env.mm.mmu_update(D1, [((DATA0 << 12) | cmd, 0x42)]) == (0, 1)
    assert env.mm.get_gpfn_from_mfn(DATA0) == 0x42
    assert env.mm.mmu_update(D1, [((D2_FRAME << 12) | cmd, 0x43)]) == (-A.EINVAL, 0)
    assert env.logged("Could not get page for mach->phys update")
    assert env.mm.get_gpfn_from_mfn(D2_FRAME) == 2 ** 64 - 1
    # the pfn shows in Xen's messages
    env.pin(SPARE_L1, 1)
    env.mm.mmu_update(D1, [(slot(SPARE_L1, 0), e(DATA0, P | RW))])
    env.mm.mmu_update(D1, [((DATA0 << 12) | 0, 0)])
    assert env.pin(DATA0, 1)[0] == -A.EINVAL
    assert env.logged("for mfn 00014 (pfn 00042)")
    env.ok()


@pytest.mark.parametrize("cmd", [4, 5, 6, 7])
def test_mmu_update_unknown_command(env, cmd):
    assert env.mm.mmu_update(D1, [(slot(SPARE, 0) | cmd, 0)]) == (-A.ENOSYS, 0)


# ------------------------------------------------------------------------------- mmuext_op
def ext(env, cmd, dom=D1, foreigndom=A.DOMID_SELF, **kw):
    return env.mm.mmuext_op(dom, [dict(cmd=cmd, **kw)], foreigndom)


def test_new_baseptr(env):
    env.tree()
    env.pin(L4)
    assert ext(env, A.MMUEXT_NEW_BASEPTR, arg1=L4) == (0, 1)
    assert env.mm.actions == [MmuAction("new_baseptr", D1, 0, mfn=L4)]
    assert env.mm.baseptr(D1) == (L4, None)
    assert info(env, L4).type_count == 2
    # not an L4
    assert ext(env, A.MMUEXT_NEW_BASEPTR, arg1=L3) == (-A.EINVAL, 0)
    assert env.logged("Error while installing new baseptr 00011")
    assert ext(env, A.MMUEXT_NEW_BASEPTR, arg1=DATA0)[0] == -A.EINVAL
    # switching releases the old one; an unpinned L4 is validated on the spot
    env.put(L4B, 0, e(L3, TBL))
    assert ext(env, A.MMUEXT_NEW_BASEPTR, arg1=L4B) == (0, 1)
    assert info(env, L4).type_count == 1 and info(env, L4B).type_count == 1
    assert info(env, L3).type_count == 2
    # foreign
    assert ext(env, A.MMUEXT_NEW_BASEPTR, dom=D0, foreigndom=D1, arg1=L4) == (-A.EPERM, 0)
    env.ok()
    env.mm.vcpu_destroy_pagetables(D1, 0)
    assert info(env, L4B).type_count == 0
    env.ok()


def test_new_user_baseptr(env):
    env.tree()
    env.pin(L4)
    assert ext(env, A.MMUEXT_NEW_USER_BASEPTR, arg1=L4) == (0, 1)
    assert env.mm.baseptr(D1) == (None, L4)
    assert ext(env, A.MMUEXT_NEW_USER_BASEPTR, arg1=L2) == (-A.EINVAL, 0)
    assert env.logged("Error -22 installing new mfn 00012")
    assert ext(env, A.MMUEXT_NEW_USER_BASEPTR, arg1=0) == (0, 1)
    assert env.mm.baseptr(D1) == (None, None) and info(env, L4).type_count == 1
    env.ok()


@pytest.mark.parametrize("cmd,kind,scope", [
    (A.MMUEXT_TLB_FLUSH_LOCAL, "tlb_flush", "local"),
    (A.MMUEXT_TLB_FLUSH_ALL, "tlb_flush", "all"),
    (A.MMUEXT_INVLPG_LOCAL, "invlpg", "local"),
    (A.MMUEXT_INVLPG_ALL, "invlpg", "all"),
])
def test_tlb_ops(env, cmd, kind, scope):
    va = 0x4000_1000
    assert ext(env, cmd, arg1=va) == (0, 1)
    (a,) = env.mm.actions
    assert (a.kind, a.scope, a.domid) == (kind, scope, D1)
    if kind == "invlpg":
        assert a.va == va
    assert ext(env, cmd, dom=D0, foreigndom=D1, arg1=va) == (-A.EPERM, 0)


def test_multi_tlb_ops():
    env = Env(read_vcpumask=lambda d, ptr: {0x8000: 0b101}.get(ptr))
    assert ext(env, A.MMUEXT_TLB_FLUSH_MULTI, arg2=0x8000) == (0, 1)
    assert env.mm.actions == [MmuAction("tlb_flush", D1, 0, scope="multi", vcpumask=0b101)]
    assert ext(env, A.MMUEXT_INVLPG_MULTI, arg1=0x1000, arg2=0x8000) == (0, 1)
    assert env.mm.actions[0].va == 0x1000
    assert ext(env, A.MMUEXT_TLB_FLUSH_MULTI, arg2=0x9000) == (-A.EINVAL, 0)
    # a Xen address is not flushed
    assert ext(env, A.MMUEXT_INVLPG_MULTI, arg1=0xFFFF_8000_0000_0000, arg2=0x8000) == (0, 1)
    assert env.mm.actions == []
    plain = Env()
    assert ext(plain, A.MMUEXT_TLB_FLUSH_MULTI, arg2=0x8000) == (0, 1)
    assert plain.mm.actions[0].vcpumask_ptr == 0x8000


def test_flush_cache(env):
    for cmd in (A.MMUEXT_FLUSH_CACHE, A.MMUEXT_FLUSH_CACHE_GLOBAL):
        assert ext(env, cmd) == (-A.EACCES, 0)
        assert ext(env, cmd, dom=D0) == (0, 1)
        assert env.mm.actions[0].kind == "flush_cache"


def test_set_ldt(env):
    assert ext(env, A.MMUEXT_SET_LDT, arg1=0x7000_0000, arg2=16) == (0, 1)
    assert env.mm.actions == [MmuAction("set_ldt", D1, 0, va=0x7000_0000, nr_ents=16)]
    assert ext(env, A.MMUEXT_SET_LDT, arg1=0x7000_0008, arg2=16) == (-A.EINVAL, 0)
    assert env.logged("Bad args to SET_LDT: ptr=70000008, ents=10")
    assert ext(env, A.MMUEXT_SET_LDT, arg1=0x7000_0000, arg2=8193) == (-A.EINVAL, 0)
    assert ext(env, A.MMUEXT_SET_LDT, arg1=0xFFFF_8000_0000_0000, arg2=1) == (-A.EINVAL, 0)
    assert ext(env, A.MMUEXT_SET_LDT, arg1=0, arg2=0) == (0, 1)


def test_clear_and_copy_page(env):
    env.mem.write(DATA1 << 12, b"xenlab" * 10)
    assert ext(env, A.MMUEXT_COPY_PAGE, arg1=SPARE, arg2=DATA1) == (0, 1)
    assert env.mem.read(SPARE << 12, 12) == b"xenlabxenlab"
    assert ext(env, A.MMUEXT_CLEAR_PAGE, arg1=SPARE) == (0, 1)
    assert env.mem.read(SPARE << 12, 12) == bytes(12)
    env.tree()
    env.pin(L4)
    assert ext(env, A.MMUEXT_CLEAR_PAGE, arg1=L1) == (-A.EINVAL, 0)
    assert env.logged("Error clearing mfn 00013")
    assert env.get(L1, 0) != 0
    assert ext(env, A.MMUEXT_CLEAR_PAGE, arg1=D2_FRAME) == (-A.EINVAL, 0)
    assert ext(env, A.MMUEXT_COPY_PAGE, arg1=L2, arg2=DATA1) == (-A.EINVAL, 0)
    assert env.logged("Error copying to mfn 00012")
    assert ext(env, A.MMUEXT_COPY_PAGE, arg1=SPARE, arg2=D2_FRAME) == (-A.EINVAL, 0)
    assert env.logged("Error copying from mfn 00030")
    # a table may be the source (read-only use)
    assert ext(env, A.MMUEXT_COPY_PAGE, arg1=SPARE, arg2=L1) == (0, 1)
    env.ok()


@pytest.mark.parametrize("cmd,rc", [(A.MMUEXT_MARK_SUPER, -A.EOPNOTSUPP),
                                    (A.MMUEXT_UNMARK_SUPER, -A.EOPNOTSUPP),
                                    (14, -A.ENOSYS), (21, -A.ENOSYS), (1000, -A.ENOSYS)])
def test_unsupported_mmuext(env, cmd, rc):
    assert ext(env, cmd, arg1=DATA0) == (rc, 0)


def test_mmuext_stops_at_first_failure(env):
    env.tree()
    ops = [{"cmd": A.MMUEXT_PIN_L4_TABLE, "arg1": L4}, {"cmd": 14}, {"cmd": A.MMUEXT_TLB_FLUSH_LOCAL}]
    assert env.mm.mmuext_op(D1, ops) == (-A.ENOSYS, 1)
    assert env.mm.actions == []
    assert env.mm.mmuext_op(D1, [], D2) == (-A.EPERM, 0)


# ------------------------------------------------------------------------------- update_va_mapping
def test_update_va_mapping(env):
    env.tree()
    env.pin(L4)
    va = 0x7000
    l1e = env.mm.l1e_maddr_for_va(L4, va)
    assert l1e == slot(L1, 7)
    assert env.mm.update_va_mapping(D1, l1e, e(DATA1, P | US), A.UVMF_INVLPG, va=va) == 0
    assert env.get(L1, 7) == e(DATA1, P | US)
    assert env.mm.actions == [MmuAction("invlpg", D1, 0, va=va)]
    assert env.mm.update_va_mapping(D1, l1e, e(DATA1, P), A.UVMF_TLB_FLUSH | A.UVMF_ALL, va=va) == 0
    assert env.mm.actions == [MmuAction("tlb_flush", D1, 0, scope="all")]
    assert env.mm.update_va_mapping(D1, l1e, e(L2, P | RW), A.UVMF_INVLPG, va=va) == -A.EBUSY
    assert env.mm.actions == []
    assert env.mm.update_va_mapping(D1, None, 0, 0, va=0x4000_0000_0000) == -A.EINVAL
    assert env.mm.update_va_mapping(D1, slot(L2, 0), 0, 0) == -A.EINVAL       # not an L1
    assert env.mm.update_va_mapping(D1, slot(SPARE_L1, 0), 0, 0) == -A.EINVAL  # not validated
    assert env.mm.update_va_mapping(D1, l1e, 0, 0, va=0xFFFF_8000_0000_1000) == -A.EINVAL
    assert env.events[-1]["op"] == "update_va_mapping"
    assert env.mm.l1e_maddr_for_va(L4, 0x4000_0000) is None        # L3 slot 1 not present
    env.ok()


def test_update_va_mapping_otherdomain(env):
    env.pin(D0_FRAME, 1, dom=D0)
    assert env.mm.update_va_mapping(D0, slot(D0_FRAME, 3), e(DATA1, P), 0, foreigndom=D1) == 0
    assert info(env, DATA1).count == 2
    assert env.mm.update_va_mapping(D1, slot(SPARE_L1, 3), e(DATA1, P), 0, foreigndom=D2) == -A.EPERM
    env.ok()


# ------------------------------------------------------------------------------- misc API
def test_validate_entry_is_a_dry_run(env):
    env.tree()
    env.pin(L4)
    before = [info(env, m).copy() for m in range(FRAMES)]
    assert env.mm.validate_entry(1, e(DATA1, P | RW), D1, L1, 9) == (True, "")
    ok, msg = env.mm.validate_entry(1, e(L2, P | RW), D1, L1, 9)
    assert not ok and msg.startswith("Bad type (saw 4400000000000001")
    assert env.mm.validate_entry(4, e(L3, TBL), D1, L4, 256) == (
        False, "L4 update in Xen-private area, slot 0x100")
    assert env.mm.validate_entry(2, e(L1, TBL | PSE), D1, L2, 1) == (False, "Bad L2 flags 80")
    assert env.mm.validate_entry(4, e(L4, P), D1, L4, 9) == (True, "")
    assert env.mm.validate_entry(4, e(L4, P | RW), D1, L4, 9) == (
        False, "Attempt to create linear p.t. with write perms")
    assert [info(env, m) for m in range(FRAMES)] == before
    env.ok()


def test_public_reference_api(env):
    assert env.mm.get_page(DATA0, D1)
    assert not env.mm.get_page(DATA0, D2)
    assert env.mm.get_page_type(DATA0, A.PGT_writable_page, D1) == 0
    env.ok()
    env.pin(SPARE_L1, 1)
    assert env.mm.mmu_update(D1, [(slot(SPARE_L1, 0), e(DATA0, P))]) == (0, 1)
    assert env.mm.get_page_and_type(L1, D1, A.PGT_l1_page_table) == 0
    env.ok()
    env.mm.put_page_type(DATA0)
    env.mm.put_page(DATA0)
    env.mm.put_page_and_type(L1)
    env.mm.put_page(DATA0)                 # unmatched: recorded, not applied
    assert env.mm.check_invariants() == ["put_page(0x14) without a matching get_page"]


def test_release_and_destroy(env):
    env.tree()
    env.pin(L4)
    ext(env, A.MMUEXT_NEW_BASEPTR, arg1=L4)
    env.mm.mmu_update(D1, [(slot(L4, 9), e(L4B, P))])       # linear entry
    assert env.mm.release(SPARE_L1) == 0 and info(env, SPARE_L1).owner is None
    assert env.mm.release(SPARE_L1) == -A.EINVAL
    assert env.mm.release(D2_FRAME, D1) == -A.EINVAL
    env.ok()
    env.mm.destroy_domain(D1)
    assert all(info(env, m).owner is None for m in range(0x10, 0x30))
    assert info(env, D2_FRAME).owner == D2
    assert env.mm.baseptr(D1) == (None, None)
    assert not env.mm.domain_exists(D1)
    env.ok()


def test_release_unpins():
    env = Env()
    env.pin(SPARE_L1, 1)
    assert env.mm.release(SPARE_L1) == 0
    assert info(env, SPARE_L1).owner is None
    env.ok()


def test_snapshot_restore_and_digest(env):
    env.tree()
    snap = env.mm.snapshot()
    mem = env.mem.snapshot()
    h0 = hashlib.sha256()
    env.mm.digest_into(h0)
    env.pin(L4)
    h1 = hashlib.sha256()
    env.mm.digest_into(h1)
    assert h0.digest() != h1.digest()
    env.mm.restore(snap)
    env.mem.restore(mem)
    h2 = hashlib.sha256()
    env.mm.digest_into(h2)
    assert h2.digest() == h0.digest()
    assert env.pin(L4) == (0, 1)
    env.ok()


def test_builder_entry_points(env):
    env.tree()
    assert env.mm.pin_table(D1, L4, 4) == 0
    assert env.mm.set_baseptr(D1, 0, L4) == 0
    assert env.mm.set_baseptr(D1, 0, L4, user=True) == 0
    assert info(env, L4).type_count == 3
    assert env.mm.pin_table(D1, L3, 2) == -A.EINVAL
    env.ok()


def test_log_format(env):
    env.tree()
    env.pin(L4)
    env.mm.mmu_update(D1, [(slot(L1, 7), e(DATA1, P | PAT))], vcpu=3)
    # gdprintk in mod_l1_entry() (arch/x86/mm.c), as a debug build prints it
    assert env.logs[-1] == "(XEN) arch/x86/mm.c:2169:d1v3 Bad L1 flags 0x80"


# ------------------------------------------------------------------------------- property test
_D1_FRAMES = list(range(0x10, 0x20))
_OTHER = [0x0, 0x20, 0x2F, D2_FRAME, XEN_FRAME, IO_FRAME, D0_FRAME, FRAMES, 0x12345,
          0xFF_FFFF_FFFF]
frames = st.one_of(st.sampled_from(_D1_FRAMES), st.sampled_from(_D1_FRAMES), st.sampled_from(_OTHER))
slots = st.sampled_from([0, 1, 2, 3, 7, 255, 256, 258, 271, 272, 511])
flag_sets = st.one_of(
    st.sampled_from([TBL, P | US | AC, P | RW, P, 0, P | RW | PSE, P | G, P | PAT, P | PCD,
                     P | RW | AC | DT, RW, P | US | G]),
    st.integers(0, 0xFFF),
)
high = st.sampled_from([0, 0, NX, 1 << 52, 1 << 62])
entries = st.builds(lambda f, fl, h: ((f << 12) | fl | h) & (2 ** 64 - 1), frames, flag_sets, high)
actors = st.sampled_from([D1, D1, D1, D2, D0])
foreign = st.sampled_from([A.DOMID_SELF] * 6 + [D1, D2, A.DOMID_IO, A.DOMID_XEN, 0x7FF5, 0x2_0000])

mmu_req = st.builds(lambda f, s, c, v: ((f << 12) | (s << 3) | c, v),
                    frames, slots, st.sampled_from([0, 0, 0, 1, 2, 3, 4, 7]), entries)
mmu_op = st.tuples(st.just("mmu"), actors, st.lists(mmu_req, min_size=1, max_size=3), foreign)
ext_cmd = st.one_of(st.integers(0, 5), st.integers(0, 21), st.just(99))
ext_arg = st.one_of(frames, st.sampled_from([0x1000, 0x7FFF_FFFF_F000, 0xFFFF_8000_0000_0000, 8193]))
ext_one = st.fixed_dictionaries({"cmd": ext_cmd, "arg1": ext_arg, "arg2": ext_arg})
ext_op = st.tuples(st.just("ext"), actors, st.lists(ext_one, min_size=1, max_size=3), foreign)
uvm_op = st.tuples(st.just("uvm"), actors,
                   st.tuples(st.one_of(st.none(), st.builds(slot, frames, slots)), entries,
                             st.sampled_from([0, 1, 2, 5, 6, 0x8001])),
                   st.sampled_from([None, None, D1, D2]))
mem_op = st.tuples(st.just("mem"), st.sampled_from(["release", "assign"]), frames, st.just(None))
# fill a frame with a few entries through checked writes, then pin it at some level
build_op = st.tuples(st.just("build"), st.sampled_from(_D1_FRAMES),
                     st.lists(st.tuples(slots, entries), min_size=1, max_size=4),
                     st.integers(1, 4))
# XSA-182 style: rewrite an existing entry with a few bits toggled (RW above all)
flip_op = st.tuples(st.just("flip"), st.sampled_from(_D1_FRAMES), slots,
                    st.sampled_from([RW, RW, RW | PSE, PSE, US, RW | US, G, AC | DT]))
# XSA-240 style: make empty L4s and link them to each other read-only
_LINK = [L4, L4B, L4C, 0x1A]
link_op = st.tuples(st.just("link"), st.sampled_from(_LINK), st.sampled_from(_LINK),
                    st.sampled_from([1, 2, 300]))
any_op = st.one_of(mmu_op, mmu_op, ext_op, ext_op, uvm_op, mem_op, build_op, build_op,
                   flip_op, link_op)


def _apply(env: Env, op) -> None:
    kind, a, b, c = op
    mm = env.mm
    if kind == "mmu":
        rc, done = mm.mmu_update(a, b, c)
        assert rc <= 0 and 0 <= done <= len(b) and (rc == 0) == (done == len(b))
    elif kind == "ext":
        rc, done = mm.mmuext_op(a, b, c)
        assert rc <= 0 and 0 <= done <= len(b)
    elif kind == "uvm":
        l1e, val, flags = b
        rc = mm.update_va_mapping(a, l1e, val, flags, va=0x1000, foreigndom=c)
        assert rc <= 0
    elif kind == "build":
        mm.mmu_update(D1, [(slot(a, i), v) for i, v in b])
        mm.mmuext_op(D1, [{"cmd": A.MMUEXT_PIN_L1_TABLE + c - 1, "arg1": a}])
    elif kind == "flip":
        if mm.frame_info(a).owner == D1:
            mm.mmu_update(D1, [(slot(a, b), env.get(a, b) ^ c)])
    elif kind == "link":
        for t in (a, b):
            mm.mmuext_op(D1, [{"cmd": A.MMUEXT_PIN_L4_TABLE, "arg1": t}])
        mm.mmu_update(D1, [(slot(a, c), e(b, P | AC))])
    elif kind == "mem":
        if a == "release":
            mm.release(b, D1)
        elif mm.valid(b) and mm.frame_info(b).owner is None:
            mm.assign(b, D1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prebuilt=st.booleans(), ops=st.lists(any_op, min_size=1, max_size=30))
def test_random_hypercalls_keep_xens_invariants(prebuilt, ops):
    """In the spirit of the Xen Test Framework's XSA tests: whatever one guest
    asks for, no exception escapes and Xen's safety invariants hold."""
    env = Env()
    if prebuilt:
        env.tree()
        assert env.pin(L4) == (0, 1)
        assert env.mm.mmuext_op(D1, [{"cmd": A.MMUEXT_NEW_BASEPTR, "arg1": L4}]) == (0, 1)
    for op in ops:
        _apply(env, op)
        problems = env.mm.check_invariants()
        assert problems == [], (op, problems)
        for mfn in range(FRAMES):
            pg = env.mm.frame_info(mfn)
            if pg.type in (1, 2, 3, 4) and pg.type_count:
                assert pg.owner not in (A.DOMID_XEN, A.DOMID_IO)
    env.mm.destroy_domain(D1)
    assert env.mm.check_invariants() == []
    assert all(env.mm.frame_info(m).owner != D1 for m in range(FRAMES))


def test_pd_names_domains_as_xen_prints_them():
    """common/vsprintf.c print_domain(): %pd is d<id>, or the name of a system domain."""
    from lab.xen.mm import _pd
    from lab.xen.abi import DOMID_IO, DOMID_XEN
    assert [_pd(1), _pd(DOMID_XEN), _pd(DOMID_IO), _pd(0x7FFF), _pd(None)] == \
        ["d1", "d[XEN]", "d[IO]", "d[IDLE]", "NULL"]


def test_assign_many_gives_free_frames_and_refuses_any_other():
    env = Env()
    mm = env.mm
    mm.assign_many([0x1, 0x2, 0x3], D2)
    assert [(mm.pages[m].owner, mm.pages[m].count, mm.pages[m].allocated) for m in (0x1, 0x2, 0x3)] \
        == [(D2, 1, True)] * 3
    assert mm._owned[D2] == 3 + 8                      # and the eight Env gave it
    for bad in ([0x4, 0x1], [0x5, 0x5], [0x6, FRAMES], [-1]):
        with pytest.raises(ValueError, match="is not a free frame"):
            mm.assign_many(bad, D2)
    assert mm.pages[0x1].count == 1                   # a refused frame keeps its one reference
