"""netback and the bridge in dom0, driven by netfronts played from Python (see test_blkback.Guest).

Layouts are written out from ``public/io/netif.h`` and ``io/ring.h``: both
rings hold 256 entries; tx request {u32 gref; u16 offset, flags, id, size},
tx response {u16 id; i16 status}; rx request {u16 id; u16 pad; u32 gref},
rx response {u16 id; u16 offset; u16 flags; i16 status}.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab.dom0.bridge import inet_checksum as csum
from test_blkback import CLOSED, CLOSING, CONNECTED, INITIALISING, INITWAIT, Guest, error_node, store
from xen_helpers import events, small_host, write_cfg

NET_RING_SIZE = 256
TXF_more_data = 4
RSP_OKAY, RSP_ERROR, RSP_NULL = 0, -1, 1
DOM0_MAC = bytes.fromhex("00163e000001")
DOM0_IP = bytes([10, 0, 0, 1])
BCAST = b"\xff" * 6


def mac(domid: int) -> bytes:
    return bytes([0x00, 0x16, 0x3E, 0x00, 0x01, domid])


def mac_str(m: bytes) -> str:
    return ":".join(f"{b:02x}" for b in m)


def ip(domid: int) -> bytes:
    return bytes([10, 0, 0, 10 + domid])


def test_inet_checksum_known_answers():
    """RFC 1071, section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, so the checksum is its complement;
    a message with its checksum in place sums to zero; an odd byte is padded with a zero byte."""
    assert csum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2 == 0x220D
    assert csum(bytes.fromhex("0001f203f4f5f6f7220d")) == 0
    assert csum(bytes.fromhex("0001f203f4f5f6f7") + b"\x01") == csum(bytes.fromhex("0001f203f4f5f6f70100"))
    assert csum(b"") == 0xFFFF
    # an end-around carry that carries again: ffff + ffff + 0001 = 1ffff -> 10000 -> 0001
    assert csum(bytes.fromhex("ffffffff0001")) == 0xFFFE


class NetFront:
    """netfront's half of one vif: a tx and an rx ring page and one event channel."""

    def __init__(self, g: Guest, devid: int = 0) -> None:
        self.g = g
        d = g.dom.domid
        self.fe = f"/local/domain/{d}/device/vif/{devid}"
        self.be = f"/local/domain/0/backend/vif/{d}/{devid}"
        self.tx, self.rx = g.page(), g.page()
        for page in (self.tx, self.rx):
            g.write(page, 0, struct.pack("<IIII", 0, 1, 0, 1) + bytes(4096 - 16))
        self.tx_ref, self.rx_ref = g.grant(self.tx), g.grant(self.rx)
        self.port = g.alloc_unbound(0)
        self.tx_prod = self.tx_cons = self.rx_prod = self.rx_cons = 0
        self.rx_bufs: dict[int, int] = {}            # id -> pfn

    def u32(self, page: int, off: int) -> int:
        return struct.unpack("<I", self.g.read(page, off, 4))[0]

    def connect(self, rx_copy: int | None = 1) -> None:
        keys = {"tx-ring-ref": self.tx_ref, "rx-ring-ref": self.rx_ref, "event-channel": self.port}
        if rx_copy is not None:
            keys["request-rx-copy"] = rx_copy
        self.g.xs_write_all(self.fe, keys)
        self.g.xs("WRITE", f"{self.fe}/state", str(CONNECTED))

    def _push(self, page: int, new: int) -> None:
        old = self.u32(page, 0)
        self.g.write(page, 0, struct.pack("<I", new & 0xFFFFFFFF))
        if (new - self.u32(page, 4)) & 0xFFFFFFFF < (new - old) & 0xFFFFFFFF:
            self.g.send(self.port)

    def post_rx(self, n: int = 1) -> None:
        for _ in range(n):
            pfn = self.g.page()
            rid = self.rx_prod & 0xFFFF
            self.rx_bufs[rid] = pfn
            self.g.write(self.rx, 64 + (self.rx_prod % NET_RING_SIZE) * 8, struct.pack("<HxxI", rid,
                                                                                        self.g.grant(pfn)))
            self.rx_prod += 1
        self._push(self.rx, self.rx_prod)
        self.g.host.run()

    def send(self, frame: bytes, rid: int = 1, offset: int = 0, slots: list | None = None,
             prod: int | None = None) -> None:
        """One packet: ``slots`` overrides the requests written (gref, offset, flags, id, size)."""
        if slots is None:
            pfn = self.g.page()
            self.g.write(pfn, offset, frame)
            slots = [(self.g.grant(pfn, readonly=True), offset, 0, rid, len(frame))]
        for s in slots:
            self.g.write(self.tx, 64 + (self.tx_prod % NET_RING_SIZE) * 12, struct.pack("<IHHHH", *s))
            self.tx_prod += 1
        self._push(self.tx, self.tx_prod if prod is None else prod)
        self.g.host.run()

    def tx_responses(self) -> list[tuple[int, int]]:
        out = []
        while self.tx_cons != self.u32(self.tx, 8):
            out.append(struct.unpack("<Hh", self.g.read(self.tx, 64 + (self.tx_cons % NET_RING_SIZE) * 12, 4)))
            self.tx_cons += 1
        self.g.write(self.tx, 12, struct.pack("<I", self.tx_cons + 1))
        return out

    def received(self) -> list[bytes]:
        out = []
        while self.rx_cons != self.u32(self.rx, 8):
            rid, off, flags, status = struct.unpack("<HHHh", self.g.read(self.rx, 64 + (self.rx_cons % NET_RING_SIZE)
                                                                         * 8, 8))
            self.rx_cons += 1
            assert status > 0, status
            out.append(self.g.read(self.rx_bufs.pop(rid), off, status))
        self.g.write(self.rx, 12, struct.pack("<I", self.rx_cons + 1))
        return out


