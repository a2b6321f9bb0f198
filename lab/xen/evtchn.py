"""Event channels, 2-level ABI: ports, binding, and delivery through shared_info.

Delivery follows ``xen/common/event_2l.c``: set the port's pending bit (stop
if it was set), and if the port is unmasked set its selector bit in the
vCPU's ``evtchn_pending_sel``; if that bit was new, set
``evtchn_upcall_pending`` and notify the vCPU (``events.mark_pending``, passed in by the host: a
PV vCPU's callback, an HVM/PVH vCPU's interrupt). A port whose far end is one of
the lab's dom0 services (written in Python) notifies that service, which runs
as dom0 work.

All of it is common code on every architecture; one supplies where shared_info's
bitmaps and a vCPU's vcpu_info are (``shinfo_pending``, ``shinfo_mask``,
``vcpu_info``) and how the upcall is raised (``upcall``): ``lab/xen/arm/evtchn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import abi
from .vcpu_info import maddr

SHINFO_PENDING = 2048      # evtchn_pending[64 longs]
SHINFO_MASK = 2560         # evtchn_mask[64 longs]
NR_PORTS_64 = abi.EVTCHN_2L_NR_CHANNELS_64 if hasattr(abi, "EVTCHN_2L_NR_CHANNELS_64") else 4096
#: libxl's default max_event_channels for a guest (tools/libs/light/libxl_create.c)
DEFAULT_MAX_EVENT_CHANNELS = 1023
INT_MAX = (1 << 31) - 1


@dataclass
class Port:
    state: str                       # closed, unbound, interdomain, virq, ipi
    remote_dom: int | None = None
    remote_port: int | None = None
    virq: int | None = None
    vcpu: int = 0
    handler: Callable[[int], Any] | None = None   # a dom0 service's callback


class EventChannels:
    #: Where shared_info's evtchn_pending[] and evtchn_mask[] are (x86-64's struct shared_info).
    shinfo_pending = SHINFO_PENDING
    shinfo_mask = SHINFO_MASK

    def __init__(self, host, mark_pending: Callable[[Any, Any], None] | None = None) -> None:
        self.host = host
        #: events.mark_pending, passed in by the host: how a vCPU is told of a new pending selector
        #: bit (its upcall), which depends on the guest's mode.
        self.mark_pending = mark_pending
        self.ports: dict[int, dict[int, Port]] = {}

    def add_domain(self, dom) -> None:
        self.ports[dom.domid] = {}

    def remove_domain(self, dom) -> None:
        for port in sorted(self.ports.get(dom.domid, {})):
            self.close(dom.domid, port, quiet=True)
        self.ports.pop(dom.domid, None)

    # -- allocation -------------------------------------------------------
    def max_ports(self, domid: int) -> int:
        """The 2-level ABI's port count: the bits of shared_info's evtchn_pending[]."""
        dom = self.host.domains.get(domid)
        if dom is not None and dom.mode == "pv32":
            return abi.EVTCHN_2L_NR_CHANNELS_32
        return NR_PORTS_64

    def max_evtchn_port(self, domid: int) -> int:
        """The highest port the domain may use (d->max_evtchn_port): xl.cfg's
        ``max_event_channels``, 1023 by default (libxl), for a domU; the ABI's for dom0."""
        dom = self.host.domains.get(domid)
        if dom is None or dom.privileged:
            return self.max_ports(domid) - 1
        # libxl keeps it in a uint32 and makes 0 its default; evtchn_init() caps it at INT_MAX
        value = getattr(getattr(dom, "config", None), "max_event_channels", 0) & 0xFFFF_FFFF
        limit = min(value or DEFAULT_MAX_EVENT_CHANNELS, INT_MAX)
        return min(limit, self.max_ports(domid) - 1)

    def _free_port(self, domid: int) -> int:
        """get_free_port(): the lowest free port, or -ENOSPC past d->max_evtchn_port or the ABI."""
        table = self.ports[domid]
        port = 1                      # port 0 is reserved, never allocated
        while port in table and table[port].state != "closed":
            port += 1
        if port > self.max_evtchn_port(domid) or port >= self.max_ports(domid):
            return -abi.ERRNO["ENOSPC"]
        return port

    def alloc_unbound(self, domid: int, remote_dom: int) -> int:
        port = self._free_port(domid)
        if port < 0:
            return port
        self.ports[domid][port] = Port("unbound", remote_dom=remote_dom)
        self._event(domid, "alloc_unbound", port, remote_dom, None, 0)
        return port

    def bind_interdomain(self, domid: int, remote_dom: int, remote_port: int) -> int:
        rtable = self.ports.get(remote_dom)
        if rtable is None:
            return -abi.ERRNO["ESRCH"]
        rp = rtable.get(remote_port)
        if rp is None or rp.state != "unbound" or rp.remote_dom != domid:
            return -abi.ERRNO["EINVAL"]
        port = self._free_port(domid)
        if port < 0:
            return port
        self.ports[domid][port] = Port("interdomain", remote_dom=remote_dom, remote_port=remote_port)
        rp.state = "interdomain"
        rp.remote_dom = domid
        rp.remote_port = port
        self._event(domid, "bind_interdomain", port, remote_dom, remote_port, 0)
        return port

    def bind_virq(self, domid: int, virq: int, vcpu: int) -> int:
        if not 0 <= virq < abi.NR_VIRQS:
            return -abi.ERRNO["EINVAL"]
        if not abi.virq_is_per_vcpu(virq) and vcpu != 0:
            return -abi.ERRNO["EINVAL"]           # a global or per-domain VIRQ binds to vCPU 0
        dom = self.host.domains.get(domid)
        if dom is None or not 0 <= vcpu < len(dom.vcpus):
            return -abi.ERRNO["ENOENT"]
        for bound in self.ports[domid].values():
            if bound.state == "virq" and bound.virq == virq and bound.vcpu == vcpu:
                return -abi.ERRNO["EEXIST"]
        port = self._free_port(domid)
        if port < 0:
            return port
        self.ports[domid][port] = Port("virq", virq=virq, vcpu=vcpu)
        self._event(domid, "bind_virq", port, None, None, 0)
        return port

    def bind_ipi(self, domid: int, vcpu: int) -> int:
        """EVTCHNOP_bind_ipi: a port whose send notifies ``vcpu`` of the same domain."""
        dom = self.host.domains.get(domid)
        if dom is None or not 0 <= vcpu < len(dom.vcpus):
            return -abi.ERRNO["ENOENT"]
        port = self._free_port(domid)
        if port < 0:
            return port
        self.ports[domid][port] = Port("ipi", vcpu=vcpu)
        self._event(domid, "bind_ipi", port, None, None, 0)
        return port

    def send_global_virq(self, virq: int) -> bool:
        """send_global_virq(): a global VIRQ goes to its handler domain, the hardware domain
        (dom0) unless XEN_DOMCTL_set_virq_handler named another, on vCPU 0. The lab has no
        set_virq_handler, so a domU may bind a global VIRQ but never receives it, as in Xen."""
        return self.send_virq(0, virq, 0)

    def bind_service(self, domid: int, port: int, handler: Callable[[int], Any]) -> None:
        """Attach a dom0 service (Python) to one of dom0's ports."""
        self.ports[domid][port].handler = handler

    def close(self, domid: int, port: int, quiet: bool = False) -> int:
        p = self.ports.get(domid, {}).get(port)
        if p is None or p.state == "closed":
            return -abi.ERRNO["EINVAL"]
        if p.state == "interdomain" and p.remote_dom in self.ports:
            rp = self.ports[p.remote_dom].get(p.remote_port)
            if rp is not None and rp.state == "interdomain":
                rp.state = "unbound"          # the other end goes back to unbound
                rp.remote_dom = domid
                rp.remote_port = None
        p.state = "closed"
        p.handler = None                      # a dom0 service's binding ends with the port
        if not quiet:
            self._event(domid, "close", port, p.remote_dom, p.remote_port, 0)
        return 0

    def status(self, domid: int, port: int) -> tuple[int, Port | None]:
        p = self.ports.get(domid, {}).get(port)
        if p is None:
            return abi.EVTCHNSTAT_closed, None
        code = {"closed": abi.EVTCHNSTAT_closed, "unbound": abi.EVTCHNSTAT_unbound,
                "interdomain": abi.EVTCHNSTAT_interdomain, "virq": abi.EVTCHNSTAT_virq,
                "ipi": abi.EVTCHNSTAT_ipi}[p.state]
        return code, p

    # -- notification ------------------------------------------------------
    def send(self, domid: int, port: int) -> int:
        """evtchn_send() (common/event_channel.c): interdomain and IPI ports notify, an
        unbound one drops the notification silently, any other state (closed, VIRQ, PIRQ)
        is -EINVAL: only Xen raises a VIRQ or PIRQ."""
        p = self.ports.get(domid, {}).get(port)
        if p is None or p.state not in ("interdomain", "ipi", "unbound"):
            return -abi.ERRNO["EINVAL"]
        self._event(domid, "send", port, p.remote_dom, p.remote_port, 0)
        if p.state == "interdomain":
            self.set_pending(p.remote_dom, p.remote_port)
        elif p.state == "ipi":
            self.set_pending(domid, port)
        return 0

    def send_virq(self, domid: int, virq: int, vcpu: int = 0) -> bool:
        for port, p in self.ports.get(domid, {}).items():
            if p.state == "virq" and p.virq == virq and p.vcpu == vcpu:
                self.set_pending(domid, port)
                return True
        return False

    def set_pending(self, domid: int, port: int) -> None:
        host = self.host
        dom = host.domains.get(domid)
        p = self.ports.get(domid, {}).get(port)
        if dom is None or p is None:
            return
        handler = p.handler
        if handler is not None:
            # The far end is a dom0 service: it runs as dom0 work (even if the port closes first).
            host.queue_dom0_work(f"event on port {port}", lambda: handler(port) or 0)
            return
        if not dom.shared_info_mfn:
            return
        base = dom.shared_info_mfn << 12
        word, bit = divmod(port, 64)
        pend_addr = base + self.shinfo_pending + word * 8
        pending = host.mem.read_u64(pend_addr)
        if pending >> bit & 1:
            return                                   # already pending: nothing more to do
        host.mem.write_u64(pend_addr, pending | (1 << bit))
        masked = host.mem.read_u64(base + self.shinfo_mask + word * 8) >> bit & 1
        if masked:
            return
        vi = self.vcpu_info(dom, p.vcpu)
        sel = host.mem.read_u64(vi + 8)
        if sel >> word & 1:
            return
        host.mem.write_u64(vi + 8, sel | (1 << word))
        self.upcall(dom, p.vcpu, vi)

    def unmask(self, dom, port: int) -> int:
        """EVTCHNOP_unmask: clear the mask bit; re-notify if the port is still pending."""
        host = self.host
        if not 0 <= port < self.max_ports(dom.domid):
            return -abi.ERRNO["EINVAL"]        # !port_is_valid(): outside shared_info's bitmaps
        if not dom.shared_info_mfn:
            return 0
        base = dom.shared_info_mfn << 12
        word, bit = divmod(port, 64)
        mask_addr = base + self.shinfo_mask + word * 8
        mask = host.mem.read_u64(mask_addr)
        host.mem.write_u64(mask_addr, mask & ~(1 << bit))
        # evtchn_2l_unmask(): test_and_clear the mask bit, and only a port that *was* masked
        # and is pending re-notifies (common/event_2l.c).
        if mask >> bit & 1 and host.mem.read_u64(base + self.shinfo_pending + word * 8) >> bit & 1:
            p = self.ports.get(dom.domid, {}).get(port)
            vcpu = p.vcpu if p is not None else 0
            vi = self.vcpu_info(dom, vcpu)
            sel = host.mem.read_u64(vi + 8)
            if not sel >> word & 1:
                host.mem.write_u64(vi + 8, sel | (1 << word))
                self.upcall(dom, vcpu, vi)
        return 0

    def vcpu_info(self, dom, vcpu: int) -> int:
        """The machine address of vCPU ``vcpu``'s vcpu_info (the domain has a shared_info)."""
        return maddr(self.host, dom, vcpu)

    def upcall(self, dom, vcpu: int, vi: int) -> None:
        """vcpu_mark_events_pending(): evtchn_upcall_pending, then the vCPU's upcall."""
        if vcpu < len(dom.vcpus):
            self.mark_pending(self.host, dom.vcpus[vcpu])
        else:
            self.host.mem.write(vi, b"\x01")

    def _event(self, domid: int, op: str, port: int, rdom, rport, result: int) -> None:
        dom = self.host.domains.get(domid)
        v = dom.vcpus[0] if dom is not None and dom.vcpus else None
        self.host.emit(v, "evtchn", op=op, port=port, remote_dom=rdom, remote_port=rport, result=result)
