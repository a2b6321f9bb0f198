"""blkback: the block backend in dom0, one instance per virtual block device (vbd).

It follows Linux's ``drivers/block/xen-blkback`` (xenbus.c and blkback.c):

* **probe** (a new ``backend/vbd/<D>/<devid>`` in state 1): open the image the
  domain's config names for that disk (the same file the device model opens,
  relative targets beside the config file), publish ``feature-flush-cache``,
  ``feature-barrier`` 0, ``feature-persistent`` 0, ``max-ring-page-order`` 0,
  ``sector-size`` 512, ``sectors`` and ``info`` (VDISK_CDROM 1, REMOVABLE 2,
  READONLY 4), and go to InitWait (2). The lab has no hotplug script: blkback
  opens the image itself instead of waiting for ``physical-device``.
* **connect** (frontend Initialised or Connected): read ``ring-ref``,
  ``event-channel`` and ``protocol`` ("x86_64-abi", or "x86_32-abi" with the
  packed 32-bit layout), map the ring grant, bind the event channel, write the
  disk's details again and go to Connected (4).
* **I/O** on each notification: consume requests from ``req_cons`` to the
  shared ``req_prod``, each checked on a private copy; map the segments'
  grants (read-only for a write, writable for a read), move the sectors,
  unmap, answer at ``rsp_prod_pvt``, push with the ring.h notify rule, and
  finish with RING_FINAL_CHECK_FOR_REQUESTS.
* **teardown**: frontend Closing -> Closing; Closed -> unmap the ring, close
  the port, Closed; the directory removed or the domain destroyed -> the
  same, without touching xenstore.

Validation, as Linux does it: ``req_prod`` more than a ring ahead of the
responses halts the ring for good ("Frontend provided bogus ring requests");
a bad segment count, a sector range outside the page or the disk, a write to
a read-only disk, a grant that does not map -> BLKIF_RSP_ERROR; an operation
not offered -> BLKIF_RSP_EOPNOTSUPP. Every failure is a line in dom0's log.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ..xen import abi
from ..xen.abi.io_ring import (BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
                               BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
                               BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
                               BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, VDISK_CDROM, VDISK_READONLY,
                               VDISK_REMOVABLE)
from ..hw.diskimage import SECTOR_SIZE, DiskImage, DiskImageError, open_disk, shared_images
from .xenbus_backend import (CLOSED, CLOSING, CONNECTED, INITIALISED, INITIALISING, INITWAIT, UNKNOWN,
                             BackendDevice, BackRing, XenbusBackend, charge_dom0, ring_event)
from .xsclient import vbd_name

# public/io/blkif.h (the numbers themselves: lab.xen.abi.io_ring)
OP_NAMES = {0: "READ", 1: "WRITE", 2: "WRITE_BARRIER", 3: "FLUSH_DISKCACHE", 5: "DISCARD", 6: "INDIRECT"}
RSP_NAMES = {0: "OKAY", -1: "ERROR", -2: "EOPNOTSUPP"}
SECTORS_PER_PAGE = 4096 // SECTOR_SIZE

#: Request sizes: x86_64 (natural alignment: op, nr_segments, handle, pad, id at 8, sector at 16, seg at 24),
#: arm64's native one ("arm-abi", public/io/protocols.h), laid out as x86_64's, and x86_32 (packed: id at 4,
#: sector at 12, seg at 20); a segment is {u32 gref; u8 first; u8 last; pad}.
REQUEST_SIZE = {"x86_64-abi": 112, "arm-abi": 112, "x86_32-abi": 108}
DEFAULT_PROTOCOL = "x86_64-abi"                             # the lab's x86 dom0 is 64-bit: native


def native_protocol(host) -> str:
    """XEN_IO_PROTO_ABI_NATIVE of dom0's kernel: "arm-abi" on an Arm host."""
    return "arm-abi" if getattr(host, "arch", "x86_64") == "arm64" else DEFAULT_PROTOCOL


