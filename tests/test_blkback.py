"""blkback in dom0, driven by a frontend played from Python the way a guest kernel plays it.

The guest domains are created paused: their kernels never run. :class:`Guest`
does what a PV kernel's blkfront would do, through the same paths: its own
pages (pseudo-physical, mapped in its direct map), grant entries written into
the grant frames Xen gave it with GNTTABOP_setup_table, event channels from
EVTCHNOP_alloc_unbound/send hypercalls made on its vCPU, and xenstore
requests written into its own xenstore ring page. Only dom0 runs.

Layouts and numbers are written out here from Xen's public headers
(``io/blkif.h``, ``io/ring.h``, ``io/xenbus.h``, ``grant_table.h``), not taken
from the lab, so a wrong value in the backend fails a test.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from lab.hw.diskimage import shared_images
from lab.dom0.xenstore import encode_request, message_type
from lab.dom0.xenstored import GuestRing, format_message
from lab.hw.boot import DIRECT_MAP
from xen_helpers import HYPERCALL_NR, GuestPage, events, hypercall, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

# public/io/xenbus.h
UNKNOWN, INITIALISING, INITWAIT, INITIALISED, CONNECTED, CLOSING, CLOSED = range(7)
# public/grant_table.h
GTF_permit_access, GTF_readonly = 1, 4
GNTTABOP_setup_table = 2
DOMID_SELF = 0x7FF0
# public/event_channel.h
EVTCHNOP_send, EVTCHNOP_alloc_unbound = 4, 6
# public/io/blkif.h
READ, WRITE, WRITE_BARRIER, FLUSH, DISCARD = 0, 1, 2, 3, 5
OKAY, ERROR, EOPNOTSUPP = 0, -1, -2
VDISK_READONLY = 4
GNTST = {0: "GNTST_okay", -1: "GNTST_general_error", -3: "GNTST_bad_gntref", -8: "GNTST_permission_denied",
         -9: "GNTST_bad_page"}
BLK_RING_SIZE = 32          # __RING_SIZE for 112-byte entries in one page
XVDA = 51712                # 202 << 8 | 0 << 4
XVDB = 51728


# ------------------------------------------------------------------------------------ the guest
class Guest:
    """The kernel side of a paused PV domain, played from Python."""

    def __init__(self, host, dom) -> None:
        self.host = host
        self.dom = dom
        self.v = dom.vcpus[0]
        self._top = dom.mem_pages                 # pages handed out from the top of its memory
        self.args = self.page()                   # hypercall arguments go here
        self.xs_ring = GuestRing(GuestPage(host, dom.p2m[dom.store_pfn]))
        self.req_id = 0
        st = self.call("grant_table_op", GNTTABOP_setup_table, self._put(
            struct.pack("<HxxIhxxxxxxQ", DOMID_SELF, 1, 0, self.va(self.args) + 64)), 1)
        assert st == 0
        assert struct.unpack("<h", self.read(self.args, 8, 2))[0] == 0
        self.gnt_frame = struct.unpack("<Q", self.read(self.args, 64, 8))[0]
        self.next_ref = 8                         # 0-7 are reserved

    # memory
    def page(self) -> int:
        self._top -= 1
        return self._top

    def va(self, pfn: int, off: int = 0) -> int:
        return DIRECT_MAP + (pfn << 12) + off

    def maddr(self, pfn: int, off: int = 0) -> int:
        return (self.dom.p2m[pfn] << 12) + off

    def write(self, pfn: int, off: int, data: bytes) -> None:
        self.host.mem.write(self.maddr(pfn, off), data)

    def read(self, pfn: int, off: int, n: int) -> bytes:
        return self.host.mem.read(self.maddr(pfn, off), n)

    def _put(self, data: bytes) -> int:
        self.write(self.args, 0, data)
        return self.va(self.args)

    # hypercalls
    def call(self, name: str, *args: int) -> int:
        return hypercall(self.host, self.v, HYPERCALL_NR[name], *args)

    def alloc_unbound(self, remote: int = 0) -> int:
        assert self.call("event_channel_op", EVTCHNOP_alloc_unbound, self._put(struct.pack("<HHI", DOMID_SELF,
                                                                                           remote, 0))) == 0
        return struct.unpack("<I", self.read(self.args, 4, 4))[0]

    def send(self, port: int) -> None:
        assert self.call("event_channel_op", EVTCHNOP_send, self._put(struct.pack("<I", port))) == 0

    def pending(self, port: int) -> bool:
        word, bit = divmod(port, 64)
        return bool(self.host.mem.read_u64((self.dom.shared_info_mfn << 12) + 2048 + 8 * word) >> bit & 1)

    # grants
    def grant(self, pfn: int | None = None, domid: int = 0, readonly: bool = False, frame: int | None = None) -> int:
        ref = self.next_ref
        self.next_ref += 1
        self.set_grant(ref, GTF_permit_access | (GTF_readonly if readonly else 0), domid,
                       self.dom.p2m[pfn] if frame is None else frame)
        return ref

    def set_grant(self, ref: int, flags: int, domid: int, frame: int) -> None:
        self.host.mem.write((self.gnt_frame << 12) + 8 * ref, struct.pack("<HHI", flags, domid, frame))

    def grant_flags(self, ref: int) -> int:
        return struct.unpack("<H", self.host.mem.read((self.gnt_frame << 12) + 8 * ref, 2))[0]

    # xenstore, through the guest's own ring
    def xs(self, op: str, path: str | None = None, value=None, tx: int = 0):
        t = message_type(op)
        self.req_id += 1
        self.xs_ring.send(format_message(t, self.req_id, tx, encode_request(t, path, value)))
        self.send(self.dom.store_evtchn)
        self.host.run()
        for msg in self.xs_ring.receive():
            if msg.req_id == self.req_id and msg.type != message_type("WATCH_EVENT"):
                assert msg.name != "XS_ERROR", (op, path, msg.payload)
                return msg.payload.rstrip(b"\0").decode()
        raise AssertionError(f"no reply to {op} {path}")

    def xs_write_all(self, base: str, entries: dict) -> None:
        """As a frontend does: its keys in one transaction."""
        tx = int(self.xs("TRANSACTION_START"))
        for k, v in entries.items():
            self.xs("WRITE", f"{base}/{k}", str(v), tx=tx)
        self.xs("TRANSACTION_END", None, "T", tx=tx)


class BlkFront:
    """blkfront's half of one vbd ring (FRONT_RING_INIT over SHARED_RING_INIT)."""

    def __init__(self, g: Guest, devid: int = XVDA, protocol: str | None = "x86_64-abi") -> None:
        self.g = g
        self.devid = devid
        self.fe = f"/local/domain/{g.dom.domid}/device/vbd/{devid}"
        self.be = f"/local/domain/0/backend/vbd/{g.dom.domid}/{devid}"
        self.ring = g.page()
        g.write(self.ring, 0, struct.pack("<IIII", 0, 1, 0, 1) + bytes(4096 - 16))
        self.ref = g.grant(self.ring)
        self.port = g.alloc_unbound(0)
        self.protocol = protocol
        self.req_prod_pvt = 0
        self.rsp_cons = 0

    def u32(self, off: int) -> int:
        return struct.unpack("<I", self.g.read(self.ring, off, 4))[0]

    def connect(self) -> None:
        keys = {"ring-ref": self.ref, "event-channel": self.port}
        if self.protocol:
            keys["protocol"] = self.protocol
        self.g.xs_write_all(self.fe, keys)
        self.g.xs("WRITE", f"{self.fe}/state", str(INITIALISED))

    def request(self, op: int, sector: int, segs: list[tuple[int, int, int]], rid: int, nseg: int | None = None,
                raw: bytes | None = None) -> None:
        slot = 64 + (self.req_prod_pvt % BLK_RING_SIZE) * 112
        if raw is None:
            body = struct.pack("<BBHIQQ", op, len(segs) if nseg is None else nseg, self.devid & 0xFFFF, 0, rid,
                               sector)
            for gref, first, last in segs:
                body += struct.pack("<IBBxx", gref, first, last)
            raw = body.ljust(112, b"\0")
        self.g.write(self.ring, slot, raw)
        self.req_prod_pvt += 1

    def push(self) -> bool:
        """RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, then the notification if due."""
        old, new = self.u32(0), self.req_prod_pvt
        self.g.write(self.ring, 0, struct.pack("<I", new & 0xFFFFFFFF))
        notify = (new - self.u32(4)) & 0xFFFFFFFF < (new - old) & 0xFFFFFFFF
        if notify:
            self.g.send(self.port)
        self.g.host.run()
        return notify

    def responses(self) -> list[tuple[int, int, int]]:
        out = []
        prod = self.u32(8)
        while self.rsp_cons != prod:
            rid, op, status = struct.unpack("<QBxh", self.g.read(self.ring, 64 + (self.rsp_cons % BLK_RING_SIZE) * 112,
                                                                 12))
            out.append((rid, op, status))
            self.rsp_cons += 1
        self.g.write(self.ring, 12, struct.pack("<I", self.rsp_cons + 1))     # rsp_event: tell me about the next
        return out

    def io(self, op: int, sector: int, segs, rid: int = 1, **kw) -> tuple[int, int, int]:
        self.request(op, sector, segs, rid, **kw)
        self.push()
        rsps = self.responses()
        assert len(rsps) == 1, rsps
        return rsps[0]


