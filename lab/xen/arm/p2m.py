"""A domain's stage-2 translation: Xen's p2m on Arm (``xen/arch/arm/mmu/p2m.c``).

Each guest has its own tables, rooted in VTTBR_EL2 with the domain's VMID in
bits 55:48, so the TLB keeps guests apart without a flush. Every guest
physical address (an IPA) the guest can reach is a descriptor here; anything
else, Xen's memory and every other domain's, has no descriptor at all and a
guest access to it stops at stage 2 and enters Xen.
"""

from __future__ import annotations

from ...hw.arm.mmu import OA_MASK, WalkResult, stage2_walk
from ...hw.arm.tables import TableBuilder, stage2_attrs

#: VTCR_EL2 for a 48-bit IPA space walked from level 0 (T0SZ 16, SL0 2), 4 KiB granule,
#: inner-shareable write-back tables (SH0 3, ORGN0 1, IRGN0 1).
VTCR_GUEST = 16 | (2 << 6) | (1 << 8) | (1 << 10) | (3 << 12)


class P2m:
    def __init__(self, mem, alloc_table, vmid: int) -> None:
        self.mem = mem
        self.vmid = vmid
        self.tables = TableBuilder(mem, alloc_table, start_level=0)
        self.entries: dict[int, tuple[int, str]] = {}     # gfn -> (mfn, "rwx" rights)

    @property
    def vttbr(self) -> int:
        return (self.vmid << 48) | (self.tables.root & OA_MASK)

    @property
    def vtcr(self) -> int:
        return VTCR_GUEST

    def map(self, gfn: int, mfn: int, rights: str = "rwx") -> None:
        """p2m_set_entry(): ``gfn`` now reaches machine frame ``mfn`` with ``rights``."""
        attrs = stage2_attrs(read="r" in rights, write="w" in rights, execute="x" in rights)
        self.tables.map(gfn << 12, mfn << 12, attrs)
        self.entries[gfn] = (mfn, rights)

    def unmap(self, gfn: int) -> int | None:
        """p2m_remove_mapping(): the mfn that was there (the caller decides what becomes of it)."""
        old = self.entries.pop(gfn, None)
        if old is None:
            return None
        self.tables.unmap(gfn << 12)
        return old[0]

    def lookup(self, gfn: int) -> int | None:
        e = self.entries.get(gfn)
        return None if e is None else e[0]

    def walk(self, ipa: int, access: str = "r") -> WalkResult:
        return stage2_walk(self.mem, self.vttbr, self.vtcr, ipa, access)

    def save_state(self) -> dict:
        return {"entries": dict(self.entries), "tables": list(self.tables.tables)}

    def load_state(self, s: dict) -> None:
        self.entries = dict(s["entries"])
        self.tables.tables = list(s["tables"])
