"""xenstored: the wire format, the ring page, and the daemon serving guests and dom0."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.dom0 import xsclient
from lab.dom0.xenstore import XenStoreError
from lab.dom0.xenstored import (CONNECTION, ERROR, HEADER, REQ_CONS, REQ_PROD, RING_SIZE, RSP_CONS, RSP_PROD,
                                SERVER_FEATURES, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX, BytesPage,
                                GuestRing, Message, ProtocolError, RingConnection, Xenstored,
                                format_message, init_interface, parse_messages)
from lab.session.scenario import boot_host
from xen_helpers import GuestPage
from lab.xen import abi

MACHINES = Path(__file__).resolve().parent.parent / "machines"


def msg(t: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> bytes:
    return format_message(t, req_id, tx_id, payload)


def u32(page, off: int) -> int:
    return int.from_bytes(page.read(off, 4), "little")


def set_u32(page, off: int, value: int) -> None:
    page.write(off, (value & 0xFFFFFFFF).to_bytes(4, "little"))


# --- the wire format ------------------------------------------------------------------------

def test_header_layout():
    raw = msg(abi.XS_READ, b"/a\0", req_id=7, tx_id=3)
    assert raw[:16] == struct.pack("<IIII", 2, 7, 3, 3) and raw[16:] == b"/a\0"
    assert HEADER.size == 16


def test_round_trip_and_partial_messages():
    a = Message(abi.XS_WRITE, 1, 0, b"/a\0value")
    b = Message(abi.XS_DIRECTORY, 2, 5, b"/\0")
    data = a.encode() + b.encode()
    assert parse_messages(data) == ([a, b], b"")
    for cut in range(len(data)):
        got, rest = parse_messages(data[:cut])
        assert got == [a, b][:len(got)]
        assert parse_messages(rest + data[cut:])[0] == [a, b][len(got):]
    assert Message(abi.XS_WATCH, 0, 0, b"p\0t\0").strings() == ["p", "t"]
    assert Message(99, 0, 0, b"").name == "XS_UNKNOWN_99"


def test_payload_limit():
    format_message(abi.XS_WRITE, 1, 0, b"x" * 4096)
    with pytest.raises(ValueError):
        format_message(abi.XS_WRITE, 1, 0, b"x" * 4097)
    bad = struct.pack("<IIII", abi.XS_WRITE, 1, 0, 4097)
    with pytest.raises(ProtocolError) as e:
        parse_messages(bad)                          # refused from the header alone
    assert e.value.code == XENSTORE_ERROR_PROTO


# --- the ring, without a host ------------------------------------------------------------------

def ring_pair(start: int = 0):
    page = BytesPage()
    init_interface(page)
    for off in (REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD):
        set_u32(page, off, start)                    # guests must not assume indexes start at 0
    return page, RingConnection(1, page), GuestRing(page)


def test_interface_layout():
    page, conn, guest = ring_pair()
    assert (REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, SERVER_FEATURES, CONNECTION, ERROR) == \
           (2048, 2052, 2056, 2060, 2064, 2068, 2072)
    assert u32(page, SERVER_FEATURES) == 3           # reconnection and the error indicator


def test_requests_split_across_the_wrap():
    page, conn, guest = ring_pair(start=0xFFFFFFF0)  # the u32 indexes wrap too
    m = msg(abi.XS_WRITE, b"/key\0" + b"v" * 40)
    assert guest.send(m) == len(m)
    assert conn.read_requests() == [Message(abi.XS_WRITE, 1, 0, b"/key\0" + b"v" * 40)]
    assert u32(page, REQ_CONS) == u32(page, REQ_PROD) == (0xFFFFFFF0 + len(m)) & 0xFFFFFFFF
    conn.queue(Message(abi.XS_WRITE, 1, 0, b"OK\0"))
    conn.write_output()
    assert guest.receive() == [Message(abi.XS_WRITE, 1, 0, b"OK\0")]


def test_a_message_bigger_than_the_ring_arrives_in_pieces():
    page, conn, guest = ring_pair(start=1000)
    m = msg(abi.XS_WRITE, b"/big\0" + b"b" * 3000)
    sent = 0
    got = []
    while sent < len(m):
        sent += guest.send(m[sent:])
        got += conn.read_requests()
    assert len(got) == 1 and got[0].payload.endswith(b"b" * 3000)


def test_output_waits_for_room():
    page, conn, guest = ring_pair()
    for i in range(100):
        conn.queue(Message(abi.XS_READ, i, 0, b"x" * 40))
    conn.write_output()
    assert u32(page, RSP_PROD) - u32(page, RSP_CONS) == RING_SIZE
    received = []
    while len(received) < 100:
        received += guest.receive()
        conn.write_output()
    assert [m.req_id for m in received] == list(range(100))


def test_bad_indexes_are_protocol_errors():
    page, conn, guest = ring_pair()
    set_u32(page, REQ_PROD, 5000)                    # 5000 bytes "waiting" in a 1024-byte ring
    with pytest.raises(ProtocolError) as e:
        conn.read_requests()
    assert e.value.code == XENSTORE_ERROR_RINGIDX
    page, conn, guest = ring_pair()
    set_u32(page, RSP_CONS, 77)                      # the guest claims to have read unwritten replies
    conn.queue(Message(abi.XS_READ, 1, 0, b""))
    with pytest.raises(ProtocolError):
        conn.write_output()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2100), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_garbage_in_the_ring_never_raises_anything_else(junk, cons, prod):
    page = BytesPage()
    page.write(0, junk[:2048])
    set_u32(page, REQ_CONS, cons)
    set_u32(page, REQ_PROD, prod)
    conn = RingConnection(1, page)
    try:
        msgs = conn.read_requests()
    except ProtocolError:
        return
    for m in msgs:
        assert len(m.payload) <= 4096


# --- the daemon on a booted host ---------------------------------------------------------------

def run_dom0(host) -> int:
    """Run queued dom0 work (what the scheduler would do on dom0's vCPU); the cycles it cost."""
    total = 0
    while host.dom0_work:
        _, fn = host.dom0_work.pop(0)
        total += fn() or 0
    return total


def make_lab():
    host, xl = boot_host()
    xsd = host.services.xenstored                 # boot_host starts xenstored
    dom = xl.create(MACHINES / "pv-guest.cfg")       # the builder gave the guest its store ring
    pfn = dom.store_pfn
    assert pfn and xsd.connect(dom) == (pfn, dom.store_evtchn), "connecting again gives the same ring"
    assert xsd.dom0_request("READ", f"/local/domain/{dom.domid}/name") == "pv-guest", "xl create wrote the home"
    run_dom0(host)
    page = GuestPage(host, dom.p2m[pfn])
    return host, xsd, dom, GuestRing(page), page


@pytest.fixture
def lab():
    return make_lab()


def guest_call(host, dom, guest, *messages: bytes) -> list[Message]:
    for m in messages:
        assert guest.send(m) == len(m)
    host.evtchn.send(dom.domid, dom.store_evtchn)
    run_dom0(host)
    return guest.receive()


@pytest.mark.machine
def test_connect_introduces_the_domain(lab):
    host, xsd, dom, guest, page = lab
    assert host.services.xenstored is xsd
    assert xsd.dom0_request("IS_DOMAIN_INTRODUCED", str(dom.domid)) is True
    ops = [(e.get("op"), e.get("path"), e.get("result")) for e in host.trace.of_kind("xenstore")]
    assert ("XS_INTRODUCE", str(dom.domid), "OK") in ops
    assert xsd.dom0_request("READ", f"/local/domain/{dom.domid}/store/ring-ref") == str(dom.p2m[dom.store_pfn])
    assert xsd.dom0_request("READ", "/local/domain/0/name") == "Domain-0"
    assert u32(page, SERVER_FEATURES) == 3
    assert xsd.connect(dom) == (dom.store_pfn, dom.store_evtchn)        # once is enough
    with pytest.raises(ValueError):
        xsd.connect(type("NoPage", (), {"domid": 9, "store_pfn": 0, "gfn_to_mfn": lambda self, g: None})())


@pytest.mark.machine
def test_guest_requests_are_served_as_that_domain(lab):
    host, xsd, dom, guest, page = lab
    replies = guest_call(host, dom, guest,
                         msg(abi.XS_READ, b"name\0", req_id=10),
                         msg(abi.XS_READ, b"/local/domain/0/name\0", req_id=11),
                         msg(abi.XS_WRITE, b"control/shutdown\0poweroff", req_id=12),
                         msg(abi.XS_WRITE, b"memory/target\0" + b"1" * 9, req_id=13))
    assert [(m.name, m.req_id, m.payload) for m in replies] == [
        ("XS_READ", 10, b"pv-guest"), ("XS_ERROR", 11, b"EACCES\0"),
        ("XS_WRITE", 12, b"OK\0"), ("XS_ERROR", 13, b"EACCES\0")]
    assert xsd.dom0_request("READ", f"/local/domain/{dom.domid}/control/shutdown") == "poweroff"
    evs = [e for e in host.trace.of_kind("xenstore") if e.dom == dom.domid]
    assert ("XS_READ", "name", None, None) in [(e.get("op"), e.get("path"), e.get("value"), e.get("result"))
                                               for e in evs]
    assert ("XS_READ", "name", "pv-guest", "OK") in [(e.get("op"), e.get("path"), e.get("value"),
                                                      e.get("result")) for e in evs]
    # The daemon told the guest: an event-channel send from dom0 to the guest's store port.
    sends = [e for e in host.trace.of_kind("evtchn") if e.get("op") == "send" and e.dom == 0]
    assert sends and sends[-1].get("remote_port") == dom.store_evtchn


@pytest.mark.machine
def test_transactions_over_the_ring(lab):
    host, xsd, dom, guest, page = lab
    (start,) = guest_call(host, dom, guest, msg(abi.XS_TRANSACTION_START, b"\0", req_id=1))
    tx = int(start.payload.rstrip(b"\0"))
    replies = guest_call(host, dom, guest,
                         msg(abi.XS_WRITE, b"data/a\x001", req_id=2, tx_id=tx),
                         msg(abi.XS_READ, b"data/a\0", req_id=3),
                         msg(abi.XS_TRANSACTION_END, b"T\0", req_id=4, tx_id=tx),
                         msg(abi.XS_READ, b"data/a\0", req_id=5))
    assert [(m.req_id, m.tx_id, m.payload) for m in replies] == [
        (2, tx, b"OK\0"), (3, 0, b"ENOENT\0"), (4, tx, b"OK\0"), (5, 0, b"1")]


@pytest.mark.machine
def test_watch_events_reach_the_guest(lab):
    host, xsd, dom, guest, page = lab
    replies = guest_call(host, dom, guest, msg(abi.XS_WATCH, b"device\0dev-token\0", req_id=9))
    assert [(m.name, m.payload) for m in replies] == [("XS_WATCH", b"OK\0"),
                                                      ("XS_WATCH_EVENT", b"device\0dev-token\0")]
    assert replies[1].req_id == replies[1].tx_id == 0
    before = len(host.trace.of_kind("evtchn"))
    fe, be = xsclient.add_vbd(xsd, dom, 51712)                    # the toolstack adds a disk
    events = [m for m in guest.receive() if m.type == abi.XS_WATCH_EVENT]
    paths = [m.strings()[0] for m in events]
    assert "device/vbd/51712/state" in paths
    assert all(m.strings()[1] == "dev-token" for m in events)
    assert len(host.trace.of_kind("evtchn")) > before           # and it was notified


@pytest.mark.machine
def test_dom0_services_watch_with_callbacks(lab):
    host, xsd, dom, guest, page = lab
    seen = []
    xsd.watch("/local/domain/1/device", "blkback", lambda path, token: seen.append((path, token)) or 100)
    run_dom0(host)
    assert seen == [("/local/domain/1/device", "blkback")]
    fe, be = xsclient.add_vbd(xsd, dom, 51712)
    guest_call(host, dom, guest, msg(abi.XS_WRITE, b"device/vbd/51712/state\x003"))
    assert ("/local/domain/1/device/vbd/51712/state", "blkback") in seen
    with pytest.raises(XenStoreError) as e:
        xsd.watch("/local/domain/1/device", "blkback", lambda p, t: None)
    assert e.value.errno == "EEXIST"


@pytest.mark.machine
def test_dom0_requests_are_traced_and_cost_dom0_cycles(lab):
    host, xsd, dom, guest, page = lab
    v = host.domains[0].vcpus[0]
    before = v.run_cycles
    xsd.dom0_request("WRITE", "/tool/lab", "1")
    assert v.run_cycles > before
    last = host.trace.of_kind("xenstore")[-2:]
    assert [(e.dom, e.get("op"), e.get("path"), e.get("value"), e.get("result")) for e in last] == [
        (0, "XS_WRITE", "/tool/lab", "1", None), (0, "XS_WRITE", "/tool/lab", None, "OK")]
    with pytest.raises(XenStoreError) as err:
        xsd.dom0_request("READ", "/nope")
    assert err.value.errno == "ENOENT"
    assert host.trace.of_kind("xenstore")[-1].get("result") == "ENOENT"
    assert xsclient.xenstore_read(xsd, "/tool/lab") == "1\n"
    assert xsclient.xenstore_ls(xsd, f"/local/domain/{dom.domid}/memory") == \
        'static-max = "32768"\ntarget = "32768"\nvideoram = "0"\n'


@pytest.mark.machine
def test_oversized_message_gets_the_connection_ignored(lab):
    host, xsd, dom, guest, page = lab
    bad = struct.pack("<IIII", abi.XS_WRITE, 1, 0, 5000)
    assert guest_call(host, dom, guest, bad) == []
    assert u32(page, ERROR) == XENSTORE_ERROR_PROTO
    assert any("ignoring the connection" in line for line in host.dmesg)
    assert host.trace.of_kind("xenstore")[-1].get("result") == "XENSTORE_ERROR_PROTO"
    # Nothing more is answered, and nothing breaks.
    assert guest_call(host, dom, guest, msg(abi.XS_READ, b"name\0")) == []
    assert xsd.dom0_request("READ", "/local/domain/1/name") == "pv-guest"


@pytest.mark.machine
def test_runaway_indexes_get_the_connection_ignored(lab):
    host, xsd, dom, guest, page = lab
    set_u32(page, REQ_PROD, u32(page, REQ_CONS) + 4000)
    host.evtchn.send(dom.domid, dom.store_evtchn)
    run_dom0(host)
    assert u32(page, ERROR) == XENSTORE_ERROR_RINGIDX


@pytest.mark.machine
def test_reconnect_resets_the_ring(lab):
    host, xsd, dom, guest, page = lab
    guest_call(host, dom, guest, msg(abi.XS_WATCH, b"data\0t\0"))
    guest_call(host, dom, guest, struct.pack("<IIII", abi.XS_WRITE, 1, 0, 9999))
    assert u32(page, ERROR) == XENSTORE_ERROR_PROTO
    set_u32(page, CONNECTION, 1)                     # the guest asks to reconnect
    host.evtchn.send(dom.domid, dom.store_evtchn)
    run_dom0(host)
    assert (u32(page, CONNECTION), u32(page, ERROR), u32(page, REQ_PROD), u32(page, RSP_PROD)) == (0, 0, 0, 0)
    guest.received = b""
    assert xsd.store.watches == [w for w in xsd.store.watches if w.domid != dom.domid]
    replies = guest_call(host, dom, guest, msg(abi.XS_READ, b"name\0", req_id=3))
    assert [(m.req_id, m.payload) for m in replies] == [(3, b"pv-guest")]


@pytest.mark.machine
def test_unknown_and_privileged_types_over_the_ring(lab):
    host, xsd, dom, guest, page = lab
    replies = guest_call(host, dom, guest,
                         msg(77, b"", req_id=1),
                         msg(abi.XS_INTRODUCE, b"1\x005\x006\0", req_id=2),
                         msg(abi.XS_ERROR, b"", req_id=3))
    assert [m.payload for m in replies] == [b"ENOSYS\0", b"EACCES\0", b"ENOSYS\0"]


@pytest.mark.machine
def test_big_write_in_pieces_over_the_ring(lab):
    host, xsd, dom, guest, page = lab
    m = msg(abi.XS_WRITE, b"data/blob\0" + b"z" * 1900, req_id=4)
    sent = 0
    replies = []
    while sent < len(m):
        sent += guest.send(m[sent:])
        host.evtchn.send(dom.domid, dom.store_evtchn)
        run_dom0(host)
        replies += guest.receive()
    assert [(r.req_id, r.payload) for r in replies] == [(4, b"OK\0")]
    assert xsd.dom0_request("READ", "/local/domain/1/data/blob") == "z" * 1900


@pytest.mark.machine
def test_shutdown_and_destroy_fire_release_domain(lab):
    host, xsd, dom, guest, page = lab
    events = []
    xsd.watch("@releaseDomain", "rel", lambda p, t: events.append(p))
    run_dom0(host)
    events.clear()
    host.shutdown(dom, "poweroff")
    run_dom0(host)
    assert events == ["@releaseDomain"]
    host.destroy(dom)
    run_dom0(host)
    assert events == ["@releaseDomain", "@releaseDomain"]
    assert xsd.dom0_request("IS_DOMAIN_INTRODUCED", "1") is False
    assert xsd.store.node("/local/domain/1") is None              # removed, as xl destroy does
    assert dom.domid not in xsd.conns


_shared: list = []


def shared_lab():
    """One host for the many examples below; each example starts by reconnecting the ring."""
    if not _shared:
        _shared.append(make_lab())
    host, xsd, dom, guest, page = _shared[0]
    set_u32(page, CONNECTION, 1)
    host.evtchn.send(dom.domid, dom.store_evtchn)
    run_dom0(host)
    guest.received = b""
    return _shared[0]


messages = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda t, r, x, p: struct.pack("<IIII", t, r, x, len(p)) + p,
              st.integers(0, 30), st.integers(0, 3), st.integers(0, 3), st.binary(max_size=200)),
    st.builds(lambda t, p: struct.pack("<IIII", t, 1, 0, len(p)) + p,
              st.sampled_from([abi.XS_READ, abi.XS_WRITE, abi.XS_DIRECTORY, abi.XS_WATCH, abi.XS_RM,
                               abi.XS_SET_PERMS, abi.XS_TRANSACTION_START, abi.XS_TRANSACTION_END]),
              st.lists(st.sampled_from([b"data", b"/local/domain/0", b"name", b"T", b"n1", b"r0", b"", b"..",
                                        b"/local/domain/1/data/x"]), max_size=3).map(
                  lambda parts: b"".join(x + b"\0" for x in parts))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=8), st.integers(0, 0xFFFFFFFF), st.booleans())
