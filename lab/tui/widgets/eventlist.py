"""A bounded, filterable, selectable list of trace events drawn with the Line API.

Only visible rows are rendered; new events arrive in batches (``add``), once
per screen tick. The full history stays in the trace: this list keeps the last
``max_rows`` events.

A row's text is made once, when it is first needed. A list out of sight (its
pane behind a tab) keeps the events only: it makes no text until it comes
back (``catch_up``), and events that pass out of its window meanwhile are never
formatted (with idle guests thousands a second do). The list is as wide as its
widest row, so when it is on screen every row kept has been measured.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from rich.segment import Segment
from textual.binding import Binding
from textual.events import Click, MouseScrollDown, MouseScrollUp
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..explain import event_row
from .shown import ShownInOneFrame

#: Component class per kind (the .tcss colours them with theme variables).
KIND_CLASS = {
    "hypercall": "eventlist--hypercall", "vmexit": "eventlist--vmexit", "vmentry": "eventlist--vmexit",
    "trap": "eventlist--trap", "interrupt": "eventlist--trap",
    "syscall": "eventlist--syscall", "sysret": "eventlist--syscall",
    "ioport": "eventlist--io", "mmio": "eventlist--io", "ioreq": "eventlist--io",
    "evtchn": "eventlist--xen", "grant": "eventlist--xen", "xenstore": "eventlist--xen",
    "ring_io": "eventlist--xen", "domain": "eventlist--xen",
}


class EventList(ShownInOneFrame, ScrollView, can_focus=True):
    """Rows of events; up/down move a cursor, enter or a click selects."""

    COMPONENT_CLASSES = {
        "eventlist--cursor", "eventlist--hypercall", "eventlist--vmexit", "eventlist--trap",
        "eventlist--syscall", "eventlist--io", "eventlist--xen", "eventlist--other",
    }
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False, id="events.up", tooltip="Previous event"),
        Binding("down", "cursor(1)", "Down", show=False, id="events.down", tooltip="Next event"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="events.pageup",
                tooltip="One page of events back"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="events.pagedown",
                tooltip="One page of events on"),
        Binding("home", "first", "First", show=False, id="events.first", tooltip="Oldest event kept"),
        Binding("end", "last", "Last", show=False, id="events.last",
                tooltip="Newest event, and follow new ones"),
        Binding("enter", "select", "Explain", show=False, id="events.select",
                tooltip="Explain the event under the cursor"),
        Binding("t", "travel", "Go there", show=False, id="events.travel",
                tooltip="Take the whole machine to the moment this event happened (or double-click it)"),
    ]

    class Travel(Message):
        """The learner asked to take the machine to the moment this event happened."""

        def __init__(self, event_list: "EventList", event: Any) -> None:
            super().__init__()
            self.event_list = event_list
            self.event = event

        @property
        def control(self) -> "EventList":
            return self.event_list

    class Selected(Message):
        """The learner picked an event (cursor moved onto it, or enter/click)."""

        def __init__(self, event_list: "EventList", event: Any) -> None:
            super().__init__()
            self.event_list = event_list
            self.event = event

        @property
        def control(self) -> "EventList":
            return self.event_list

    def __init__(self, max_rows: int = 2000, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_rows = max_rows
        #: [event, its row's text or None until first needed]
        self._rows: list[list[Any]] = []
        self._measured = 0                  # rows before this one count in the width
        self._visible: list[int] = []
        self._filter: Callable[[Any], bool] = lambda ev: True
        self._width = 0
        self.cursor: int | None = None      # index into the visible rows
        self.follow = True                  # keep the newest row in view
        self._xen = False

    @property
    def xen(self) -> bool:
        """Events with no domain are Xen's (else the bare machine's)."""
        return self._xen

    @xen.setter
    def xen(self, xen: bool) -> None:
        if xen != self._xen:
            # Rows already given keep the words they arrived with.
            for i in range(len(self._rows)):
                self._text(i)
            self._xen = xen

    def _text(self, i: int) -> str:
        """Row ``i``'s text, made once."""
        row = self._rows[i]
        text = row[1]
        if text is None:
            text = row[1] = event_row(row[0], self._xen)
        return text

    # -- data ---------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._visible)

    @property
    def events(self) -> list[Any]:
        """The events shown (after filtering), oldest first."""
        return [self._rows[i][0] for i in self._visible]

    @property
    def selected_event(self) -> Any:
        if self.cursor is None or not self._visible:
            return None
        return self._rows[self._visible[self.cursor]][0]

    def newest_seq(self) -> int:
        """The sequence number of the newest event given to the list, -1 if none."""
        return self._rows[-1][0].seq if self._rows else -1

    def add(self, events: Iterable[Any], shown: bool = True) -> int:
        """Append events (one batch per tick); returns how many rows were added.

        ``shown=False``: the list is out of sight; it is measured and laid out
        when it comes back (``catch_up``)."""
        rows = self._rows
        start = len(rows)
        rows.extend([ev, None] for ev in events)
        added = len(rows) - start
        if not added:
            return 0
        keep = self._filter
        self._visible.extend(i for i in range(start, len(rows)) if keep(rows[i][0]))
        if len(rows) > self.max_rows + self.max_rows // 4:
            self._trim()
        if shown:
            self.catch_up()
        return added

    @property
    def behind(self) -> int:
        """Rows given while out of sight and not yet measured."""
        return len(self._rows) - self._measured

    def catch_up(self) -> None:
        """Measure the rows given since the last time, and lay the list out for them."""
        if self._measured == len(self._rows):
            return
        width = self._width
        visible = self._visible
        k = len(visible) - 1
        while k >= 0 and visible[k] >= self._measured:
            width = max(width, len(self._text(visible[k])))
            k -= 1
        self._width = width
        self._measured = len(self._rows)
        self._update_size()

    def _trim(self) -> None:
        drop = len(self._rows) - self.max_rows
        old_cursor_row = self._visible[self.cursor] if self.cursor is not None and self._visible else None
        del self._rows[:drop]
        self._measured = max(0, self._measured - drop)
        self._visible = [i - drop for i in self._visible if i >= drop]
        if old_cursor_row is not None:
            self._place_cursor(old_cursor_row - drop)

    def _place_cursor(self, row: int) -> None:
        """Put the cursor on the visible row at or after data row ``row``."""
        if not self._visible:
            self.cursor = None
            return
        for k, i in enumerate(self._visible):
            if i >= row:
                self.cursor = k
                return
        self.cursor = len(self._visible) - 1

    def set_filter(self, keep: Callable[[Any], bool]) -> None:
        row = self._visible[self.cursor] if self.cursor is not None and self._visible else None
        self._filter = keep
        self._visible = [i for i, (ev, _) in enumerate(self._rows) if keep(ev)]
        self._width = max((len(self._text(i)) for i in self._visible), default=0)
        self._measured = len(self._rows)
        if row is not None and not self.follow:
            self._place_cursor(row)
        else:
            self.cursor = None
        self._update_size()

    def clear(self) -> None:
        self._rows.clear()
        self._visible.clear()
        self._measured = 0
        self.cursor = None
        self.follow = True
        self._width = 0
        self._update_size()

    def _update_size(self) -> None:
        size = Size(self._width + 1, len(self._visible))
        if size != self.virtual_size:
            # The list's region is set by the stylesheet, not by its rows: only the size it
            # scrolls over changes, so set that and update the scrollbars, without the layout
            # of the whole screen that assigning ``virtual_size`` asks for (15-20 ms at
            # 200x50). A scrollbar that appears or goes still lays the screen out (its own
            # reactive asks for it); a list not yet laid out gets its scrollbars then.
            self.set_reactive(EventList.virtual_size, size)    # type: ignore[arg-type]
            self._scroll_update(size)
        if self.follow:
            # Now, against the size the list has; and again after the next refresh, when a
            # scrollbar that has just appeared may have taken a row.
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def on_resize(self) -> None:
        # A pane shown again (tabs) or resized keeps showing the newest rows.
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_show(self) -> None:
        if self.follow:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    # -- drawing --------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        base = self.rich_style
        if index >= len(self._visible):
            return Strip.blank(width, base)
        i = self._visible[index]
        ev = self._rows[i][0]
        text = self._text(i)
        style = base + self.get_component_rich_style(KIND_CLASS.get(ev.kind, "eventlist--other"),
                                                     partial=True)
        if index == self.cursor:
            style += self.get_component_rich_style("eventlist--cursor", partial=True)
        strip = Strip([Segment(text, style)], len(text))
        return strip.crop_extend(scroll_x, scroll_x + width, style if index == self.cursor else base)

    # -- keys and mouse ----------------------------------------------------------
    def _move_to(self, k: int) -> None:
        if not self._visible:
            return
        k = max(0, min(len(self._visible) - 1, k))
        self.cursor = k
        self.follow = k == len(self._visible) - 1
        self.scroll_to_region_row(k)
        self.refresh()
        self.post_message(self.Selected(self, self.selected_event))

    def scroll_to_region_row(self, k: int) -> None:
        top = self.scroll_offset.y
        height = max(1, self.scrollable_content_region.height)
        if k < top:
            self.scroll_to(y=k, animate=False, immediate=True)
        elif k >= top + height:
            self.scroll_to(y=k - height + 1, animate=False, immediate=True)

    def select_event(self, ev: Any) -> bool:
        """Put the cursor on ``ev`` (by its sequence number) and explain it; False if not shown."""
        seq = ev.seq
        for k in range(len(self._visible) - 1, -1, -1):
            if self._rows[self._visible[k]][0].seq == seq:
                self._move_to(k)
                return True
        return False

    def action_cursor(self, delta: int) -> None:
        if self.cursor is None:
            self._move_to(len(self._visible) - 1 if delta < 0 else len(self._visible) - 1)
        else:
            self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        height = max(1, self.scrollable_content_region.height)
        start = self.cursor if self.cursor is not None else len(self._visible) - 1
        self._move_to(start + direction * height)

    def action_first(self) -> None:
        self._move_to(0)

    def action_last(self) -> None:
        self._move_to(len(self._visible) - 1)

    def action_select(self) -> None:
        if self.cursor is None:
            self.action_last()
        elif self.selected_event is not None:
            self.post_message(self.Selected(self, self.selected_event))

    def action_travel(self) -> None:
        if self.selected_event is not None:
            self.post_message(self.Travel(self, self.selected_event))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        k = self.scroll_offset.y + offset.y
        if 0 <= k < len(self._visible):
            self._move_to(k)
            if event.chain >= 2:
                self.action_travel()

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self.follow = False

    def on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        if self.scroll_offset.y >= self.max_scroll_y - 1 and (
                self.cursor is None or self.cursor == len(self._visible) - 1):
            self.follow = True
