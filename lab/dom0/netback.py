"""netback: the network backend in dom0, one ``vif<D>.<N>`` per PV NIC.

It follows Linux's ``drivers/net/xen-netback`` (xenbus.c, netback.c, rx.c):

* **probe** (a new ``backend/vif/<D>/<N>`` in state 1): publish the features
  (``feature-rx-copy`` 1, ``feature-rx-flip`` 0, no scatter-gather, no GSO,
  no split event channels, one queue) and go to InitWait (2).
* **connect** when the frontend reaches Connected (4): read the backend's
  ``mac``, the frontend's ``tx-ring-ref``, ``rx-ring-ref``, ``event-channel``
  and ``request-rx-copy`` (must be 1: the lab's netback, like Linux's today,
  only copies), map both rings, bind the event channel, join the bridge
  (what ``vif-bridge`` does on a real host) and go to Connected.
* **tx** on each notification: each packet's slots (``more_data`` chains, at
  most 18; ``extra_info`` slots are consumed and answered NULL) are checked,
  their data fetched with GNTTABOP_copy, answered OKAY or ERROR in order and
  the frame handed to the bridge.
* **rx**: a frame the bridge delivers is copied (GNTTABOP_copy, rx-copy mode)
  into the next buffer the frontend posted on the rx ring and answered with
  its size; with no buffer posted the frame is dropped and counted.
* **teardown**: as set_backend_state walks it: Connected -> Closing
  (disconnect: leave the bridge, unmap, close the port) -> Closed.

Ring layouts (``public/io/netif.h``; 256 entries each in a 4 KiB page):
tx request ``{u32 gref; u16 offset; u16 flags; u16 id; u16 size}`` (12
bytes), tx response ``{u16 id; i16 status}``; rx request ``{u16 id; u16 pad;
u32 gref}``, rx response ``{u16 id; u16 offset; u16 flags; i16 status}``
(status is the size when positive).

A frontend that breaks the protocol (``req_prod`` more than a ring ahead, a
slot crossing its page, too many slots, a bad extra-info type) gets Linux's
``xenvif_fatal_tx_err``: "fatal error; disabling device", the vif stops
serving its rings and leaves the bridge, and dom0 goes on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..isa.bits import M32
from ..xen.abi.grant_table import GNTCOPY_dest_gref, GNTCOPY_source_gref
from ..xen import abi
from ..xen.abi.io_ring import (NETTXF_extra_info, NETTXF_more_data)
from .bridge import Bridge, mac_text
from .xenbus_backend import (CLOSED, CLOSING, CONNECTED, INITIALISED, INITIALISING, INITWAIT,
                             UNKNOWN, BackendDevice, BackRing, XenbusBackend, charge_dom0, dom0_vcpu, grant_tables,
                             hypercall, ring_event)

TX_REQUEST = struct.Struct("<IHHHH")        # gref, offset, flags, id, size
TX_RESPONSE = struct.Struct("<Hh")          # id, status
RX_REQUEST = struct.Struct("<HxxI")         # id, pad, gref
RX_RESPONSE = struct.Struct("<HHHh")        # id, offset, flags, status
TX_ENTRY, RX_ENTRY = 12, 8
XEN_NETIF_EXTRA_FLAG_MORE = 1
XEN_NETIF_EXTRA_TYPE_MAX = 6
RSP_OKAY, RSP_ERROR, RSP_DROPPED, RSP_NULL = 0, -1, -2, 1
RSP_NAMES = {0: "OKAY", -1: "ERROR", -2: "DROPPED", 1: "NULL"}
XEN_NETBK_LEGACY_SLOTS_MAX = 18
ETH_HLEN = 14
PAGE = 4096
PACKET_COST = 1500                          # lab estimate, when the cost table has no "netback_packet"


@dataclass
class Vif:
    """One backend interface (struct xenvif with its one queue)."""
    name: str
    mac: bytes = bytes(6)
    tx: BackRing | None = None
    rx: BackRing | None = None
    tx_handle: int | None = None
    rx_handle: int | None = None
    port: int = 0
    on_bridge: bool = False
    disabled: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"tx_packets": 0, "tx_errors": 0, "rx_packets": 0,
                                                           "rx_dropped": 0})


def parse_mac(text: str | None) -> bytes | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        return None
    return bytes(int(p, 16) for p in parts)


class Netback(XenbusBackend):
    kind = "vif"
    name = "netback"
    log_prefix = "xen-netback"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._bounce = None                 # dom0's page that grant copies go through (held)

    @property
    def bridge(self) -> Bridge | None:
        return self.host.services.bridge

    # -- probe ------------------------------------------------------------------------------
    def rings_of(self, dev: BackendDevice) -> list[tuple[str, BackRing | None]]:
        vif = dev.data.get("vif")
        return [(f"vif {dev.devid} tx", vif.tx), (f"vif {dev.devid} rx", vif.rx)] if vif is not None else []

    def probe(self, dev: BackendDevice) -> bool:
        handle = self.read_int(f"{dev.nodename}/handle")
        dev.data["vif"] = Vif(f"vif{dev.domid}.{handle if handle is not None else dev.devid}")
        self.write_all(dev, [("feature-sg", 0), ("feature-gso-tcpv4", 0), ("feature-gso-tcpv6", 0),
                             ("feature-ipv6-csum-offload", 0), ("feature-rx-copy", 1), ("feature-rx-flip", 0),
                             ("feature-multicast-control", 0), ("multi-queue-max-queues", 1)])
        self.switch_state(dev, INITWAIT)
        return True

    # -- the frontend's state (set_backend_state) ----------------------------------------------
    def frontend_changed(self, dev: BackendDevice, state: int) -> None:
        if state == INITIALISING:
            self.set_backend_state(dev, INITWAIT)
        elif state == INITIALISED:
            pass
        elif state == CONNECTED:
            self.set_backend_state(dev, CONNECTED)
        elif state == CLOSING:
            self.set_backend_state(dev, CLOSING)
        elif state == CLOSED:
            self.set_backend_state(dev, CLOSED)
            if self.read_int(f"{dev.nodename}/online") != 1:
                self.remove(dev, "closed and offline")
        elif state == UNKNOWN:
            self.set_backend_state(dev, CLOSED)
            self.remove(dev, "frontend state unknown")
        else:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"saw state {state} at frontend")

    def set_backend_state(self, dev: BackendDevice, target: int) -> None:
        """Walk the backend through the states between where it is and ``target``."""
        for _ in range(8):
            cur = dev.state
            if cur == target or dev.removed:
                return
            if cur == INITIALISING:
                self.switch_state(dev, CLOSED if target == CLOSED else INITWAIT)
            elif cur == CLOSED:
                self.switch_state(dev, INITWAIT if target in (INITWAIT, CONNECTED) else CLOSING)
            elif cur == INITWAIT:
                if target == CONNECTED:
                    if not self.connect(dev):
                        return                     # xenbus_dev_fatal already moved us to Closing
                    self.switch_state(dev, CONNECTED)
                else:
                    self.switch_state(dev, CLOSING)
            elif cur == CONNECTED:
                self.disconnect(dev)
                self.switch_state(dev, CLOSING)
            elif cur == CLOSING:
                self.switch_state(dev, CLOSED)
            else:
                return

    def connect(self, dev: BackendDevice) -> bool:
        vif: Vif = dev.data["vif"]
        fe = dev.otherend
        mac = parse_mac(self.read(f"{dev.nodename}/mac"))
        if mac is None:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"parsing {dev.nodename}/mac")
            return False
        vif.mac = mac
        queues = self.read_int(f"{fe}/multi-queue-num-queues")
        if queues is not None and queues != 1:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"guest requested {queues} queues, exceeding the maximum of 1.")
            return False
        tx_ref = self.read_int(f"{fe}/tx-ring-ref")
        rx_ref = self.read_int(f"{fe}/rx-ring-ref")
        if tx_ref is None or rx_ref is None or not (0 <= tx_ref <= M32 and 0 <= rx_ref <= M32):
            self.fatal(dev, abi.ERRNO["EINVAL"], f"reading {fe}/ring-ref")
            return False
        evtchn = self.read_int(f"{fe}/event-channel")
        if evtchn is None or evtchn < 0:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"reading {fe}/event-channel(-tx/rx)")
            return False
        if self.read_int(f"{fe}/request-rx-copy") != 1:
            self.fatal(dev, abi.ERRNO["EOPNOTSUPP"], f"{fe}/request-rx-copy is not 1: only rx-copy is supported")
            return False
        results = self.map_grants(dev.domid, [(tx_ref, False), (rx_ref, False)])
        if any(st != 0 for st, _h, _a in results):
            self.unmap_grants([h for st, h, _a in results if st == 0])
            bad = next(st for st, _h, _a in results if st != 0)
            self.fatal(dev, -bad, f"mapping shared-frames {tx_ref}/{rx_ref} port tx {evtchn} rx {evtchn} "
                                  f"({abi.GNTST_NAMES.get(bad, bad)})")
            return False
        (_s1, vif.tx_handle, tx_page), (_s2, vif.rx_handle, rx_page) = results
        vif.tx = BackRing(tx_page, TX_ENTRY)
        vif.rx = BackRing(rx_page, RX_ENTRY)
        port = self.bind_interdomain(dev.domid, evtchn, lambda p, dev=dev: self._notified(dev))
        if port < 0:
            self.disconnect(dev)
            self.fatal(dev, -port, f"binding port {evtchn}")
            return False
        vif.port = port
        vif.disabled = False
        br = self.bridge
        if br is not None:
            br.attach(vif.name, dev.domid, lambda frame, dev=dev: self.rx(dev, frame))
            vif.on_bridge = True
        self.log(f"{vif.name}: connected, MAC {mac_text(mac)}, tx-ring-ref {tx_ref}, rx-ring-ref {rx_ref}, "
                 f"port {evtchn}")
        return True

    def disconnect(self, dev: BackendDevice) -> None:
        """xenvif_disconnect_data: off the bridge, unbind, unmap both rings (idempotent)."""
        vif: Vif | None = dev.data.get("vif")
        if vif is None:
            return
        if vif.on_bridge and self.bridge is not None:
            self.bridge.detach(vif.name)
        vif.on_bridge = False
        if vif.port > 0:
            self.close_port(vif.port)
            vif.port = 0
        self.unmap_grants([h for h in (vif.tx_handle, vif.rx_handle) if h is not None])
        vif.tx_handle = vif.rx_handle = None
        vif.tx = vif.rx = None

    def _fatal_tx_err(self, dev: BackendDevice, vif: Vif, why: str) -> None:
        """xenvif_fatal_tx_err: the vif stops for good (until the frontend reconnects)."""
        self.log(f"{vif.name}: {why}")
        self.log(f"{vif.name}: fatal error; disabling device")
        vif.disabled = True
        if vif.on_bridge and self.bridge is not None:
            self.bridge.detach(vif.name)
            vif.on_bridge = False
        tx = vif.tx
        if tx is not None:
            ring_event(self.host, dev.domid, ring=f"{vif.name}-tx", op="disabled: fatal error", req_prod=tx.req_prod,
                       req_cons=tx.req_cons, rsp_prod=tx.rsp_prod)

    # -- grant copies ------------------------------------------------------------------------------
    def _bounce_page(self):
        """dom0's own page for grant copies, held writable for as long as netback runs."""
        if self._bounce is None:
            mfn = self.host.alloc_frame(0)
            self._bounce = self.host.frames.hold(0, mfn, writable=True, holder="netback bounce page")
        return self._bounce

    def _copy(self, domid: int, ops: list[tuple[int, int, int, bool]]) -> list[int]:
        """One GNTTABOP_copy hypercall: (gref, offset in the granted page, length, to_guest) per op,
        through dom0's bounce page (op i at offset 0 of it: ops are used one at a time). Statuses."""
        gt = grant_tables(self.host)
        v = dom0_vcpu(self.host)
        bounce = self._bounce_page().mfn          # dom0's frame numbers are mfns (PV, or direct mapped on Arm)
        self_ = abi.DOMID_SELF                    # only DOMID_SELF may name a frame (gnttab_copy_lock_domain)
        out: list[int] = []

        def run() -> int:
            for gref, off, length, to_guest in ops:
                if to_guest:
                    st = gt.copy_one(v, (bounce, self_, 0), (gref, domid, off), length, GNTCOPY_dest_gref)
                else:
                    st = gt.copy_one(v, (gref, domid, off), (bounce, self_, 0), length, GNTCOPY_source_gref)
                self.host.emit(v, "grant", op="copy", ref=gref, granter=domid, frame=None,
                               flags=GNTCOPY_dest_gref if to_guest else GNTCOPY_source_gref,
                               status=abi.GNTST_NAMES.get(st, st))
                out.append(st)
            return 0
        hypercall(self.host, "grant_table_op", ["copy", f"{len(ops)} op(s)"], run)
        return out

    def _fetch(self, domid: int, slots: list[tuple[int, int, int]]) -> tuple[bytes, int, int]:
        """Copy each (gref, offset, size) slot out of the guest: (data, failing slot index or -1, status)."""
        data = bytearray()
        bounce = self._bounce_page()
        for i, (gref, off, size) in enumerate(slots):
            st = self._copy(domid, [(gref, off, size, False)])[0] if size else 0
            if st != 0:
                return bytes(data), i, st
            data += bounce.read(0, size)
        return bytes(data), -1, 0

    # -- notifications -------------------------------------------------------------------------------
    def _notified(self, dev: BackendDevice) -> int:
        """One event channel for both rings: the frontend posted tx packets or rx buffers."""
        vif: Vif | None = dev.data.get("vif")
        if dev.removed or vif is None or vif.tx is None or vif.disabled:
            return 0
        try:
            self._tx(dev, vif)
        except Exception as e:             # nothing a frontend writes may take dom0 down
            self._fatal_tx_err(dev, vif, f"internal error on the tx ring: {type(e).__name__}: {e}")
        return 0

    # -- tx: guest -> bridge -----------------------------------------------------------------------
    def _tx(self, dev: BackendDevice, vif: Vif) -> None:
        ring = vif.tx
        name = f"{vif.name}-tx"
        while not vif.disabled:
            rp = ring.req_prod
            if (rp - ring.req_cons) & M32 > ring.size or ring.request_prod_overflow(rp):
                self._fatal_tx_err(dev, vif, f"Impossible number of requests. req_prod {rp}, req_cons "
                                             f"{ring.req_cons}, size {ring.size}")
                return
            while ring.req_cons != rp and not vif.disabled:
                self._tx_packet(dev, vif, rp, name)
            if vif.disabled or not ring.final_check_for_requests():
                return

    def _take(self, ring: BackRing) -> tuple[int, int, int, int, int]:
        raw = ring.entry(ring.req_cons)
        ring.req_cons = (ring.req_cons + 1) & M32
        return TX_REQUEST.unpack_from(raw, 0)

    def _tx_packet(self, dev: BackendDevice, vif: Vif, rp: int, name: str) -> None:
        ring = vif.tx
        charge_dom0(self.host, self.host.costs.event.get("netback_packet", PACKET_COST))
        first = self._take(ring)
        gref, offset, flags, rid, size = first
        ring_event(self.host, dev.domid, ring=name, op="request TX", req_prod=rp, req_cons=ring.req_cons,
                   rsp_prod=ring.rsp_prod, id=rid, size=size, gref=gref, flags=flags)
        extras = 0
        if flags & NETTXF_extra_info:
            while True:
                if ring.req_cons == rp:
                    self._fatal_tx_err(dev, vif, "Missing extra info")
                    return
                raw = ring.entry(ring.req_cons)
                ring.req_cons = (ring.req_cons + 1) & M32
                extras += 1
                etype, eflags = raw[0], raw[1]
                if not 0 < etype < XEN_NETIF_EXTRA_TYPE_MAX:
                    self._fatal_tx_err(dev, vif, f"Invalid extra type: {etype}")
                    return
                if not eflags & XEN_NETIF_EXTRA_FLAG_MORE:
                    break
        frags: list[tuple[int, int, int, int, int]] = []
        remaining = size
        drop = None
        more = flags & NETTXF_more_data
        while more:
            if 1 + len(frags) >= XEN_NETBK_LEGACY_SLOTS_MAX:
                self._fatal_tx_err(dev, vif, f"Asked for {2 + len(frags)} slots but exceeds this limit")
                return
            if ring.req_cons == rp:
                self._fatal_tx_err(dev, vif, f"Need more slots than the {1 + len(frags)} posted")
                return
            txp = self._take(ring)
            if drop is None and txp[4] > remaining:
                drop = f"Invalid tx request, slot size {txp[4]} > remaining size {remaining}"
            remaining = max(0, remaining - txp[4])
            if txp[1] + txp[4] > PAGE:
                self._fatal_tx_err(dev, vif, f"Cross page boundary, txp->offset: {txp[1]}, size: {txp[4]}")
                return
            frags.append(txp)
            more = txp[2] & NETTXF_more_data
        first_size = remaining
        status = RSP_OKAY
        frame = b""
        if drop is not None:
            self.log(f"{vif.name}: {drop}")
            status = RSP_ERROR
        elif size < ETH_HLEN:
            self.log(f"{vif.name}: Bad packet size: {size}")
            status = RSP_ERROR
        elif offset + first_size > PAGE:
            self._fatal_tx_err(dev, vif, f"Cross page boundary, txreq.offset: {offset}, size: {first_size}")
            return
        else:
            frame, bad, st = self._fetch(dev.domid, [(gref, offset, first_size)] +
                                         [(f[0], f[1], f[4]) for f in frags])
            if bad >= 0:
                g = gref if bad == 0 else frags[bad - 1][0]
                self.log(f"{vif.name}: Grant copy of slot {bad} (ref {g}) failed! status: {abi.GNTST_NAMES.get(st, st)}")
                status = RSP_ERROR
        if status == RSP_OKAY:
            vif.stats["tx_packets"] += 1
        else:
            vif.stats["tx_errors"] += 1
        self._tx_response(dev, vif, rid, status, name)
        for _ in range(extras):
            self._tx_response(dev, vif, 0, RSP_NULL, name, push=False)
        for f in frags:
            self._tx_response(dev, vif, f[3], status, name)
        if status == RSP_OKAY and self.bridge is not None and vif.on_bridge:
            self.bridge.receive(vif.name, frame)

    def _tx_response(self, dev: BackendDevice, vif: Vif, rid: int, status: int, name: str,
                     push: bool = True) -> None:
        ring = vif.tx
        if status == RSP_NULL:
            # Only the status of a NULL response is written (make_tx_response).
            ring.put(ring.rsp_prod_pvt, struct.pack("<h", RSP_NULL), at=2)
        else:
            ring.put(ring.rsp_prod_pvt, TX_RESPONSE.pack(rid & 0xFFFF, status))
        ring.rsp_prod_pvt = (ring.rsp_prod_pvt + 1) & M32
        if not push:
            return
        notify = ring.push_responses()
        ring_event(self.host, dev.domid, ring=name, op=f"response {RSP_NAMES[status]}", req_prod=ring.req_prod,
                   req_cons=ring.req_cons, rsp_prod=ring.rsp_prod, notify=notify, id=rid)
        if notify and vif.port > 0:
            self.notify(vif.port)

    # -- rx: bridge -> guest -----------------------------------------------------------------------
    def rx(self, dev: BackendDevice, frame: bytes) -> None:
        """The bridge delivers ``frame`` to this vif: copy it into the next posted rx buffer."""
        vif: Vif | None = dev.data.get("vif")
        if dev.removed or vif is None or vif.rx is None or vif.disabled:
            return
        try:
            self._rx(dev, vif, frame)
        except Exception as e:
            self._fatal_tx_err(dev, vif, f"internal error on the rx ring: {type(e).__name__}: {e}")

    def _rx(self, dev: BackendDevice, vif: Vif, frame: bytes) -> None:
        ring = vif.rx
        name = f"{vif.name}-rx"
        charge_dom0(self.host, self.host.costs.event.get("netback_packet", PACKET_COST))
        rp = ring.req_prod
        if ring.request_prod_overflow(rp):
            self._fatal_tx_err(dev, vif, f"Impossible number of rx requests. req_prod {rp}, req_cons "
                                         f"{ring.req_cons}, size {ring.size}")
            return
        if len(frame) > PAGE or not ring.unconsumed_requests():
            vif.stats["rx_dropped"] += 1
            why = "frame larger than one buffer" if len(frame) > PAGE else "no rx buffer posted"
            ring_event(self.host, dev.domid, ring=name, op=f"drop ({why})", req_prod=rp, req_cons=ring.req_cons,
                       rsp_prod=ring.rsp_prod, length=len(frame))
            # Ask to be told when buffers are posted (rx-notify), as xenvif_rx_queue_stalled does.
            ring.set_u32(4, ring.req_cons + 1)
            return
        rid, gref = RX_REQUEST.unpack_from(ring.entry(ring.req_cons), 0)
        ring.req_cons = (ring.req_cons + 1) & M32
        ring_event(self.host, dev.domid, ring=name, op="request RX", req_prod=rp, req_cons=ring.req_cons,
                   rsp_prod=ring.rsp_prod, id=rid, gref=gref, length=len(frame))
        self._bounce_page().write(0, frame)
        st = self._copy(dev.domid, [(gref, 0, len(frame), True)])[0]
        if st != 0:
            self.log(f"{vif.name}: Grant copy into rx buffer {rid} (ref {gref}) failed! status: "
                     f"{abi.GNTST_NAMES.get(st, st)}")
            status = RSP_ERROR
            vif.stats["rx_dropped"] += 1
        else:
            status = len(frame)
            vif.stats["rx_packets"] += 1
        ring.put(ring.rsp_prod_pvt, RX_RESPONSE.pack(rid & 0xFFFF, 0, 0, status))
        ring.rsp_prod_pvt = (ring.rsp_prod_pvt + 1) & M32
        notify = ring.push_responses()
        ring_event(self.host, dev.domid, ring=name, op="response OKAY" if status > 0 else "response ERROR",
                   req_prod=ring.req_prod, req_cons=ring.req_cons, rsp_prod=ring.rsp_prod, notify=notify, id=rid,
                   status=status)
        if notify and vif.port > 0:
            self.notify(vif.port)

    # -- for the learner and the tests ---------------------------------------------------------------
    def vif(self, domid: int, devid: int) -> Vif | None:
        dev = self.devices.get((domid, devid))
        return dev.data.get("vif") if dev is not None else None

    def state(self, domid: int, devid: int) -> int | None:
        dev = self.devices.get((domid, devid))
        return dev.state if dev is not None else None
