"""xenconsoled and xenstored for Arm guests: the same rings and protocols as on x86.

The rings live in the guest's "magic" pages (GUEST_MAGIC_BASE, see
``lab/xen/arm/layout.py``); the guest finds them with HVMOP_get_param
(HVM_PARAM_CONSOLE_PFN/EVTCHN, HVM_PARAM_STORE_PFN/EVTCHN), as Linux's
``xen_guest_init()`` does on Arm. Each service runs as dom0 work when the
guest's event channel fires, and reaches the ring through the guest's p2m, as
dom0 maps a foreign page.
"""

from __future__ import annotations

import struct

from ...xen import abi
from ...xen.console import OUT_CONS, OUT_OFF, OUT_PROD, OUT_SIZE
from ..xenstore import XenStore

#: struct xenstore_domain_interface (public/io/xs_wire.h): req[1024], rsp[1024], then the indexes.
XS_REQ, XS_RSP, XS_RING = 0, 1024, 1024
XS_REQ_CONS, XS_REQ_PROD, XS_RSP_CONS, XS_RSP_PROD = 2048, 2052, 2056, 2060
XSD_HEADER = 16          # struct xsd_sockmsg {u32 type, req_id, tx_id, len}


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


class ArmXenstored(_RingService):
    """xenstored's side of each guest's xenstore ring, over the same store as x86's."""

    name = "xenstored"

    def __init__(self, host) -> None:
        super().__init__(host)
        self.store = XenStore(privileged=(0,), domain_exists=lambda d: d in host.domains)

    def connect(self, dom) -> int:
        port = self._connect(dom)
        dom.store_evtchn = port
        dom.hvm_params[abi.HVM_PARAM_STORE_EVTCHN] = port
        self.store.introduce(dom.domid, dom.store_pfn, port)
        return port

    def notified(self, port: int) -> int:
        domid = self.ports.get(port, -1)
        dom = self.host.domains.get(domid)
        if dom is None or not dom.alive:
            return 50
        page = dom.store_pfn
        cons, prod = self._u32(dom, page, XS_REQ_CONS), self._u32(dom, page, XS_REQ_PROD)
        if (prod - cons) & 0xFFFFFFFF > XS_RING:
            self.host.log(f"xenstored: d{domid} request ring indexes are inconsistent; connection ignored")
            return 100
        cost = 0
        answered = False
        while (prod - cons) & 0xFFFFFFFF >= XSD_HEADER:
            raw = bytes(self.host.read_guest(dom, (page << 12) + XS_REQ + (cons + i) % XS_RING, 1)[0]
                        for i in range(XSD_HEADER))
            mtype, req_id, tx_id, length = struct.unpack("<IIII", raw)
            if length > abi.XENSTORE_PAYLOAD_MAX or (prod - cons) & 0xFFFFFFFF < XSD_HEADER + length:
                break                                  # not all of it is there yet
            payload = bytes(self.host.read_guest(dom, (page << 12) + XS_REQ + (cons + XSD_HEADER + i) % XS_RING, 1)[0]
                            for i in range(length))
            cons = (cons + XSD_HEADER + length) & 0xFFFFFFFF
            rtype, reply = self.store.request(domid, mtype, payload, tx_id)
            self._respond(dom, struct.pack("<IIII", rtype, req_id, tx_id, len(reply)) + reply)
            name = abi.XS_NAMES.get(mtype, str(mtype))
            path = payload.split(b"\0")[0].decode("latin-1")
            d0 = self.host.domains[0]
            self.host.emit(d0.vcpus[0] if d0.vcpus else None, "xenstore", op=name, path=path,
                           value=reply.rstrip(b"\0").decode("latin-1") if rtype != abi.XS_ERROR else None,
                           result=reply.rstrip(b"\0").decode() if rtype == abi.XS_ERROR else "OK")
            answered = True
            cost += 1500
        self._set_u32(dom, page, XS_REQ_CONS, cons)
        if answered:
            self.host.evtchn.send(0, next(p for p, d in sorted(self.ports.items()) if d == domid))
        return cost or 100

    def _respond(self, dom, msg: bytes) -> None:
        page = dom.store_pfn
        prod = self._u32(dom, page, XS_RSP_PROD)
        for i, b in enumerate(msg):
            self.host.write_guest(dom, (page << 12) + XS_RSP + (prod + i) % XS_RING, bytes([b]))
        self._set_u32(dom, page, XS_RSP_PROD, prod + len(msg))
        self._dom0_emit(dom, ring="xenstore", op=f"response: {len(msg)} byte(s) into rsp[]",
                        req_prod=None, req_cons=None, rsp_prod=(prod + len(msg)) & 0xFFFFFFFF, notify=True)
