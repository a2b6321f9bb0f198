"""Event patterns such as ``vmexit:IO_INSTRUCTION`` or ``hypercall:mmu_update``.

Used by ``run --until``, breakpoints in the TUI and the shell, and lesson
checks, so all of them understand the same spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..trace import KINDS, NAME_FIELD, Event, name_matches  # noqa: F401  (NAME_FIELD: for the screen)


@dataclass(frozen=True)
class EventSpec:
    kind: str
    name: str | None = None

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"

    def matches(self, ev: Event) -> bool:
        if ev.kind != self.kind:
            return False
        if self.name is None:
            return True
        return name_matches(ev, self.name)


def parse_spec(text: str) -> EventSpec:
    kind, _, name = text.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise UserError(f"unknown event kind '{kind}' (known: {known})")
    return EventSpec(kind, name.strip() or None)
