"""A Static that redraws only when its text changes, and lays out only when its shape does."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class Text(Static):
    """``show(content)`` skips identical content and avoids a layout pass when the
    number of lines and the longest line stay the same (the common case while
    the machine runs: registers change, their shape does not)."""

    def __init__(self, content: Content | str = "", *, wraps: bool = False, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.wraps = wraps          # if the text may wrap, a longer line may mean more lines
        self._shown: Content | None = None
        self._shape: tuple[int, int] = (-1, -1)

    @property
    def shown(self) -> Content | None:
        """The content last shown."""
        return self._shown

    def show(self, content: Content) -> None:
        old = self._shown
        if old is not None and old.plain == content.plain and old.spans == content.spans:
            return
        lines = content.plain.split("\n")
        shape = (len(lines), max(len(line) for line in lines) if self.wraps else 0)
        self._shown = content
        self.update(content, layout=shape != self._shape)
        self._shape = shape
