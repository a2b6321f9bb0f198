"""xenstored: the XenStore daemon in dom0, spoken to over each domain's ring page.

A guest talks to xenstored through one page of its own memory, ``struct
xenstore_domain_interface`` (``public/io/xs_wire.h``,
``docs/misc/xenstore-ring.txt``)::

    offset  size  field
         0  1024  req[]             requests, guest -> xenstored
      1024  1024  rsp[]             replies and watch events, xenstored -> guest
      2048     4  req_cons          xenstored's
      2052     4  req_prod          the guest's
      2056     4  rsp_cons          the guest's
      2060     4  rsp_prod          xenstored's
      2064     4  server_features   bit 0 reconnection, bit 1 error indicator
      2068     4  connection        0 connected, 1 the guest asks to reconnect
      2072     4  error             why xenstored stopped talking (2 indexes, 3 protocol)

and an event channel: whoever writes into the ring notifies the other end.
Indexes are free-running u32 byte counts; byte ``i`` lives at ``i % 1024``.
On that byte stream travel messages: a header of four little-endian u32
(``type, req_id, tx_id, len``) and ``len`` bytes of payload, at most 4096.

The daemon reads a domain's requests when its event channel fires (it runs
as dom0 work, costing dom0 cycles), executes them *as that domain* on the
store (:mod:`lab.dom0.xenstore`), puts the replies and any watch events into
the response ring and notifies the guest. A guest that breaks the protocol
(a payload over 4096, indexes that run ahead) gets what cxenstored gives it:
the error indicator is set and the daemon stops talking to it. Nothing a
guest writes into its page can raise in the daemon.

dom0's own tools reach the same store through :meth:`Xenstored.dom0_request`
(cxenstored's unix socket, in Xen), with the same trace events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..isa.bits import M32
from ..xen import abi
from .xenstore import (XenStore, XenStoreError, decode_reply, decode_value, encode_request, is_decimal,
                       message_type)

# struct xenstore_domain_interface
RING_SIZE = abi.XENSTORE_RING_SIZE
REQ_OFF, RSP_OFF = 0, 1024
REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD = 2048, 2052, 2056, 2060
SERVER_FEATURES, CONNECTION, ERROR = 2064, 2068, 2072
INTERFACE_SIZE = 2076

XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2
XENSTORE_CONNECTED, XENSTORE_RECONNECT = 0, 1
XENSTORE_ERROR_NONE, XENSTORE_ERROR_COMM, XENSTORE_ERROR_RINGIDX, XENSTORE_ERROR_PROTO = 0, 1, 2, 3
ERROR_NAMES = {0: "XENSTORE_ERROR_NONE", 1: "XENSTORE_ERROR_COMM", 2: "XENSTORE_ERROR_RINGIDX",
               3: "XENSTORE_ERROR_PROTO"}

HEADER = struct.Struct("<IIII")

#: Lab estimates (cycles), used unless the cost table has "xenstore_request" / "xenstore_byte".
REQUEST_COST = 1500
BYTE_COST = 2
IDLE_COST = 50
#: Output a domain may leave unread before xenstored stops talking to it (cxenstored: memory quota).
OUTPUT_LIMIT = 1 << 20


# ---------------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------------

class ProtocolError(Exception):
    """The peer broke the ring protocol; ``code`` is the connection error indicator to set."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True)
class Message:
    """struct xsd_sockmsg and its payload."""
    type: int
    req_id: int
    tx_id: int
    payload: bytes

    @property
    def name(self) -> str:
        return abi.XS_NAMES.get(self.type, f"XS_UNKNOWN_{self.type}")

    def encode(self) -> bytes:
        return format_message(self.type, self.req_id, self.tx_id, self.payload)

    def strings(self) -> list[str]:
        return [decode_value(s) for s in self.payload.split(b"\0")[:-1]]