# ------------------------------------------------------------------------------------ set-up
class PrivateImage:
    """The lab's private image of a target (what the guest's disk holds), read like a file."""

    def __init__(self, host, target: Path) -> None:
        self.host = host
        self.target = target

    def read_bytes(self) -> bytes:
        img = shared_images(self.host)[os.path.normpath(os.path.abspath(self.target))]
        return img.read(0, img.sectors)


def disk_guest(tmp_path: Path, xl, name: str = "blk", access: str = "rw", image: bytes | None = None,
               vdev: str = "xvda", devtype: str = "") -> tuple[Guest, PrivateImage]:
    """A PV guest with one disk; ``image``: a host file the learner asks to be read as its content."""
    img = tmp_path / f"{name}.img"
    if image is not None:
        img.write_bytes(image)
    spec = f"format=raw, vdev={vdev}, access={access}, {devtype}target={img.name}"
    cfg = write_cfg(tmp_path, name, "pv", memory=16, disk=[spec])
    saved = os.environ.get("XENLAB_READ_HOST_IMAGES")
    os.environ["XENLAB_READ_HOST_IMAGES"] = "1" if image is not None else "0"
    try:
        dom = xl.create(cfg, paused=True)
        xl.host.run()
    finally:
        if saved is None:
            del os.environ["XENLAB_READ_HOST_IMAGES"]
        else:
            os.environ["XENLAB_READ_HOST_IMAGES"] = saved
    if image is not None:
        assert img.read_bytes() == image
    return Guest(xl.host, dom), PrivateImage(xl.host, img)