def vif_guest(tmp_path: Path, xl, name: str, domid_hint: int | None = None, type_: str = "pv"):
    d = xl.host.next_domid
    cfg = write_cfg(tmp_path, name, type_, memory=16, vif=[f"mac={mac_str(mac(d))},bridge=xenbr0"])
    dom = xl.create(cfg, paused=True)
    assert dom.domid == d
    xl.host.run()
    return Guest(xl.host, dom)


def two_guests(tmp_path):
    host, xl = small_host()
    a, b = vif_guest(tmp_path, xl, "a"), vif_guest(tmp_path, xl, "b")
    fa, fb = NetFront(a), NetFront(b)
    fa.connect()
    fb.connect()
    return host, xl, a, b, fa, fb


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def bridge_ops(host, mark: int) -> list[tuple[str, str, list]]:
    return [(e.data["ingress"], e.data["op"], e.data["egress"]) for e in host.trace.since(mark)
            if e.kind == "ring_io" and e.data["ring"] == "xenbr0"]


# ------------------------------------------------------------------------------------ handshake
@pytest.mark.machine
def test_handshake_and_features(tmp_path):
    host, xl = small_host()
    cfg = write_cfg(tmp_path, "n", "pv", memory=16, vif=["mac=00:16:3e:00:01:01,bridge=xenbr0"])
    dom = xl.create(cfg, paused=True)
    be, fe = f"/local/domain/0/backend/vif/{dom.domid}/0", f"/local/domain/{dom.domid}/device/vif/0"
    assert store(host, f"{be}/state") == "1" and store(host, f"{fe}/state") == "1"
    host.run()
    assert store(host, f"{be}/state") == str(INITWAIT)
    assert store(host, f"{be}/feature-rx-copy") == "1" and store(host, f"{be}/feature-rx-flip") == "0"
    g = Guest(host, dom)
    nf = NetFront(g)
    mark = len(host.trace)
    nf.connect()
    assert store(host, f"{be}/state") == str(CONNECTED)
    new = host.trace.since(mark)
    maps = [(e.data["ref"], e.data["status"]) for e in new if e.kind == "grant" and e.dom == 0]
    assert maps == [(nf.tx_ref, "GNTST_okay"), (nf.rx_ref, "GNTST_okay")]
    assert [e.data["remote_port"] for e in new if e.kind == "evtchn" and e.dom == 0
            and e.data["op"] == "bind_interdomain"] == [nf.port]
    assert f"vif{dom.domid}.0" in host.services.bridge.ports
    assert "MAC 00:16:3e:00:01:01" in host.domains[0].console_output


