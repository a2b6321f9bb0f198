"""The event-channel sub-ops that are the same on every architecture (xen/common/event_channel.c).

Each architecture's event_channel_op table (``EVTCHN_OPS`` in ``lab/xen/hypercalls.py``,
``ARM_EVTCHN_OPS`` in ``lab/xen/arm/hypercalls.py``) registers these (alloc_unbound's work
behind each one's own trace view); the structures hold only
domid_t and evtchn_port_t, so their layouts are one on x86-64 and Arm. Guest memory is read and
written through the caller's architecture (its hypercall table's guest access).
"""

from __future__ import annotations

from . import abi

E = abi.ERRNO


def _fields(host, v, va: int, lay, *names: str) -> list[int]:
    """The named fields of the structure at ``va``, read by its layout up to the last of them."""
    offs = [lay.fields[name] for name in names]
    raw = host.hypercalls.copy_from_guest(host, v, va, max(off + width for off, width in offs))
    return [int.from_bytes(raw[off:off + width], "little") for off, width in offs]


def alloc_unbound(host, v, va: int, lay) -> tuple[int, int, int]:
    """EVTCHNOP_alloc_unbound: a port of ``dom`` for ``remote_dom`` to bind, written back to the
    caller; only the control domain allocates for another. The result, the remote domain and
    the port (-1 if none).

    The architectures' sub-ops differ only in what their trace shows of it."""
    dom = v.domain
    d, remote = _fields(host, v, va, lay, "dom", "remote_dom")
    if d not in (abi.DOMID_SELF, dom.domid) and not dom.privileged:
        return -E["EPERM"], remote, -1
    target = dom.domid if d == abi.DOMID_SELF else d
    if target not in host.domains:
        return -E["ESRCH"], remote, -1
    if remote == abi.DOMID_SELF:
        remote = dom.domid                 # the caller, as evtchn_alloc_unbound() resolves it
    port = host.evtchn.alloc_unbound(target, remote)
    if port < 0:
        return port, remote, -1
    host.hypercalls.copy_to_guest(host, v, va + lay.at("port"), port.to_bytes(4, "little"))
    return 0, remote, port


def evtchn_close(host, v, va: int, info: dict, lay) -> int:
    [port] = _fields(host, v, va, lay, "port")
    return host.evtchn.close(v.domain.domid, port)


def evtchn_unmask(host, v, va: int, info: dict, lay) -> int:
    [port] = _fields(host, v, va, lay, "port")
    return host.evtchn.unmask(v.domain, port)
