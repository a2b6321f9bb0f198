"""Xen's memory bookkeeping on the host: frame ownership, the M2P, and the PV rules.

The page-type rules themselves live in :mod:`lab.xen.mm` (PvMM). This module
wires them to the running host: who owns which frame, Xen's read-only M2P
table that every PV guest sees at 0xffff800000000000, and what a successful
mmuext_op means for the vCPUs (a new CR3, a TLB flush, an INVLPG).
"""

from __future__ import annotations

import struct
from typing import Any, Iterable

from . import abi
from ..hw.x86 import (_PAGE_ACCESSED, _PAGE_NX, _PAGE_PRESENT, _PAGE_USER)
from .mm import MmuAction, PvMM

M2P_VA = 0xFFFF_8000_0000_0000


class XenMM:
    def __init__(self, host) -> None:
        self.host = host
        self._vcpu = None
        self.pv = PvMM(host.mem, log=self._log, emit=self._emit,
                       privileged=lambda d: d in host.domains and host.domains[d].privileged,
                       domain_exists=lambda d: d in host.domains,
                       xen_l4_slots=self._xen_l4_slots,
                       adjust_guest=lambda d: d in host.domains and host.domains[d].mode == "pv",
                       on_action=self._action, on_free=self._freed)
        #: Frames their owner gave back (or lost with its destruction) while another
        #: holder still referenced them: back to the heap when the last reference goes.
        self.orphans: set[int] = set()
        self._next_xen = 0x100
        self.m2p_l3 = 0
        self._build_m2p()

    # -- Xen's own frames and the M2P ------------------------------------------
    def xen_frame(self) -> int:
        """A frame from the range Xen keeps for itself."""
        mfn = self._next_xen
        if mfn >= self.host.xen_reserved:
            raise MemoryError("Xen's reserved memory is exhausted")
        self._next_xen += 1
        self.host.mem.zero_frame(mfn)
        self.pv.assign(mfn, abi.DOMID_XEN)
        return mfn

    def _build_m2p(self) -> None:
        mem = self.host.mem
        nr = mem.nr_frames
        pages = (nr * 8 + 4095) // 4096
        self.m2p_frames = [self.xen_frame() for _ in range(pages)]
        l1s = [self.xen_frame() for _ in range((pages + 511) // 512)]
        l2 = self.xen_frame()
        self.m2p_l3 = self.xen_frame()
        ro = _PAGE_PRESENT | _PAGE_USER | _PAGE_NX
        for i, mfn in enumerate(self.m2p_frames):
            mem.write_u64((l1s[i // 512] << 12) + (i % 512) * 8, (mfn << 12) | ro)
        for i, l1 in enumerate(l1s):
            mem.write_u64((l2 << 12) + i * 8, (l1 << 12) | _PAGE_PRESENT | _PAGE_USER)
        mem.write_u64(self.m2p_l3 << 12, (l2 << 12) | _PAGE_PRESENT | _PAGE_USER)
        invalid = (0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little") * 512
        for mfn in self.m2p_frames:
            mem.write(mfn << 12, invalid)

    def set_m2p(self, mfn: int, pfn: int) -> None:
        self.pv.m2p[mfn] = pfn
        page, idx = divmod(mfn * 8, 4096)
        # Straight into the frame: the M2P is Xen's, never watched nor hooked, and a
        # domain's creation sets one entry per page it owns.
        self.host.mem.frame(self.m2p_frames[page])[idx:idx + 8] = (pfn & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")

    def set_m2p_many(self, mfns: list[int], first_pfn: int = 0) -> None:
        """:meth:`set_m2p` of ``mfns[i]`` -> ``first_pfn + i``, written page by page of the M2P."""
        self.pv.m2p.update(zip(mfns, range(first_pfn, first_pfn + len(mfns))))
        mem, frames = self.host.mem, self.m2p_frames
        i, n = 0, len(mfns)
        while i < n:
            # a run of consecutive frames whose M2P entries share one M2P page
            start = mfns[i]
            j = i + 1
            limit = min(n, i + 512 - (start % 512))
            while j < limit and mfns[j] == mfns[j - 1] + 1:
                j += 1
            page, idx = divmod(start * 8, 4096)
            mem.frame(frames[page])[idx:idx + 8 * (j - i)] = struct.pack(f"<{j - i}Q", *range(first_pfn + i, first_pfn + j))
            i = j

    def _xen_l4_slots(self, mfn: int, domid: int) -> dict[int, int]:
        """init_xen_l4_slots(): what Xen puts in slots 256-271 of every guest L4.

        Xen's own entries carry the accessed bit (``__PAGE_HYPERVISOR_RO``), so a
        guest walk through the M2P does not change them.
        """
        return {256: (self.m2p_l3 << 12) | _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED}

    # -- ownership ------------------------------------------------------------
    def assign(self, mfn: int, owner: int | None) -> None:
        self.pv.assign(mfn, abi.DOMID_XEN if owner is None else owner)

    def assign_many(self, mfns: list[int], owner: int) -> None:
        self.pv.assign_many(mfns, owner)

    def release(self, mfn: int) -> None:
        self.pv.release(mfn)
        page, idx = divmod(mfn * 8, 4096)
        self.host.mem.write_u64((self.m2p_frames[page] << 12) + idx, 0xFFFF_FFFF_FFFF_FFFF)

    def _freed(self, mfn: int, _owner: int | None) -> None:
        if mfn in self.orphans:
            self.orphans.discard(mfn)
            self.host.free_frame(mfn)

    def frames_of(self, domid: int) -> list[int]:
        return [mfn for mfn, pg in self.pv.pages.in_order() if pg.owner == domid]

    def destroy_domain(self, domid: int) -> None:
        self.pv.destroy_domain(domid)

    # -- hypercalls -------------------------------------------------------------
    def mmu_update(self, v, reqs: Iterable[tuple[int, int]], foreigndom: int) -> tuple[int, int]:
        self._vcpu = v
        try:
            return self.pv.mmu_update(v.domain.domid, reqs, foreigndom, vcpu=v.id)
        finally:
            self._vcpu = None           # later events (a builder's pin) are nobody's hypercall

    def mmuext_op(self, v, ops: Iterable[dict], foreigndom: int = abi.DOMID_SELF) -> tuple[int, int]:
        self._vcpu = v
        try:
            return self._mmuext_op(v, ops, foreigndom)
        finally:
            self._vcpu = None

    def _mmuext_op(self, v, ops: Iterable[dict], foreigndom: int) -> tuple[int, int]:
        if v.domain.is_hvm:
            # do_mmuext_op(): an HVM caller may only pin and unpin, and for a
            # translated guest (paging_mode_refcounts) those do nothing: its
            # frames never take PV page types. The first other command ends
            # the batch with -EOPNOTSUPP.
            done = 0
            for o in ops:
                if o["cmd"] not in abi.HVM_ALLOWED_MMUEXT:
                    return -abi.ERRNO["EOPNOTSUPP"], done
                done += 1
            return 0, done
        return self.pv.mmuext_op(v.domain.domid, ops, foreigndom, vcpu=v.id)

    def update_va_mapping(self, v, va: int, val: int, flags: int) -> int:
        self._vcpu = v
        try:
            # Hypercalls come from guest kernel mode: the kernel's base table.
            table = v.guest_table if v.domain.is_pv and v.guest_table else v.cpu.cr3 >> 12
            l1e = self.pv.l1e_maddr_for_va(table, va)
            return self.pv.update_va_mapping(v.domain.domid, l1e, val, flags, va=va, vcpu=v.id)
        finally:
            self._vcpu = None

    # -- what the rules tell the host -------------------------------------------
    def _action(self, a: MmuAction) -> None:
        host = self.host
        dom = host.domains.get(a.domid)
        if dom is None:
            return
        targets = [dom.vcpus[a.vcpu]] if a.scope == "local" and a.vcpu < len(dom.vcpus) else list(dom.vcpus)
        for v in targets:
            cpu = v.cpu
            if cpu is None:
                continue
            if a.kind == "new_baseptr":
                v.guest_table = a.mfn
                if v.kernel_mode:
                    cpu.write_cr(3, a.mfn << 12)
            elif a.kind == "new_user_baseptr":
                v.guest_table_user = a.mfn
                if not v.kernel_mode:
                    cpu.write_cr(3, a.mfn << 12)
            elif a.kind == "tlb_flush":
                cpu.tlb.flush(include_global=True)
                cpu.flush_caches()
                host.emit(v, "tlb", op="flush (mmuext_op)", addr=None, entries=0)
            elif a.kind == "invlpg":
                cpu.tlb.invlpg(a.va)
                cpu.flush_caches()
                host.emit(v, "tlb", op="invlpg (Xen)", addr=a.va, entries=len(cpu.tlb.entries()))

    def _log(self, text: str) -> None:
        # PvMM names the vCPU itself ("d1v0 Bad type ..."): log the line as it is.
        msg = text[len("(XEN) "):] if text.startswith("(XEN) ") else text
        self.host.log(msg)

    def _emit(self, **data: Any) -> None:
        kind = data.pop("kind", "pagetable")
        self.host.emit(self._vcpu, kind, **data)
