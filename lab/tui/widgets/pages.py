"""The page-table pane: one address walked level by level, and the focused CPU's TLB."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from .text import Text

from ...hw.ept import EPT_ADDR_MASK
from ...hw.paging import describe_entry, entry_frame, table_indexes
from ...session.view import StateView
from ...session.walkgrid import grid_lines, walk_grid

MUTED = "$text-muted"
FAULT = "$text-error bold"
GOOD = "$text-success"
LEVEL_NAMES = {4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}


def _flags(entry: int, level: int) -> str:
    text = describe_entry(entry, level)
    # "0x... P RW A -> table frame 0x102": keep the flag names only.
    body = text.split(" ", 1)[1] if " " in text else ""
    return body.split(" -> ")[0]


def ept_lines(steps: Any, seen: set | None = None) -> list[str]:
    """One short line per EPT entry read: level, index, entry, permissions, where it leads.

    With ``seen``, upper-level entries already shown higher up the same 2-D walk are folded
    into one "same as above" line: the guest's tables usually sit in one guest-physical
    region, so EPT's PML4, PDPT and PD entries repeat for every one of them, and the walk
    stays short enough to keep the TLB in view.
    """
    out = []
    folded: list[int] = []

    def flush() -> None:
        if folded:
            levels = f"L{folded[0]}" + (f"-L{folded[-1]}" if len(folded) > 1 else "")
            out.append(f"     EPT {levels} same as above")
            folded.clear()
    for st in steps or ():
        key = (st.level, st.index, st.entry)
        if seen is not None and st.present and not st.leaf:
            if key in seen:
                folded.append(st.level)
                continue
            seen.add(key)
        flush()
        if not st.present:
            out.append(f"     EPT L{st.level} [{st.index:3d}] {st.entry:016x}  not present")
            continue
        nxt = "frame" if st.leaf else "table"
        flags = " ".join(st.flags)
        out.append(f"     EPT L{st.level} [{st.index:3d}] {st.entry:016x}  {flags}  -> {nxt} "
                   f"{st.entry & EPT_ADDR_MASK:#x}")
    flush()
    return out


def walk_content(view: StateView) -> Content:
    if view.cpu.get("arch") == "arm64":
        from .arm_cpu import walk_content as arm_walk
        return arm_walk(view)
    res = view.walk
    what = "rip" if view.walk_requested is None else "pinned address"
    cr3 = view.cpu.get("cr3", 0)
    if res is None:
        note = view.walk_note or "nothing to walk"
        return Content.assemble(("no walk: ", "bold"), (note, MUTED))
    parts: list[Any] = [("walk ", "bold"), (f"{res.va:#x}", "$text-accent bold"), (f" ({what})", MUTED),
                        f"   cr3 {cr3:#x}"]
    if view.cpu.get("dom") is not None:
        parts.append((f"   d{view.cpu['dom']}v{view.cpu.get('vcpu', 0)}", MUTED))
    parts.append("\n")
    if res.noncanonical:
        parts.append((f"{res.va:#x} is not canonical: the CPU raises #GP(0) without walking", FAULT))
        return Content.assemble(*parts)
    i4, i3, i2, i1, off = table_indexes(res.va)
    parts.append((f"indexes  L4 {i4}  L3 {i3}  L2 {i2}  L1 {i1}  offset {off:#x}", MUTED))
    if res.two_dimensional:
        parts.append(("\n2-D walk: each guest table address is itself translated through EPT", "$text-warning"))
        parts.append((" (g: as a grid)", MUTED))
    parts.append("\n")
    seen: set = set()
    for st in res.steps:
        if res.two_dimensional and st.ept:
            parts.append((f"   gPA {st.entry_addr:#x} through EPT:\n", MUTED))
            for line in ept_lines(st.ept, seen):
                parts.append((line + "\n", MUTED))
        parts.append((f"L{st.level} ", "bold"))
        parts.append((f"{LEVEL_NAMES.get(st.level, '')} ", MUTED))
        where = f"{st.table:#x}"
        if res.two_dimensional:
            where += f" (host {st.table_hpa:#x})"
        parts.append(f"table {where} [{st.index}]\n")
        if st.present:
            frame = entry_frame(st.entry, st.level)
            leaf = st.level == 1 or ("PS" in st.flags and st.level in (2, 3))
            nxt = f"{'frame' if leaf else 'table'} {frame << 12:#x}"
            style = ""
        else:
            nxt = "not present"
            style = FAULT
        parts.append("   ")
        parts.append((f"{st.entry:016x}", style))
        if st.present:
            parts.append((f"  {_flags(st.entry, st.level)}", "$text-accent"))
            parts.append((f"  -> {nxt}\n", style))
        else:
            parts.append(("  not present\n", style))
    if res.ept_exit is not None:
        parts.append((f"EPT: {res.ept_exit.describe()}\n", FAULT))
    if res.fault is not None:
        f = res.fault
        names = " ".join(f.error_code_names()) or "-"
        parts.append((f"#PF  error code {f.error_code:#x} ({names})  CR2 {f.cr2:#x}\n", FAULT))
        parts.append((f"   {f.reason}\n", "$text-error"))
    elif res.pa is not None:
        size = {1 << 12: "4 KiB", 1 << 21: "2 MiB", 1 << 30: "1 GiB"}.get(res.page_size, f"{res.page_size:#x}")
        parts.append(("=> ", "bold"))
        # In a 2-D walk the guest's tables end on a guest-physical address; EPT maps it on.
        parts.append((f"{'gPA' if res.two_dimensional else 'pa'} {res.pa:#x}", GOOD + " bold"))
        parts.append(f" in a {size} page")
        if res.two_dimensional:
            if res.final_ept:
                parts.append((f"\n   gPA {res.pa:#x} through EPT:\n", MUTED))
                for line in ept_lines(res.final_ept, seen):
                    parts.append((line + "\n", MUTED))
            if res.hpa is not None:
                parts.append(("=> ", "bold"))
                parts.append((f"host pa {res.hpa:#x}", GOOD + " bold"))
        parts.append("\n")
        perms = ("RW" if res.writable else "read-only") + (", user" if res.user else ", supervisor") + \
            (", NX" if res.nx else "") + (", global" if res.global_ else "")
        parts.append((perms + "; ", MUTED))
    parts.append((f"{res.mem_refs} memory references", "bold"))
    return Content.assemble(*parts)


def grid_content(view: StateView) -> Content:
    """The walk as the grid of its memory references (the ``grid`` command's picture)."""
    res = view.walk
    if res is None or view.cpu.get("arch") == "arm64" or res.noncanonical:
        return walk_content(view)
    grid = walk_grid(res)
    lines = grid_lines(grid)
    rows = 2 + (5 if grid.two_dimensional else 1)          # the title, the header, the rows
    parts: list[Any] = [(lines[0] + "\n", "bold")]
    parts += [line + "\n" for line in lines[1:rows]]
    style = MUTED
    for line in lines[rows:]:
        if line.startswith("!"):
            style = FAULT               # why the walk stopped: the last lines
        parts.append((line + "\n", style))
    parts.append(("g: back to the list of levels", MUTED))
    return Content.assemble(*parts)


def tlb_content(view: StateView) -> Content:
    if view.service is not None:
        return Content.styled("TLB: none to show (no guest code runs in this domain)", MUTED)
    entries = view.tlb
    parts: list[Any] = [("TLB ", "bold"), (f"of {view.cpu.get('label', '?')}: {len(entries)} entries\n", MUTED)]
    if not entries:
        parts.append(("(empty: paging is off, or just flushed)", MUTED))
    for e in entries:
        try:
            parts.append(e.describe() + "\n")
        except Exception:
            parts.append(str(e) + "\n")
    return Content.assemble(*parts).rstrip()


class PagesPane(VerticalScroll):
    """Walk of one address (rip unless pinned with ``walk ADDR``) and the TLB; ``g`` shows
    the walk as a grid of its memory references instead of level by level."""

    BINDINGS = [
        Binding("g", "toggle_grid", "Grid", id="pages.grid",
                tooltip="The walk as a grid (guest levels across, EPT levels down, each reference "
                        "numbered), or back to the list of levels"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_grid = False
        self._view: StateView | None = None

    def compose(self) -> ComposeResult:
        yield Text("", id="pages-walk")
        yield Text("", id="pages-tlb")

    def show(self, view: StateView) -> None:
        self._view = view
        walk = grid_content(view) if self.as_grid else walk_content(view)
        self.query_one("#pages-walk", Text).show(walk)
        self.query_one("#pages-tlb", Text).show(tlb_content(view))

    def action_toggle_grid(self) -> None:
        self.as_grid = not self.as_grid
        if self._view is not None:
            self.show(self._view)
