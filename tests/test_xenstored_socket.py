"""xenstored on a Unix socket: the wire protocol of public/io/xs_wire.h, per-connection watches and
transactions as in tools/xenstored/core.c, and Xen's own xenstore-* programs (libxenstore of 4.17,
tools/libs/store/xs.c, which goes to $XENSTORED_PATH) run against it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from lab.dom0 import xsclient
from lab.dom0.xenstored import HEADER, Message, parse_messages
from lab.session.scenario import DEFAULT_SCENARIO, load_scenario, start_scenario
from lab.xen import abi
from lab.xenstored_socket import SocketFront, serve

ROOT = Path(__file__).resolve().parent.parent


def front() -> tuple[SocketFront, object]:
    host, _ = start_scenario(load_scenario(DEFAULT_SCENARIO))
    return SocketFront(host.services.xenstored), host


def request(t: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> Message:
    return Message(t, req_id, tx_id, payload)


def replies(client) -> list[Message]:
    msgs, rest = parse_messages(client.outbuf)
    assert rest == b""
    client.outbuf.clear()
    return msgs


# --- the front end, without a socket ------------------------------------------------------------

def test_reply_carries_req_id_and_errors_are_xsd_errors_strings():
    f, _ = front()
    c = f.open_client()
    f.handle(c, request(abi.XS_READ, b"/local/domain/0/name\0", req_id=41))
    f.handle(c, request(abi.XS_READ, b"/no/such/node\0", req_id=42))
    ok, err = replies(c)
    assert (ok.type, ok.req_id, ok.payload) == (abi.XS_READ, 41, b"Domain-0")
    # xsd_errors: the reply is XS_ERROR with the errno's name, NUL-terminated.
    assert (err.type, err.req_id, err.payload) == (abi.XS_ERROR, 42, b"ENOENT\0")


def test_each_connection_has_its_own_watches_even_with_the_same_token():
    f, _ = front()
    a, b = f.open_client(), f.open_client()
    f.handle(a, request(abi.XS_WATCH, b"/x\0tok\0"))
    f.handle(b, request(abi.XS_WATCH, b"/y\0tok\0"))
    # WATCH answers OK, then fires once at once with the watched path (do_watch in watch.c).
    assert [(m.type, m.payload) for m in replies(a)] == [(abi.XS_WATCH, b"OK\0"),
                                                         (abi.XS_WATCH_EVENT, b"/x\0tok\0")]
    replies(b)
    f.handle(a, request(abi.XS_WRITE, b"/y/z\0v"))
    f.flush_events()
    assert [m.type for m in replies(a)] == [abi.XS_WRITE]
    assert [(m.type, m.payload) for m in replies(b)] == [(abi.XS_WATCH_EVENT, b"/y/z\0tok\0")]


def test_a_closed_connection_loses_its_watches_and_transactions():
    f, host = front()
    store = host.services.xenstored.store
    c = f.open_client()
    f.handle(c, request(abi.XS_WATCH, b"/x\0t\0"))
    f.handle(c, request(abi.XS_TRANSACTION_START, b"\0"))
    replies(c)
    watches, transactions = len(store.watches), len(store.transactions)
    f.close_client(c)
    assert len(store.watches) == watches - 1
    assert len(store.transactions) == transactions - 1


def test_a_transaction_belongs_to_the_connection_that_started_it():
    f, _ = front()
    a, b = f.open_client(), f.open_client()
    f.handle(a, request(abi.XS_TRANSACTION_START, b"\0"))
    (started,) = replies(a)
    tx = int(started.payload.rstrip(b"\0"))
    f.handle(b, request(abi.XS_WRITE, b"/t\0v", tx_id=tx))
    assert replies(b)[0].payload == b"ENOENT\0"        # transaction_lookup() is per connection
    f.handle(a, request(abi.XS_WRITE, b"/t\0v", tx_id=tx))
    f.handle(a, request(abi.XS_TRANSACTION_END, b"T\0", tx_id=tx))
    assert [m.payload for m in replies(a)] == [b"OK\0", b"OK\0"]
    assert tx not in a.transactions


def test_a_payload_over_4096_bytes_drops_the_client():
    f, _ = front()
    c = f.open_client()
    assert f.receive(c, HEADER.pack(abi.XS_READ, 1, 0, abi.XENSTORE_PAYLOAD_MAX + 1)) is False


def test_messages_split_across_reads_are_joined():
    f, _ = front()
    c = f.open_client()
    raw = request(abi.XS_READ, b"/local/domain/0/domid\0", req_id=9).encode()
    for i in range(len(raw)):
        assert f.receive(c, raw[i:i + 1])
    (reply,) = replies(c)
    assert (reply.req_id, reply.payload) == (9, b"0")


def test_the_same_requests_leave_the_same_store():
    def run() -> dict[str, str]:
        f, host = front()
        a, b = f.open_client(), f.open_client()
        for client, t, payload in ((a, abi.XS_WRITE, b"/d/one\0001"), (b, abi.XS_MKDIR, b"/d/two\0"),
                                   (a, abi.XS_SET_PERMS, b"/d/one\0r1\0"), (b, abi.XS_RM, b"/d/two\0")):
            f.handle(client, request(t, payload))
        return xsclient.tree(host.services.xenstored, "/")
    assert run() == run()


# --- over a real socket ------------------------------------------------------------------------------

@pytest.fixture
def served():
    f, host = front()
    path = os.path.join(tempfile.mkdtemp(prefix="xs"), "socket")
    stop = threading.Event()
    ready = threading.Event()
    t = threading.Thread(target=serve, args=(f, path), kwargs={"ready": ready.set, "stop": stop.is_set})
    t.start()
    ready.wait(10)
    yield path, host
    stop.set()
    t.join(10)
    assert not os.path.exists(path)        # the socket is removed when the server stops


def wire(sock: socket.socket, t: int, payload: bytes, req_id: int = 1) -> Message:
    sock.sendall(HEADER.pack(t, req_id, 0, len(payload)) + payload)
    data = b""
    while True:
        msgs, _ = parse_messages(data)
        if msgs:
            return msgs[0]
        data += sock.recv(4096)


def test_socket_speaks_xsd_sockmsg(served):
    path, host = served
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.settimeout(10)
        assert wire(s, abi.XS_WRITE, b"/wire/test\0hello", req_id=5).payload == b"OK\0"
        reply = wire(s, abi.XS_READ, b"/wire/test\0", req_id=6)
        assert (reply.type, reply.req_id, reply.payload) == (abi.XS_READ, 6, b"hello")
    assert host.services.xenstored.store.node("/wire/test").value == "hello"


def test_socket_refuses_to_replace_a_file(tmp_path):
    from lab.errors import UserError
    from lab.xenstored_socket import listen
    p = tmp_path / "not-a-socket"
    p.write_text("keep me")
    with pytest.raises(UserError, match="not a socket"):
        listen(str(p))
    assert p.read_text() == "keep me"


# --- Xen's own programs (Debian's xenstore-utils) -------------------------------------------------------

TOOLS = ("xenstore-ls", "xenstore-read", "xenstore-write", "xenstore-list", "xenstore-rm", "xenstore-chmod",
         "xenstore-exists", "xenstore-watch")
needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="Xen's xenstore-* programs are not installed (Debian package xenstore-utils; .ci/run installs it)")


@pytest.fixture(scope="module")
def xenstored_process():
    path = os.path.join(tempfile.mkdtemp(prefix="xs"), "socket")
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "xenstored", "--socket", path],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    banner = proc.stderr.readline()      # printed once the socket listens
    assert "serving" in banner, banner
    yield path
    proc.terminate()                     # SIGTERM: the server closes and removes its socket
    assert proc.wait(20) == 0
    assert not os.path.exists(path)


def xs(path: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, XENSTORED_PATH=path)
    r = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=20)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@needs_tools
def test_real_xenstore_ls_shows_the_labs_tree(xenstored_process):
    # The same scenario booted here: the real xenstore-ls -f prints what the lab's own prints.
    host, _ = start_scenario(load_scenario(DEFAULT_SCENARIO))
    ours = xsclient.xenstore_ls(host.services.xenstored, "/local/domain/1", full_path=True)
    theirs = xs(xenstored_process, "xenstore-ls", "-f", "/local/domain/1").stdout
    assert theirs.strip() and theirs.strip() == ours.strip()


@needs_tools
def test_real_tools_write_read_list_chmod_rm(xenstored_process):
    p = xenstored_process
    xs(p, "xenstore-write", "/lab-test/a", "hello", "/lab-test/b", "world")
    assert xs(p, "xenstore-read", "/lab-test/a").stdout == "hello\n"
    assert xs(p, "xenstore-list", "/lab-test").stdout.split() == ["a", "b"]
    xs(p, "xenstore-chmod", "/lab-test/a", "r1", "w2")
    assert "(r1,w2)" in xs(p, "xenstore-ls", "-p", "/lab-test").stdout
    xs(p, "xenstore-rm", "/lab-test/a")
    assert xs(p, "xenstore-exists", "/lab-test/a", check=False).returncode == 1
    missing = xs(p, "xenstore-read", "/lab-test/none", check=False)
    assert missing.returncode == 1 and "couldn't read path /lab-test/none" in missing.stderr
    # dom0's permissions: the control domain may read a guest's private node.
    assert xs(p, "xenstore-read", "/local/domain/1/domid").stdout == "1\n"


@needs_tools
def test_real_xenstore_watch_sees_writes_and_removals(xenstored_process):
    p = xenstored_process
    env = dict(os.environ, XENSTORED_PATH=p)
    watcher = subprocess.Popen(["xenstore-watch", "-n", "3", "/lab-watch"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = watcher.stdout.readline()        # the watch's first event: it is set
    assert first == "/lab-watch\n"
    xs(p, "xenstore-write", "/lab-watch/x", "1", "/elsewhere", "2")
    xs(p, "xenstore-rm", "/lab-watch/x")
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    assert out.splitlines() == ["/lab-watch/x", "/lab-watch/x"]
