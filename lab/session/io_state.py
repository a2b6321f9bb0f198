"""What a domain's PV I/O looks like right now: its event channels, grants and shared rings.

Everything is read from where Xen and the guest keep it: the ports from Xen's event
channel table with their pending and mask bits from the domain's shared_info page,
the grant entries from the grant-table frames in the granter's memory, the mappings
from Xen's maptrack, and each ring's indices from the shared ring page itself (plus
the backend's private consumer index, which only dom0 knows). Nothing here changes
the machine.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ..xen import abi

GTF_TYPES = {0: "invalid", 1: "permit_access", 2: "accept_transfer", 3: "transitive"}
GTF_BITS = ((0x4, "readonly"), (0x8, "reading"), (0x10, "writing"))
VIRQ_LABELS = {v: k for k, v in sorted(vars(abi).items())
              if k.startswith("VIRQ_") and isinstance(v, int) and not k.startswith("VIRQ_ARCH")}


@dataclass
class PortView:
    port: int
    state: str
    remote: str          # "d1:5", "VIRQ_TIMER", "dom0 service", ""
    pending: bool
    masked: bool


@dataclass
class GrantView:
    ref: int
    flags: int
    domid: int
    frame: int
    mapped_by: list[str] = field(default_factory=list)

    @property
    def flag_text(self) -> str:
        names = [GTF_TYPES.get(self.flags & 3, "?")] + [n for bit, n in GTF_BITS if self.flags & bit]
        return "|".join(names)


@dataclass
class RingView:
    name: str            # "vbd 51712", "vif 0 tx" ...
    backend: str         # the dom0 service serving it
    req_prod: int
    req_event: int
    rsp_prod: int
    rsp_event: int
    req_cons: int | None   # the backend's private index
    state: str = ""

    @property
    def outstanding(self) -> int:
        """Requests published that the backend has not taken yet."""
        return (self.req_prod - self.req_cons) & 0xFFFFFFFF if self.req_cons is not None else 0


def _bit(host, base: int, port: int) -> bool:
    byte = host.mem.read(base + port // 8, 1)[0]
    return bool(byte >> (port % 8) & 1)


def event_channels(host, domid: int) -> list[PortView]:
    from ..xen.evtchn import SHINFO_MASK, SHINFO_PENDING
    dom = host.domains.get(domid)
    table = host.evtchn.ports.get(domid, {})
    out = []
    for port in sorted(table):
        p = table[port]
        if p.state == "closed":
            continue
        if p.state == "virq":
            remote = VIRQ_LABELS.get(p.virq, f"VIRQ {p.virq}")
        elif p.handler is not None:
            remote = "dom0 service"
        elif p.remote_dom is not None:
            remote = f"d{p.remote_dom}" + (f":{p.remote_port}" if p.remote_port else "")
            far = host.evtchn.ports.get(p.remote_dom, {}).get(p.remote_port) if p.remote_port else None
            handler = getattr(far, "handler", None)
            service = getattr(handler, "__self__", None)
            if service is not None:
                remote += f" ({getattr(service, 'name', type(service).__name__)})"
            elif handler is not None:
                remote += f" ({getattr(handler, 'service_name', 'a dom0 service')})"
        else:
            remote = ""
        pending = masked = False
        if dom is not None and dom.shared_info_mfn:
            base = dom.shared_info_mfn << 12
            pending = _bit(host, base + SHINFO_PENDING, port)
            masked = _bit(host, base + SHINFO_MASK, port)
        out.append(PortView(port, p.state, remote, pending, masked))
    return out


def grants(host, domid: int) -> list[GrantView]:
    """The domain's grant entries that grant something, and who maps them."""
    from ..xen.grant import ENTRIES_PER_FRAME
    gt = host.grant_tables
    if getattr(host, "arch", None) == "arm64":      # lab/xen/arm/grant.py: frames by index, None where none is
        frames = gt.table_frames(domid)
    else:
        frames = gt.frames.get(domid, [])
    out = []
    mapped: dict[int, list[str]] = {}
    for mapper in sorted(gt.maptrack):
        for handle in sorted(gt.maptrack[mapper]):
            m = gt.maptrack[mapper][handle]
            if m.granter == domid:
                mapped.setdefault(m.ref, []).append(f"d{mapper} ({'rw' if m.writable else 'ro'})")
    for i, mfn in enumerate(frames):          # a frame at a time: 512 entries of <u16 flags, u16 domid, u32 frame>
        if mfn is None:
            continue
        for slot, (flags, to, frame) in enumerate(struct.iter_unpack("<HHI", host.mem.read(mfn << 12, 4096))):
            if flags & 3:
                ref = i * ENTRIES_PER_FRAME + slot
                out.append(GrantView(ref, flags, to, frame, mapped.get(ref, [])))
    return out


def rings(host, domid: int) -> list[RingView]:
    """The domain's shared rings, as every backend service that has any reports them.

    A backend offers ``ring_pages(domid)``: (name, machine frame of the shared ring page,
    its private request consumer index, the device's state text) for each ring it serves.
    """
    out = []
    for svc in sorted(host.services.in_start_order(), key=lambda svc: svc.name):
        name = svc.name
        pages = getattr(svc, "ring_pages", None)
        if pages is None:
            continue
        for ring, mfn, req_cons, state in pages(domid):
            req_prod, req_event, rsp_prod, rsp_event = struct.unpack("<IIII", host.mem.read(mfn << 12, 16))
            out.append(RingView(ring, name, req_prod, req_event, rsp_prod, rsp_event, req_cons, state))
    return out


def describe(host, domid: int) -> str:
    """The three tables as text (the headless ``io`` command and the screen's Device I/O pane)."""
    dom = host.domains.get(domid)
    if dom is None:
        return f"no domain {domid}"
    lines = [f"d{domid} {dom.name}: PV I/O"]
    rs = rings(host, domid)
    lines.append("rings" + ("" if rs else ": none"))
    for r in rs:
        cons = "?" if r.req_cons is None else str(r.req_cons)
        lines.append(f"  {r.name} · {r.state}" if r.state else f"  {r.name}")
        lines.append(f"    req_prod {r.req_prod}  req_cons {cons}  rsp_prod {r.rsp_prod}")
        lines.append(f"    req_event {r.req_event}  rsp_event {r.rsp_event}")
    ports = event_channels(host, domid)
    lines.append("event channels" + ("" if ports else ": none"))
    for p in ports:
        bits = ("pending " if p.pending else "") + ("masked" if p.masked else "")
        lines.append(f"  port {p.port:<3} {p.state:<11} {p.remote} {bits}".rstrip())
    gs = grants(host, domid)
    lines.append("grants" + ("" if gs else ": none"))
    for g in gs:
        who = ", mapped by " + ", ".join(g.mapped_by) if g.mapped_by else ""
        lines.append(f"  ref {g.ref:<4} d{g.domid} frame {g.frame:#x} {g.flag_text}{who}")
    return "\n".join(lines)


def io_summary(host, domid: int) -> dict[str, Any]:
    """Counts for a status line: rings, ports pending, grants mapped."""
    ports = event_channels(host, domid)
    gs = grants(host, domid)
    return {"rings": len(rings(host, domid)), "ports": len(ports), "pending": sum(p.pending for p in ports),
            "grants": len(gs), "mapped": sum(1 for g in gs if g.mapped_by)}
