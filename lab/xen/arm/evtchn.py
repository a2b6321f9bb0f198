"""Event channels on Arm: the same ports and 2-level ABI, delivered as PPI 31.

Binding, sending and setting a port pending are common code
(``lab/xen/evtchn.py``); what differs on Arm is the shared_info layout (one
legacy vcpu_info of 48 bytes, see ``layout``) and the upcall:
vcpu_mark_events_pending() raises GUEST_EVTCHN_PPI through the vGIC
(``xen/arch/arm/domain.c``), a virtual interrupt in one of the GIC's list
registers, instead of a callback or an x86 vector.
"""

from __future__ import annotations

from ..evtchn import EventChannels
from . import layout as L


class ArmEventChannels(EventChannels):
    shinfo_pending = L.SHINFO_PENDING
    shinfo_mask = L.SHINFO_MASK

    def max_ports(self, domid: int) -> int:
        return 64 * 64                       # xen_ulong_t is 64 bits on Arm32 and Arm64 alike

    def vcpu_info(self, dom, vcpu: int) -> int:
        return dom.shared_info_mfn << 12     # one legacy vcpu_info on Arm, at the start of shared_info

    def upcall(self, dom, vcpu: int, vi: int) -> None:
        host = self.host
        was = host.mem.read(vi, 1)[0] & 1
        host.mem.write(vi, b"\x01")
        if not was and dom.vcpus:
            host.inject_evtchn_ppi(dom.vcpus[min(vcpu, len(dom.vcpus) - 1)])
