"""The lab's xenstored on a Unix socket, for Xen's own tools.

cxenstored listens on ``/run/xenstored/socket`` as well as on each domain's
ring page; dom0's programs (``xenstore-ls``, ``xenstore-write``, libxl ...)
reach it there through libxenstore, which goes to the path in
``XENSTORED_PATH`` when it is set (``tools/libs/store/xs.c``,
``xs_daemon_socket()`` and ``xs_domain_dev()``). :class:`SocketFront`
speaks the same wire protocol on such a socket (``public/io/xs_wire.h``:
``struct xsd_sockmsg`` headers, ``XS_*`` types, ``xsd_errors`` names) so those
programs work against the lab's store unchanged.

Every socket connection is a dom0 program: privileged, as cxenstored treats
its socket connections (``tools/xenstored/core.c``, ``new_connection`` with no
domain). Each connection has its own watches and transactions, as in
cxenstored: a connection sees only the events of the watches it set and can
use only the transactions it started, and closing it drops both.

The front end is only a transport. What a request does to the store is
decided by :meth:`SocketFront.handle`, one message at a time in arrival
order, through the daemon's own request path (the same trace events and
costs as dom0's tools inside the lab); the machine does not run meanwhile.
The same messages in the same order leave the same store.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import stat
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from .dom0.xenstored import HEADER, Message, Xenstored
from .errors import UserError
from .xen import abi

#: Prefix of the watch tokens the daemon sees for a socket client's watches, so that two
#: clients (and dom0's services inside the lab) never share one.
TOKEN_PREFIX = "xenstored-socket"


@dataclass
class SocketClient:
    """One connection: its bytes in flight, its watches and its transactions."""
    number: int
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    watches: dict[tuple[str, str], str] = field(default_factory=dict)   # (path, token) -> daemon's token
    transactions: set[int] = field(default_factory=set)
    closed: bool = False
    events: list[Message] = field(default_factory=list)                # fired during the current request

    def send(self, msg: Message) -> None:
        self.outbuf += msg.encode()


def _strings(payload: bytes) -> list[bytes]:
    return payload.split(b"\0")[:-1] if payload.endswith(b"\0") else payload.split(b"\0")


def _error(msg: Message, errno: str) -> Message:
    return Message(abi.XS_ERROR, msg.req_id, msg.tx_id, errno.encode() + b"\0")


class SocketFront:
    """xenstored's socket end: requests in, replies and watch events out, per client."""

    def __init__(self, daemon: Xenstored) -> None:
        self.daemon = daemon
        self.clients: dict[int, SocketClient] = {}
        self.next_number = 1
        self.pending: set[int] = set()            # clients with events waiting to go out

    # -- connections ------------------------------------------------------------------------------
    def open_client(self) -> SocketClient:
        client = SocketClient(self.next_number)
        self.next_number += 1
        self.clients[client.number] = client
        return client

    def close_client(self, client: SocketClient) -> None:
        """The program went away: its watches and open transactions go with it."""
        if client.closed:
            return
        client.closed = True
        for (path, _), internal in sorted(client.watches.items()):
            self.daemon.dom0_message(Message(abi.XS_UNWATCH, 0, 0, _payload(path, internal)))
            self.daemon.socket_watchers.pop(internal, None)
        client.watches.clear()
        for tx in sorted(client.transactions):
            self.daemon.dom0_message(Message(abi.XS_TRANSACTION_END, 0, tx, b"F\0"))
        client.transactions.clear()
        self.clients.pop(client.number, None)

    def receive(self, client: SocketClient, data: bytes) -> bool:
        """Bytes from ``client``: run every complete message; False if it must be dropped."""
        client.inbuf += data
        while len(client.inbuf) >= HEADER.size:
            msg_type, req_id, tx_id, length = HEADER.unpack_from(client.inbuf, 0)
            if length > abi.XENSTORE_PAYLOAD_MAX:
                return False                     # handle_input(): a bad client is dropped
            end = HEADER.size + length
            if len(client.inbuf) < end:
                break
            payload = bytes(client.inbuf[HEADER.size:end])
            del client.inbuf[:end]
            self.handle(client, Message(msg_type, req_id, tx_id, payload))
        return True

    # -- one request ------------------------------------------------------------------------------
    def handle(self, client: SocketClient, msg: Message) -> None:
        """Run one request from ``client``; its reply and events go to the clients' outbufs."""
        if msg.tx_id and msg.tx_id not in client.transactions and msg.type not in (abi.XS_WATCH,
                                                                                     abi.XS_UNWATCH):
            reply = _error(msg, "ENOENT")        # transaction_lookup(): not this connection's
        elif msg.type in (abi.XS_WATCH, abi.XS_UNWATCH):
            reply = self._watch(client, msg)
        elif msg.type == abi.XS_RESET_WATCHES:
            reply = self._reset(client, msg)
        else:
            reply = self.daemon.dom0_message(msg)
            if msg.type == abi.XS_TRANSACTION_START and reply.type == abi.XS_TRANSACTION_START:
                client.transactions.add(int(reply.payload.rstrip(b"\0") or b"0"))
            elif msg.type == abi.XS_TRANSACTION_END:
                client.transactions.discard(msg.tx_id)   # ended either way, as in cxenstored
        if msg.type == abi.XS_WATCH:
            client.send(reply)                   # the WATCH's OK, then its first event
            self._send_events(client)
        else:
            self._send_events(client)            # events this request fired, then its reply
            client.send(reply)

    def _send_events(self, client: SocketClient) -> None:
        for ev in client.events:
            client.send(ev)
        client.events = []

    def _watch(self, client: SocketClient, msg: Message) -> Message:
        args = _strings(msg.payload)
        if len(args) != 2:
            return self.daemon.dom0_message(msg)     # the daemon's EINVAL, traced
        path, token = (a.decode("utf-8", "surrogateescape") for a in args)
        key = (path, token)
        internal = client.watches.get(key) or f"{TOKEN_PREFIX}/{client.number}/{token}"
        if msg.type == abi.XS_WATCH and key not in client.watches:
            self.daemon.socket_watchers[internal] = self._deliverer(client, token)
        reply = self.daemon.dom0_message(Message(msg.type, msg.req_id, msg.tx_id, _payload(path, internal)))
        if msg.type == abi.XS_WATCH and reply.type != abi.XS_ERROR:
            client.watches[key] = internal
        elif msg.type == abi.XS_UNWATCH and reply.type != abi.XS_ERROR:
            client.watches.pop(key, None)
            self.daemon.socket_watchers.pop(internal, None)
        elif msg.type == abi.XS_WATCH and key not in client.watches:
            self.daemon.socket_watchers.pop(internal, None)
        return reply

    def _reset(self, client: SocketClient, msg: Message) -> Message:
        """RESET_WATCHES: this connection's watches and transactions only."""
        for (path, _), internal in sorted(client.watches.items()):
            self.daemon.dom0_message(Message(abi.XS_UNWATCH, msg.req_id, 0, _payload(path, internal)))
            self.daemon.socket_watchers.pop(internal, None)
        client.watches.clear()
        for tx in sorted(client.transactions):
            self.daemon.dom0_message(Message(abi.XS_TRANSACTION_END, msg.req_id, tx, b"F\0"))
        client.transactions.clear()
        return Message(abi.XS_RESET_WATCHES, msg.req_id, msg.tx_id, b"OK\0")

    def _deliverer(self, client: SocketClient, token: str) -> Callable[[str, str], None]:
        def deliver(path: str, _internal: str) -> None:
            if not client.closed:
                client.events.append(Message(abi.XS_WATCH_EVENT, 0, 0, _payload(path, token)))
                self.pending.add(client.number)
        return deliver

    def flush_events(self) -> None:
        """Events fired for clients other than the one that sent the request go out now."""
        for number in sorted(self.pending):
            client = self.clients.get(number)
            if client is not None:
                self._send_events(client)
        self.pending.clear()


