"""Validating an L1 table: the common entries taken in a few operations must leave exactly
what Xen's promote_l1_table() leaves, calling get_page_from_l1e() on every present entry
in order: the same counts and types, the same entries written back, messages, trace
events and errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.hw.memory import MachineMemory
from lab.xen import abi as A
from lab.xen.mm import _PROMOTE_FAILURE, PvMM, _page_row, put_pte_flags

P, RW, US, PWT, PCD, AC, DT, PAT, G = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
NX, KERNEL_TAG, SOFT = 1 << 63, 1 << 52, 1 << 9
FRAMES = 0x40
D0, D1, D2 = 0, 1, 2
TABLE = 0x10                  # the L1 table being validated, d1's
OTHER_L1 = 0x11               # d1's, already a validated L1 (pinned)
WRITABLE = 0x12               # d1's, already mapped writable by OTHER_L1
#: What an entry may point at: the table itself, d1's frames (typed or not), another
#: domain's, dom0's, Xen's, MMIO (DOMID_IO's and beyond RAM), a free frame, the L1TF
#: "invalid" frame.
TARGETS = [TABLE, OTHER_L1, WRITABLE, 0x14, 0x15, 0x16, 0x17, 0x30, 0x3C, 0x38, 0x3A, 0x45, 0x2F,
           0xFF_FFFF_FFFF]
FLAGS = [P, P | RW, P | US | AC, P | RW | US | AC | DT, P | RW | G, P | US | G, P | G | KERNEL_TAG,
         P | KERNEL_TAG, P | RW | US | KERNEL_TAG | G, P | PWT, P | PCD | PWT, P | PAT, P | RW | NX | SOFT,
         RW | US, 0]


class Generic(PvMM):
    """The reference: promote_l1_table() as mm.c writes it, every present entry through
    get_page_from_l1e() and adjust_guest_l1e(), each change written as it is made."""

    def _promote_l1(self, mfn: int, d: int) -> int:
        entries = list(self._read_table(mfn))
        base = mfn << 12
        taken: list[int] = []
        for i, e in enumerate(entries):
            if not e & P:
                continue
            first = len(self.messages)
            self._l1_slot = base | (i << 3)
            rc = self._get_page_from_l1e(e, d, d)
            self._l1_slot = None
            if rc < 0:
                self._warn(f"Failure {rc} in promote_l1_table: slot {i:#x}", _PROMOTE_FAILURE[1])
                self._event("validate", base | (i << 3), e, 1, rc, first)
                for j in reversed(taken):
                    self._put_page_from_l1e(entries[j])
                return rc
            new = e ^ put_pte_flags(rc) if rc > 0 else e
            new = self._adjust(1, new, d)
            if new != e:
                self._write_entry(base | (i << 3), new)
                entries[i] = new
            taken.append(i)
        return 0


def _machine(cls, privileged: bool, adjust: bool) -> tuple[PvMM, list[str], list[dict]]:
    mem = MachineMemory(FRAMES * 4096)
    logs: list[str] = []
    events: list[dict] = []
    mm = cls(mem, log=logs.append, emit=lambda **k: events.append(k),
             privileged=lambda d: d == D0 or (privileged and d == D1), adjust_guest=adjust)
    for mfn in range(0x10, 0x2F):                 # 0x2F stays free
        mm.assign(mfn, D1)
    for mfn in range(0x30, 0x38):
        mm.assign(mfn, D2)
    for mfn in (0x38, 0x39):
        mm.assign(mfn, A.DOMID_XEN)
    for mfn in (0x3A, 0x3B):
        mm.assign(mfn, A.DOMID_IO)
    for mfn in range(0x3C, 0x40):
        mm.assign(mfn, D0)
    mem.write_u64(OTHER_L1 << 12, (WRITABLE << 12) | P | RW)
    assert mm.pin_table(D1, OTHER_L1, 1) == 0
    return mm, logs, events


def _promote(cls, entries: list[int], privileged: bool, adjust: bool, noted: bool):
    mm, logs, events = _machine(cls, privileged, adjust)
    for i, v in enumerate(entries):
        mm.mem.write_u64((TABLE << 12) + i * 8, v)
    if noted:
        mm.pages.touched = set()
    del logs[:], events[:]
    rc = mm.pin_table(D1, TABLE, 1)
    rows = {m: _page_row(pg) for m, pg in sorted(dict.items(mm.pages))}
    return (rc, rows, bytes(mm.mem.frame(TABLE)), logs, events, mm.messages, mm.errors,
            [a.kind for a in mm.actions], None if mm.pages.touched is None else set(mm.pages.touched),
            mm.check_invariants())


entry = st.builds(lambda t, f: (t << 12) | f, st.sampled_from(TARGETS), st.sampled_from(FLAGS))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(entry, min_size=1, max_size=24), privileged=st.booleans(), adjust=st.booleans(),
       noted=st.booleans())
def test_validating_an_l1_table_leaves_what_each_entry_through_get_page_from_l1e_leaves(
        entries, privileged, adjust, noted):
    ours = _promote(PvMM, entries, privileged, adjust, noted)
    assert ours == _promote(Generic, entries, privileged, adjust, noted)


@pytest.mark.parametrize("adjust", [False, True])
def test_a_whole_table_of_ordinary_entries_is_taken_and_adjusted(adjust):
    """A kernel's direct map: every entry takes its references, RW ones their writable type;
    adjust_guest_l1e() tags kernel pages and writes them back."""
    entries = [(m << 12) | P | (0 if m in (TABLE, OTHER_L1) else RW) for m in range(0x10, 0x2F)] * 16
    ours = _promote(PvMM, entries, False, adjust, True)
    assert ours == _promote(Generic, entries, False, adjust, True)
    rc, rows, table, *_rest, problems = ours
    assert rc == 0 and problems == []
    assert rows[0x14][1:4] == (1 + 16, A.PGT_writable_page, 16)       # count, type, type_count
    first = int.from_bytes(table[8 * 4:8 * 5], "little")
    assert first == ((0x14 << 12) | P | RW | ((US | KERNEL_TAG) if adjust else 0))


def test_a_failing_entry_undoes_the_entries_before_it_and_keeps_their_adjustments():
    entries = [(0x14 << 12) | P | RW, (0x15 << 12) | P, (0x30 << 12) | P, (0x16 << 12) | P | RW]
    ours = _promote(PvMM, entries, False, True, True)
    assert ours == _promote(Generic, entries, False, True, True)
    rc, rows, table, logs, events, *_rest = ours
    assert rc == -A.EBUSY
    assert rows[0x14][1:4] == (1, A.PGT_writable_page, 0) and rows[0x15][1] == 1
    assert any("Failure -16 in promote_l1_table: slot 0x2" in line for line in logs)
    assert [ev["op"] for ev in events] == ["validate", "pin_l1_table"]
    assert int.from_bytes(table[:8], "little") & KERNEL_TAG         # written before the failure