@pytest.mark.machine
def test_a_guest_writing_garbage_cannot_crash_the_daemon(chunks, index, bad_rsp):
    host, xsd, dom, guest, page = shared_lab()
    for chunk in chunks:
        guest.send(chunk)
        host.evtchn.send(dom.domid, dom.store_evtchn)
        run_dom0(host)
        for m in guest.receive():
            assert m.type in abi.XS_NAMES and len(m.payload) <= 4096
    if bad_rsp:
        set_u32(page, RSP_CONS, index)
        host.evtchn.send(dom.domid, dom.store_evtchn)
        run_dom0(host)
    assert xsd.dom0_request("READ", "/local/domain/0/name") == "Domain-0"
    assert xsd.store.check() == []
    # Whatever the guest did, it never touched what only dom0 may write.
    assert xsd.dom0_request("READ", "/local/domain/1/memory/target") == "32768"
    assert xsd.dom0_request("GET_PERMS", "/local/domain/1") == ["n0", "r1"]


def test_introduce_again_rebinds_the_event_channel(lab):
    # introduce_domain() (tools/xenstored/domain.c) on an introduced domain: unbind the
    # old port, bind the one given, answer OK; the guest's requests then arrive on it.
    host, xsd, dom, guest, page = lab
    new_port = host.evtchn.alloc_unbound(dom.domid, 0)
    assert xsd.dom0_request("INTRODUCE", str(dom.domid), [str(dom.p2m[dom.store_pfn]), str(new_port)]) == "OK"
    local = xsd.local_port[dom.domid]
    assert host.evtchn.ports[0][local].remote_port == new_port
    assert host.evtchn.ports[dom.domid][new_port].state == "interdomain"
    dom.store_evtchn = new_port
    replies = guest_call(host, dom, guest, Message(abi.XS_READ, 7, 0, b"name\0").encode())
    assert replies[-1].payload == b"pv-guest"