def _payload(path: str, token: str) -> bytes:
    return path.encode("utf-8", "surrogateescape") + b"\0" + token.encode("utf-8", "surrogateescape") + b"\0"


# ---------------------------------------------------------------------------------------------------
# The socket
# ---------------------------------------------------------------------------------------------------

def listen(path: str) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket there is replaced, anything else is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise UserError(f"{path}: cannot use as a socket: {e.strerror}") from None
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise UserError(f"{path}: exists and is not a socket (refusing to replace it)")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise UserError(f"{path}: cannot listen there: {e.strerror}") from None
    sock.listen(16)
    sock.setblocking(False)
    return sock


def serve(front: SocketFront, path: str, ready: Callable[[], None] | None = None,
          stop: Callable[[], bool] | None = None) -> None:
    """Serve ``front`` on ``path`` until ``stop()`` is true, SIGINT or SIGTERM; removes the socket after."""
    server = listen(path)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ, None)
    conns: dict[int, tuple[socket.socket, SocketClient]] = {}
    stopping = []

    def on_signal(signum, frame) -> None:
        stopping.append(signum)

    # Signals reach only the main thread; a server run in another one stops through ``stop``.
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        if ready is not None:
            ready()
        while not stopping and not (stop is not None and stop()):
            for key, _ in sel.select(timeout=0.2):
                if key.data is None:
                    _accept(front, server, sel, conns)
                else:
                    _service(front, key.fileobj, sel, conns)
            front.flush_events()
            for fd, (conn, client) in sorted(conns.items()):
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
                if sel.get_key(conn).events != want:
                    sel.modify(conn, want, client)
    finally:
        for fd, (conn, client) in sorted(conns.items()):
            front.close_client(client)
            conn.close()
        sel.close()
        server.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        for s, handler in old.items():
            signal.signal(s, handler)


def _accept(front: SocketFront, server: socket.socket, sel, conns) -> None:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return
    conn.setblocking(False)
    client = front.open_client()
    conns[conn.fileno()] = (conn, client)
    sel.register(conn, selectors.EVENT_READ, client)


def _service(front: SocketFront, conn: socket.socket, sel, conns) -> None:
    fd = conn.fileno()
    _, client = conns[fd]
    alive = True
    try:
        data = conn.recv(65536)
        if data:
            alive = front.receive(client, data)
        else:
            alive = False
    except BlockingIOError:
        pass
    except OSError:
        alive = False
    if alive and client.outbuf:
        try:
            sent = conn.send(bytes(client.outbuf))
            del client.outbuf[:sent]
        except BlockingIOError:
            pass
        except OSError:
            alive = False
    if not alive:
        sel.unregister(conn)
        del conns[fd]
        front.close_client(client)
        conn.close()


def announce(path: str, scenario: str) -> Callable[[], None]:
    from .paths import display

    def ready() -> None:
        print(f"xenstored: serving the store of {display(scenario)} on {path} "
              f"(XENSTORED_PATH={path} xenstore-ls; Ctrl-C stops)", file=sys.stderr, flush=True)
    return ready
