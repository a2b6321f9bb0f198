"""The command output: answers kept as written and laid out for the pane's width when drawn."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from ..tables import fit_answer
from .shown import ShownInOneFrame


class OutputLog(ShownInOneFrame, RichLog):
    """A RichLog that keeps every answer as written and draws it again when its width changes.

    Prose is wrapped by the log (so widening or maximising the pane unwraps it); a table is
    fitted to the width by ``tables.fit_answer`` (columns kept: gaps shrunk, the last column
    wrapped under itself, or bands of columns), and what still does not fit scrolls sideways.
    """

    def __init__(self, max_lines: int = 2000, **kwargs: Any) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, highlight=False, **kwargs)
        #: Each answer as written: (its lines, their style).
        self.answers: deque[tuple[list[str], str]] = deque(maxlen=max_lines)
        self._laid_width = 0        # the width the answers were last fitted to

    @property
    def fit_width(self) -> int:
        """The columns a line may take: the pane less its vertical scrollbar."""
        width = self.scrollable_content_region.width or self.size.width
        return max((width or 80) - 1, 8)

    def add(self, lines: list[str], style: str = "") -> None:
        self.answers.append((lines, style))
        self._draw(lines, style)

    def _draw(self, lines: list[str], style: str) -> None:
        self._laid_width = self.fit_width
        for line, wraps in fit_answer(lines, self._laid_width):
            if wraps:
                self.write(Text(line, style=style), scroll_end=True)
            else:
                row = Text(line, style=style, no_wrap=True, overflow="ignore")
                self.write(row, shrink=False, scroll_end=True)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width and self.answers and self.fit_width != self._laid_width:
            super().clear()
            for lines, style in self.answers:
                self._draw(lines, style)

    def lines_shown(self) -> list[str]:
        """The text the log holds now, one string per drawn line (for tests and reading)."""
        return [strip.text.rstrip() for strip in self.lines]

    def clear(self) -> "OutputLog":
        self.answers.clear()
        return super().clear()
