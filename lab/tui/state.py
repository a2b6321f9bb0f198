"""Plain state behind the screen: command history, log filters, layout choice.

Widgets render these and change them through their methods; nothing here
imports Textual, so it is tested without a screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

ALL = "all"

#: Kinds shown in the hypercall log and the device I/O log, in filter-cycle order. The
#: hypercall log also shows domains' lives (created, paused, shut down, crashed, destroyed).
CALL_KINDS = ("hypercall", "vmexit", "trap", "syscall", "sysret", "domain")
IO_KINDS = ("ioport", "mmio", "ioreq", "ring_io", "evtchn", "grant", "xenstore")
#: Rows each event log keeps; older rows scroll out unseen (so no more need reach the screen).
LOG_ROWS = 2000


class History:
    """Command-line history: ``older``/``newer`` walk it as up and down do in a shell."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self.items: list[str] = []
        self._pos: int | None = None     # index into items while browsing
        self._draft = ""

    def add(self, line: str) -> None:
        line = line.rstrip()
        self._pos = None
        if not line or (self.items and self.items[-1] == line):
            return
        self.items.append(line)
        del self.items[:-self.limit]

    def older(self, current: str) -> str | None:
        if not self.items:
            return None
        if self._pos is None:
            self._draft = current
            self._pos = len(self.items)
        if self._pos == 0:
            return self.items[0]
        self._pos -= 1
        return self.items[self._pos]

    def newer(self) -> str | None:
        if self._pos is None:
            return None
        self._pos += 1
        if self._pos >= len(self.items):
            self._pos = None
            return self._draft
        return self.items[self._pos]


@dataclass
class LogFilter:
    """Which events a log pane shows: its kinds, narrowed to one kind and/or one domain."""
    kinds: tuple[str, ...]
    kind: str = ALL
    dom: Any = ALL                     # ALL, None (Xen itself, or the bare machine) or a domain id
    doms_seen: list[Any] = field(default_factory=list)
    #: On a Xen host, events with no domain are Xen's own ("Xen"); on bare metal the machine's ("bare").
    xen: bool = False
    #: Domain names by id, so ``filter domain pv-guest`` works and the filter line names it.
    names: dict[int, str] = field(default_factory=dict)

    def accepts_kind(self, kind: str) -> bool:
        return kind in self.kinds

    def keep(self, ev: Any) -> bool:
        if self.kind != ALL and ev.kind != self.kind:
            return False
        if self.dom != ALL and ev.dom != self.dom:
            return False
        return True

    def saw(self, events: Iterable[Any]) -> None:
        for ev in events:
            if ev.dom not in self.doms_seen:
                self.doms_seen.append(ev.dom)

    def cycle_kind(self) -> str:
        order = [ALL, *self.kinds]
        self.kind = order[(order.index(self.kind) + 1) % len(order)]
        return self.kind

    def cycle_dom(self) -> Any:
        order = [ALL, *sorted(self.doms_seen, key=lambda d: -1 if d is None else d)]
        i = order.index(self.dom) if self.dom in order else 0
        self.dom = order[(i + 1) % len(order)]
        return self.dom

    def set_kind(self, kind: str) -> None:
        if kind != ALL and kind not in self.kinds:
            raise ValueError(f"this log shows {', '.join(self.kinds)}; not '{kind}'")
        self.kind = kind

    def set_dom(self, text: str) -> None:
        """``all``; ``xen`` or ``bare`` (events with no domain); a domain id like ``1`` or ``d1``; or a name."""
        t = text.strip().lower()
        by_name = {name.lower(): dom for dom, name in self.names.items()}
        if t == ALL:
            self.dom = ALL
        elif t in ("bare", "native", "none", "-", "xen"):
            self.dom = None
        elif t in by_name:
            self.dom = by_name[t]
        else:
            try:
                self.dom = int(t[1:] if t.startswith("d") else t, 0)
            except ValueError:
                nobody = "'xen'" if self.xen else "'bare'"
                raise ValueError(f"a domain is 'all', {nobody}, a number or a domain's name, "
                                 f"not '{text}'") from None

    def dom_text(self, dom: Any) -> str:
        if dom == ALL:
            return "all"
        if dom is None:
            return "Xen" if self.xen else "bare"
        name = self.names.get(dom)
        return f"d{dom} {name}" if name else f"d{dom}"

    def describe(self) -> str:
        return f"kind {self.kind} · domain {self.dom_text(self.dom)}"


#: Layout by terminal size: tabs on small screens, a grid on large ones.
WIDE_MIN = (160, 42)
MEDIUM_MIN = (120, 32)


def layout_for(width: int, height: int) -> str:
    if width >= WIDE_MIN[0] and height >= WIDE_MIN[1]:
        return "wide"
    if width >= MEDIUM_MIN[0] and height >= MEDIUM_MIN[1]:
        return "medium"
    return "narrow"


def console_choice(view: Any, name: str, kind: str | None) -> tuple[str, str]:
    """What the console pane shows for the focused guest, and its title.

    Attached to one of the guest's consoles (``console -t pv|serial DOM``, as xl console -t
    picks), that console alone; otherwise everything the guest printed on every console it
    has (its PV console, hvc0, and its device model's serial port), with the title naming
    them, so nothing a guest writes to a secondary console is out of sight.
    """
    consoles = dict(view.consoles)
    where = f"{name} (d{view.focus_dom})"
    if kind is not None and kind in consoles:
        others = [k for k in consoles if k != kind]
        also = f" · also {', '.join(others)}" if others else ""
        return consoles[kind], f"{kind} console of {where}{also}"
    if len(consoles) > 1:
        return view.console, f"console of {where} · every console: {', '.join(consoles)}"
    return view.console, f"console of {where}"