def protocol_number(host, protocol: str) -> int:
    """BLKIF_PROTOCOL_NATIVE (1), _X86_32 (2) or _X86_64 (3), as xen-blkback/common.h numbers them."""
    if protocol == native_protocol(host):
        return 1
    return {"x86_32-abi": 2, "x86_64-abi": 3}.get(protocol, 0)
RESPONSE = struct.Struct("<QBxh")                            # id, operation, status (both layouts)
MAX_QUEUES = 1

#: Lab estimates when the cost table has no figure.
REQUEST_COST = 2000
SECTOR_COST = 100


@dataclass
class Vbd:
    """What blkback keeps per device (struct xen_blkif with its one ring)."""
    image: DiskImage | None
    readonly: bool
    vdev: str
    info: int
    protocol: str = DEFAULT_PROTOCOL
    ring: BackRing | None = None
    ring_handle: int | None = None
    port: int = 0
    disabled: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"rd_req": 0, "wr_req": 0, "f_req": 0, "oo_req": 0,
                                                           "rd_sect": 0, "wr_sect": 0, "errors": 0})

    @property
    def sectors(self) -> int:
        return self.image.sectors if self.image is not None else 0


class Blkback(XenbusBackend):
    kind = "vbd"
    name = "blkback"
    log_prefix = "xen-blkback"

    # -- probe ------------------------------------------------------------------------------
    def rings_of(self, dev: BackendDevice) -> list[tuple[str, BackRing | None]]:
        vbd = dev.data.get("vbd")
        return [(f"vbd {dev.devid} ({vbd.vdev})", vbd.ring)] if vbd is not None else []

    def probe(self, dev: BackendDevice) -> bool:
        node = dev.nodename
        mode = self.read(f"{node}/mode") or "w"
        readonly = "w" not in mode
        vdev = self.read(f"{node}/dev") or vbd_name(dev.devid)
        cdrom = self.read(f"{dev.otherend}/device-type") == "cdrom"
        removable = self.read_int(f"{node}/removable") == 1
        image = self._open_image(dev, readonly, vdev)
        info = (VDISK_CDROM if cdrom else 0) | (VDISK_REMOVABLE if removable else 0) | \
               (VDISK_READONLY if readonly else 0)
        dev.data["vbd"] = Vbd(image, readonly, vdev, info)
        entries: list[tuple[str, Any]] = [("max-ring-page-order", 0)] + self._details(dev)
        self.write_all(dev, entries)
        self.switch_state(dev, INITWAIT)
        return True

    def _open_image(self, dev: BackendDevice, readonly: bool, vdev: str) -> DiskImage | None:
        dom = self.host.domains.get(dev.domid)
        conf = getattr(dom, "config", None)
        spec = next((d for d in getattr(conf, "disks", None) or [] if getattr(d, "devid", None) == dev.devid), None)
        target = getattr(spec, "target", None) if spec is not None else self.read(f"{dev.nodename}/params")
        if not target:
            self.log(f"{dev.nodename}: {vdev}: no medium (empty drive)")
            return None
        dm = self.host.services.device_model
        return open_disk(target, config_file=getattr(conf, "filename", None) if spec is not None else None,
                         base_dir=getattr(dm, "image_dir", None), readonly=readonly,
                         shared=shared_images(self.host),
                         fmt=getattr(spec, "format", "raw") or "raw",
                         # what happened to the host file (created, missing...) is the host's
                         # business: the backend's log only, never dom0's console, so a machine
                         # runs the same whether its image existed before or not
                         log=lambda text: self.log_lines.append(f"{self.log_prefix}: {dev.nodename}: {vdev}: {text}"))

    def _details(self, dev: BackendDevice) -> list[tuple[str, Any]]:
        """What connect() writes: the features and the disk's geometry."""
        vbd: Vbd = dev.data["vbd"]
        out: list[tuple[str, Any]] = [("feature-flush-cache", 1)]
        if self.read_int(f"{dev.nodename}/discard-enable") != 0:
            out.append(("feature-discard", 0))         # a raw image file cannot discard
        out += [("feature-barrier", 0), ("feature-persistent", 0), ("sectors", vbd.sectors), ("info", vbd.info),
                ("sector-size", SECTOR_SIZE), ("physical-sector-size", SECTOR_SIZE)]
        return out

    # -- the frontend's state -----------------------------------------------------------------
    def frontend_changed(self, dev: BackendDevice, state: int) -> None:
        if state == INITIALISING:
            if dev.state == CLOSED:
                self.log(f"{dev.nodename}: prepare for reconnect")
                self.switch_state(dev, INITWAIT)
        elif state in (INITIALISED, CONNECTED):
            if dev.state == CONNECTED:
                return
            self.disconnect(dev)
            if not self.connect_ring(dev):
                self.disconnect(dev)
                return
            self.write_all(dev, self._details(dev))
            self.switch_state(dev, CONNECTED)
        elif state == CLOSING:
            self.switch_state(dev, CLOSING)
        elif state == CLOSED:
            self.disconnect(dev)
            self.switch_state(dev, CLOSED)
            if self.read_int(f"{dev.nodename}/online") != 1:
                self.remove(dev, "closed and offline")
        elif state == UNKNOWN:
            self.remove(dev, "frontend state unknown")
        else:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"saw state {state} at frontend")

    def connect_ring(self, dev: BackendDevice) -> bool:
        vbd: Vbd = dev.data["vbd"]
        fe = dev.otherend
        protocol = self.read(f"{fe}/protocol")
        if protocol is None:
            protocol = native_protocol(self.host)
        elif protocol not in REQUEST_SIZE or not protocol_number(self.host, protocol):
            self.fatal(dev, abi.ERRNO["ENOSYS"], f"unknown fe protocol {protocol}")
            return False
        queues = self.read_int(f"{fe}/multi-queue-num-queues")
        if queues is not None and not 1 <= queues <= MAX_QUEUES:
            self.fatal(dev, abi.ERRNO["ENOSYS"],
                       f"guest requested {queues} queues, exceeding the maximum of {MAX_QUEUES}.")
            return False
        evtchn = self.read_int(f"{fe}/event-channel")
        if evtchn is None or evtchn < 0:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"reading {fe}/event-channel")
            return False
        order = self.read_int(f"{fe}/ring-page-order")
        ref_name = "ring-ref"
        if order is not None:
            if order != 0:
                self.fatal(dev, abi.ERRNO["EINVAL"], f"{fe}/request {order} ring page order exceed max:0")
                return False
            ref_name = "ring-ref0"
        ref = self.read_int(f"{fe}/{ref_name}")
        if ref is None or not 0 <= ref <= 0xFFFFFFFF:
            self.fatal(dev, abi.ERRNO["EINVAL"], f"reading {fe}/{ref_name}")
            return False
        status, handle, page = self.map_grant(dev.domid, ref, readonly=False)
        if status != 0:
            self.fatal(dev, -status, f"mapping in shared page {ref} from domain {dev.domid}")
            return False
        vbd.ring = BackRing(page, REQUEST_SIZE[protocol])
        vbd.ring_handle = handle
        vbd.protocol = protocol
        port = self.bind_interdomain(dev.domid, evtchn, lambda p, dev=dev: self._notified(dev))
        if port < 0:
            self.fatal(dev, -port, f"mapping ring-ref port {evtchn}")
            return False
        vbd.port = port
        vbd.disabled = False
        self.log(f"{dev.nodename}: using {MAX_QUEUES} queues, protocol {protocol_number(self.host, protocol)} ({protocol})")
        return True

    def disconnect(self, dev: BackendDevice) -> None:
        """xen_blkif_disconnect: unbind the event channel, unmap the ring (idempotent)."""
        vbd: Vbd | None = dev.data.get("vbd")
        if vbd is None:
            return
        if vbd.port > 0:
            self.close_port(vbd.port)
            vbd.port = 0
        if vbd.ring_handle is not None:
            self.unmap_grants([vbd.ring_handle])
            vbd.ring_handle = None
        vbd.ring = None

    # -- I/O ---------------------------------------------------------------------------------------
    def _notified(self, dev: BackendDevice) -> int:
        """The frontend kicked the event channel: serve the ring (do_block_io_op)."""
        vbd: Vbd | None = dev.data.get("vbd")
        if dev.removed or vbd is None or vbd.ring is None:
            return 0
        if vbd.disabled:
            return 0
        ring = vbd.ring
        try:
            while True:
                before = ring.req_cons
                self._do_block_io_op(dev, vbd)
                if vbd.disabled or vbd.ring is None:
                    break
                if not ring.final_check_for_requests() or ring.req_cons == before:
                    break
        except Exception as e:            # nothing a frontend writes may take dom0 down
            vbd.disabled = True
            self.log(f"{dev.nodename}: internal error serving the ring: {type(e).__name__}: {e}; ring halted")
        return 0

    def _do_block_io_op(self, dev: BackendDevice, vbd: Vbd) -> None:
        ring = vbd.ring
        rc, rp = ring.req_cons, ring.req_prod
        if ring.request_prod_overflow(rp):
            rc = ring.rsp_prod_pvt
            vbd.disabled = True
            self.log(f"Frontend provided bogus ring requests ({rp} - {rc} = {(rp - rc) & 0xFFFFFFFF}). "
                     f"Halting ring processing on dev={dev.devid:04x}")
            ring_event(self.host, dev.domid, ring=self._ring_name(dev, vbd), op="halted: bogus ring requests",
                       req_prod=rp, req_cons=ring.req_cons, rsp_prod=ring.rsp_prod)
            return
        while rc != rp:
            if ring.request_cons_overflow(rc):
                break
            raw = ring.entry(rc)
            rc = (rc + 1) & 0xFFFFFFFF
            ring.req_cons = rc
            self._request(dev, vbd, raw, rp)

    def _ring_name(self, dev: BackendDevice, vbd: Vbd) -> str:
        return f"blkback.{dev.domid}.{vbd.vdev}"

    def _request(self, dev: BackendDevice, vbd: Vbd, raw: bytes, rp: int) -> None:
        ring = vbd.ring
        if vbd.protocol == "x86_32-abi":
            op, nseg, _handle, rid, sector = struct.unpack_from("<BBHQQ", raw, 0)
            seg_off = 20
        else:
            op, nseg, _handle, _pad, rid, sector = struct.unpack_from("<BBHIQQ", raw, 0)
            seg_off = 24
        name = OP_NAMES.get(op, f"op {op}")
        ring_event(self.host, dev.domid, ring=self._ring_name(dev, vbd), op=f"request {name}", req_prod=rp,
                   req_cons=ring.req_cons, rsp_prod=ring.rsp_prod, id=rid, sector=sector, segments=nseg)
        costs = self.host.costs
        charge_dom0(self.host, costs.event.get("blkback_request", REQUEST_COST))
        if op in (BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE):
            segs = [struct.unpack_from("<IBB", raw, seg_off + 8 * i)
                    for i in range(min(nseg, BLKIF_MAX_SEGMENTS_PER_REQUEST))]
            status = self._rw(dev, vbd, op, nseg, rid, sector, segs)
        else:
            vbd.stats["oo_req"] += 1
            why = {BLKIF_OP_WRITE_BARRIER: "barrier op not supported (feature-barrier is 0)",
                   BLKIF_OP_DISCARD: "discard op failed, not supported",
                   BLKIF_OP_INDIRECT: "indirect requests not supported (no feature-max-indirect-segments)"}
            self.log(f"{dev.nodename}: {why.get(op, f'unknown operation {op}')}: EOPNOTSUPP")
            status = BLKIF_RSP_EOPNOTSUPP
        if status == BLKIF_RSP_ERROR:
            vbd.stats["errors"] += 1
        self._respond(dev, vbd, rid, op, status)

    def _rw(self, dev: BackendDevice, vbd: Vbd, op: int, nseg: int, rid: int, sector: int,
            segs: list[tuple[int, int, int]]) -> int:
        """dispatch_rw_block_io: check, map, move the sectors, unmap. The response status."""
        write = op != BLKIF_OP_READ
        flush_only = op == BLKIF_OP_FLUSH_DISKCACHE and nseg == 0
        where = f"{dev.nodename}: {OP_NAMES[op]} id {rid:#x} sector {sector}"
        if (nseg == 0 and op != BLKIF_OP_FLUSH_DISKCACHE) or nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST:
            self.log(f"{where}: Bad number of segments in request ({nseg})")
            return BLKIF_RSP_ERROR
        nr_sects = 0
        for i, (gref, first, last) in enumerate(segs):
            if last >= SECTORS_PER_PAGE or last < first:
                self.log(f"{where}: segment {i} (gref {gref}) has sectors {first}..{last}, "
                         f"outside 0..{SECTORS_PER_PAGE - 1} of its page")
                return BLKIF_RSP_ERROR
            nr_sects += last - first + 1
        # xen_vbd_translate
        if write and vbd.readonly:
            self.log(f"{where}: access denied: write to read-only device {vbd.vdev}")
            return BLKIF_RSP_ERROR
        end = sector + nr_sects
        if nr_sects and (end >= 1 << 64 or end > vbd.sectors):
            self.log(f"{where}: access denied: sectors {sector}..{end - 1} beyond the end of {vbd.vdev} "
                     f"({vbd.sectors} sectors)")
            return BLKIF_RSP_ERROR
        if op == BLKIF_OP_READ:
            vbd.stats["rd_req"] += 1
        elif op == BLKIF_OP_WRITE:
            vbd.stats["wr_req"] += 1
        else:
            vbd.stats["f_req"] += 1
        if flush_only:
            return BLKIF_RSP_OKAY                       # the image is written through: nothing cached
        results = self.map_grants(dev.domid, [(gref, write) for gref, _f, _l in segs])
        handles = [h for st, h, _a in results if st == 0]
        status = BLKIF_RSP_OKAY
        bad = next(((i, st) for i, (st, _h, _a) in enumerate(results) if st != 0), None)
        if bad is not None:
            i, st = bad
            self.log(f"{where}: invalid buffer -- could not remap it: segment {i} gref {segs[i][0]}: "
                     f"{abi.GNTST_NAMES.get(st, st)}")
            status = BLKIF_RSP_ERROR
        elif vbd.image is None:
            self.log(f"{where}: no medium")
            status = BLKIF_RSP_ERROR
        else:
            lba = sector
            try:
                for (gref, first, last), (_st, _h, page) in zip(segs, results):
                    n = last - first + 1
                    if write:
                        vbd.image.write(lba, page.read(first * SECTOR_SIZE, n * SECTOR_SIZE))
                    else:
                        page.write(first * SECTOR_SIZE, vbd.image.read(lba, n))
                    lba += n
            except DiskImageError as e:
                self.log(f"{where}: I/O error: {e}")
                status = BLKIF_RSP_ERROR
            else:
                vbd.stats["wr_sect" if write else "rd_sect"] += nr_sects
                charge_dom0(self.host, self.host.costs.event.get("blkback_sector", SECTOR_COST) * nr_sects)
        self.unmap_grants(handles)
        return status

    def _respond(self, dev: BackendDevice, vbd: Vbd, rid: int, op: int, status: int) -> None:
        """make_response: the response at rsp_prod_pvt, pushed, and the frontend notified if it asked."""
        ring = vbd.ring
        ring.put(ring.rsp_prod_pvt, RESPONSE.pack(rid & (1 << 64) - 1, op & 0xFF, status))
        ring.rsp_prod_pvt = (ring.rsp_prod_pvt + 1) & 0xFFFFFFFF
        notify = ring.push_responses()
        ring_event(self.host, dev.domid, ring=self._ring_name(dev, vbd), op=f"response {RSP_NAMES[status]}",
                   req_prod=ring.req_prod, req_cons=ring.req_cons, rsp_prod=ring.rsp_prod, notify=notify, id=rid)
        if notify and vbd.port > 0:
            self.notify(vbd.port)

    # -- for the learner and the tests ------------------------------------------------------------
    def vbd(self, domid: int, devid: int) -> Vbd | None:
        dev = self.devices.get((domid, devid))
        return dev.data.get("vbd") if dev is not None else None

    def state(self, domid: int, devid: int) -> int | None:
        dev = self.devices.get((domid, devid))
        return dev.state if dev is not None else None
