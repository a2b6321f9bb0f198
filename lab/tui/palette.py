"""The command palette's lab provider: every key action and every command."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from ..session.commands import REGISTRY
from .actions import ACTIONS

#: A usage with an argument in capitals outside brackets needs the learner to type it.
_REQUIRED = re.compile(r"^\S+\s+[A-Z]")


def palette_entries() -> list[tuple[str, str, str, str]]:
    """(title, help, kind, value): kind 'action' runs an app action, 'command' a command line."""
    out: list[tuple[str, str, str, str]] = []
    for a in ACTIONS:
        key = a.key.upper() if a.key.startswith("f") else a.key
        out.append((f"{a.label} ({key})", a.tooltip, "action", a.action))
    for cmd in sorted(REGISTRY.values(), key=lambda c: (c.screen, c.name)):
        out.append((cmd.usage, cmd.summary, "command", cmd.usage))
    return out


def needs_argument(usage: str) -> bool:
    return bool(_REQUIRED.match(usage))


def highlight(matcher: Matcher, text: str) -> Content:
    """The matched letters of ``text`` highlighted; the text itself is never read as markup
    (usages such as ``walk [ADDR]`` are full of brackets)."""
    content = Content(text)
    _, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class LabCommands(Provider):
    """Actions (with their keys) and lab commands; commands needing an argument open the command line."""

    def _callback(self, kind: str, value: str) -> Any:
        app: Any = self.app
        if kind == "action":
            return partial(app.run_action, value)
        name = value.split()[0]
        if needs_argument(value):
            return partial(app.prefill_command, name + " ")
        return partial(app.submit_command, name)

    async def discover(self) -> Hits:
        for title, help_text, kind, value in palette_entries():
            yield DiscoveryHit(Content(title), self._callback(kind, value), text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, kind, value in palette_entries():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, highlight(matcher, title), self._callback(kind, value), text=title,
                          help=help_text)
