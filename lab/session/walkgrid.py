"""A page walk as the classic grid: guest levels across, EPT levels down.

In a 2-D walk (an HVM guest over EPT) every guest page-table entry lives at a
guest-physical address, so before the CPU can read it, it walks EPT to find
where that address is in the host: four EPT references, then the guest entry
itself. After the guest's last level the address it gives (the data's
guest-physical address) goes through EPT once more. With four levels on both
sides that is 4 x (4 + 1) + 4 = 24 memory references, where a walk without EPT
makes 4 (Intel SDM vol. 3, 29.3.2; the same picture as AMD's nested paging).

:func:`walk_grid` numbers the references in the order the CPU makes them, from
the :class:`~lab.hw.paging.WalkResult` the walk itself recorded, so the last
number is the walk's own count. It marks a read that stops the walk (a
not-present entry, an EPT violation) and an EPT entry read again within the same
walk, which the CPU's paging-structure caches (or, for a whole translation, its
TLB) would spare it. Plain text: the command line and the screen draw the same.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

#: The rows, top to bottom: EPT levels, then the guest's own entry.
EPT_ROWS = (4, 3, 2, 1)
GUEST_ROW = 0
ROW_NAMES = {4: "EPT L4", 3: "EPT L3", 2: "EPT L2", 1: "EPT L1", GUEST_ROW: "guest entry"}
#: Without EPT there is only the one kind of entry.
ONE_D_ROW = "entry"


@dataclass
class Column:
    """One guest-physical address the walk had to translate: a guest table, or the data."""
    name: str                       # gL4 .. gL1 (L4 .. L1 without EPT), or "data"
    gpa: int | None                 # the guest-physical address translated (entry, or the data)
    #: Row -> (number, mark): mark is "" (an ordinary read), "*" (read again) or "!" (stopped here).
    cells: dict[int, tuple[int, str]] = field(default_factory=dict)


@dataclass
class WalkGrid:
    va: int
    two_dimensional: bool
    columns: list[Column]
    count: int                      # references numbered (the walk's memory references)
    repeats: int                    # EPT entries read again within the walk
    stopped: str = ""               # why the walk stopped early, or ""


def walk_grid(res: Any) -> WalkGrid:
    """The grid of a :class:`~lab.hw.paging.WalkResult`."""
    columns: list[Column] = []
    seen: set[int] = set()
    n = 0
    repeats = 0

    def ept(col: Column, steps: Any, failed: bool = False) -> None:
        nonlocal n, repeats
        steps = list(steps or ())
        for i, st in enumerate(steps):
            n += 1
            mark = ""
            if failed and i == len(steps) - 1:
                mark = "!"
            elif st.entry_addr in seen:
                mark = "*"
                repeats += 1
            seen.add(st.entry_addr)
            col.cells[st.level] = (n, mark)

    g = "g" if res.two_dimensional else ""
    for st in res.steps:
        col = Column(f"{g}L{st.level}", st.entry_addr)
        if res.two_dimensional:
            ept(col, st.ept)
        n += 1
        col.cells[GUEST_ROW] = (n, "" if st.present else "!")
        columns.append(col)
    stopped = ""
    exc = getattr(res, "ept_exit", None)
    if exc is not None:
        level = getattr(exc, "guest_level", None)
        col = Column(f"{g}L{level}" if level is not None else "data", getattr(exc, "gpa", None))
        ept(col, getattr(exc, "steps", ()), failed=True)
        columns.append(col)
        stopped = f"EPT stopped the walk at reference {n}"
    elif res.fault is not None:
        if n < res.mem_refs:          # a table beyond the end of memory: read, but no entry
            level = res.fault.level or (res.steps[-1].level - 1 if res.steps else 4)
            n += 1
            columns.append(Column(f"{g}L{level}", None, {GUEST_ROW: (n, "!")}))
        stopped = f"#PF at reference {n}: {res.fault.reason}"
    elif res.two_dimensional and res.final_ept is not None:
        col = Column("data", res.pa)
        ept(col, res.final_ept)
        columns.append(col)
    return WalkGrid(res.va, res.two_dimensional, columns, n, repeats, stopped)


#: Prose in the picture is wrapped to this width, so that it fits a pane beside the CPU's.
TEXT_WIDTH = 52


def grid_lines(grid: WalkGrid) -> list[str]:
    """The grid as text, with a legend of what each column translated."""
    rows = ([r for r in EPT_ROWS] if grid.two_dimensional else []) + [GUEST_ROW]
    names = dict(ROW_NAMES) if grid.two_dimensional else {GUEST_ROW: ONE_D_ROW}
    label = max(len(names[r]) for r in rows) + 1
    cell = max(4, len(str(grid.count)) + 3)
    kind = "2-D walk" if grid.two_dimensional else "walk"
    out = [f"{kind} of {grid.va:#x}: {grid.count} memory references"]
    out.append(" " * label + "".join(c.name.rjust(cell) for c in grid.columns))
    for r in rows:
        line = names[r].ljust(label)
        for c in grid.columns:
            if r in c.cells:
                num, mark = c.cells[r]
                line += (f"{num}{mark or ' '}").rjust(cell)
            else:
                line += "·".rjust(cell - 1) + " "
        out.append(line.rstrip())
    order = "numbered in the order the CPU makes them"
    if grid.two_dimensional:
        order += ": down each column, EPT's walk of a guest-physical address, then the read it was for"
    out += textwrap.wrap(order, TEXT_WIDTH)
    for c in grid.columns:
        if c.gpa is not None:
            what = "the data" if c.name == "data" else f"the {c.name} entry"
            out.append(f"  {c.name:<5} {what} at {'gPA' if grid.two_dimensional else 'pa'} {c.gpa:#x}")
    if grid.repeats:
        out += textwrap.wrap(f"* {grid.repeats} EPT entries read again within this walk: the CPU's "
                             "paging-structure caches (or its TLB, for a whole translation) would "
                             "save them", TEXT_WIDTH, subsequent_indent="  ")
    if grid.stopped:
        out += textwrap.wrap(f"! {grid.stopped}", TEXT_WIDTH, subsequent_indent="  ")
    return out
