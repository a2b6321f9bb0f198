"""The lab's main screen: the panes, the command line and the status bar, laid out by size.

On a small terminal the panes are tabs, one at a time; on a medium one the
domains, the page tables and the hypercall log (or, one key away, the device
I/O or the output) sit beside the CPU; on a large one every pane is on screen
in a grid. The same widgets move between layouts through CSS
classes, so nothing is rebuilt and no state is lost.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from textual import events
from textual.app import ComposeResult
from textual.containers import Container, Horizontal
from textual.content import Content
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static, Tab, Tabs

from ..state import layout_for
from ..widgets.commandline import CommandLine
from ..widgets.cpu import CpuPane
from ..widgets.domains import HINT as DOMAINS_HINT
from ..widgets.domains import DomainTree
from ..widgets.footer import KeyFooter
from ..widgets.logs import CallsPane, DevicePane
from ..widgets.output import OutputLog
from ..widgets.pages import PagesPane
from ..widgets.shown import ShownInOneFrame
from ..widgets.tabs import PaneTabs
from ..widgets.text import Text

#: (id, tab title, border title) in grid order.
PANES = (
    ("domains", "Domains", "Domains & vCPUs"),
    ("cpu", "CPU", "CPU"),
    ("pages", "Pages", "Page tables & TLB"),
    ("calls", "Hypercalls", "Hypercalls, exits, traps, syscalls, domains"),
    ("devio", "Device I/O", "Device I/O & console"),
    ("output", "Output", "Command output"),
)
PANE_IDS = tuple(p[0] for p in PANES)
#: In the medium layout these are always on screen; the others share one slot, chosen with the tabs.
MEDIUM_FIXED = ("domains", "cpu", "pages")


class MainScreen(Screen[None]):
    """Its styles (lab/tui/main.tcss) are loaded by the app, as this is the default screen."""

    AUTO_FOCUS = "#cmd"

    #: Screen's own ``focused`` repaints the whole screen on every focus change.
    #: The widgets that gain and lose the focus, and the panes around them
    #: (``mark_focused_pane``), repaint themselves, so nothing else needs it.
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init__(self, command_names: list[str], event_kinds: list[str],
                 domains: Callable[[], Iterable[str]] = lambda: (),
                 composed: Callable[[], None] = lambda: None,
                 shown: Callable[[str], None] = lambda pid: None) -> None:
        super().__init__()
        self._names = command_names
        self._kinds = event_kinds
        self._domains = domains
        #: Called once the panes are mounted, before the first frame: what the screen has
        #: to show by then (a machine booted while it loaded) is on that frame.
        self._composed = composed
        #: Called with a pane's id when it comes into sight (a tab, a wider layout).
        self._shown = shown
        self.layout_name = ""
        self.active_pane = "cpu"
        self.focused_pane: Widget | None = None

    def compose(self) -> ComposeResult:
        # The layout's classes before anything is styled: set once mounted, they would
        # style every widget a second time and lay the screen out again.
        self._layout_classes(layout_for(self.app.size.width, self.app.size.height))
        yield Header(icon="≡")
        yield PaneTabs(*[Tab(title, id=f"tab-{pid}") for pid, title, _ in PANES], active="tab-cpu", id="pane-tabs")
        with Container(id="panes"):
            yield DomainTree(id="domains", classes="pane")
            yield CpuPane(id="cpu", classes="pane")
            yield PagesPane(id="pages", classes="pane")
            yield CallsPane(id="calls", classes="pane")
            yield DevicePane(id="devio", classes="pane")
            yield OutputLog(id="output", classes="pane", min_width=20)
        yield Static("", id="message")
        with Horizontal(id="cmdbar"):
            yield Static("xen>", id="prompt")
            yield CommandLine(self._names, self._kinds, domains=self._domains, id="cmd", compact=True)
        yield Text("", id="status")
        yield KeyFooter()

    def on_mount(self) -> None:
        for pid, _, border in PANES:
            self.query_one(f"#{pid}").border_title = border
        self.query_one(DomainTree).border_subtitle = DOMAINS_HINT
        self.apply_layout(self.app.size.width, self.app.size.height)
        self.activate(self.active_pane)
        self._composed()

    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout(event.size.width, event.size.height)
        # Below 80 columns the palette hint, docked on the right, would lie over the keys.
        footer = self.query_one(KeyFooter)
        wide_enough = event.size.width >= 80
        if footer.show_command_palette != wide_enough:
            footer.show_command_palette = wide_enough

    # -- layout -----------------------------------------------------------------
    def apply_layout(self, width: int, height: int) -> None:
        name = layout_for(width, height)
        if name == self.layout_name:
            return
        self.layout_name = name
        self._layout_classes(name)
        self.query_one(CpuPane).set_source_radius(3 if name == "narrow" else None)
        tabs = self.query_one(Tabs)
        for pid in MEDIUM_FIXED:
            if name == "medium":
                tabs.hide(f"tab-{pid}")
            else:
                tabs.show(f"tab-{pid}")
        if name == "medium" and self.active_pane in MEDIUM_FIXED:
            self.activate("calls")
        for pid in self.visible_panes():
            self._shown(pid)

    def _layout_classes(self, name: str) -> None:
        for n in ("narrow", "medium", "wide"):
            self.set_class(n == name, f"-{n}")

    def pane(self, pid: str) -> Widget:
        return self.query_one(f"#{pid}")

    def activate(self, pid: str) -> None:
        """Show pane ``pid`` (in the tab layouts) and select its tab."""
        if self.layout_name == "medium" and pid in MEDIUM_FIXED:
            return                          # always on screen in this layout

        self.active_pane = pid
        for other in PANE_IDS:
            pane = self.pane(other)
            if pane.has_class("-active") != (other == pid):
                # The pane alone is restyled (its display): nothing inside it depends on the
                # class, and restyling every widget inside the two panes took a third of a switch.
                pane.set_class(other == pid, "-active", update=False)
                self.app.stylesheet.apply(pane)
                if other == pid and self.layout_name != "wide":
                    # Shown by the next layout, whole: its scrollbars need no frame of their own.
                    for widget in (pane, *pane.query("*")):
                        if isinstance(widget, ShownInOneFrame):
                            widget.coming_into_sight()
        tabs = self.query_one(Tabs)
        if tabs.active != f"tab-{pid}":
            tabs.active = f"tab-{pid}"
        self._shown(pid)

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        # Ignore stale messages: after two quick switches the first one's message
        # arrives when another tab is already active (answering it would loop).
        if event.tab is not None and event.tab.id and event.tab.id == event.tabs.active:
            pid = event.tab.id.removeprefix("tab-")
            if pid != self.active_pane:
                self.activate(pid)

    def visible_panes(self) -> list[str]:
        if self.layout_name == "wide":
            return list(PANE_IDS)
        if self.layout_name == "medium":
            return [*MEDIUM_FIXED, self.active_pane]
        return [self.active_pane]

    def next_pane(self) -> str:
        """Narrow/medium: show the next tab. Wide: move the focus to the next pane."""
        if self.layout_name == "wide":
            current = self.focused
            order = list(PANE_IDS)
            idx = -1
            for i, pid in enumerate(order):
                p = self.pane(pid)
                if current is not None and (current is p or p in current.ancestors):
                    idx = i
            pid = order[(idx + 1) % len(order)]
            self.focus_pane(pid)
            return pid
        order = [p for p in PANE_IDS if not (self.layout_name == "medium" and p in MEDIUM_FIXED)]
        idx = order.index(self.active_pane) if self.active_pane in order else -1
        pid = order[(idx + 1) % len(order)]
        self.activate(pid)
        return pid

    def focus_pane(self, pid: str) -> None:
        pane = self.pane(pid)
        if pane.focusable:
            pane.focus()
            return
        for child in pane.query("*"):
            if child.focusable:
                child.focus()
                return
        pane.focus()

    # -- which pane has the focus -----------------------------------------------
    def set_focus(self, widget: Widget | None, scroll_visible: bool = True, from_app_focus: bool = False) -> None:
        super().set_focus(widget, scroll_visible, from_app_focus)
        # Now rather than when DescendantFocus arrives: the panes repaint in the same
        # frame as the widgets that gained and lost the focus.
        self.mark_focused_pane(self._pane_of(self.focused))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.mark_focused_pane(self._pane_of(self.focused))

    @staticmethod
    def _pane_of(widget: Widget | None) -> Widget | None:
        if widget is None:
            return None
        return next((w for w in widget.ancestors_with_self if w.has_class("pane")), None)

    def mark_focused_pane(self, pane: Widget | None) -> None:
        """Draw ``pane``'s border in the focus colour, and the previous one's as usual.

        Only the two panes themselves are restyled: what is inside them does not
        depend on the class, and restyling it would repaint (and, through the
        scrollbars, lay out) much of the screen on every focus change.
        """
        old = self.focused_pane
        if pane is old:
            return
        self.focused_pane = pane
        for p in (old, pane):
            if p is None or not p.is_attached:
                continue
            p.set_class(p is pane, "-focused", update=False)
            self.app.stylesheet.apply(p)
            p.refresh()
            # Into the frame that answers the key: left to the pane's own turn, its repaint
            # came in a second frame when the pane had focus events of its own to handle.
            p._repaint_required = False
            self._dirty_widgets.add(p)
            self.check_idle()

    def show_message(self, text: str, kind: str = "info") -> None:
        msg = self.query_one("#message", Static)
        first = text.splitlines()[0] if text else ""
        msg.update(Content(first))
        msg.set_class(kind == "err", "-error")

    def cmd(self) -> Any:
        return self.query_one("#cmd", CommandLine)
