"""``xl block-list`` and ``xl network-list``: a domain's PV devices as xenstore holds them.

libxl lists a domain's devices from ``/libxl/<D>/device/<type>`` and reads each
one's state, event channel and ring references from the *frontend's*
directory (``libxl_device_disk_getinfo``, ``libxl_device_nic_getinfo``): so
the table shows how far the guest's driver got in the xenbus handshake. A
value the frontend has not written yet is -1, as libxl leaves it. The column
layout is ``tools/xl/xl_block.c`` and ``xl_nic.c``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UserError
from .xenstore import XenStoreError


def _read(xs: Any, path: str) -> str | None:
    try:
        return xs.dom0_request("READ", path)
    except XenStoreError:
        return None


def _int(xs: Any, path: str) -> int:
    """strtoul of the node as libxl reads it; -1 when the node is missing."""
    value = _read(xs, path)
    if value is None:
        return -1
    digits = ""
    for ch in value.strip():
        if not ch.isascii() or not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def _devids(xs: Any, domid: int, kind: str) -> list[int]:
    try:
        names = xs.dom0_request("DIRECTORY", f"/libxl/{domid}/device/{kind}")
    except XenStoreError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def qualify(host: Any, names: Sequence[str]) -> list[tuple[str, int | None]]:
    """libxl_domain_qualifier_to_domid: a domid, or a domain's name; None for neither."""
    out: list[tuple[str, int | None]] = []
    for name in names:
        if name.isdigit() and int(name) in host.domains:
            out.append((name, int(name)))
            continue
        dom = host.domain_by_name(name)
        out.append((name, dom.domid if dom is not None else None))
    return out


def block_list(xs: Any, domains: list[tuple[str, int | None]]) -> str:
    """``xl block-list D...``: one line per vbd of each domain (``domains``: (name, domid or None))."""
    lines = [f"{'Vdev':<5} {'BE':<3} {'handle':<6} {'state':<5} {'evt-ch':<6} {'ring-ref':<8} {'BE-path':<30}"]
    for name, domid in domains:
        if domid is None:
            raise UserError(f"{name} is an invalid domain identifier")
        for devid in _devids(xs, domid, "vbd"):
            fe = f"/local/domain/{domid}/device/vbd/{devid}"
            backend = _read(xs, f"{fe}/backend") or ""
            lines.append(f"{devid:<5} {_int(xs, fe + '/backend-id'):<3} {domid:<6} {_int(xs, fe + '/state'):<5} "
                         f"{_int(xs, fe + '/event-channel'):<6} {_int(xs, fe + '/ring-ref'):<8} {backend:<30}")
    return "\n".join(line.rstrip() for line in lines)


def network_list(xs: Any, domains: list[tuple[str, int | None]]) -> str:
    """``xl network-list D...``: one line per vif of each domain."""
    lines = [f"{'Idx':<3} {'BE':<2} {'Mac Addr.':<17} {'handle':<6} {'state':<5} {'evt-ch':<6} "
             f"{'tx-':>5}/{'rx-ring-ref':<5} {'BE-path':<30}"]
    for name, domid in domains:
        if domid is None:
            raise UserError(f"{name} is an invalid domain identifier")
        for devid in _devids(xs, domid, "vif"):
            fe = f"/local/domain/{domid}/device/vif/{devid}"
            backend = _read(xs, f"{fe}/backend") or ""
            mac = _read(xs, f"{backend}/mac") or _read(xs, f"{fe}/mac") or "00:00:00:00:00:00"
            # LIBXL_MAC_FMT is followed directly by the handle's %6d
            lines.append(f"{devid:<3} {_int(xs, fe + '/backend-id'):<2} {mac.lower()}{devid:6d} "
                         f"{_int(xs, fe + '/state'):5d} {_int(xs, fe + '/event-channel'):6d} "
                         f"{_int(xs, fe + '/tx-ring-ref'):5d}/{_int(xs, fe + '/rx-ring-ref'):<11d} {backend:<30}")
    return "\n".join(line.rstrip() for line in lines)
