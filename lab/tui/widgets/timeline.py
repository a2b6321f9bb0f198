"""The timeline: a bar with the session's inputs, its markers and where the machine is now.

It only renders a :class:`lab.session.timetravel.TimelineView`; moving along the
timeline is the command language's ``seek`` and ``back``.
"""

from __future__ import annotations

from textual.content import Content

from ...session.timetravel import TimelineView
from .text import Text


def _column(insns: int, extent: int, width: int) -> int:
    if extent <= 0 or width <= 1:
        return 0
    return min(width - 1, insns * (width - 1) // extent)


def timeline_content(view: TimelineView, width: int) -> Content:
    """Two lines: the bar (┊ an input, ▼ a marker, ● now) and what it means."""
    width = max(20, width)
    bar = ["─"] * width
    styles: list[str] = [""] * width
    for start in view.inputs:
        col = _column(start, view.extent, width)
        bar[col], styles[col] = "┊", "$text-muted"
    for _name, insns in view.markers:
        col = _column(insns, view.extent, width)
        bar[col], styles[col] = "▼", "$text-warning bold"
    here = _column(view.now, view.extent, width)
    bar[here], styles[here] = "●", "$text-accent bold"
    parts: list = []
    for ch, style in zip(bar, styles):
        parts.append((ch, style) if style else ch)
    parts.append("\n")
    parts.append((info_line(view, width), "$text-muted"))
    return Content.assemble(*parts)


def info_line(view: TimelineView, width: int) -> str:
    """The line under the bar, within ``width``: where the machine is, always; then, as room
    allows, that a command takes over here (shorter if need be), and the markers (the first
    few and how many more, or only how many; the bar shows each as ▼). Parts are left out
    whole, never cut in the middle of a word."""
    where = "live" if view.live else f"input {view.input_index + 1}/{len(view.inputs)}"
    head = f" insn {view.now:,} of {view.extent:,} · {where}"
    if len(head) > width:
        head = f" {view.now:,}/{view.extent:,} · {where}"
    names = [name for name, _ in view.markers]
    takeover = ([] if view.live else
                [" · a command that changes the machine takes over here", " · a command takes over here", ""])

    def marks(k: int) -> str:
        if not names or k < 0:
            return ""
        if k == 0:
            return f" · {len(names)} markers"
        more = f" +{len(names) - k}" if k < len(names) else ""
        return " · markers: " + "  ".join(names[:k]) + more
    for hint in takeover or [""]:
        for k in range(min(len(names), 6), -2, -1):       # down to no word of the markers
            line = head + marks(k) + hint
            if len(line) <= width:
                return line
    return head[:width]


class Timeline(Text):
    """Shows the timeline; the app gives it a new view on each tick."""

    DEFAULT_CSS = """
    Timeline {
        height: 2;
        padding: 0 1;
        background: $background;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.view: TimelineView | None = None

    def show_view(self, view: TimelineView) -> None:
        self.view = view
        self.show(timeline_content(view, self.size.width - 2 if self.size.width else 78))