@pytest.mark.machine
def test_rx_copy_is_required(tmp_path):
    host, xl = small_host()
    g = vif_guest(tmp_path, xl, "old")
    nf = NetFront(g)
    nf.connect(rx_copy=None)
    assert store(host, f"{nf.be}/state") == str(CLOSING)
    assert "request-rx-copy" in store(host, error_node(nf.be))
    assert f"vif{g.dom.domid}.0" not in host.services.bridge.ports


# ------------------------------------------------------------------------------------ frames
@pytest.mark.machine
def test_frames_between_two_vifs(tmp_path):
    host, xl, a, b, fa, fb = two_guests(tmp_path)
    va, vb = f"vif{a.dom.domid}.0", f"vif{b.dom.domid}.0"
    fb.post_rx(2)
    hello = eth(mac(b.dom.domid), mac(a.dom.domid), 0x88B5, b"hello from a".ljust(50, b"."))
    mark = len(host.trace)
    fa.send(hello, rid=5)
    assert fa.tx_responses() == [(5, RSP_OKAY)]
    assert fb.received() == [hello]
    # b's address was not known yet: flooded to every other port (not to dom0's stack).
    assert bridge_ops(host, mark) == [(va, "flood (unknown destination)", [vb])]
    assert b.pending(fb.port)
    # The other way: a has posted no rx buffer, so the frame is dropped and counted.
    reply = eth(mac(a.dom.domid), mac(b.dom.domid), 0x88B5, b"reply".ljust(46, b"."))
    mark = len(host.trace)
    fb.send(reply, rid=1)
    assert fb.tx_responses() == [(1, RSP_OKAY)]
    assert bridge_ops(host, mark) == [(vb, "forward", [va])]      # a was learned from its first frame
    assert host.services.backends["netback"].vif(a.dom.domid, 0).stats["rx_dropped"] == 1
    assert [e.data["op"] for e in events(host, "ring_io", dom=a.dom.domid, ring=f"{va}-rx")] == \
        ["drop (no rx buffer posted)"]
    fa.post_rx(1)
    fb.send(reply, rid=2)
    assert fa.received() == [reply]
    # ring_io events name each step: the tx request and response, the rx request and response.
    ops = [(e.data["ring"], e.data["op"]) for e in events(host, "ring_io") if e.seq > mark]
    assert (vb + "-tx", "request TX") in ops and (va + "-rx", "request RX") in ops
    assert (va + "-rx", "response OKAY") in ops


@pytest.mark.machine
def test_arp_and_ping_dom0(tmp_path):
    host, xl = small_host()
    g = vif_guest(tmp_path, xl, "pinger")
    nf = NetFront(g)
    nf.connect()
    nf.post_rx(4)
    me, my_ip = mac(g.dom.domid), ip(g.dom.domid)
    arp = eth(BCAST, me, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + my_ip + bytes(6) + DOM0_IP)
    nf.send(arp)
    (answer,) = nf.received()
    assert answer[:6] == me and answer[6:12] == DOM0_MAC and answer[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, oper = struct.unpack_from("!HHBBH", answer, 14)
    assert (htype, ptype, hlen, plen, oper) == (1, 0x0800, 6, 4, 2)
    assert answer[22:28] == DOM0_MAC and answer[28:32] == DOM0_IP and answer[32:38] == me and answer[38:42] == my_ip
    # An ARP request for someone else's address gets no answer from dom0.
    nf.send(eth(BCAST, me, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + my_ip + bytes(6)
                + bytes([10, 0, 0, 99])))
    assert nf.received() == []
    # ping 10.0.0.1
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"abcdefghijklmnop")
    icmp[2:4] = struct.pack("!H", csum(bytes(icmp)))
    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 7, 0, 64, 1, 0, my_ip, DOM0_IP))
    iph[10:12] = struct.pack("!H", csum(bytes(iph)))
    nf.send(eth(DOM0_MAC, me, 0x0800, bytes(iph) + bytes(icmp)))
    (pong,) = nf.received()
    assert pong[:6] == me and pong[6:12] == DOM0_MAC and pong[12:14] == b"\x08\x00"
    rip = pong[14:34]
    assert csum(rip) == 0 and rip[9] == 1 and rip[12:16] == DOM0_IP and rip[16:20] == my_ip
    ricmp = pong[34:]
    assert ricmp[0] == 0 and csum(ricmp) == 0 and ricmp[4:] == bytes(icmp[4:])
    # A corrupted echo request (bad ICMP checksum) is ignored.
    bad = bytearray(icmp)
    bad[-1] ^= 0xFF
    nf.send(eth(DOM0_MAC, me, 0x0800, bytes(iph) + bytes(bad)))
    assert nf.received() == []


