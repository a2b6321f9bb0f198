"""Waking vCPUs for events, and the upcall state in vcpu_info."""

from __future__ import annotations

from .evtchn import SHINFO_MASK, SHINFO_PENDING, VCPU_INFO_SIZE


def _vcpu_info(host, v) -> int | None:
    dom = v.domain
    if not dom.shared_info_mfn:
        return None
    return (dom.shared_info_mfn << 12) + v.id * VCPU_INFO_SIZE


def upcall_pending(host, v) -> bool:
    vi = _vcpu_info(host, v)
    return vi is not None and host.mem.read(vi, 1) == b"\x01"


def kick(host, v) -> None:
    """An event is pending for ``v``: wake it if it blocked waiting for one."""
    host.wake(v, "event pending")


def unmask(host, dom, port: int) -> int:
    """EVTCHNOP_unmask: clear the mask bit; re-notify if the port is still pending."""
    if not dom.shared_info_mfn:
        return 0
    base = dom.shared_info_mfn << 12
    word, bit = divmod(port, 64)
    mask_addr = base + SHINFO_MASK + word * 8
    host.mem.write_u64(mask_addr, host.mem.read_u64(mask_addr) & ~(1 << bit))
    if host.mem.read_u64(base + SHINFO_PENDING + word * 8) >> bit & 1:
        p = host.evtchn.ports.get(dom.domid, {}).get(port)
        vcpu = p.vcpu if p is not None else 0
        vi = base + vcpu * VCPU_INFO_SIZE
        sel = host.mem.read_u64(vi + 8)
        if not sel >> word & 1:
            host.mem.write_u64(vi + 8, sel | (1 << word))
            host.mem.write(vi, b"\x01")
            if vcpu < len(dom.vcpus):
                kick(host, dom.vcpus[vcpu])
    return 0