def store(host, path: str):
    """A node's value, read straight from the store (no trace event), or None."""
    node = host.services.xenstored.store.node(path)
    return node.value if node is not None else None


def connected(tmp_path, access="rw", image=None, name="blk"):
    host, xl = small_host()
    g, img = disk_guest(tmp_path, xl, name=name, access=access, image=image)
    fe = BlkFront(g)
    fe.connect()
    assert store(host, f"{fe.be}/state") == str(CONNECTED)
    g.xs("WRITE", f"{fe.fe}/state", str(CONNECTED))
    return host, xl, g, fe, img


def error_node(be: str) -> str:
    """Where xenbus_dev_fatal leaves its message: error/<nodename>/error in dom0's home."""
    return be.replace("/local/domain/0/backend/", "/local/domain/0/error/backend/") + "/error"


def dom0_log(host) -> str:
    return host.domains[0].console_output


# ------------------------------------------------------------------------------------ the handshake
def test_handshake_step_by_step(tmp_path):
    host, xl = small_host()
    cfg = write_cfg(tmp_path, "blk", "pv", memory=16, disk=["format=raw, vdev=xvda, access=rw, target=blk.img"])
    dom = xl.create(cfg, paused=True)
    d = dom.domid
    fe_path, be_path = f"/local/domain/{d}/device/vbd/{XVDA}", f"/local/domain/0/backend/vbd/{d}/{XVDA}"
    # 1: the toolstack wrote both directories in state 1; dom0 has not run yet.
    assert store(host, f"{fe_path}/state") == "1" and store(host, f"{be_path}/state") == "1"
    host.run()
    # 2: blkback opened the image (8 MiB, created) and published the disk.
    assert store(host, f"{be_path}/state") == str(INITWAIT)
    assert store(host, f"{be_path}/sectors") == "16384"
    assert store(host, f"{be_path}/sector-size") == "512"
    assert store(host, f"{be_path}/info") == "0"
    assert store(host, f"{be_path}/feature-flush-cache") == "1"
    assert store(host, f"{be_path}/max-ring-page-order") == "0"
    assert not (tmp_path / "blk.img").exists(), "the lab never creates the file a config names"
    g = Guest(host, dom)
    fe = BlkFront(g)
    mark = len(host.trace)
    fe.connect()
    # 3 -> 4: the ring mapped, the channel bound, Connected.
    assert store(host, f"{be_path}/state") == str(CONNECTED)
    new = host.trace.since(mark)
    maps = [e for e in new if e.kind == "grant" and e.data["op"] == "map_grant_ref" and e.dom == 0]
    assert [(e.data["ref"], e.data["granter"], e.data["status"]) for e in maps] == [(fe.ref, d, "GNTST_okay")]
    binds = [e for e in new if e.kind == "evtchn" and e.data["op"] == "bind_interdomain" and e.dom == 0]
    assert [(e.data["remote_dom"], e.data["remote_port"]) for e in binds] == [(d, fe.port)]
    writes = [e.data["value"] for e in new if e.kind == "xenstore" and e.data["op"] == "XS_WRITE" and e.dom == 0
              and e.data["path"] == f"{be_path}/state" and e.data.get("result") is None]
    assert writes == ["4"]
    # Order: the map and the bind happen before the backend says Connected.
    seqs = {e.seq for e in maps} | {e.seq for e in binds}
    state_write = next(e.seq for e in new if e.kind == "xenstore" and e.data.get("path") == f"{be_path}/state")
    assert max(seqs) < state_write
    g.xs("WRITE", f"{fe_path}/state", str(CONNECTED))
    assert store(host, f"{fe_path}/state") == "4" and store(host, f"{be_path}/state") == "4"
    # The grant is in use: Xen marked the ring's entry GTF_reading|GTF_writing.
    assert g.grant_flags(fe.ref) & 0x18 == 0x18
    assert "using 1 queues, protocol 1 (x86_64-abi)" in dom0_log(host)


