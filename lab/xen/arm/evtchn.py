"""Event channels on Arm: the same ports and 2-level ABI, delivered as PPI 31.

Binding and sending are common code (``lab/xen/evtchn.py``); what differs on
Arm is the shared_info layout (one legacy vcpu_info of 48 bytes, see
``layout``) and the upcall: vcpu_mark_events_pending() raises
GUEST_EVTCHN_PPI through the vGIC (``xen/arch/arm/domain.c``), a virtual
interrupt in one of the GIC's list registers, instead of a callback or an
x86 vector.
"""

from __future__ import annotations

from ..evtchn import EventChannels
from . import layout as L


class ArmEventChannels(EventChannels):
    def max_ports(self, domid: int) -> int:
        return 64 * 64                       # xen_ulong_t is 64 bits on Arm32 and Arm64 alike

    def set_pending(self, domid: int, port: int) -> None:
        host = self.host
        dom = host.domains.get(domid)
        p = self.ports.get(domid, {}).get(port)
        if dom is None or p is None:
            return
        if p.handler is not None:
            host.queue_dom0_work(f"event on port {port}", lambda: p.handler(port) or 0)
            return
        if not dom.shared_info_mfn:
            return
        base = dom.shared_info_mfn << 12
        word, bit = divmod(port, 64)
        pend = base + L.SHINFO_PENDING + word * 8
        pending = host.mem.read_u64(pend)
        if pending >> bit & 1:
            return
        host.mem.write_u64(pend, pending | (1 << bit))
        if host.mem.read_u64(base + L.SHINFO_MASK + word * 8) >> bit & 1:
            return
        vi = base + min(p.vcpu, 0) * L.VCPU_INFO_SIZE     # one legacy vcpu_info on Arm
        sel = host.mem.read_u64(vi + 8)
        if sel >> word & 1:
            return
        host.mem.write_u64(vi + 8, sel | (1 << word))
        was = host.mem.read(vi, 1)[0] & 1
        host.mem.write(vi, b"\x01")
        if not was and dom.vcpus:
            host.inject_evtchn_ppi(dom.vcpus[min(p.vcpu, len(dom.vcpus) - 1)])
