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
    keeps each line's drawing until that line changes or the text is drawn in
    another style or width: a new machine state redraws the registers that
    changed, not the pane, and the focus moving (which restyles the widgets of
    the panes concerned, to the same styles) redraws nothing."""

    def __init__(self, content: Content | str = "", *, wraps: bool = False, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.wraps = wraps          # if the text may wrap, a longer line may mean more lines
        self._shown: Content | None = None
        self._shape: tuple[int, int] = (-1, -1)
        #: The shown text's lines, and the drawing of each drawn so far (for one width).
        self._lines: list[Content] = []
        self._strips: dict[int, Strip] = {}
        #: What the drawings were made for: (width, the text's style, the theme).
        self._strips_key: tuple = ()
        #: Most lines changed: draw the whole text at once (cheaper than line by line).
        self._draw_whole = True
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
            self._draw_whole = True
            self.update(content, layout=shape != self._shape)
            self._shape = shape
            return
        changed = [y for y, (a, b) in enumerate(zip(old_lines, new_lines)) if not _same(a, b)]
        # One line costs about a seventh of drawing fourteen at once.
        self._draw_whole = len(changed) * 2 > len(new_lines)
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
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def render_line(self, y: int) -> Strip:
        if self._shown is None or self.content is not self._shown or not self.by_line:
            return super().render_line(y)     # the whole text at once, as Static draws it
        width = self.size.width
        style = self.visual_style
        key = (width, style, self.app.theme)
        if key != self._strips_key:
            # A restyle that changed nothing the text is drawn with (the focus moving) keeps them.
            self._strips.clear()
            self._strips_key = key
        strip = self._strips.get(y)
        if strip is not None:
            return strip
        if y >= len(self._lines):
            return Strip.blank(width, style.rich_style)
        if self._draw_whole:
            self._draw_whole = False
            whole = Visual.to_strips(self, self._shown, width, None, style)
            self._strips.update(enumerate(whole))
            strip = self._strips.get(y)
        if strip is None:
            rendered = Visual.to_strips(self, self._lines[y], width, 1, style)
            # Drawn alone, a line would say it is line 0 (the offsets text selection reads).
            strip = rendered[0].apply_offsets(0, y) if rendered else Strip.blank(width, style.rich_style)
            self._strips[y] = strip
        return strip
