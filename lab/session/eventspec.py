"""Event patterns such as ``vmexit:IO_INSTRUCTION`` or ``hypercall:mmu_update@pv-guest``.

Used by ``run --until``, breakpoints in the TUI and the shell, and lesson
checks, so all of them understand the same spelling. ``@DOMAIN`` (a name or a
domain id) keeps only that domain's events; Xen's own events (no domain) never
match it. The pattern stays one word, so every front end reads it the same way.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from ..errors import UserError
from ..trace import KINDS, NAME_FIELD, Event, name_matches  # noqa: F401  (NAME_FIELD: for the screen)


@dataclass(frozen=True)
class EventSpec:
    kind: str
    name: str | None = None
    #: The domain as written after ``@`` (a name or an id), and the id it stands for.
    dom: str | None = None
    domid: int | None = None

    def __str__(self) -> str:
        text = self.kind if self.name is None else f"{self.kind}:{self.name}"
        return text if self.dom is None else f"{text}@{self.dom}"

    def matches(self, ev: Event) -> bool:
        if ev.kind != self.kind:
            return False
        if self.dom is not None and (self.domid is None or ev.dom != self.domid):
            return False                # an unbound name matches nothing rather than everything
        if self.name is None:
            return True
        return name_matches(ev, self.name)

    def bind(self, machine: object) -> "EventSpec":
        """The pattern with its ``@DOMAIN`` resolved on ``machine``; an unknown domain is a UserError."""
        if self.dom is None:
            return self
        return replace(self, domid=resolve_domain(self.dom, machine))


def resolve_domain(text: str, machine: object) -> int:
    """A domain's id from its name or id, as ``xl`` takes either; the known ones named otherwise."""
    domains = getattr(machine, "domains", None)
    if not isinstance(domains, dict):
        raise UserError(f"@{text}: this machine runs no Xen, so it has no domains to choose from")
    for d in sorted(domains.values(), key=lambda d: d.domid):
        if d.name == text or str(d.domid) == text:
            return d.domid
    known = ", ".join(f"{d.name} ({d.domid})" for d in sorted(domains.values(), key=lambda d: d.domid))
    raise UserError(f"no domain '{text}' (domains: {known})")


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

    def bind(self, machine: object) -> "AnyEvent":
        return self

    def __str__(self) -> str:
        return "any"


class AnyOf:
    """Matches when one of several patterns does (``until hypercall,vmexit``)."""

    def __init__(self, *specs: EventSpec) -> None:
        self.specs = specs

    def matches(self, ev: Event) -> bool:
        return any(s.matches(ev) for s in self.specs)

    def bind(self, machine: object) -> "AnyOf":
        return AnyOf(*(s.bind(machine) for s in self.specs))

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.specs)


def parse_until(text: str, machine: object | None = None) -> EventSpec | AnyOf | AnyEvent:
    """What ``until`` takes: ``any``, one pattern, or patterns separated by commas, each of which
    may carry its own ``@DOMAIN`` (checked against ``machine`` when one is given)."""
    if text == "any":
        return AnyEvent()
    parts = [p for p in text.split(",") if p]
    if len(parts) > 1:
        return AnyOf(*(parse_spec(p, machine) for p in parts))
    return parse_spec(text, machine)


def parse_spec(text: str, machine: object | None = None) -> EventSpec:
    """``KIND[:NAME][@DOMAIN]``, with the kind and the name checked against the lab's and Xen's
    tables, and the domain against ``machine``'s (without a machine a domain id stays unchecked
    and a name unbound: :meth:`EventSpec.bind` resolves it later)."""
    text, at, dom = text.partition("@")
    dom = dom.strip()
    if at and not dom:
        raise UserError(f"'{text}@' names no domain: write {text}@NAME or {text}@ID (e.g. {text}@1)")
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
    spec = EventSpec(kind, name or None, dom or None, int(dom) if dom.isdigit() else None)
    return spec.bind(machine) if machine is not None else spec
