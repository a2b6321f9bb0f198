"""Event patterns such as ``vmexit:IO_INSTRUCTION`` or ``hypercall:mmu_update``.

Used by ``run --until``, breakpoints in the TUI and the shell, and lesson
checks, so all of them understand the same spelling.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache

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


#: Kinds whose NAME is a number (a port, an address, a vector, an MSR, a system-call number).
NUMERIC_KINDS = ("ioport", "mmio", "ioreq", "msr", "syscall", "interrupt", "ring")


@cache
def known_names(kind: str) -> tuple[str, ...]:
    """The names Xen (or x86) defines for ``kind``'s NAME, or () where any name goes.

    Hypercalls from xen/include/public/xen.h, VM exits from vmx.h and svm's vmcb.h,
    exceptions by x86 mnemonic, event-channel and grant-table sub-ops from
    event_channel.h and grant_table.h, xenstore requests from io/xs_wire.h; the
    domain and scheduler operations are the ones the lab's trace records.
    """
    from ..xen import abi
    if kind == "hypercall":
        return tuple(abi.HYPERCALL_BY_NAME)
    if kind == "vmexit":
        return tuple(dict.fromkeys([*abi.VMX_EXIT_BY_NAME, *abi.VMX_EXIT_ALIASES, *abi.SVM_EXIT_BY_NAME]))
    if kind == "trap":
        # x86's exceptions, and what Xen bounces to a PV kernel: a system call from its user
        # program (xen/arch/x86/x86_64/entry.S) and the event-channel upcall.
        return (*abi.X86_EXC_BY_MNEMONIC, "syscall", "event upcall")
    if kind == "evtchn":
        return tuple(abi.EVTCHNOP_NAMES.values())
    if kind == "grant":
        return tuple(abi.GNTTABOP_NAMES.values())
    if kind == "xenstore":
        return tuple(abi.XS_NAMES.values())
    if kind == "domain":
        return ("create", "pause", "unpause", "shutdown", "crash", "destroy")
    if kind == "sched":
        return ("switch", "block", "wake")
    return ()


def _check_name(kind: str, name: str) -> str:
    """``name`` as the trace spells it, or a UserError naming the nearest known names."""
    if kind in NUMERIC_KINDS:
        try:
            int(name, 0)
        except ValueError:
            raise UserError(f"{kind}:{name}: {kind} events are named by a number "
                            f"(e.g. {kind}:0x3f8), not '{name}'") from None
        return name
    names = known_names(kind)
    if not names:
        return name
    if kind == "trap":
        if name.lower().startswith(("int ", "vector ")):
            return name                  # a software interrupt, a vector with no mnemonic
        match = next((n for n in names if n.lower() in (name.lower(), "#" + name.lower())), None)
    else:
        match = next((n for n in names if n.lower() == name.lower()), None)
    if match is not None:
        return name
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
    originals = [next(n for n in names if n.lower() == c) for c in close]
    hint = f"; did you mean {' or '.join(originals)}?" if originals else f" (known: {', '.join(names[:12])}" + \
        (", ..." if len(names) > 12 else "") + ")"
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
    """``KIND`` or ``KIND:NAME``, checked against the trace's kinds and Xen's names for them."""
    kind, _, name = text.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, list(KINDS), n=2)
        if close:
            raise UserError(f"unknown event kind '{kind}'; did you mean {' or '.join(close)}?")
        known = ", ".join(sorted(KINDS))
        raise UserError(f"unknown event kind '{kind}' (known: {known})")
    name = name.strip()
    return EventSpec(kind, _check_name(kind, name) if name else None)
