"""The command output: answers kept as written, wrapped when drawn, tables scrolled sideways."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import RichLog

#: Two spaces (or a tab) between words: the columns of a table such as ``xl list``.
_COLUMNS = re.compile(r"\S(\s{2,}|\t)\S")


def is_table(lines: list[str]) -> bool:
    """Whether an answer is a table: most of its lines (at least three) have columns."""
    rows = [ln for ln in lines if ln.strip()]
    return len(rows) >= 3 and sum(bool(_COLUMNS.search(ln)) for ln in rows) * 3 >= len(rows) * 2


class OutputLog(RichLog):
    """A RichLog that keeps every answer's lines and draws them again when its width changes.

    Prose is wrapped to the pane's width when drawn (so widening or maximising the pane
    unwraps it); a table is never wrapped: its rows keep their columns and the pane
    scrolls sideways.
    """

    def __init__(self, max_lines: int = 2000, **kwargs: Any) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, highlight=False, **kwargs)
        self.entries: deque[tuple[Text, bool]] = deque(maxlen=max_lines)
        self._drawn_width = 0

    def add(self, lines: list[Text], table: bool = False) -> None:
        for line in lines:
            self.entries.append((line, table))
            self._draw(line, table)

    def _draw(self, line: Text, table: bool) -> None:
        if table:
            row = line.copy()
            row.no_wrap = True
            row.overflow = "ignore"
            self.write(row, shrink=False, scroll_end=True)
        else:
            self.write(line, scroll_end=True)

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        if width and self._drawn_width and width != self._drawn_width:
            super().clear()
            for line, table in self.entries:
                self._draw(line, table)
        self._drawn_width = width or self._drawn_width

    def clear(self) -> "OutputLog":
        self.entries.clear()
        return super().clear()
