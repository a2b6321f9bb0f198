"""A Static that redraws only the lines whose text changed, and lays out only when its shape does."""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual
from textual.widgets import Static


def _same(a: Content, b: Content) -> bool:
    return a.plain == b.plain and a.spans == b.spans


class Text(Static):
    """``show(content)`` skips identical content and avoids a layout pass when the
    number of lines and the longest line stay the same (the common case while
    the machine runs: registers change, their shape does not).

    A text that does not wrap (``text-wrap: nowrap``) is drawn line by line and
    keeps each line's drawing until that line changes: a new machine state
    redraws the registers that changed, not the pane; restyling it (the focus
    moving) draws every line again from the same text."""

    def __init__(self, content: Content | str = "", *, wraps: bool = False, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.wraps = wraps          # if the text may wrap, a longer line may mean more lines
        self._shown: Content | None = None
        self._shape: tuple[int, int] = (-1, -1)
        #: The shown text's lines, and the drawing of each drawn so far (for one width).
        self._lines: list[Content] = []
        self._strips: dict[int, Strip] = {}
        self._strips_width = -1
        #: While ``show`` updates a few lines: the regions ``update`` refreshes instead of all.
        self._changed_rows: list[Region] | None = None

    @property
    def shown(self) -> Content | None:
        """The content last shown."""
        return self._shown

    @property
    def by_line(self) -> bool:
        """Drawn line by line: one line of text is one row (it never wraps)."""
        return self.styles.text_wrap == "nowrap" and not (self.is_attached and self.text_selection)

    def show(self, content: Content) -> None:
        old = self._shown
        if old is not None and _same(old, content):
            return
        lines = content.plain.split("\n")
        shape = (len(lines), max(len(line) for line in lines) if self.wraps else 0)
        self._shown = content
        new_lines = content.split(allow_blank=True)
        old_lines = self._lines
        self._lines = new_lines
        if shape != self._shape or old is None or len(old_lines) != len(new_lines) or not self.by_line:
            self._strips.clear()
            self.update(content, layout=shape != self._shape)
            self._shape = shape
            return
        changed = [y for y, (a, b) in enumerate(zip(old_lines, new_lines)) if not _same(a, b)]
        for y in changed:
            self._strips.pop(y, None)
        width = max(self.size.width, 1)
        self._changed_rows = [Region(0, y, width, 1) for y in changed]
        try:
            self.update(content, layout=False)
        finally:
            self._changed_rows = None

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Any:
        if self._changed_rows is not None and not regions and not layout:
            regions = tuple(self._changed_rows)
            if not regions:
                return self
        elif not regions:
            self._strips.clear()
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        if self._shown is None or self.content is not self._shown or not self.by_line:
            return super().render_line(y)     # the whole text at once, as Static draws it
        width = self.size.width
        if width != self._strips_width:
            self._strips.clear()
            self._strips_width = width
        strip = self._strips.get(y)
        if strip is None:
            style = self.visual_style
            rendered = Visual.to_strips(self, self._lines[y], width, 1, style) if y < len(self._lines) else []
            # Drawn alone, a line would say it is line 0 (the offsets text selection reads).
            strip = rendered[0].apply_offsets(0, y) if rendered else Strip.blank(width, style.rich_style)
            self._strips[y] = strip
        return strip