def test_unknown_protocol_is_fatal(tmp_path):
    host, xl = small_host()
    g, _ = disk_guest(tmp_path, xl)
    fe = BlkFront(g, protocol="x86_16-abi")
    fe.connect()
    assert store(host, f"{fe.be}/state") == str(CLOSING)
    assert "unknown fe protocol x86_16-abi" in store(host, error_node(fe.be))
    assert not events(host, "grant", dom=0, op="map_grant_ref")


def test_ring_grant_that_does_not_map_is_fatal(tmp_path):
    host, xl = small_host()
    g, _ = disk_guest(tmp_path, xl)
    fe = BlkFront(g)
    g.set_grant(fe.ref, GTF_permit_access, 7, g.dom.p2m[fe.ring])        # granted to d7, not dom0
    fe.connect()
    assert store(host, f"{fe.be}/state") == str(CLOSING)
    assert "mapping in shared page" in dom0_log(host)
    # xen/common/grant_table.c, _set_status_v1(): a grant for another domain is GNTST_general_error
    assert events(host, "grant", dom=0, op="map_grant_ref")[-1].data["status"] in (-1, "GNTST_general_error")
    assert not events(host, "evtchn", dom=0, op="bind_interdomain", remote_dom=g.dom.domid, remote_port=fe.port)


