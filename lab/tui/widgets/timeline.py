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
    where = "live" if view.live else f"input {view.input_index + 1}/{len(view.inputs)}"
    marks = "  ".join(name for name, _ in view.markers[:6])
    info = f" insn {view.now:,} of {view.extent:,} · {where}" + (f" · markers: {marks}" if marks else "")
    if not view.live:
        info += " · a command that changes the machine takes over here"
    parts.append("\n")
    parts.append((info[:width], "$text-muted"))
    return Content.assemble(*parts)


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