@pytest.mark.machine
def test_bad_tx_requests(tmp_path):
    host, xl, a, b, fa, fb = two_guests(tmp_path)
    fb.post_rx(4)
    frame = eth(mac(b.dom.domid), mac(a.dom.domid), 0x88B5, b"x" * 50)
    # A revoked grant: ERROR, nothing forwarded.
    pfn = a.page()
    a.write(pfn, 0, frame)
    ref = a.grant(pfn, readonly=True)
    a.set_grant(ref, 0, 0, 0)
    fa.send(frame, slots=[(ref, 0, 0, 3, len(frame))])
    assert fa.tx_responses() == [(3, RSP_ERROR)]
    # A runt: ERROR.
    fa.send(frame[:10], rid=4)
    assert fa.tx_responses() == [(4, RSP_ERROR)]
    assert fb.received() == []
    # A packet in two slots (more_data): the first slot's size is the whole packet.
    p1, p2 = a.page(), a.page()
    a.write(p1, 100, frame[:20])
    a.write(p2, 0, frame[20:])
    fa.send(b"", slots=[(a.grant(p1, readonly=True), 100, TXF_more_data, 6, len(frame)),
                        (a.grant(p2, readonly=True), 0, 0, 7, len(frame) - 20)])
    assert fa.tx_responses() == [(6, RSP_OKAY), (7, RSP_OKAY)]
    assert fb.received() == [frame]
    assert "Grant copy of slot 0" in host.domains[0].console_output
    # A slot crossing its page is fatal for the vif: it stops, dom0 and b go on.
    fa.send(b"", slots=[(a.grant(pfn, readonly=True), 4000, 0, 8, 200)])
    assert "Cross page boundary, txreq.offset: 4000, size: 200" in host.domains[0].console_output
    assert "fatal error; disabling device" in host.domains[0].console_output
    assert host.services.backends["netback"].vif(a.dom.domid, 0).disabled
    assert f"vif{a.dom.domid}.0" not in host.services.bridge.ports
    fa.send(frame, rid=9)
    assert fa.tx_responses() == []
    assert host.domains[0].alive and a.dom.alive and b.dom.alive
    # b still reaches dom0.
    me = mac(b.dom.domid)
    fb.send(eth(BCAST, me, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + ip(b.dom.domid) + bytes(6)
                + DOM0_IP))
    assert len(fb.received()) == 1


@pytest.mark.machine
def test_bogus_tx_index_disables_the_vif(tmp_path):
    host, xl, a, b, fa, fb = two_guests(tmp_path)
    fa.send(b"", slots=[], prod=5000)
    assert "Impossible number of requests. req_prod 5000, req_cons 0, size 256" in host.domains[0].console_output
    assert host.services.backends["netback"].vif(a.dom.domid, 0).disabled
    assert not host.services.backends["netback"].vif(b.dom.domid, 0).disabled
    assert fa.tx_responses() == []


