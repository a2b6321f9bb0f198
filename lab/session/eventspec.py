"""Event patterns such as ``vmexit:IO_INSTRUCTION`` or ``hypercall:mmu_update``.

Used by ``run --until``, breakpoints in the TUI and the shell, and lesson
checks, so all of them understand the same spelling.
"""

from __future__ import annotations

import difflib
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


#: Kinds whose name is a number (a port, an address, an MSR, a system call, a vector, a ring).
NUMERIC_NAMES = {"ioport": "a port", "mmio": "an address", "ioreq": "a port", "msr": "an MSR number",
                 "syscall": "a system call number", "interrupt": "a vector", "ring": "a ring (0-3)"}


def known_names(kind: str) -> set[str] | None:
    """The names an event of ``kind`` can carry, from Xen's and Intel's tables; None when open."""
    if kind == "hypercall":
        from ..xen import abi
        return set(abi.HYPERCALL_BY_NAME)
    if kind == "vmexit":
        from ..hw.vmx import EXIT_REASONS, exit_code
        from ..xen import abi
        names = set(EXIT_REASONS.values()) | set(abi.SVM_EXIT_CODES.values())
        return names | {exit_code("amd", r)[0] for r in EXIT_REASONS.values() if r != "EXCEPTION_NMI"}
    if kind == "trap":
        from ..hw.x86 import X86_EXC_MNEMONICS
        return {m.lower() for m in X86_EXC_MNEMONICS.values()} | {m.lstrip("#").lower() for m in X86_EXC_MNEMONICS.values()} | \
            {"syscall", "event upcall"}
    return None


_NAMES_ARE = {"hypercall": "hypercalls go by Xen's names, e.g. mmu_update, event_channel_op",
              "vmexit": "exits go by VMX reason, e.g. IO_INSTRUCTION, or by SVM code on an AMD host, e.g. IOIO",
              "trap": "traps go by x86 mnemonic, e.g. #PF, #GP, #UD"}


def _check_name(kind: str, name: str) -> None:
    if kind in NUMERIC_NAMES:
        try:
            int(name, 0)
        except ValueError:
            raise UserError(f"{kind} events are named by {NUMERIC_NAMES[kind]}, a number: not '{name}' "
                            f"(e.g. {kind}:0x10)") from None
        return
    names = known_names(kind)
    if names is None:
        return
    if kind == "trap" and name.lower().startswith(("int ", "vector ")):
        return                      # a software interrupt, or a vector with no mnemonic
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered:
        return
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(lowered[c] for c in close)}?" if close else f" ({_NAMES_ARE[kind]})"
    raise UserError(f"no {kind} '{name}'{hint}")


class AnyEvent:
    """The pattern every event matches (``until any``: step to the next event)."""

    def matches(self, ev: Event) -> bool:
        return True

    def __str__(self) -> str:
        return "any"


class AnyOf:
    """Matches when one of several patterns does (``until hypercall,vmexit``)."""

    def __init__(self, *specs: EventSpec) -> None:
        self.specs = specs

    def matches(self, ev: Event) -> bool:
        return any(s.matches(ev) for s in self.specs)

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.specs)


def parse_until(text: str) -> EventSpec | AnyOf | AnyEvent:
    """What ``until`` takes: ``any``, one pattern, or patterns separated by commas."""
    if text == "any":
        return AnyEvent()
    parts = [p for p in text.split(",") if p]
    if len(parts) > 1:
        return AnyOf(*(parse_spec(p) for p in parts))
    return parse_spec(text)


def parse_spec(text: str) -> EventSpec:
    """``KIND[:NAME]``, with the kind and the name checked against the lab's and Xen's tables."""
    kind, _, name = text.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, list(KINDS), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        known = ", ".join(sorted(KINDS))
        raise UserError(f"unknown event kind '{kind}' ({hint}known: {known})")
    name = name.strip()
    if name:
        _check_name(kind, name)
    return EventSpec(kind, name or None)
