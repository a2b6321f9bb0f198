"""Event patterns such as ``vmexit:IO_INSTRUCTION`` or ``hypercall:mmu_update``.

Used by ``run --until``, breakpoints in the TUI and the shell, and lesson
checks, so all of them understand the same spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..trace import KINDS, Event

#: Which field a pattern's NAME is matched against, per kind.
NAME_FIELD = {"hypercall": "name", "vmexit": "reason", "trap": "mnemonic", "domain": "op",
              "pagetable": "op", "tlb": "op", "evtchn": "op", "grant": "op", "xenstore": "op",
              "ring_io": "op", "sched": "op", "halt": "reason", "ioport": "port", "mmio": "addr",
              "ioreq": "port", "msr": "msr", "syscall": "nr", "interrupt": "vector", "console": "text",
              "ring": "to_cpl", "boot": "mode"}


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
        value = ev.data.get(NAME_FIELD.get(self.kind, "name"))
        if value is None:
            return False
        want = self.name
        if isinstance(value, int):
            try:
                return value == int(want, 0)
            except ValueError:
                return False
        if self.kind == "console":
            return want in value
        if self.kind == "trap" and not want.startswith("#") and want.upper() == value.lstrip("#"):
            return True
        return str(value).lower() == want.lower()


def parse_spec(text: str) -> EventSpec:
    kind, _, name = text.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise UserError(f"unknown event kind '{kind}' (known: {known})")
    return EventSpec(kind, name.strip() or None)
