"""Waking vCPUs for events, and the upcall state in vcpu_info.

A PV vCPU takes its upcall through the event callback it registered (a
bounce frame on the way back to the guest). An HVM or PVH vCPU takes it as
an interrupt (``lab/xen/hvm.py``): whichever HVM_PARAM_CALLBACK_IRQ or
HVMOP_set_evtchn_upcall_vector configured, raised when evtchn_upcall_pending
goes from 0 to 1 (``vcpu_mark_events_pending``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .vcpu_info import maddr


@dataclass(frozen=True)
class UpcallDelivery:
    """How vCPUs of one kind of guest take their event upcall; pv.py and hvm.py register theirs.

    ``notify(host, v, was_pending)`` runs after evtchn_upcall_pending was set
    (``was_pending``: it was set already); ``need_delivery(host, v)`` answers
    whether the vCPU would take an upcall right now.
    """

    notify: Callable[[Any, Any, bool], None]
    need_delivery: Callable[[Any, Any], bool]


#: "pv" (PV and 32-bit PV) and "hvm" (every translated mode: HVM, PVHVM, PVH)
DELIVERY: dict[str, UpcallDelivery] = {}


def register_delivery(kind: str, delivery: UpcallDelivery) -> None:
    DELIVERY[kind] = delivery


def _delivery(v) -> UpcallDelivery:
    return DELIVERY["pv" if v.domain.is_pv else "hvm"]


def _vcpu_info(host, v) -> int | None:
    return maddr(host, v.domain, v.id)


def upcall_pending(host, v) -> bool:
    vi = _vcpu_info(host, v)
    return vi is not None and host.mem.read(vi, 1) == b"\x01"


def kick(host, v) -> None:
    """An event is pending for ``v``: wake it if it blocked, or make it stop at
    the next block boundary so Xen can deliver the upcall before it goes on."""
    host.wake(v, "event pending")
    if v.cpu is not None and v.runstate == "running":
        v.cpu.yield_now = True


def mark_pending(host, v) -> None:
    """vcpu_mark_events_pending(): set ``v``'s evtchn_upcall_pending and tell the vCPU.

    An HVM/PVH vCPU is told only when the flag goes from 0 to 1: while it stays
    set, further events raise nothing more (the guest clears it before it
    scans). A PV vCPU is kicked so the callback is bounced to soon.
    """
    vi = _vcpu_info(host, v)
    if vi is None:
        return
    was = host.mem.read(vi, 1)[0] & 1
    host.mem.write(vi, b"\x01")
    _delivery(v).notify(host, v, bool(was))


def enable_event_delivery(host, v) -> None:
    """local_event_delivery_enable(): clear the vCPU's evtchn_upcall_mask."""
    vi = _vcpu_info(host, v)
    if vi is not None:
        host.mem.write(vi + 1, b"\x00")


def local_events_need_delivery(host, v) -> bool:
    """Would ``v`` take an upcall right now? (SCHEDOP_block does not sleep if so.)"""
    return _delivery(v).need_delivery(host, v)
