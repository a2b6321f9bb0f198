"""xenconsoled and xenstored for Arm guests: the same rings and protocols as on x86.

The rings live in the guest's "magic" pages (GUEST_MAGIC_BASE, see
``lab/xen/arm/layout.py``); the guest finds them with HVMOP_get_param
(HVM_PARAM_CONSOLE_PFN/EVTCHN, HVM_PARAM_STORE_PFN/EVTCHN), as Linux's
``xen_guest_init()`` does on Arm. Each service runs as dom0 work when the
guest's event channel fires, and reaches the ring through the guest's p2m, as
dom0 maps a foreign page.
"""

from __future__ import annotations

from ...xen import abi
from ...xen.console import OUT_CONS, OUT_OFF, OUT_PROD, OUT_SIZE
from ..xenstored import Xenstored


class _RingService:
    def __init__(self, host) -> None:
        self.host = host
        self.ports: dict[int, int] = {}          # dom0 port -> domid

    def _connect(self, dom) -> int:
        ev = self.host.evtchn
        guest_port = ev.alloc_unbound(dom.domid, 0)
        local = ev.bind_interdomain(0, dom.domid, guest_port)
        ev.bind_service(0, local, self.notified)
        self.ports[local] = dom.domid
        return guest_port

    def _u32(self, dom, page: int, off: int) -> int:
        return int.from_bytes(self.host.read_guest(dom, (page << 12) + off, 4), "little")

    def _set_u32(self, dom, page: int, off: int, value: int) -> None:
        self.host.write_guest(dom, (page << 12) + off, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def _dom0_emit(self, dom, **data) -> None:
        d0 = self.host.domains.get(0)
        v = d0.vcpus[0] if d0 is not None and d0.vcpus else None
        p = v.pcpu if v is not None and v.pcpu is not None else 0
        self.host.trace.emit(self.host.clock[p], p, dom.domid, 0, "ring_io", **data)

    def domain_gone(self, dom) -> None:
        for port, domid in sorted(self.ports.items()):
            if domid == dom.domid:
                del self.ports[port]


class ArmConsoleBackend(_RingService):
    """xenconsoled: drains ``out[]`` of a guest's console ring into its console log."""

    name = "xenconsoled"

    def connect(self, dom) -> int:
        port = self._connect(dom)
        dom.console_evtchn = port
        dom.hvm_params[abi.HVM_PARAM_CONSOLE_EVTCHN] = port
        return port

    def notified(self, port: int) -> int:
        dom = self.host.domains.get(self.ports.get(port, -1))
        if dom is None:
            return 50                            # (a domain that shut down still has its ring drained)
        page = dom.console_pfn
        cons, prod = self._u32(dom, page, OUT_CONS), self._u32(dom, page, OUT_PROD)
        n = (prod - cons) & 0xFFFFFFFF
        if n > OUT_SIZE:
            self.host.log(f"xenconsoled: d{dom.domid} console ring indexes are inconsistent; ring ignored")
            return 100
        data = bytearray()
        for i in range(n):
            data += self.host.read_guest(dom, (page << 12) + OUT_OFF + (cons + i) % OUT_SIZE, 1)
        self._set_u32(dom, page, OUT_CONS, prod)
        if data:
            self.host.console_write(dom, data.decode("latin-1"))
            self._dom0_emit(dom, ring="console", op=f"output: {n} byte(s) from out[]", req_prod=prod, req_cons=prod,
                            notify=False)
        return 200 + 10 * n


class ArmXenstored(Xenstored):
    """xenstored for Arm guests: the same daemon as on x86 (requests, transactions, watches,
    dom0's tools and backends); only where a guest's frames are differs. An Arm guest is
    translated, so INTRODUCE names its ring by gfn, and its frames are behind its stage 2."""

    def connect(self, dom, pfn: int | None = None) -> tuple[int, int]:
        pfn_port = super().connect(dom, pfn)
        dom.hvm_params[abi.HVM_PARAM_STORE_EVTCHN] = dom.store_evtchn   # HVMOP_get_param's answer
        return pfn_port

    def _guest_mfn(self, dom, gfn: int) -> int | None:
        p2m = self.host.p2m(dom)
        return p2m.lookup(gfn) if p2m is not None and 0 <= gfn < (1 << 36) else None

    def _owns(self, dom, mfn: int) -> bool:
        return mfn in dom.extra.get("frames", ())
