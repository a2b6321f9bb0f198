"""The hypercall log and the device I/O pane: event lists with filters and explanations."""

from __future__ import annotations

from typing import Any, Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Log, Static

from ..explain import describe_event
from ..state import CALL_KINDS, IO_KINDS, LogFilter
from .eventlist import EventList
from .shown import ShownInOneFrame
from .text import Text as TextView


class ConsoleLog(ShownInOneFrame, Log):
    """The focused guest's console output (a plain log, shown in one frame with its pane)."""


class EventPane(Vertical):
    """A filter line, the event list, and what the selected event means."""

    KINDS: tuple[str, ...] = ()
    HINT = ""
    BINDINGS = [
        # In the Footer while the log has the focus, and on the pane's filter line.
        Binding("k", "cycle_kind", "Kind", id="log.kind", tooltip="Show one kind of event at a time"),
        Binding("d", "cycle_domain", "Domain", id="log.domain", tooltip="Show one domain's events at a time"),
        Binding("x", "clear", "Clear", id="log.clear",
                tooltip="Clear this log, after a second x (the trace keeps everything)"),
    ]

    def __init__(self, max_rows: int = 2000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter = LogFilter(self.KINDS)
        self.max_rows = max_rows
        self.images: dict[Any, tuple[Any, ...]] = {}      # by domain, from the latest StateView
        #: x was pressed once: the next x clears, any other key keeps the log.
        self.clear_armed = False
        self._title = ""

    def compose(self) -> ComposeResult:
        yield Static(self._filter_text(), classes="log-filter")
        yield EventList(self.max_rows, classes="log-list")
        with VerticalScroll(classes="log-detail"):
            yield Static(Content.styled(self.HINT, "$text-muted"), classes="log-detail-text")

    @property
    def list(self) -> EventList:
        return self.query_one(EventList)

    def _filter_text(self) -> Content:
        return Content.assemble(("filter ", "$text-muted"), (self.filter.describe(), "$text-accent"),
                                ("   k kind · d domain · x clear · enter explains", "$text-muted"))

    def add(self, events: list[Any], shown: bool = True) -> None:
        """New events; ``shown=False`` while the pane is out of sight (behind a tab)."""
        self.filter.saw(events)
        self.list.add(events, shown)

    def set_host(self, xen: bool, names: dict[int, str]) -> None:
        """What the machine is: on a Xen host events with no domain are Xen's; domains have names."""
        changed = xen != self.filter.xen or names != self.filter.names
        self.filter.xen = self.list.xen = xen
        self.filter.names = dict(names)
        if changed:
            self.query_one(".log-filter", Static).update(self._filter_text())

    def apply_filter(self) -> None:
        self.list.set_filter(self.filter.keep)
        self.query_one(".log-filter", Static).update(self._filter_text())
        # The pane's title says when it shows only part of the log, whatever has the focus.
        self._title = self._title or str(self.border_title or "")
        narrowed = self.filter.kind != "all" or self.filter.dom != "all"
        self.border_title = f"{self._title} ({self.filter.describe()})" if narrowed else self._title

    def action_cycle_kind(self) -> None:
        self.filter.cycle_kind()
        self.apply_filter()

    def action_cycle_domain(self) -> None:
        self.filter.cycle_dom()
        self.apply_filter()

    def action_clear(self) -> None:
        """The first x asks, the second clears: a stray letter never empties the log."""
        if not self.clear_armed:
            self.clear_armed = True
            self.query_one(".log-filter", Static).update(
                Content.styled("clear this log? x again clears it, any other key keeps it", "$text-warning bold"))
            return
        self.clear()

    def clear(self) -> None:
        self.clear_armed = False
        self.list.clear()
        self.query_one(".log-filter", Static).update(self._filter_text())
        self.query_one(".log-detail-text", Static).update(Content.styled(self.HINT, "$text-muted"))

    def on_key(self, event: Any) -> None:
        if self.clear_armed and event.key != "x":
            self.clear_armed = False
            self.query_one(".log-filter", Static).update(self._filter_text())

    def on_event_list_selected(self, message: EventList.Selected) -> None:
        message.stop()
        self.explain(message.event)

    def explain(self, ev: Any) -> None:
        if ev is None:
            return
        # Only the event's own domain's images: another domain's addresses mean nothing here.
        lines = describe_event(ev, self.images.get(ev.dom, ()), self.filter.xen, self.filter.names)
        styles = ["bold", "$text-accent", "", "$text-muted"]
        parts = [(line + "\n", styles[min(i, 3)]) for i, line in enumerate(lines)]
        detail = self.query_one(".log-detail-text", Static)
        detail.update(Content.assemble(*parts).rstrip())
        self.query_one(".log-detail", VerticalScroll).scroll_home(animate=False)


class CallsPane(EventPane):
    """Hypercalls, VM exits, traps and system calls as they happen."""

    KINDS = CALL_KINDS
    HINT = "Select an event (up/down, enter or click) to see what it means and which line caused it."


class DevicePane(EventPane):
    """Port and memory-mapped I/O, ioreqs, PV rings, event channels, grants, xenstore; the console."""

    KINDS = IO_KINDS
    HINT = "Select an I/O event to see what it means."

    def __init__(self, max_rows: int = 2000, console_lines: int = 500, **kwargs: Any) -> None:
        super().__init__(max_rows, **kwargs)
        self.console_lines = console_lines
        self._console_key: tuple | None = None
        self._console_len = 0

    def compose(self) -> ComposeResult:
        yield TextView("", classes="io-state")
        yield from super().compose()
        yield Static(Content.styled("console", "bold"), classes="console-title")
        yield ConsoleLog(max_lines=self.console_lines, classes="console-log")

    def show_io(self, text: str) -> None:
        """The focused domain's rings, event channels and grants (the ``io`` command's text)."""
        if text != getattr(self, "_io_text", None):
            self._io_text = text
            box = self.query_one(".io-state", TextView)
            if box.display != bool(text):
                box.display = bool(text)
            box.show(Content(text))           # a layout only when the text's shape changes

    def show_console(self, key: tuple, text: str, title: str = "console") -> None:
        """Append what is new in the focused domain's console output."""
        log = self.query_one(".console-log", Log)
        if key != self._console_key or len(text) < self._console_len:
            log.clear()
            self._console_key = key
            self._console_len = 0
            self.query_one(".console-title", Static).update(Content.styled(title, "bold"))
        new = text[self._console_len:]
        if new:
            log.write(new)
            self._console_len = len(text)

    @property
    def console_text(self) -> str:
        return "\n".join(self.query_one(".console-log", Log).lines)


def route(events: Iterable[Any], kinds: tuple[str, ...], limit: int) -> list[Any]:
    """The last ``limit`` events of ``kinds`` (older ones would scroll away unseen)."""
    out = [ev for ev in events if ev.kind in kinds]
    return out[-limit:]
