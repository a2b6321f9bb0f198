"""The command line: an Input with history and completion of command names."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import Reactive
from textual.suggester import Suggester
from textual.widgets import Input

from ..state import History


class CommandSuggester(Suggester):
    """Completes the first word from the command names, and event kinds after ``until``/``break``."""

    def __init__(self, names: Iterable[str], kinds: Iterable[str] = (),
                 domains: Callable[[], Iterable[str]] = lambda: ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = sorted(set(names))
        self.kinds = sorted(set(kinds))
        #: The machine's domain names as they are now (domains come and go).
        self.domains = domains

    async def get_suggestion(self, value: str) -> str | None:
        return suggest(value, self.names, self.kinds, list(self.domains()))


#: Commands whose argument is an event pattern, KIND or KIND:NAME.
SPEC_COMMANDS = ("until", "break", "events")


def suggest(value: str, names: list[str], kinds: list[str], domains: Iterable[str] = ()) -> str | None:
    """The completed line for what is typed so far, or None.

    A command name; after ``until``/``break``/``events`` an event kind, after
    ``KIND:`` one of Xen's names for that kind (``hypercall:mmu_u`` ->
    ``hypercall:mmu_update``), and after ``@`` one of the machine's domains
    (``trap@hos`` -> ``trap@hostile``). A pattern is one word: nothing is
    inserted inside it.
    """
    if not value or value != value.lstrip():
        return None
    words = value.split(" ")
    if len(words) == 1:
        for n in names:
            if n.startswith(value) and n != value:
                return n
        return None
    if len(words) == 2 and words[0] in SPEC_COMMANDS and "@" in words[1]:
        pattern, _, dom = words[1].rpartition("@")
        if dom and "," not in dom:
            for d in sorted(domains):
                if d.startswith(dom) and d != dom:
                    return f"{words[0]} {pattern}@{d}"
        return None
    if len(words) == 2 and words[0] in SPEC_COMMANDS and words[1]:
        kind, colon, name = words[1].partition(":")
        if not colon:
            for k in kinds:
                if k.startswith(kind) and k != kind:
                    return f"{words[0]} {k}"
            return None
        if kind in kinds and name:
            from ...session.eventspec import known_names
            for n in sorted(known_names(kind) or ()):
                if n.lower().startswith(name.lower()) and n != name:
                    return f"{words[0]} {kind}:{n}"
    return None


class CommandLine(Input):
    """Enter runs the line; up/down walk the history; tab accepts the suggestion."""

    #: Input sets its virtual size on every key, and Widget's asks for a layout of the
    #: whole screen when it changes. The command line's size is fixed by the stylesheet
    #: (one row, the width left beside the prompt), so a key needs a repaint only.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    PLACEHOLDER = "command: step, until trap:#PF, walk, regs, help ...  (F1 help)"

    BINDINGS = [
        Binding("up", "history(-1)", "Older", show=False, id="cmd.older", tooltip="Previous command"),
        Binding("down", "history(1)", "Newer", show=False, id="cmd.newer", tooltip="Next command"),
        Binding("tab", "complete", "Complete", show=False, id="cmd.complete",
                tooltip="Accept the suggested completion"),
    ]

    def __init__(self, names: Iterable[str], kinds: Iterable[str] = (),
                 domains: Callable[[], Iterable[str]] = lambda: (), **kwargs: Any) -> None:
        super().__init__(placeholder=self.PLACEHOLDER,
                         suggester=CommandSuggester(names, kinds, domains), **kwargs)
        self.history = History()

    def action_history(self, direction: int) -> None:
        text = self.history.older(self.value) if direction < 0 else self.history.newer()
        if text is not None:
            self.value = text
            self.cursor_position = len(text)

    def action_complete(self) -> None:
        if self._suggestion and self._suggestion != self.value:
            # A command name is followed by its arguments; an event kind may be followed by
            # ':NAME', so no space goes after it.
            self.value = self._suggestion + ("" if " " in self._suggestion else " ")
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()