def format_message(msg_type: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """Header and payload; ValueError for a payload over XENSTORE_PAYLOAD_MAX."""
    if len(payload) > abi.XENSTORE_PAYLOAD_MAX:
        raise ValueError(f"payload of {len(payload)} bytes is over XENSTORE_PAYLOAD_MAX (4096)")
    return HEADER.pack(msg_type & M32, req_id & M32, tx_id & M32, len(payload)) + payload


def parse_messages(data: bytes | bytearray) -> tuple[list[Message], bytes]:
    """The complete messages at the start of ``data`` and the bytes left over.

    Raises :class:`ProtocolError` (XENSTORE_ERROR_PROTO) as soon as a header
    announces a payload over 4096 bytes, as cxenstored's handle_input does.
    """
    out: list[Message] = []
    pos = 0
    while len(data) - pos >= HEADER.size:
        t, req_id, tx_id, length = HEADER.unpack_from(data, pos)
        if length > abi.XENSTORE_PAYLOAD_MAX:
            raise ProtocolError(XENSTORE_ERROR_PROTO, f"message of {length} bytes (the limit is 4096)")
        if len(data) - pos - HEADER.size < length:
            break
        start = pos + HEADER.size
        out.append(Message(t, req_id, tx_id, bytes(data[start:start + length])))
        pos = start + length
    return out, bytes(data[pos:])


# ---------------------------------------------------------------------------------------------------
# The ring page
# ---------------------------------------------------------------------------------------------------

class Page(Protocol):
    """The ring page: 4096 bytes, or the guest's frame as the daemon holds it
    (``lab.xen.frames.HeldFrame``)."""

    def read(self, off: int, n: int) -> bytes: ...
    def write(self, off: int, data: bytes) -> None: ...


class BytesPage:
    """A ring page that is just 4096 bytes (tests, and anything without a host)."""

    def __init__(self) -> None:
        self.data = bytearray(4096)

    def read(self, off: int, n: int) -> bytes:
        return bytes(self.data[off:off + n])

    def write(self, off: int, data: bytes) -> None:
        self.data[off:off + len(data)] = data


def _u32(page: Page, off: int) -> int:
    return int.from_bytes(page.read(off, 4), "little")


def _set_u32(page: Page, off: int, value: int) -> None:
    page.write(off, (value & M32).to_bytes(4, "little"))


def _ring_read(page: Page, base: int, start: int, n: int) -> bytes:
    first = min(n, RING_SIZE - start % RING_SIZE)
    data = page.read(base + start % RING_SIZE, first)
    return data + page.read(base, n - first) if n > first else data


def _ring_write(page: Page, base: int, start: int, data: bytes) -> None:
    first = min(len(data), RING_SIZE - start % RING_SIZE)
    page.write(base + start % RING_SIZE, data[:first])
    if len(data) > first:
        page.write(base, data[first:])


SERVER_FEATURES_OFFERED = XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR


def init_interface(page: Page, features: int = SERVER_FEATURES_OFFERED) -> None:
    """A fresh interface: empty rings, the features xenstored offers, connected, no error."""
    page.write(REQ_OFF, bytes(2 * RING_SIZE))
    for off in (REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, CONNECTION, ERROR):
        _set_u32(page, off, 0)
    _set_u32(page, SERVER_FEATURES, features)


class RingConnection:
    """xenstored's end of one domain's ring: the bytes in flight both ways."""

    def __init__(self, domid: int, page: Page) -> None:
        self.domid = domid
        self.page = page
        self.inbuf = b""                      # a partial message read so far
        self.outbuf = bytearray()             # replies and events not yet in the ring
        self.error = XENSTORE_ERROR_NONE      # non-zero: the connection is ignored

    @property
    def ignored(self) -> bool:
        return self.error != XENSTORE_ERROR_NONE

    def read_requests(self) -> list[Message]:
        """Consume the request ring; the complete messages in it. ProtocolError on abuse."""
        page = self.page
        cons, prod = _u32(page, REQ_CONS), _u32(page, REQ_PROD)
        avail = (prod - cons) & M32
        if avail > RING_SIZE:
            raise ProtocolError(XENSTORE_ERROR_RINGIDX,
                                f"request indexes are inconsistent (req_cons {cons}, req_prod {prod})")
        if avail:
            self.inbuf += _ring_read(page, REQ_OFF, cons, avail)
            _set_u32(page, REQ_CONS, prod)
        msgs, self.inbuf = parse_messages(self.inbuf)
        return msgs

    def queue(self, msg: Message) -> None:
        self.outbuf += msg.encode()

    def write_output(self) -> int:
        """Move as much queued output as fits into the response ring; bytes moved."""
        if not self.outbuf:
            return 0
        page = self.page
        cons, prod = _u32(page, RSP_CONS), _u32(page, RSP_PROD)
        used = (prod - cons) & M32
        if used > RING_SIZE:
            raise ProtocolError(XENSTORE_ERROR_RINGIDX,
                                f"response indexes are inconsistent (rsp_cons {cons}, rsp_prod {prod})")
        n = min(RING_SIZE - used, len(self.outbuf))
        if n:
            _ring_write(page, RSP_OFF, prod, bytes(self.outbuf[:n]))
            _set_u32(page, RSP_PROD, prod + n)
            del self.outbuf[:n]
        return n

    def reset(self) -> None:
        """The ring reconnection feature: empty both queues, forget partial messages."""
        self.inbuf = b""
        self.outbuf.clear()
        self.error = XENSTORE_ERROR_NONE
        for off in (REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, ERROR):
            _set_u32(self.page, off, 0)
        _set_u32(self.page, CONNECTION, XENSTORE_CONNECTED)


class GuestRing:
    """The guest's end of the ring (what a kernel's xenbus driver does), for tests and lessons."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.received = b""

    def send(self, data: bytes) -> int:
        """Put as much of ``data`` as fits into the request ring; bytes written."""
        cons, prod = _u32(self.page, REQ_CONS), _u32(self.page, REQ_PROD)
        n = min(RING_SIZE - ((prod - cons) & M32), len(data))
        if n > 0:
            _ring_write(self.page, REQ_OFF, prod, data[:n])
            _set_u32(self.page, REQ_PROD, prod + n)
        return max(n, 0)

    def receive(self) -> list[Message]:
        """Drain the response ring; the complete messages received so far."""
        cons, prod = _u32(self.page, RSP_CONS), _u32(self.page, RSP_PROD)
        n = (prod - cons) & M32
        if n:
            self.received += _ring_read(self.page, RSP_OFF, cons, n)
            _set_u32(self.page, RSP_CONS, prod)
        msgs, self.received = parse_messages(self.received)
        return msgs


# ---------------------------------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------------------------------

def _summary(msg_type: int, payload: bytes) -> tuple[str | None, str | None]:
    """(path, value) of a request for its trace event."""
    if msg_type == abi.XS_WRITE:
        i = payload.find(b"\0")
        if i < 0:
            return decode_value(payload), None
        return decode_value(payload[:i]), decode_value(payload[i + 1:])
    parts = [decode_value(s) for s in payload.split(b"\0")[:-1]]
    if msg_type in (abi.XS_TRANSACTION_START, abi.XS_RESET_WATCHES):
        return None, None
    if msg_type == abi.XS_TRANSACTION_END:
        return None, parts[0] if parts else None
    path = parts[0] if parts else None
    rest = " ".join(parts[1:]) if len(parts) > 1 else None
    return path, rest


def _reply_value(msg_type: int, rtype: int, payload: bytes) -> tuple[str | None, str]:
    """(value, result) of a reply for its trace event: result "OK" or the errno name."""
    if rtype == abi.XS_ERROR:
        return None, decode_value(payload.rstrip(b"\0"))
    if msg_type == abi.XS_READ:
        return decode_value(payload), "OK"
    if msg_type in (abi.XS_DIRECTORY, abi.XS_GET_PERMS):
        return " ".join(decode_value(s) for s in payload.split(b"\0")[:-1]), "OK"
    if msg_type in (abi.XS_TRANSACTION_START, abi.XS_GET_DOMAIN_PATH, abi.XS_IS_DOMAIN_INTRODUCED):
        return decode_value(payload.rstrip(b"\0")), "OK"
    return None, "OK"


class Xenstored:
    """The daemon: one ring connection per introduced domain, plus dom0's tools."""

    name = "xenstored"

    def __init__(self, host, store: XenStore | None = None) -> None:
        self.host = host
        self.store = store or XenStore()
        # The store asks Xen which domains exist, as cxenstored does (xenmanage_get_domain_info).
        self.store.domain_exists = lambda domid: domid in host.domains
        self.conns: dict[int, RingConnection] = {}
        self.ports: dict[int, int] = {}               # dom0's port -> domid
        self.local_port: dict[int, int] = {}          # domid -> dom0's port
        self.callbacks: dict[str, Callable[[str, str], Any]] = {}   # dom0 watch token -> callback
        self.dom0_events: list[tuple[str, str]] = []  # dom0 watch events with no callback
        # dom0 programs outside the machine (xenstored's unix socket): watch token -> delivery,
        # called at once with (path, token), costing nothing in the machine.
        self.socket_watchers: dict[str, Callable[[str, str], None]] = {}
        self.req_id = 0
        # xen-init-dom0 (tools/helpers/xen-init-dom0.c) names dom0 in the store at boot.
        for key, value in (("domid", "0"), ("name", "Domain-0")):
            if self.store.node(f"/local/domain/0/{key}") is None:
                self.store.write(0, f"/local/domain/0/{key}", value)

    @classmethod
    def install(cls, host) -> "Xenstored":
        """Create the daemon and register it as dom0's xenstored."""
        daemon = cls(host)
        host.services.add(daemon)
        return daemon

    # -- costs and events ---------------------------------------------------------------
    def _cost(self, nbytes: int) -> int:
        costs = getattr(self.host, "costs", None)
        base = costs.ev("xenstore_request") if costs is not None else 0
        per = costs.ev("xenstore_byte") if costs is not None else 0
        return (base or REQUEST_COST) + (per or BYTE_COST) * nbytes

    def _vcpu(self, domid: int):
        dom = self.host.domains.get(domid)
        return dom.vcpus[0] if dom is not None and dom.vcpus else None

    def _emit(self, domid: int, op: str, path: str | None, value: str | None, result: str | None) -> None:
        self.host.emit(self._vcpu(domid), "xenstore", op=op, path=path, value=value, result=result)

    def _charge_dom0(self, cycles: int) -> None:
        dom0 = self.host.domains.get(0)
        if dom0 is None or not dom0.vcpus:
            return
        v = dom0.vcpus[0]
        p = v.pcpu if v.pcpu is not None else 0
        self.host.clock[p] += cycles
        v.run_cycles += cycles

    # -- connecting a domain --------------------------------------------------------------------
    def connect(self, dom, pfn: int | None = None) -> tuple[int, int]:
        """Give ``dom`` its store ring in page ``pfn`` of its own memory and an event channel.

        As the toolstack does: allocate an unbound port in the guest for dom0,
        then INTRODUCE the domain (frame and port); xenstored binds the port and
        maps the page. Returns (store pfn, the guest's port) for its start info
        (``store_mfn`` is ``dom.p2m[pfn]`` for PV; HVM guests get the pfn).
        """
        if dom.domid in self.conns:
            return dom.store_pfn, dom.store_evtchn         # already connected
        if pfn is None:
            pfn = dom.store_pfn or None
        if pfn is None or self._guest_mfn(dom, pfn) is None:
            raise ValueError(f"d{dom.domid}: no page {pfn!r} for the xenstore ring")
        guest_port = self.host.evtchn.alloc_unbound(dom.domid, 0)
        dom.store_pfn = pfn
        dom.store_evtchn = guest_port
        frame = self._guest_mfn(dom, pfn) if dom.is_pv else pfn
        self.dom0_request("INTRODUCE", str(dom.domid), [str(frame), str(guest_port)])
        return pfn, guest_port

    def _introduce(self, domid: int, frame: int, port: int) -> str | None:
        """xenstored's half of INTRODUCE: map the page, bind the port. An errno name on failure."""
        dom = self.host.domains.get(domid)
        if dom is None:
            return "EINVAL"
        if domid in self.conns:
            return None                              # already connected: nothing to redo
        mfn = frame if dom.is_pv else self._guest_mfn(dom, frame)
        if mfn is None or not self._owns(dom, mfn):
            return "EINVAL"                          # not a page of that domain
        # Mapped as xenstored maps it (a foreign mapping by dom0): a writable reference on
        # the frame for as long as the connection lives, so the guest can neither free it
        # under the daemon nor make it one of its page tables.
        page = self.host.frames.hold(domid, mfn, writable=True, holder=f"xenstored ring of d{domid}")
        if isinstance(page, int):
            return "EINVAL"
        local = self.host.evtchn.bind_interdomain(0, domid, port)
        if local < 0:
            page.release()
            return "EINVAL"
        self.host.evtchn.bind_service(0, local, self.notified)
        init_interface(page)
        self.conns[domid] = RingConnection(domid, page)
        self.ports[local] = domid
        self.local_port[domid] = local
        return None

    # Where a domain's frames are: its p2m (an Arm host's differs, see lab/dom0/arm/services.py).
    def _guest_mfn(self, dom, gfn: int) -> int | None:
        return dom.gfn_to_mfn(gfn)

    def _owns(self, dom, mfn: int) -> bool:
        return mfn in dom.p2m

    def _disconnect(self, domid: int) -> None:
        conn = self.conns.pop(domid, None)
        if conn is not None and hasattr(conn.page, "release"):
            conn.page.release()
        local = self.local_port.pop(domid, None)
        if local is not None:
            self.ports.pop(local, None)
            if 0 in self.host.evtchn.ports:
                self.host.evtchn.close(0, local, quiet=True)

    # -- a domain's ring ----------------------------------------------------------------------------
    def notified(self, port: int) -> int:
        """The event channel from a domain fired: serve its ring. Returns the cycles it cost."""
        domid = self.ports.get(port)
        conn = self.conns.get(domid) if domid is not None else None
        if conn is None:
            return IDLE_COST
        cost = IDLE_COST
        page = conn.page
        if _u32(page, CONNECTION) == XENSTORE_RECONNECT:
            conn.reset()
            self.store.reset_watches(domid)
            self._emit(domid, "reconnect", None, None, "OK")
            self._notify(domid)
            return cost + self._cost(0)
        if conn.ignored:
            return cost
        try:
            msgs = conn.read_requests()
        except ProtocolError as e:
            self._bad_client(conn, e)
            return cost + self._cost(0)
        for msg in msgs:
            cost += self._cost(len(msg.payload))
            self._serve(conn, msg)
        self._flush()
        return cost

    def _serve(self, conn: RingConnection, msg: Message) -> None:
        domid = conn.domid
        reply = self._execute(domid, msg)
        events = self._take_events(domid)
        if msg.type == abi.XS_WATCH:
            conn.queue(reply)                       # the WATCH's OK, then its first event
            for ev in events:
                conn.queue(ev)
        else:
            for ev in events:                       # events fired by this request come first
                conn.queue(ev)
            conn.queue(reply)

    def _execute(self, domid: int, msg: Message) -> Message:
        """Run one request as ``domid``: trace events, the daemon's own work, the reply."""
        name = msg.name
        path, value = _summary(msg.type, msg.payload)
        self._emit(domid, name, path, value, None)
        rtype = rpayload = None
        if msg.type == abi.XS_INTRODUCE and self.store.is_privileged(domid):
            err = self._pre_introduce(msg)
            if err:
                rtype, rpayload = abi.XS_ERROR, err.encode() + b"\0"
        if rtype is None:
            rtype, rpayload = self.store.request(domid, msg.type, msg.payload, msg.tx_id)
        if rtype != abi.XS_ERROR and msg.type == abi.XS_RELEASE:
            self._disconnect(int(msg.strings()[0]))
        rvalue, result = _reply_value(msg.type, rtype, rpayload)
        self._emit(domid, name, path, rvalue, result)
        return Message(rtype, msg.req_id, msg.tx_id, rpayload)

    def _pre_introduce(self, msg: Message) -> str | None:
        args = msg.strings()
        if len(args) < 3 or not all(is_decimal(a) for a in args[:3]):
            return None                              # the store gives the EINVAL
        domid, frame, port = (int(a) for a in args[:3])
        if not 0 < domid < abi.DOMID_FIRST_RESERVED or port <= 0:
            return None
        if self.store.is_domain_introduced(domid):
            self._rebind(domid, port)
            return None
        return self._introduce(domid, frame, port)

    def _rebind(self, domid: int, port: int) -> None:
        """introduce_domain() on a domain already introduced: unbind the old event channel
        and bind the one given (a failed bind leaves the domain with no port, still OK)."""
        if domid not in self.conns:
            return
        old = self.local_port.pop(domid, None)
        if old is not None:
            self.ports.pop(old, None)
            self.host.evtchn.close(0, old, quiet=True)
        local = self.host.evtchn.bind_interdomain(0, domid, port)
        if local >= 0:
            self.host.evtchn.bind_service(0, local, self.notified)
            self.ports[local] = domid
            self.local_port[domid] = local

    def _bad_client(self, conn: RingConnection, e: ProtocolError) -> None:
        """ignore_connection(): set the error indicator and stop talking to the domain."""
        conn.error = e.code
        _set_u32(conn.page, ERROR, e.code)
        self.host.log(f"xenstored: d{conn.domid}: {e}; ignoring the connection")
        self._emit(conn.domid, "ignore_connection", None, str(e), ERROR_NAMES[e.code])

    def _notify(self, domid: int) -> None:
        local = self.local_port.get(domid)
        if local is not None:
            self.host.evtchn.send(0, local)

    # -- watch events ------------------------------------------------------------------------------
    def _take_events(self, domid: int) -> list[Message]:
        out = []
        for path, token in self.store.take_events(domid):
            payload = path.encode("utf-8", "surrogateescape") + b"\0" + token.encode("utf-8", "surrogateescape") + b"\0"
            out.append(Message(abi.XS_WATCH_EVENT, 0, 0, payload))
            self._emit(domid, "XS_WATCH_EVENT", path, token, None)
        return out

    def _flush(self) -> None:
        """Deliver pending watch events and queued output to every domain; notify those written to."""
        for domid in self.store.domains_with_events():
            if domid == 0:
                self._dom0_events()
                continue
            conn = self.conns.get(domid)
            if conn is None or conn.ignored:
                continue
            for ev in self._take_events(domid):
                conn.queue(ev)
            if len(conn.outbuf) > OUTPUT_LIMIT:
                self._bad_client(conn, ProtocolError(XENSTORE_ERROR_COMM,
                                                     "too much unread output (the guest does not read its ring)"))
        for domid in sorted(self.conns):
            conn = self.conns[domid]
            if conn.ignored or not conn.outbuf:
                continue
            try:
                wrote = conn.write_output()
            except ProtocolError as e:
                self._bad_client(conn, e)
                continue
            if wrote:
                self._notify(domid)

    def _dom0_events(self) -> None:
        for path, token in self.store.take_events(0):
            self._emit(0, "XS_WATCH_EVENT", path, token, None)
            deliver = self.socket_watchers.get(token)
            if deliver is not None:
                deliver(path, token)
                continue
            cb = self.callbacks.get(token)
            if cb is None:
                self.dom0_events.append((path, token))
                continue
            self.host.queue_dom0_work(f"xenstore watch {token} {path}",
                                      lambda cb=cb, path=path, token=token: (cb(path, token) or 0) + IDLE_COST)

    # -- dom0's tools ----------------------------------------------------------------------------
    def dom0_request(self, op: str | int, path: str | None = None, value: Any = None, tx: int = 0) -> Any:
        """A request from dom0's tools: traced, costed, and answered in Python terms.

        Returns the value read, the list of children or permissions, the
        transaction id, True/False for IS_DOMAIN_INTRODUCED, or "OK"; an error
        reply raises :class:`~lab.dom0.xenstore.XenStoreError` with its errno name.
        """
        t = message_type(op)
        self.req_id = (self.req_id + 1) & M32
        msg = Message(t, self.req_id, tx, encode_request(t, path, value))
        reply = self._execute(0, msg)
        self._charge_dom0(self._cost(len(msg.payload) + len(reply.payload)))
        self._flush()
        return decode_reply(t, reply.type, reply.payload)

    def dom0_message(self, msg: Message) -> Message:
        """A request from a dom0 program over xenstored's socket, as it came on the wire:
        executed as dom0, traced and costed; returns the reply (watch events go to
        :attr:`socket_watchers`)."""
        reply = self._execute(0, msg)
        self._charge_dom0(self._cost(len(msg.payload) + len(reply.payload)))
        self._flush()
        return reply

    def watch(self, path: str, token: str, callback: Callable[[str, str], Any]) -> None:
        """A dom0 service watches ``path``: ``callback(path, token)`` runs as dom0 work per event."""
        self.callbacks[token] = callback
        try:
            self.dom0_request("WATCH", path, token)
        except XenStoreError:
            del self.callbacks[token]
            raise

    def unwatch(self, path: str, token: str) -> None:
        self.dom0_request("UNWATCH", path, token)
        self.callbacks.pop(token, None)

    # -- domains stopping ---------------------------------------------------------------------------
    def domain_shutdown(self, dom) -> None:
        self.store.domain_shutdown(dom.domid)
        self._flush()

    def domain_gone(self, dom) -> None:
        """Destroyed: release its connection (@releaseDomain) and remove its nodes as libxl does."""
        self._disconnect(dom.domid)
        self.store.domain_gone(dom.domid)
        from .xsclient import remove_domain
        remove_domain(self, dom.domid)
        self._flush()