@pytest.mark.machine
def test_frame_from_an_emulated_ne2000_reaches_a_pv_vif(tmp_path):
    host, xl = small_host()
    pv = vif_guest(tmp_path, xl, "pv")
    nf = NetFront(pv)
    nf.connect()
    nf.post_rx(1)
    d = host.next_domid
    cfg = write_cfg(tmp_path, "hvm", "hvm", memory=16, hap=1,
                    vif=[f"type=ioemu, mac={mac_str(mac(d))}, bridge=xenbr0"])
    hvm = xl.create(cfg, paused=True)
    host.run()
    dm = host.services.device_model
    nic = dm.nic(hvm)
    assert f"vif{hvm.domid}.0-emu" in host.services.bridge.ports
    v = hvm.vcpus[0]
    base = nic.base

    def outb(off: int, val: int, size: int = 1) -> None:
        dm.port_io(v, base + off, size, "out", val)

    # The guest's driver, by port I/O as Xen's exit handler hands it to QEMU: set the card up ...
    for off, val in ((0, 0x21), (0x0E, 0x49), (0x0C, 0x04), (0x0D, 0), (1, 0x46), (2, 0x80), (3, 0x46),
                     (7, 0xFF), (0, 0x61)):
        outb(off, val)
    for i, byte in enumerate(mac(hvm.domid)):
        outb(1 + i, byte)
    outb(7, 0x47)
    outb(0, 0x22)
    # ... load a frame into packet RAM by remote DMA, and transmit it.
    frame = eth(mac(pv.dom.domid), mac(hvm.domid), 0x88B5, b"from the NE2000".ljust(46, b"!"))
    for off, val in ((0x0A, len(frame) & 0xFF), (0x0B, len(frame) >> 8), (8, 0), (9, 0x40), (0, 0x12)):
        outb(off, val)
    for i in range(0, len(frame), 2):
        outb(0x10, int.from_bytes(frame[i:i + 2], "little"), 2)
    mark = len(host.trace)
    for off, val in ((4, 0x40), (5, len(frame)), (6, 0), (0, 0x26)):
        outb(off, val)
    assert nic.sent == [frame]
    host.run()
    assert nf.received() == [frame]
    assert bridge_ops(host, mark)[0][:2] == (f"vif{hvm.domid}.0-emu", "flood (unknown destination)")
    # And back: the PV guest answers the NE2000's address, which the bridge has learned.
    back = eth(mac(hvm.domid), mac(pv.dom.domid), 0x88B5, b"to the NE2000".ljust(46, b"?"))
    mark = len(host.trace)
    nf.send(back)
    assert bridge_ops(host, mark) == [(f"vif{pv.dom.domid}.0", "forward", [f"vif{hvm.domid}.0-emu"])]
    assert nic.received == [back.ljust(60, b"\0")]


@pytest.mark.machine
def test_frontend_closing_and_closed(tmp_path):
    host, xl, a, b, fa, fb = two_guests(tmp_path)
    name = f"vif{a.dom.domid}.0"
    a.xs("WRITE", f"{fa.fe}/state", str(CLOSING))
    assert store(host, f"{fa.be}/state") == str(CLOSING)
    assert name not in host.services.bridge.ports
    assert not [m for m in host.grant_tables.maptrack.get(0, {}).values() if m.granter == a.dom.domid]
    assert host.evtchn.ports[a.dom.domid][fa.port].state == "unbound"
    a.xs("WRITE", f"{fa.fe}/state", str(CLOSED))
    assert store(host, f"{fa.be}/state") == str(CLOSED)
    # Reconnect.
    a.xs("WRITE", f"{fa.fe}/state", str(INITIALISING))
    assert store(host, f"{fa.be}/state") == str(INITWAIT)
    fa2 = NetFront(a)
    fa2.connect()
    assert store(host, f"{fa.be}/state") == str(CONNECTED) and name in host.services.bridge.ports
    xl.destroy(b.dom.name)
    host.run()
    assert f"vif{b.dom.domid}.0" not in host.services.bridge.ports
    assert not [m for m in host.grant_tables.maptrack.get(0, {}).values() if m.granter == b.dom.domid]
    assert store(host, f"{fa.be}/state") == str(CONNECTED) and store(host, f"{fb.be}/state") is None


@pytest.mark.machine
def test_garbage_on_the_tx_ring_never_escapes(tmp_path):
    import random
    rnd = random.Random(99)
    host, xl, a, b, fa, fb = two_guests(tmp_path)
    fb.post_rx(8)
    for _ in range(30):
        slots = [(rnd.randrange(1 << 32), rnd.randrange(1 << 16), rnd.randrange(16), rnd.randrange(1 << 16),
                  rnd.randrange(1 << 16)) for _ in range(rnd.randrange(1, 4))]
        fa.send(b"", slots=slots)
        if host.services.backends["netback"].vif(a.dom.domid, 0).disabled:
            break
    assert host.domains[0].alive and b.dom.alive
    assert all(status in (RSP_OKAY, RSP_ERROR, RSP_NULL) for _id, status in fa.tx_responses())
    # b's vif is untouched and still answers through the bridge.
    me = mac(b.dom.domid)
    fb.send(eth(BCAST, me, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + ip(b.dom.domid) + bytes(6)
                + DOM0_IP))
    assert any(f[6:12] == DOM0_MAC for f in fb.received())