# ------------------------------------------------------------------------------------ I/O
def test_write_then_read_back(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    data = bytes(range(256)) * 16                        # 8 sectors
    src = g.page()
    g.write(src, 1024, data[:2048])
    src2 = g.page()
    g.write(src2, 0, data[2048:])
    # Two segments: sectors 2-5 of the first page, then 0-3 of the second.
    r1, r2 = g.grant(src, readonly=True), g.grant(src2, readonly=True)
    mark = len(host.trace)
    sends_before = len(events(host, "evtchn", dom=0, op="send"))
    rid, op, status = fe.io(WRITE, 100, [(r1, 2, 5), (r2, 0, 3)], rid=0xABCDEF0123)
    assert (rid, op, status) == (0xABCDEF0123, WRITE, OKAY)
    # The image holds it: sectors 100-103 from the first page, 104-107 from the second.
    raw = img.read_bytes()
    assert raw[100 * 512:104 * 512] == data[:2048]
    assert raw[104 * 512:108 * 512] == data[2048:]
    assert raw[99 * 512:100 * 512] == raw[108 * 512:109 * 512] == bytes(512)
    ops = [e.data["op"] for e in host.trace.since(mark) if e.kind == "ring_io"]
    assert ops == ["request WRITE", "response OKAY"]
    assert all(e.dom == g.dom.domid for e in host.trace.since(mark) if e.kind == "ring_io")
    # The segments were mapped read-only (GNTMAP_readonly 4 with device_map 1) and unmapped again.
    maps = [e for e in host.trace.since(mark) if e.kind == "grant" and e.dom == 0]
    assert [(e.data["op"], e.data["ref"]) for e in maps] == [("map_grant_ref", r1), ("map_grant_ref", r2),
                                                              ("unmap_grant_ref", r1), ("unmap_grant_ref", r2)]
    assert all(e.data["flags"] & 4 for e in maps if e.data["op"] == "map_grant_ref")
    assert g.grant_flags(r1) & 0x18 == 0
    # The response was notified (rsp_event was 1) and the final check armed req_event.
    assert len(events(host, "evtchn", dom=0, op="send")) == sends_before + 1
    assert g.pending(fe.port)
    assert fe.u32(4) == 2                                # req_event = req_cons + 1
    # Read it back into a fresh page, through a writable grant.
    dst = g.page()
    rw = g.grant(dst)
    assert fe.io(READ, 100, [(rw, 0, 7)], rid=7) == (7, READ, OKAY)
    assert g.read(dst, 0, 2048) == data[:2048]
    assert g.read(dst, 2048, 2048) == data[2048:]
    # The image is private to the host: nothing was written to the learner's files, and a
    # new host starts from the same zeros (recordings replay).
    assert not (tmp_path / "blk.img").exists()
    host2, xl2 = small_host()
    g2, _ = disk_guest(tmp_path, xl2, name="blk")
    fe2 = BlkFront(g2)
    fe2.connect()
    g2.xs("WRITE", f"{fe2.fe}/state", str(CONNECTED))
    dst2 = g2.page()
    assert fe2.io(READ, 104, [(g2.grant(dst2), 0, 3)]) == (1, READ, OKAY)
    assert g2.read(dst2, 0, 2048) == bytes(2048)


def test_notify_rule_follows_rsp_event(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    page = g.page()
    ref = g.grant(page)
    fe.io(READ, 0, [(ref, 0, 0)], rid=1)
    # The frontend asks to be told only after 3 more responses.
    g.write(fe.ring, 12, struct.pack("<I", fe.rsp_cons + 3))
    sends = len(events(host, "evtchn", dom=0, op="send"))
    for i in range(2):
        fe.request(READ, i, [(ref, 0, 0)], rid=10 + i)
    fe.push()
    assert len(events(host, "evtchn", dom=0, op="send")) == sends      # 2 responses, event index not reached
    fe.request(READ, 5, [(ref, 0, 0)], rid=12)
    fe.push()
    assert len(events(host, "evtchn", dom=0, op="send")) == sends + 1  # the third crosses rsp_event
    assert [r[0] for r in fe.responses()] == [10, 11, 12]
    notes = [e.data["notify"] for e in events(host, "ring_io", dom=g.dom.domid) if e.data["op"].startswith("resp")]
    assert notes[-3:] == [False, False, True]


def test_readonly_disk_refuses_writes(tmp_path):
    image = bytes(512 * 3) + b"R" * 512 + bytes(512 * 60)
    host, xl, g, fe, img = connected(tmp_path, access="ro", image=image)
    assert store(host, f"{fe.be}/info") == str(VDISK_READONLY)
    assert store(host, f"{fe.be}/sectors") == "64"
    page = g.page()
    g.write(page, 0, b"W" * 512)
    assert fe.io(WRITE, 3, [(g.grant(page, readonly=True), 0, 0)]) == (1, WRITE, ERROR)
    assert fe.io(FLUSH, 0, [], rid=2) == (2, FLUSH, ERROR)
    assert "write to read-only device xvda" in dom0_log(host)
    assert img.read_bytes() == image
    assert img.target.read_bytes() == image, "the host file is only ever read"
    dst = g.page()
    assert fe.io(READ, 3, [(g.grant(dst), 0, 0)], rid=3) == (3, READ, OKAY)
    assert g.read(dst, 0, 512) == b"R" * 512


def test_revoked_grant_fails_the_request(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    page = g.page()
    g.write(page, 0, b"S" * 512)
    ref = g.grant(page, readonly=True)
    g.set_grant(ref, 0, 0, 0)                           # the frontend ends its grant
    assert fe.io(WRITE, 9, [(ref, 0, 0)]) == (1, WRITE, ERROR)
    assert img.read_bytes()[9 * 512:10 * 512] == bytes(512)
    assert "could not remap it" in dom0_log(host) and "GNTST_general_error" in dom0_log(host)


def test_foreign_and_bogus_grefs(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    # A second domain whose page the first tries to pass off as its own.
    cfg = write_cfg(tmp_path, "victim", "pv", memory=16)
    victim = xl.create(cfg, paused=True)
    secret = victim.p2m[victim.mem_pages - 1]
    host.mem.write(secret << 12, b"secret!!" * 64)
    page = g.page()
    cases = [
        # xen/common/grant_table.c: _set_status_v1(), get_paged_frame(), the ref bounds check
        ("granted to d5", g.grant(page, domid=5), -1),                       # GNTST_general_error
        ("another domain's frame", g.grant(frame=secret), -9),              # GNTST_bad_page
        ("beyond the grant table", 600, -3),                                 # GNTST_bad_gntref
        ("never granted", 300, -1),
    ]
    for i, (what, ref, gntst) in enumerate(cases):
        mark = len(host.trace)
        assert fe.io(READ, 0, [(ref, 0, 7)], rid=i) == (i, READ, ERROR), what
        maps = [e for e in host.trace.since(mark) if e.kind == "grant" and e.dom == 0]
        assert [(e.data["op"], GNTST.get(e.data["status"], e.data["status"])) for e in maps] == \
            [("map_grant_ref", GNTST[gntst])], what
    assert host.mem.read(secret << 12, 512) == b"secret!!" * 64
    # A read-only grant cannot receive the data of a READ.
    ro = g.grant(page, readonly=True)
    g.write(page, 0, b"K" * 4096)
    assert fe.io(READ, 0, [(ro, 0, 7)], rid=9) == (9, READ, ERROR)
    assert g.read(page, 0, 4096) == b"K" * 4096
    assert victim.alive and host.domains[0].alive


def test_bad_requests_get_error_or_eopnotsupp(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    page = g.page()
    ref = g.grant(page)
    twelve = [(ref, 0, 0)] * 12
    assert fe.io(READ, 0, twelve, rid=1) == (1, READ, ERROR)             # > 11 segments
    assert fe.io(READ, 0, [], rid=2) == (2, READ, ERROR)                  # no segment
    assert fe.io(READ, 0, [(ref, 3, 2)], rid=3) == (3, READ, ERROR)       # first_sect > last_sect
    assert fe.io(READ, 0, [(ref, 0, 8)], rid=4) == (4, READ, ERROR)       # last_sect beyond the page
    assert fe.io(READ, 16383, [(ref, 0, 1)], rid=5) == (5, READ, ERROR)   # past the end of the disk
    assert fe.io(READ, (1 << 64) - 1, [(ref, 0, 1)], rid=6) == (6, READ, ERROR)
    assert fe.io(9, 0, [(ref, 0, 0)], rid=7) == (7, 9, EOPNOTSUPP)        # no such operation
    assert fe.io(DISCARD, 0, [], rid=8) == (8, DISCARD, EOPNOTSUPP)
    assert fe.io(WRITE_BARRIER, 0, [(ref, 0, 0)], rid=9) == (9, WRITE_BARRIER, EOPNOTSUPP)
    assert fe.io(FLUSH, 0, [], rid=10) == (10, FLUSH, OKAY)
    assert fe.io(READ, 16383, [(ref, 0, 0)], rid=11) == (11, READ, OKAY)  # the last sector is fine
    log = dom0_log(host)
    assert "Bad number of segments in request (12)" in log and "Bad number of segments in request (0)" in log
    # None of the refused requests mapped anything.
    maps = events(host, "grant", dom=0, op="map_grant_ref")
    assert [e.data["ref"] for e in maps if e.data["ref"] == ref] == [ref]


def test_bogus_ring_indices_halt_that_ring_only(tmp_path):
    host, xl = small_host()
    g, _ = disk_guest(tmp_path, xl, name="evil")
    good, _ = disk_guest(tmp_path, xl, name="good")
    fes = []
    for guest in (g, good):
        fe = BlkFront(guest)
        fe.connect()
        guest.xs("WRITE", f"{fe.fe}/state", str(CONNECTED))
        fes.append(fe)
    evil, nice = fes
    page = g.page()
    ref = g.grant(page)
    evil.req_prod_pvt = 1000                              # a thousand requests in a ring of 32
    evil.push()
    assert "Frontend provided bogus ring requests (1000 - 0 = 1000). Halting ring processing on dev=ca00" \
        in dom0_log(host)
    assert evil.responses() == []
    # The ring stays halted even once the indexes look sane again.
    g.write(evil.ring, 0, struct.pack("<I", 0))
    evil.req_prod_pvt = 0
    evil.request(READ, 0, [(ref, 0, 0)], 1)
    evil.push()
    g.send(evil.port)
    host.run()
    assert evil.responses() == []
    assert not [e for e in events(host, "ring_io", dom=g.dom.domid) if e.data["op"].startswith("request")]
    # dom0 and the other domain's disk carry on.
    p2 = good.page()
    assert nice.io(READ, 0, [(good.grant(p2), 0, 0)]) == (1, READ, OKAY)
    assert host.domains[0].alive and g.dom.alive and good.dom.alive


def test_garbage_in_the_ring_never_escapes(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    page = g.page()
    secret_before = [host.mem.read(f << 12, 64) for f in sorted(host.domains[0].p2m[:4])]
    import random
    rnd = random.Random(1234)
    statuses = []
    for i in range(40):
        fe.request(0, 0, [], 0, raw=bytes(rnd.randrange(256) for _ in range(112)))
        fe.push()
        statuses += [s for _r, _o, s in fe.responses()]
    assert len(statuses) == 40 and set(statuses) <= {ERROR, EOPNOTSUPP, OKAY}
    assert [host.mem.read(f << 12, 64) for f in sorted(host.domains[0].p2m[:4])] == secret_before
    assert host.domains[0].alive and not host.services.backends["blkback"].vbd(g.dom.domid, XVDA).disabled
    ref = g.grant(page)
    assert fe.io(READ, 0, [(ref, 0, 0)], rid=99) == (99, READ, OKAY)


# ------------------------------------------------------------------------------------ teardown
def test_frontend_closing_and_closed(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    d = g.dom.domid
    g.xs("WRITE", f"{fe.fe}/state", str(CLOSING))
    assert store(host, f"{fe.be}/state") == str(CLOSING)
    mark = len(host.trace)
    g.xs("WRITE", f"{fe.fe}/state", str(CLOSED))
    assert store(host, f"{fe.be}/state") == str(CLOSED)
    new = host.trace.since(mark)
    assert [(e.data["op"], e.data["ref"]) for e in new if e.kind == "grant" and e.dom == 0] == \
        [("unmap_grant_ref", fe.ref)]
    closes = [e for e in new if e.kind == "evtchn" and e.data["op"] == "close" and e.dom == 0]
    assert len(closes) == 1
    assert g.grant_flags(fe.ref) & 0x18 == 0
    assert not host.grant_tables.maptrack.get(0)
    # The frontend's port is back to unbound; a kick reaches nobody and nothing breaks.
    assert host.evtchn.ports[d][fe.port].state == "unbound"
    # online is still 1: the device may reconnect (Initialising -> InitWait -> ... -> Connected).
    g.xs("WRITE", f"{fe.fe}/state", str(INITIALISING))
    assert store(host, f"{fe.be}/state") == str(INITWAIT)
    fe2 = BlkFront(g)
    fe2.connect()
    assert store(host, f"{fe.be}/state") == str(CONNECTED)
    p = g.page()
    assert fe2.io(READ, 0, [(g.grant(p), 0, 0)]) == (1, READ, OKAY)


def test_domain_destroyed_unmaps_and_closes(tmp_path):
    host, xl, g, fe, img = connected(tmp_path)
    d = g.dom.domid
    assert host.grant_tables.maptrack.get(0)
    port0 = host.services.backends["blkback"].vbd(d, XVDA).port
    xl.destroy(g.dom.name)
    host.run()
    assert not host.grant_tables.maptrack.get(0)
    assert host.evtchn.ports[0][port0].state == "closed"
    assert host.services.backends["blkback"].vbd(d, XVDA) is None
    assert store(host, f"/local/domain/0/backend/vbd/{d}") is None
    assert host.domains[0].alive


def test_hvm_disk_is_the_image_qemu_uses(tmp_path):
    """An HVM guest's disk: QEMU's IDE drive and blkback's vbd open the same file."""
    host, xl = small_host()
    img = tmp_path / "shared.img"
    cfg = write_cfg(tmp_path, "hvmdisk", "hvm", memory=16, hap=1,
                    disk=[f"format=raw, vdev=hda, access=rw, target={img.name}"])
    dom = xl.create(cfg, paused=True)
    host.run()
    devid = 768                                          # hda: 3 << 8
    be = f"/local/domain/0/backend/vbd/{dom.domid}/{devid}"
    assert store(host, f"{be}/state") == str(INITWAIT)
    vbd = host.services.backends["blkback"].vbd(dom.domid, devid)
    ide = host.services.device_model.instance(dom).ide.drives()
    assert [d.image for _i, d in ide] == [vbd.image] and vbd.image.name == f"private image of {img.name}"
    assert not img.exists()


def test_nonsense_in_the_frontend_directory_is_fatal_not_a_crash(tmp_path):
    host, xl = small_host()
    cases = [({"ring-ref": "junk", "event-channel": 5}, "reading"),
             ({"ring-ref": 8, "event-channel": "-"}, "event-channel"),
             ({"ring-ref": 8, "event-channel": 5, "ring-page-order": 3}, "ring page order exceed max:0"),
             ({"ring-ref": 8, "event-channel": 5, "multi-queue-num-queues": 4}, "guest requested 4 queues"),
             ({"ring-ref": 8, "event-channel": 4000}, "mapping ring-ref port 4000")]
    for i, (keys, why) in enumerate(cases):
        g, _ = disk_guest(tmp_path, xl, name=f"odd{i}")
        fe = BlkFront(g)
        if keys.get("ring-ref") == 8:
            keys["ring-ref"] = fe.ref
        g.xs_write_all(fe.fe, keys)
        g.xs("WRITE", f"{fe.fe}/state", str(INITIALISED))
        assert store(host, f"{fe.be}/state") == str(CLOSING), keys
        assert why in store(host, error_node(fe.be)), keys
    # Nothing stayed mapped or bound for any of them, and dom0 carries on.
    assert not host.grant_tables.maptrack.get(0)
    assert host.domains[0].alive


def test_x86_32_abi_uses_the_packed_layout(tmp_path):
    """A 32-bit frontend: 108-byte requests (id at 4, sector at 12, segments at 20), still 32 of them."""
    host, xl = small_host()
    g, img = disk_guest(tmp_path, xl)
    fe = BlkFront(g, protocol="x86_32-abi")
    fe.connect()
    assert "protocol 2 (x86_32-abi)" in dom0_log(host)
    page = g.page()
    g.write(page, 512, b"32" * 256)
    ref = g.grant(page, readonly=True)
    for i in range(2):                              # slots 0 and 1: 108 bytes apart
        raw = struct.pack("<BBHQQ", WRITE, 1, XVDA & 0xFFFF, 0x1111 + i, 40 + i) + struct.pack("<IBBxx", ref, 1, 1)
        g.write(fe.ring, 64 + 108 * i, raw.ljust(108, b"\0"))
    fe.req_prod_pvt = 2
    fe.push()
    rsps = [struct.unpack("<QBxh", g.read(fe.ring, 64 + 108 * i, 12)) for i in range(2)]
    assert rsps == [(0x1111, WRITE, OKAY), (0x1112, WRITE, OKAY)]
    assert img.read_bytes()[40 * 512:42 * 512] == b"32" * 512
