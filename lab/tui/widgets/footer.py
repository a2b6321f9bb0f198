"""The key bar: the keys that work now, drawn as one line of text.

It looks as Textual's compact Footer does (keys, groups such as "f3f4 Speed",
the palette key on the right), but it is a single widget: when the focus moves
to a pane with keys of its own, the bar draws its new text in place. The stock
Footer mounts a widget per key and rebuilds them all on such a move, which lays
the whole screen out again (measured: about two thirds of the cost of moving
between panes on a 200x50 screen). A click on a key presses it; hovering one
shows its tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from textual import events
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget

KEY = "$footer-key-foreground on $footer-key-background bold"
DESCRIPTION = "$footer-description-foreground on $footer-description-background"
GROUP_LABEL = DESCRIPTION
PALETTE_EDGE = "▏"


@dataclass(frozen=True)
class KeyItem:
    """One key as the bar shows it."""
    key: str                 # what pressing it sends
    display: str             # how it is written (f1, ^n)
    description: str         # "" for a key of a group: the group's label follows the group
    enabled: bool
    tooltip: str


@dataclass(frozen=True)
class KeyGroupItem:
    """Keys shown together under one label (f3f4 Speed)."""
    keys: tuple[KeyItem, ...]
    label: str


def key_items(screen: Screen) -> tuple[tuple[Any, ...], KeyItem | None]:
    """(the keys and groups to show, in order; the palette key or None), as Textual's
    Footer chooses them: shown bindings, one per action, groups of more than one key."""
    app = screen.app
    by_action: dict[str, tuple[Any, bool, str]] = {}
    for _node, binding, enabled, tooltip in screen.active_bindings.values():
        if binding.show and binding.action not in by_action:
            by_action[binding.action] = (binding, enabled, tooltip)
    items: list[Any] = []
    for group, members in groupby(by_action.values(), lambda m: m[0].group):
        members_list = list(members)
        if group is not None and len(members_list) > 1:
            keys = tuple(KeyItem(b.key, app.get_key_display(b), "", enabled, tooltip or b.description)
                         for b, enabled, tooltip in members_list)
            items.append(KeyGroupItem(keys, group.description))
        else:
            items += [KeyItem(b.key, app.get_key_display(b), b.description, enabled, tooltip)
                      for b, enabled, tooltip in members_list]
    palette = None
    if app.ENABLE_COMMAND_PALETTE:
        found = screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
        if found is not None:
            _node, b, enabled, tooltip = found
            palette = KeyItem(b.key, app.get_key_display(b), b.description, enabled,
                              b.tooltip or b.description)
    return tuple(items), palette


def _key_width(item: KeyItem) -> int:
    return len(item.display) + (1 + len(item.description) if item.description else 0)


def _draw_key(item: KeyItem, x: int, parts: list[Any], spans: list[tuple[int, int, KeyItem]]) -> int:
    """Add ``item`` at cell ``x`` (its key, then its description); the cell after it."""
    dim = "" if item.enabled else " dim"
    parts.append((item.display, KEY + dim))
    if item.description:
        parts.append((" " + item.description, DESCRIPTION + dim))
    end = x + _key_width(item)
    spans.append((x, end, item))
    return end


class KeyFooter(Widget, can_focus=False):
    """The screen's key bar (styled in app.tcss)."""

    ALLOW_SELECT = False
    #: Below 80 columns the palette key is left out, so the keys do not run under it.
    show_command_palette = reactive(True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._items: tuple[Any, ...] = ()
        self._palette: KeyItem | None = None
        #: (first cell, cell after the last, key) of every key as last drawn.
        self._spans: list[tuple[int, int, KeyItem]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen) -> None:
        shown = key_items(screen)
        if shown != (self._items, self._palette):
            self._items, self._palette = shown
            self.refresh()

    def watch_show_command_palette(self) -> None:
        self.refresh()

    @property
    def keys(self) -> list[tuple[int, int, KeyItem]]:
        """(first cell, cell after the last, key) of every key on the bar as last drawn."""
        return list(self._spans)

    def render(self) -> Content:
        width = self.size.width
        palette = self._palette if self.show_command_palette else None
        room = width
        if palette is not None:
            room -= len(PALETTE_EDGE) + _key_width(palette)
        parts: list[Any] = []
        spans: list[tuple[int, int, KeyItem]] = []
        x = 0
        # Whole keys and groups only, as many as fit before the palette key: on a narrow
        # screen the last ones are left out rather than cut in half.
        for chunk in self._items:
            keys = chunk.keys if isinstance(chunk, KeyGroupItem) else (chunk,)
            end = x + sum(_key_width(k) for k in keys)
            if isinstance(chunk, KeyGroupItem):
                end += 1 + len(chunk.label)
            if end + 1 > room:          # the key and the space after it
                break
            for key in keys:
                x = _draw_key(key, x, parts, spans)
            if isinstance(chunk, KeyGroupItem):
                parts += [(" ", ""), (chunk.label, GROUP_LABEL)]
                x += 1 + len(chunk.label)
            parts.append((" ", ""))
            x += 1
        if palette is not None:
            start = width - len(PALETTE_EDGE) - _key_width(palette)
            parts += [(" " * max(0, start - x), ""), (PALETTE_EDGE, "$foreground 20%")]
            _draw_key(palette, start + len(PALETTE_EDGE), parts, spans)
        self._spans = spans
        return Content.assemble(*parts)

    def _key_at(self, x: int) -> KeyItem | None:
        return next((item for start, end, item in self._spans if start <= x < end), None)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        item = self._key_at(event.x)
        if item is None:
            return
        if item.enabled:
            self.app.simulate_key(item.key)
        else:
            self.app.bell()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        item = self._key_at(event.x)
        tooltip = item.tooltip if item is not None else None
        if tooltip != self.tooltip:
            self.tooltip = tooltip
