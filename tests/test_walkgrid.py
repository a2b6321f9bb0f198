"""The 2-D walk as the classic grid: every memory reference numbered in the CPU's order."""

from __future__ import annotations

import pytest

from lab.hw import ept as E
from lab.hw import pagebuild as B
from lab.hw import paging as P
from lab.hw.memory import MachineMemory
from lab.session.walkgrid import EPT_ROWS, GUEST_ROW, grid_lines, walk_grid

MiB = 1 << 20
GUEST_BASE = 8 * MiB
VA = 0x40_0000


def _walk(data_gpa: int = 0x30_0000, va: int = VA):
    """A guest with one page mapped at VA -> data_gpa, its memory mapped by EPT up to 4 MiB."""
    mem = MachineMemory(64 * MiB)
    ealloc = B.FrameAllocator(mem, 0x10, 0x100)
    pml4 = ealloc() << 12
    for gpa in range(0, 4 * MiB, 4096):
        B.ept_map(mem, ealloc, pml4, gpa, gpa + GUEST_BASE, page_size=4096)
    nxt = [0x100]

    def galloc():
        nxt[0] += 1
        return nxt[0] - 1

    class GuestView:
        def read_u64(self, gpa):
            return mem.read_u64(gpa + GUEST_BASE)

        def write_u64(self, gpa, value):
            mem.write_u64(gpa + GUEST_BASE, value)
    gcr3 = galloc() << 12
    B.map_page(GuestView(), galloc, gcr3, VA, data_gpa, user=True)
    return P.walk(mem, gcr3, va + 0x10, access="r", cpl=3, set_ad=False,
                  table_translate=E.EptTranslator(mem, E.make_eptp(pml4, ad=True), set_ad=False))


def _numbers(grid):
    return [num for c in grid.columns for num, _ in
            (c.cells[r] for r in (*EPT_ROWS, GUEST_ROW) if r in c.cells)]


def test_a_4x4_walk_is_24_references_numbered_down_each_column():
    res = _walk()
    grid = walk_grid(res)
    assert grid.count == res.mem_refs == 24
    assert [c.name for c in grid.columns] == ["gL4", "gL3", "gL2", "gL1", "data"]
    # down each column: EPT L4..L1, then the guest entry; the data column has no guest entry
    assert _numbers(grid) == list(range(1, 25))
    assert [c.cells.get(GUEST_ROW, (None,))[0] for c in grid.columns] == [5, 10, 15, 20, None]
    assert grid.columns[0].cells[4] == (1, "") and grid.columns[4].cells[1] == (24, "")
    # EPT's upper levels are the same entries for the guest's tables (all in its first 2 MiB):
    # read again, marked; the data (at 3 MiB) shares EPT's L4 and L3 entries but not its L2
    marked = sorted(num for c in grid.columns for r, (num, mark) in c.cells.items() if mark == "*")
    assert marked == [6, 7, 8, 11, 12, 13, 16, 17, 18, 21, 22] and grid.repeats == 11
    text = "\n".join(grid_lines(grid))
    assert "24 memory references" in text
    assert "EPT L1         4    9   14   19   24" in text
    assert "guest entry    5   10   15   20    ·" in text
    assert f"data  the data at gPA {res.pa:#x}" in text


def test_an_ept_violation_is_the_last_reference_and_marked():
    res = _walk(data_gpa=0x50_0000)          # the data's gPA is beyond what EPT maps
    assert res.ept_exit is not None
    grid = walk_grid(res)
    assert grid.count == res.mem_refs
    last = grid.columns[-1]
    assert last.name == "data" and GUEST_ROW not in last.cells
    assert max(num for num, _ in last.cells.values()) == grid.count
    assert sorted(last.cells.values())[-1][1] == "!"
    assert grid.stopped.startswith(f"EPT stopped the walk at reference {grid.count}")


def test_a_not_present_guest_entry_stops_the_grid_there():
    res = _walk(va=VA + 0x20_0000)           # the next 2 MiB: no L1 table there
    assert res.fault is not None
    grid = walk_grid(res)
    assert grid.count == res.mem_refs == 15      # three guest levels, each after its EPT walk
    assert grid.columns[-1].cells[GUEST_ROW] == (15, "!")
    assert "#PF at reference 15" in "\n".join(grid_lines(grid))


@pytest.mark.machine
def test_the_grid_command_draws_the_hvm_guests_walk_and_a_pv_guests():
    from lab.paths import MACHINES
    from lab.session.commands import execute
    from lab.session.live import open_session
    session = open_session([str(MACHINES / "default.toml")])
    execute(session, "until sysret")
    execute(session, "focus hvm-guest")
    text = execute(session, "grid 0x401000")
    res, _ = session.walk(0x401000)
    assert res.two_dimensional and f"2-D walk of 0x401000: {res.mem_refs} memory references" in text
    assert res.mem_refs == 24 and "guest entry    5   10   15   20    ·" in text
    execute(session, "focus pv-guest")
    text = execute(session, "grid")
    assert "4 memory references" in text and "EPT" not in text
    assert text.splitlines()[2].split() == ["entry", "1", "2", "3", "4"]
