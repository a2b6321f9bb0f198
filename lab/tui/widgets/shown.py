"""A scrolling widget behind a tab that comes into sight in one frame, scrollbars included."""

from __future__ import annotations

from typing import Any

from textual.geometry import Size


class ShownInOneFrame:
    """Mixin for a scrolling widget in a pane behind a tab.

    When a tab shows its pane, Textual lays the screen out, sets the pane's
    scrollbars to the rows it holds and asks them to repaint; the frame that
    follows draws the newly shown pane whole, scrollbars as they now are, and
    the scrollbars' own repaint came after it, as a second frame drawing them
    again. ``coming_into_sight`` (called by the screen as it shows the pane)
    lets the layout that shows the widget drop that repaint; once that frame
    is drawn the widget's scrollbars repaint as usual.
    """

    _coming_into_sight = False

    def coming_into_sight(self: Any) -> None:
        self._coming_into_sight = True
        self.call_after_refresh(self._in_sight)

    def _in_sight(self) -> None:
        self._coming_into_sight = False

    def _size_updated(self: Any, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        changed = super()._size_updated(size, virtual_size, container_size, layout)   # type: ignore[misc]
        if self._coming_into_sight and size.area:
            # In the layout that shows the pane: the frame composed now draws the scrollbars.
            self._coming_into_sight = False
            for bar in (self._vertical_scrollbar, self._horizontal_scrollbar):
                if bar is not None:
                    bar._repaint_required = False
        return bool(changed)
