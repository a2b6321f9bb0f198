"""dom0's stage 2 on Arm, and how dom0's services hold the frames they touch.

Xen on Arm gives dom0 a stage 2 like any domain's (its own VMID, created
first), with its RAM mapped 1:1: an IPA of dom0 is the machine address of the
same byte (``is_domain_direct_mapped()``, ``xen/arch/arm/domain_build.c``), so
a frame number dom0 gives Xen is both its gfn and the mfn. The lab's dom0 is
its services in Python, so its stage 2 holds only what they use: the pages of
its own they give to Xen (netback's bounce page for grant copies, direct
mapped), guests' ring pages they map as foreign pages (xenstored and
xenconsoled, XENMAPSPACE_gmfn_foreign) and grant mappings (blkback, netback).
Those last two go in windows of IPA space no RAM uses (the "extended regions"
Xen lists in dom0's ``/hypervisor`` node for exactly this).

A held frame is the same :class:`~lab.xen.frames.HeldFrame` as on x86 (a
foreign one knows its place in dom0's stage 2, which goes when it is
released); what keeps it alive is the Arm grant code's reference
(``ArmGrantTables``): a held frame outlives its owner's wish to give it back
and is freed when the last holder lets go.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...hw.memory import PAGE_SHIFT
from ..abi.errno import EINVAL
from ..frames import HeldFrame
from .p2m import P2m

#: Where dom0's grant mappings go: 1 TiB, above any RAM an Arm host of the lab has (64 GiB at
#: most) and inside the 48-bit IPA space of its stage 2.
DOM0_GRANT_WINDOW = (1 << 40) >> PAGE_SHIFT
#: How many mappings the window holds at once (Linux's unpopulated-alloc pool is as small).
DOM0_GRANT_WINDOW_PAGES = 4096
#: Where foreign mappings go (XENMAPSPACE_gmfn_foreign: the rings xenstored and xenconsoled map),
#: right after the grant window.
DOM0_FOREIGN_WINDOW = DOM0_GRANT_WINDOW + DOM0_GRANT_WINDOW_PAGES
DOM0_FOREIGN_WINDOW_PAGES = 4096


@dataclass(eq=False)
class ForeignFrame(HeldFrame):
    """A guest's frame held by a dom0 service, and where it sits in dom0's stage 2."""
    gfn: int | None = None


def attach_dom0_stage2(host, dom0) -> P2m:
    """p2m_init() for dom0: its tables and VMID, before any guest's (dom0 is created first)."""
    p2m = P2m(host.mem, lambda: host.alloc_frame(None) << PAGE_SHIFT, host.next_vmid)
    host.next_vmid += 1
    dom0.extra["p2m"] = p2m
    return p2m


class ArmFrames:
    """get_page() for dom0's services on Arm: a frame of dom0 (direct mapped into its stage 2
    on first use) or a guest's frame mapped as a foreign page (XENMAPSPACE_gmfn_foreign)."""

    def __init__(self, host) -> None:
        self.host = host
        self._held: list[HeldFrame] = []

    def hold(self, owner: int, mfn: int, *, writable: bool, holder: str) -> HeldFrame | int:
        dom = self.host.domains.get(owner)
        if dom is None or mfn not in dom.extra.get("frames", ()):
            return -EINVAL                       # not RAM of that domain
        d0 = self.host.domains.get(0)
        p2m = self.host.p2m(d0) if d0 is not None else None
        if owner == 0 and p2m is not None and p2m.lookup(mfn) is None:
            p2m.map(mfn, mfn, "rw")              # direct mapped: gfn == mfn
        gfn = None
        if owner != 0 and p2m is not None:
            # XENMEM_add_to_physmap_batch(XENMAPSPACE_gmfn_foreign): the page enters dom0's stage 2
            gfn = next((g for g in range(DOM0_FOREIGN_WINDOW, DOM0_FOREIGN_WINDOW + DOM0_FOREIGN_WINDOW_PAGES)
                        if p2m.lookup(g) is None), None)
            if gfn is None:
                return -EINVAL
            p2m.map(gfn, mfn, "rw" if writable else "r")
        self.host.grant_tables.hold_frame(mfn)
        held = ForeignFrame(self, mfn, owner, writable, holder, gfn=gfn)     # type: ignore[arg-type]
        self._held.append(held)
        return held

    def hold_gfn(self, dom, gfn: int, *, writable: bool, holder: str) -> HeldFrame | int:
        p2m = self.host.p2m(dom)
        mfn = p2m.lookup(gfn) if p2m is not None and 0 <= gfn < (1 << 36) else None
        if mfn is None:
            return -EINVAL
        return self.hold(dom.domid, mfn, writable=writable, holder=holder)

    def _release(self, held: HeldFrame) -> None:
        self._held.remove(held)
        gfn = getattr(held, "gfn", None)
        d0 = self.host.domains.get(0)
        p2m = self.host.p2m(d0) if d0 is not None else None
        if gfn is not None and p2m is not None and p2m.lookup(gfn) == held.mfn:
            p2m.unmap(gfn)                       # the foreign mapping goes with the hold
        self.host.grant_tables.release_frame(held.mfn)

    def held(self) -> list[HeldFrame]:
        return list(self._held)
