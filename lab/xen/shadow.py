"""Shadow paging: how Xen runs an HVM guest's page tables without EPT or NPT.

With ``hap = 0`` in the guest's xl.cfg, or on a host without EPT/NPT, the
hardware cannot translate guest-physical addresses by itself. Xen then keeps
a *shadow* of each guest page table, in its own memory, holding machine
frame numbers, and points the real CR3 at the shadow. The guest's own tables
hold guest-physical frame numbers and are never walked by the hardware: Xen
reads them in software, through the p2m, whenever it needs to build or fix a
shadow entry. (Xen's sources: ``xen/arch/x86/mm/shadow/multi.c`` and
``common.c``; the lab keeps their shape and names, not their optimisations.)

What makes it work is that Xen sees every event that could make a shadow
stale. The VMCS is set so that these leave the guest (see ``build_hvm``):

``mov cr3`` (CR_ACCESS)
    The guest switches address space. Xen records the guest's CR3 and points
    the hardware at the shadow of that table, making it if there is none
    (``sh_update_cr3``). Shadows of other address spaces are kept for later.
    ``mov reg, cr3`` exits too and gets the guest's own value back.
``invlpg`` (INVLPG)
    Xen drops the shadow L1 entry for that address (``sh_invlpg``).
``#PF`` (EXCEPTION_NMI, vector 14, through the exception bitmap)
    Every page fault comes to Xen first (``sh_page_fault``). Xen walks the
    guest's tables for the address, as the hardware would have done:

    * the guest's tables do not allow the access: a *real guest fault*. Xen
      injects #PF into the guest with the error code and CR2 the guest's own
      walk gives, and the guest's handler runs as on bare metal;
    * the guest's tables allow it: a *shadow fault*. Xen sets the guest's
      A (and, for a write, D) bits as the hardware would, builds the missing
      shadow tables and entries along the path, and resumes the guest;
    * the access is a write to a frame that is itself a guest page table:
      Xen write-protects such frames in every shadow, so it sees the guest's
      page-table writes. It *emulates* the write, re-derives the shadow
      entries the write changed ("shadow sync") and moves the guest on.

Rules for a shadow entry made from a guest entry (``_sh_propagate``): only
P, RW, US, A and NX pass through; no G, so a CR3 switch flushes everything;
an entry whose guest A bit is clear stays not present and one whose guest D
bit is clear stays read-only, so the first access and the first write come
to Xen, which then sets A or D in the guest's entry. A guest 2 MiB (or
1 GiB) page is *splintered* into an "fl1" shadow of 4 KiB entries, since the
machine frames behind it need not be contiguous. A frame that is a guest
page table is mapped read-only in every shadow.

While the guest has paging off (the firmware and the kernel's boot stub),
Xen runs it on a 1:1 map of guest-physical to machine frames built the same
lazy way ("unpaged mode"; in Xen a shadow of the p2m itself).

Shadows come from the domain's own paging pool. Before an exit builds
anything Xen makes sure the pool has room (``shadow_prealloc``): it unpins
the shadows of address spaces no vCPU has loaded and frees the tables only
they reached, and if that is not enough it unhooks every shadow
(``shadow_blow_tables``) and lets the vCPUs fault their way back in. So a
guest that loads ever new CR3s recycles its own shadows; it never grows
them past its pool.

Simplifications, stated in docs/shadow-paging.md: the guest's page-table
writes are emulated by re-executing the one faulting instruction with the
shadow entry made writable for that instruction only; no out-of-sync
shadows and no unshadowing heuristics on writes; stage one of recycling
unpins every unloaded top-level shadow at once, not one by one; every
shadow operation is a ``pagetable`` trace event.
"""

from __future__ import annotations

from typing import Any

from ..hw import paging
from ..hw.faults import CpuStop, Fault, VmExit
from ..hw.x86 import (EFER_NXE, PADDR_MASK, PFEC_insn_fetch, PFEC_user_mode,
                      PFEC_write_access, X86_CR0_WP, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_NX,
                      _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, is_canonical)
from .mmio import handle_mmio
from .paging_pool import pool_of

# Entry bits under the short names this module's table code reads best with.
P, RW, US, A, D, PS, NX = _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, _PAGE_NX
SHIFT = paging.LEVEL_SHIFT
#: How many following L1 entries a shadow fault fills as well (Xen's PREFETCH_DISTANCE).
PREFETCH_DISTANCE = 32
#: Shadow pages one exit may need at most, made free before it starts (shadow_prealloc()): a
#: 4-level path for the access, the paths an emulated write and an event delivery touch.
PREALLOC_PAGES = 32
#: The ``op`` values of the ``pagetable`` events this module emits.
OPS = ("shadow fault", "shadow sync", "shadow write-protect", "shadow new table", "shadow flush", "inject #PF",
       "shadow recycle")
#: What each operation charges, by name in the cost table (machines/costs.toml, [event]).
COST = {"shadow fault": "shadow_sync", "shadow sync": "page_walk_level", "shadow write-protect": "page_walk_level",
        "shadow new table": "page_walk_level", "shadow flush": "page_walk_level",
        "inject #PF": "exception_delivery", "shadow recycle": "shadow_sync"}
_ACCESS = {"r": "read", "w": "write", "x": "instruction fetch"}


def _reserved(entry: int, level: int, nxe: bool) -> bool:
    """Whether a present guest entry has a reserved bit set (SDM vol. 3A, 4.5)."""
    if entry & NX and not nxe:
        return True
    if level == 4 and entry & PS:
        return True
    if entry & PS and level == 3 and entry & 0x3FFF_E000:
        return True
    return bool(entry & PS and level == 2 and entry & 0x1F_E000)


class _BadGfn(Exception):
    """The guest's walk met a guest-physical frame outside the domain's memory."""

    def __init__(self, gpa: int, is_table: bool) -> None:
        super().__init__(f"{gpa:#x}")
        self.gpa = gpa
        self.is_table = is_table


class _P2mView:
    """The domain's p2m as Xen's shadow code reads it: its RAM, and the frames XENMEM_add_to_physmap
    placed (which may lie beyond RAM). ``gfn in view`` is false for a hole."""

    def __init__(self, dom) -> None:
        self.dom = dom

    def __contains__(self, gfn: int) -> bool:
        return self.dom.gfn_to_mfn(gfn) is not None

    def __getitem__(self, gfn: int) -> int:
        mfn = self.dom.gfn_to_mfn(gfn)
        if mfn is None:
            raise IndexError(gfn)
        return mfn


class _P2mTranslate:
    """Guest-physical to machine through the p2m, for Xen's software walk of guest tables."""
    accepts_walk_context = True

    def __init__(self, p2m: _P2mView) -> None:
        self.p2m = p2m

    def __call__(self, gpa: int, access: str, gla: int | None = None, is_table_access: bool = False):
        gfn = gpa >> 12
        if gfn not in self.p2m:
            raise _BadGfn(gpa, is_table_access)
        return (self.p2m[gfn] << 12) | (gpa & 0xFFF), ()


class ShadowPaging:
    """One domain's shadow page tables, and Xen's handlers for the exits that keep them right."""

    def __init__(self, host, dom) -> None:
        self.host = host
        self.dom = dom
        self.mem = host.mem
        self.p2m = _P2mView(dom)
        self.gfn_of: dict[int, int] = {mfn: gfn for gfn, mfn in enumerate(dom.p2m) if mfn is not None}
        #: (guest table gfn, level) -> shadow mfn (Xen's shadow hash, keyed by gfn and shadow type).
        self.shadows: dict[tuple[int, int], int] = {}
        #: (first gfn, level) -> shadow mfn: splinters of guest superpages (Xen's fl1 shadows).
        self.splinters: dict[tuple[int, int], int] = {}
        #: (level, address >> level's span) -> shadow mfn: the 1:1 map used while guest paging is off.
        self.unpaged: dict[tuple[int, int], int] = {}
        #: Every shadow frame and what it shadows, in allocation order.
        self.frames: dict[int, tuple] = {}
        #: gfn -> the levels at which it is a shadowed guest page table.
        self.pagetables: dict[int, set[int]] = {}
        #: gfn -> the shadow leaf entries (machine addresses) that map it: how Xen finds writable
        #: mappings to take away when the frame becomes a page table.
        self.rmap: dict[int, dict[int, None]] = {}
        #: vCPU id -> gfn of the guest L4 its shadow_cr3 shadows (None: not yet bound).
        self.bound: dict[int, int | None] = {}
        #: vCPU id -> the guest's CR2 as the guest last set or was given it.
        self.guest_cr2: dict[int, int] = {}
        self.unpaged_root: int | None = None
        self.null_root: int | None = None
        self.stats: dict[str, int] = {"shadow faults": 0, "emulated writes": 0, "shadow syncs": 0,
                                      "injected #PF": 0, "shadow tables": 0, "write-protected frames": 0,
                                      "invlpg drops": 0, "shadows recycled": 0}
        self._flush = False

    # ------------------------------------------------------------------ events
    def _event(self, v, op: str, addr: int | None, value: int | None, level: int | None, result: str,
               message: str) -> None:
        self.host.emit(v, "pagetable", op=op, addr=addr, value=value, level=level, result=result, message=message)
        if v is not None:
            self.host.charge(v, COST[op])

    # ------------------------------------------------------------------ set-up
    def attach(self, v) -> None:
        """Give a new vCPU Xen's tables: the 1:1 map while paging is off, nothing bound yet."""
        cpu = v.cpu
        cpu.shadow_unpaged_cr3 = self._unpaged_table(4, 0, v) << 12
        if self.null_root is None:
            # A shadow L4 with no entries: the vCPU's root until the guest's own
            # tables are shadowed, so a guest that turns paging on traps to Xen first.
            self.null_root = self._alloc(("empty", 4))
        cpu.shadow_cr3 = self.null_root << 12
        self.bound[v.id] = None
        self.guest_cr2[v.id] = cpu.cr2

    # ------------------------------------------------------------------ frames and entries
    def _alloc(self, kind: tuple) -> int:
        # shadow_alloc(): from the domain's own paging pool (PoolExhausted when it is empty)
        smfn = pool_of(self.host, self.dom).alloc()
        self.frames[smfn] = kind
        self.stats["shadow tables"] += 1
        return smfn

    # ------------------------------------------------------------------ recycling (shadow_prealloc)
    def prealloc(self, v, pages: int = PREALLOC_PAGES) -> bool:
        """Make ``pages`` shadow pages free before an exit builds anything, as _shadow_prealloc() does.

        Stage one unpins the top-level shadows no vCPU has loaded (the shadows of address spaces
        the guest left) and frees every table only they reached; stage two unhooks the shadows in
        use too (shadow_blow_tables()): every vCPU then faults its way back in. Only if the pool is
        short even then (its frames used by something else) is the domain crashed. False then.
        """
        pool = pool_of(self.host, self.dom)
        if pool.free >= pages:
            return True
        loaded = {self.null_root, self.unpaged_root}
        loaded |= {v_.cpu.shadow_cr3 >> 12 for v_ in self.dom.vcpus
                   if v_.cpu is not None and self.bound.get(v_.id) is not None}
        freed = self._free_unreachable(loaded)
        stage = "unpinned the shadows of address spaces no vCPU has loaded"
        if pool.free < pages:
            for v_ in self.dom.vcpus:
                if v_.cpu is not None:
                    v_.cpu.shadow_cr3 = self.null_root << 12
                    self.bound[v_.id] = None
            if self.unpaged_root is not None:
                self.mem.write(self.unpaged_root << 12, bytes(4096))
            freed += self._free_unreachable({self.null_root, self.unpaged_root})
            stage = "unhooked every shadow, those in use too (shadow_blow_tables)"
        self.stats["shadows recycled"] = self.stats.get("shadows recycled", 0) + freed
        self._flush = True
        self._finish()
        self._event(v, "shadow recycle", None, freed, None, "recycled" if pool.free >= pages else "crash",
                    f"d{self.dom.domid}'s paging pool ({pool.pages} pages) had {pages} free pages no more: Xen {stage}, "
                    f"{freed} shadow pages back in the pool, {pool.free} free")
        if pool.free < pages:
            self.host.crash(self.dom, f"shadow: can't pre-allocate {pages} shadow pages: d{self.dom.domid}'s paging "
                                      f"pool ({pool.pages} pages) is exhausted", v)
            return False
        return True

    def _free_unreachable(self, roots: set) -> int:
        """Give back to the pool every shadow frame no root reaches (sh_unpin, the refcounts falling to 0)."""
        mem = self.mem
        seen: set[int] = set()
        todo = [r for r in roots if r is not None and r in self.frames]
        while todo:
            smfn = todo.pop()
            if smfn in seen:
                continue
            seen.add(smfn)
            if self._level_of(self.frames[smfn]) <= 1:
                continue
            view = memoryview(bytes(mem.frame(smfn))).cast("Q")
            for e in view:
                if e & P:
                    child = (e & PADDR_MASK) >> 12
                    if child in self.frames and child not in seen:
                        todo.append(child)
        dead = [m for m in self.frames if m not in seen]
        if not dead:
            return 0
        pool = pool_of(self.host, self.dom)
        for smfn in dead:
            kind = self.frames.pop(smfn)
            if kind[0] == "guest":
                self.shadows.pop((kind[1], kind[2]), None)
                levels = self.pagetables.get(kind[1])
                if levels is not None:
                    levels.discard(kind[2])
                    if not levels:
                        del self.pagetables[kind[1]]
            elif kind[0] == "splinter":
                self.splinters.pop((kind[1], kind[2]), None)
            elif kind[0] == "1:1":
                self.unpaged.pop((kind[1], kind[2]), None)
            pool.give_back(smfn)
        gone = set(dead)
        rmap = {}
        for g, slots in self.rmap.items():
            kept = {s: None for s in slots if s >> 12 not in gone}
            if kept:
                rmap[g] = kept
        self.rmap = rmap
        return len(dead)

    @staticmethod
    def _level_of(kind: tuple) -> int:
        """The paging level of a shadow frame from what it shadows."""
        if kind[0] in ("guest", "splinter"):
            return kind[2]
        return kind[1]

    def _set(self, slot: int, new: int, leaf: bool) -> int:
        """Write a shadow entry (``slot`` is its machine address); returns the old value."""
        mem = self.mem
        old = mem.read_u64(slot)
        if old == new:
            return old
        if leaf:
            if old & P:
                g = self.gfn_of.get((old & PADDR_MASK) >> 12)
                if g is not None:
                    self.rmap.get(g, {}).pop(slot, None)
            if new & P:
                self.rmap.setdefault(self.gfn_of[(new & PADDR_MASK) >> 12], {})[slot] = None
        mem.write_u64(slot, new)
        if old & P and (old ^ new) & ~(A | D):
            self._flush = True          # a cached translation may now be wrong
        return old

    def _finish(self) -> None:
        """Flush every vCPU's TLB of this domain if an entry lost rights (guest_flush_tlb_mask)."""
        if self._flush:
            self._flush = False
            for v in self.dom.vcpus:
                if v.cpu is not None:
                    v.cpu.tlb.flush(include_global=True)
                    v.cpu.flush_caches()

    def _nxe(self, v) -> bool:
        return bool(v.cpu.efer & EFER_NXE)

    def _leaf_entry(self, flags: int, gfn: int, nxe: bool) -> int:
        """A shadow L1 entry for guest frame ``gfn`` with the guest leaf's ``flags``."""
        if not flags & P or not flags & A or gfn not in self.p2m:
            return 0
        s = (self.p2m[gfn] << 12) | (flags & (P | RW | US | A | (NX if nxe else 0)))
        if not flags & D or gfn in self.pagetables:
            s &= ~RW
        return s

    @staticmethod
    def _table_entry(ge: int, child: int, superpage: bool, nxe: bool) -> int:
        """A shadow entry pointing at shadow table ``child``, from guest entry ``ge``."""
        if not ge & P or not ge & A:
            return 0
        s = (child << 12) | (ge & (P | RW | US | A | (NX if nxe else 0))) | A | D
        if superpage and not ge & D:
            s &= ~RW
        return s

    # ------------------------------------------------------------------ making shadows
    def _shadow_of(self, gfn: int, level: int, v) -> int:
        """The shadow of guest table ``gfn`` at ``level``, made (empty) if there is none."""
        smfn = self.shadows.get((gfn, level))
        if smfn is None:
            smfn = self._alloc(("guest", gfn, level))
            self.shadows[(gfn, level)] = smfn
            self._event(v, "shadow new table", gfn << 12, smfn, level, "created",
                        f"shadow of the guest's L{level} table at gpa {gfn << 12:#x}: Xen frame mfn {smfn:#x}, "
                        f"filled entry by entry as the guest's accesses fault")
            self._protect(gfn, level, v)
        return smfn

    def _splinter(self, base: int, level: int, v) -> int:
        """The shadow table that splinters a guest superpage starting at ``base``."""
        smfn = self.splinters.get((base, level))
        if smfn is None:
            smfn = self._alloc(("splinter", base, level))
            self.splinters[(base, level)] = smfn
            size = "2 MiB" if level == 1 else "1 GiB"
            self._event(v, "shadow new table", base << 12, smfn, level, "created",
                        f"the guest maps a {size} page at gpa {base << 12:#x}: Xen splinters it into "
                        f"{'4 KiB' if level == 1 else '2 MiB'} shadow entries (an fl{level} shadow) at mfn {smfn:#x}")
        return smfn

    def _unpaged_table(self, level: int, key: int, v) -> int:
        smfn = self.unpaged.get((level, key))
        if smfn is None:
            smfn = self._alloc(("1:1", level, key))
            self.unpaged[(level, key)] = smfn
            if level == 4:
                self.unpaged_root = smfn
            self._event(v, "shadow new table", key << SHIFT[level + 1] if level < 4 else 0, smfn, level, "created",
                        f"L{level} table of Xen's 1:1 map of guest-physical memory (unpaged mode) at mfn {smfn:#x}")
        return smfn

    def _protect(self, gfn: int, level: int, v) -> None:
        """``gfn`` is now a guest page table: take away every writable shadow mapping of it."""
        levels = self.pagetables.setdefault(gfn, set())
        first = not levels
        levels.add(level)
        if not first:
            return
        n = 0
        for slot in list(self.rmap.get(gfn, {})):
            e = self.mem.read_u64(slot)
            if e & RW:
                self._set(slot, e & ~RW, leaf=True)
                n += 1
        self.stats["write-protected frames"] += 1
        self._event(v, "shadow write-protect", gfn << 12, n, level, "read-only",
                    f"gpa {gfn << 12:#x} is a guest L{level} table now: {n} writable shadow mapping(s) of it made "
                    f"read-only, so the guest's writes to it trap to Xen")

    # ------------------------------------------------------------------ the guest's own tables
    def _guest_walk(self, v, va: int, access: str, cpl: int, set_ad: bool = True):
        """Walk the guest's tables in software, as Xen's guest_walk_tables does.

        Returns (walk result, None) or (None, _BadGfn). On success the guest's
        A and D bits are set as the hardware would set them for this access.
        """
        cpu = v.cpu
        try:
            res = paging.walk(self.mem, cpu.cr3, va, access=access, cpl=cpl, wp=bool(cpu.cr0 & X86_CR0_WP),
                              nxe=self._nxe(v), set_ad=set_ad, table_translate=_P2mTranslate(self.p2m))
        except _BadGfn as e:
            return None, e
        return res, None

    def guest_walk(self, v, va: int, access: str = "r", cpl: int = 0) -> paging.WalkResult | None:
        """A look at the guest's own tables for ``va`` that changes nothing (for panes and tests)."""
        res, bad = self._guest_walk(v, va, access, cpl, set_ad=False)
        return res

    def shadow_walk(self, v, va: int, access: str = "r", cpl: int = 0) -> paging.WalkResult:
        """A look at the shadow the hardware walks for ``va`` (machine addresses), changing nothing."""
        cpu = v.cpu
        root = cpu.shadow_cr3 if cpu.paging else cpu.shadow_unpaged_cr3
        return paging.walk(self.mem, root, va, access=access, cpl=cpl, wp=True, nxe=self._nxe(v), set_ad=False)

    # ------------------------------------------------------------------ binding a vCPU to a shadow
    def _bind(self, v) -> None:
        cpu = v.cpu
        gfn = (cpu.cr3 & PADDR_MASK) >> 12
        smfn = self._shadow_of(gfn, 4, v)
        cpu.shadow_cr3 = smfn << 12
        self.bound[v.id] = gfn
        cpu.tlb.flush(include_global=True)
        cpu.flush_caches()
        self._event(v, "shadow flush", cpu.cr3, smfn, 4, "switched",
                    f"guest CR3 {cpu.cr3:#x}: the CPU now walks Xen's shadow L4 at mfn {smfn:#x}; "
                    f"TLB flushed, the shadows of other address spaces kept for later")

    def _bound_ok(self, v) -> bool:
        """Make sure the vCPU's shadow root shadows its current CR3; False if the domain died."""
        cpu = v.cpu
        gfn = (cpu.cr3 & PADDR_MASK) >> 12
        if self.bound.get(v.id) == gfn:
            return True
        if gfn not in self.p2m:
            self.host.crash(self.dom, f"shadow: guest CR3 {cpu.cr3:#x} is outside the domain's memory", v)
            return False
        self._bind(v)
        return True

    # ------------------------------------------------------------------ CR3 and INVLPG exits
    def cr_access(self, v, exc: VmExit) -> None:
        """``mov cr3, reg`` or ``mov reg, cr3`` left the guest (the caller moves rip on)."""
        cpu = v.cpu
        self._sync_cr2(v, None)
        if "value" in exc.info and not self.prealloc(v):     # sh_update_cr3(): shadow_prealloc() first
            return
        if "value" not in exc.info:
            gpr = exc.info.get("gpr", (exc.qualification >> 8) & 15)
            cpu.regs[gpr] = cpu.cr3         # the guest's own value, never the shadow's
            return
        value = exc.info["value"]
        gfn = (value & PADDR_MASK) >> 12
        if gfn not in self.p2m:
            self.host.crash(self.dom, f"shadow: guest loads CR3 {value:#x}, outside the domain's memory", v)
            return
        cpu.write_cr(3, value)              # the guest's CR3 (guest-physical), and the TLB flush it implies
        if cpu.paging:
            self._bind(v)
            self._prefetch_for_delivery(v)
        else:
            # Paging is off: keep running on the 1:1 map; the first access after the
            # guest turns paging on finds the empty root, traps, and binds then.
            cpu.shadow_cr3 = self.null_root << 12
            self.bound[v.id] = None
            self._event(v, "shadow flush", value, None, 4, "recorded",
                        f"guest CR3 {value:#x} while its paging is off: Xen records it and stays on the 1:1 map; "
                        f"the shadow of these tables is made when the guest turns paging on")
        self._finish()

    def invlpg(self, v, va: int) -> None:
        """The guest's ``invlpg``: drop the shadow L1 entry for ``va`` and the TLB's copy."""
        cpu = v.cpu
        self._sync_cr2(v, None)
        if not self.prealloc(v):
            return
        result, old, level = "nothing to drop", None, None
        if cpu.paging and self.bound.get(v.id) is not None:
            smfn = cpu.shadow_cr3 >> 12
            for lvl in (4, 3, 2, 1):
                slot = (smfn << 12) + ((va >> SHIFT[lvl]) & 511) * 8
                e = self.mem.read_u64(slot)
                level = lvl
                if not e & P:
                    break
                if lvl == 1:
                    if self.frames.get(smfn, ("",))[0] == "splinter":
                        # Like sh_invlpg: a splintered superpage's entries follow its guest L2
                        # entry, which is write-protected, so they are never stale.
                        result, old = "kept (superpage splinter)", e
                    else:
                        self._set(slot, 0, leaf=True)
                        self.stats["invlpg drops"] += 1
                        result, old = "dropped", e
                    break
                smfn = (e & PADDR_MASK) >> 12
        cpu.tlb.invlpg(va)
        cpu.flush_caches()
        self._flush = False         # the one entry dropped is covered by this invlpg
        said = {"dropped": "Xen dropped its shadow L1 entry, so the next access faults and refills it",
                "nothing to drop": "the shadow has no L1 entry for it",
                "kept (superpage splinter)": "the entry splinters a guest superpage and follows the guest's "
                                             "L2 entry, which is write-protected, so Xen keeps it"}[result]
        self._event(v, "shadow flush", va, old, level, result,
                    f"guest invlpg {va:#x}: {said}; the TLB's copy is dropped")
        if cpu.paging:
            self._prefetch_for_delivery(v)
        self._finish()

    # ------------------------------------------------------------------ the #PF exit
    def page_fault(self, v, exc: VmExit) -> None:
        """A #PF left the guest: a shadow fault, a write to a guest page table, or the guest's own fault."""
        cpu = v.cpu
        va = exc.info.get("cr2")
        if va is None:
            va = cpu.cr2
        ec = exc.info.get("error_code") or 0
        self._sync_cr2(v, va)
        if not self.prealloc(v):                # sh_page_fault(): shadow_prealloc() before anything
            return
        try:
            if cpu.paging:
                self._paged_fault(v, va, ec)
            else:
                self._unpaged_fault(v, va, ec)
        finally:
            self._finish()
        if self.dom.alive:
            cpu.cr2 = self.guest_cr2[v.id]

    def _sync_cr2(self, v, fault_addr: int | None) -> None:
        """Keep the guest's CR2: a #PF that exits to Xen must not change it, only an injected one."""
        cr2 = v.cpu.cr2
        if fault_addr is None or cr2 != fault_addr:
            self.guest_cr2[v.id] = cr2

    @staticmethod
    def _access_of(ec: int) -> tuple[str, int]:
        access = "x" if ec & PFEC_insn_fetch else "w" if ec & PFEC_write_access else "r"
        return access, 3 if ec & PFEC_user_mode else 0

    def _paged_fault(self, v, va: int, ec: int) -> None:
        if not self._bound_ok(v):
            return
        access, cpl = self._access_of(ec)
        res, bad = self._guest_walk(v, va, access, cpl)
        if bad is not None:
            if bad.is_table:
                # map_domain_gfn finds no page: the walk stops as at a not-present entry.
                code = (PFEC_write_access if access == "w" else 0) | (PFEC_user_mode if cpl == 3 else 0) | \
                    (PFEC_insn_fetch if access == "x" and self._nxe(v) else 0)
                self._inject(v, va, code, f"the guest's page table at gpa {bad.gpa & ~0xFFF:#x} is outside its memory")
            else:
                self._bad_gfn(v, va, ec, bad.gpa)
            return
        if res.noncanonical:
            self.host.crash(self.dom, f"shadow: #PF exit for non-canonical {va:#x}", v)
            return
        if res.fault is not None:
            self._inject(v, va, res.fault.error_code, res.fault.reason)
            return
        leaf_slot, path, level = self._propagate(v, va, res)
        gfn = res.pa >> 12
        if self._allows(v, va, access, cpl):
            self.stats["shadow faults"] += 1
            self._event(v, "shadow fault", va, ec, level, "fixed",
                        f"{_ACCESS[access]} of {va:#x}: the guest's tables map it (gpa {res.pa:#x}) but the shadow "
                        f"{'lacked it at L%d' % level if level else 'was out of date'}; Xen filled the shadow from "
                        f"the guest's entries (mfn {self.p2m[gfn]:#x}) and resumes the guest")
            self._prefetch(v, va, res, leaf_slot)
        elif access == "w":
            self._emulate(v, va, ec, gfn, path, res.pa)
        else:
            self.host.crash(self.dom, f"shadow: cannot make a shadow entry for {va:#x} ({_ACCESS[access]})", v)

    def _bad_gfn(self, v, va: int, ec: int, gpa: int) -> None:
        # sh_page_fault() (arch/x86/mm/shadow/multi.c): a guest mapping of a gfn with no RAM
        # behind it is MMIO, and goes to handle_mmio_with_translation() as under EPT.
        self._event(v, "shadow fault", va, ec, 1, "mmio",
                    f"{va:#x} maps gpa {gpa:#x}, which has no RAM: Xen emulates the access as MMIO")
        self._finish()
        handle_mmio(self.host, v)

    def _allows(self, v, va: int, access: str, cpl: int) -> bool:
        cpu = v.cpu
        root = cpu.shadow_cr3 if cpu.paging else cpu.shadow_unpaged_cr3
        return paging.walk(self.mem, root, va, access=access, cpl=cpl, wp=True, nxe=self._nxe(v),
                           set_ad=False).ok

    def _propagate(self, v, va: int, res) -> tuple[int, list[int], int | None]:
        """Build the shadow path for a successful guest walk (shadow_get_and_create_l1e).

        Every level is re-derived from the guest's entries as they are now
        (after the walk set their A/D bits). Returns the shadow L1 entry's
        address, the addresses of every shadow entry on the path, and the
        highest level whose shadow entry was missing or changed.
        """
        mem = self.mem
        nxe = self._nxe(v)
        smfn = v.cpu.shadow_cr3 >> 12
        path: list[int] = []
        changed: int | None = None

        def put(slot: int, new: int, level: int, leaf: bool) -> None:
            nonlocal changed
            path.append(slot)
            if self._set(slot, new, leaf) != new and changed is None:
                changed = level

        for st in res.steps:
            lvl = st.level
            ge = mem.read_u64(st.entry_hpa)
            slot = (smfn << 12) + st.index * 8
            if lvl == 1:
                put(slot, self._leaf_entry(ge, (ge & PADDR_MASK) >> 12, nxe), 1, True)
                return slot, path, changed
            if not paging.is_leaf(ge, lvl):
                child = self._shadow_of((ge & PADDR_MASK) >> 12, lvl - 1, v)
                put(slot, self._table_entry(ge, child, False, nxe), lvl, False)
                smfn = child
                continue
            # A superpage: splinter it, level by level, down to 4 KiB shadow entries.
            base = paging.entry_frame(ge, lvl)
            k = lvl - 1
            child = self._splinter(base, k, v)
            put(slot, self._table_entry(ge, child, True, nxe), lvl, False)
            smfn = child
            while True:
                idx = (va >> SHIFT[k]) & 511
                slot = (smfn << 12) + idx * 8
                part = base + idx * (512 ** (k - 1))
                if k == 1:
                    put(slot, self._leaf_entry(ge, part, nxe), 1, True)
                    return slot, path, changed
                child = self._splinter(part, k - 1, v)
                put(slot, self._table_entry(ge, child, True, nxe), k, False)
                smfn, base, k = child, part, k - 1
        raise AssertionError("a successful walk ends in a leaf")

    def _prefetch(self, v, va: int, res, leaf_slot: int) -> None:
        """Fill the next L1 entries too, as sh_prefetch does, stopping at ones already shadowed."""
        mem = self.mem
        nxe = self._nxe(v)
        idx = (va >> 12) & 511
        dist = min(PREFETCH_DISTANCE, 512 - idx)
        leaf = res.steps[-1]
        ge_super = mem.read_u64(leaf.entry_hpa) if leaf.level > 1 else None
        n = 0
        for i in range(1, dist):
            slot = leaf_slot + i * 8
            if mem.read_u64(slot) != 0:
                break
            if ge_super is None:
                gl1 = mem.read_u64(leaf.entry_hpa + i * 8)
                if gl1 & P and (not gl1 & A or (gl1 & RW and not gl1 & D)):
                    break           # it will need a fault for its A/D bits anyway
                if not gl1 & P or _reserved(gl1, 1, nxe):
                    continue
                new = self._leaf_entry(gl1, (gl1 & PADDR_MASK) >> 12, nxe)
            else:
                first = (res.pa >> 12) - idx
                new = self._leaf_entry(ge_super, first + idx + i, nxe)
            if new:
                self._set(slot, new, leaf=True)
                n += 1
        if n:
            self.stats["shadow syncs"] += n
            self._event(v, "shadow sync", va + 4096, n, 1, "prefetched",
                        f"{n} following L1 entr{'y' if n == 1 else 'ies'} filled from the guest's at the same time "
                        f"(sh_prefetch)")

    # ------------------------------------------------------------------ unpaged mode
    def _unpaged_fault(self, v, gpa: int, ec: int) -> None:
        gfn = gpa >> 12
        if gfn not in self.p2m:
            self._bad_gfn(v, gpa, ec, gpa)
            return
        access, cpl = self._access_of(ec)
        slot, path = self._unpaged_path(v, gpa)
        self._set(slot, self._unpaged_entry(gfn), leaf=True)
        if self._allows(v, gpa, access, cpl):
            self.stats["shadow faults"] += 1
            self._event(v, "shadow fault", gpa, ec, 1, "fixed",
                        f"{_ACCESS[access]} of gpa {gpa:#x} with the guest's paging off: Xen maps it 1:1 to "
                        f"mfn {self.p2m[gfn]:#x} in its unpaged-mode table")
            n = 0
            for i in range(1, min(PREFETCH_DISTANCE, 512 - (gfn & 511))):
                if self.mem.read_u64(slot + i * 8) != 0 or gfn + i not in self.p2m:
                    break
                self._set(slot + i * 8, self._unpaged_entry(gfn + i), leaf=True)
                n += 1
            if n:
                self.stats["shadow syncs"] += n
                self._event(v, "shadow sync", gpa + 4096, n, 1, "prefetched",
                            f"{n} following frames of the 1:1 map filled at the same time")
        elif access == "w":
            self._emulate(v, gpa, ec, gfn, path, gpa)

    def _unpaged_entry(self, gfn: int) -> int:
        e = (self.p2m[gfn] << 12) | P | RW | US | A | D
        return e & ~RW if gfn in self.pagetables else e

    def _unpaged_path(self, v, gpa: int) -> tuple[int, list[int]]:
        smfn = self._unpaged_table(4, 0, v)
        path = []
        for lvl in (4, 3, 2):
            key = gpa >> SHIFT[lvl]
            child = self._unpaged_table(lvl - 1, key, v)
            slot = (smfn << 12) + (key & 511) * 8
            self._set(slot, (child << 12) | P | RW | US | A | D, leaf=False)
            path.append(slot)
            smfn = child
        slot = (smfn << 12) + ((gpa >> 12) & 511) * 8
        path.append(slot)
        return slot, path

    # ------------------------------------------------------------------ emulating page-table writes
    def _emulate(self, v, va: int, ec: int, gfn: int, path: list[int], gpa: int) -> None:
        """The guest wrote to one of its own page tables (or wrote with CR0.WP clear).

        Xen's x86_emulate decodes the instruction and does the write itself;
        the lab lets the CPU execute that one instruction, with the shadow
        entries on its path made writable for it alone, so every instruction
        that can write memory is handled with the CPU's own semantics. Xen
        then compares the page with its old contents and re-derives the
        shadow entries of every guest entry that changed.
        """
        cpu = v.cpu
        mem = self.mem
        self._finish()
        written: dict[int, bytes] = {gfn: bytes(mem.frame(self.p2m[gfn]))}
        opened: dict[int, None] = {}
        self._open(path, opened)
        rip = cpu.rip
        cpu.root = False
        done: Any = None
        try:
            for _ in range(4):
                cpu.tlb.flush(include_global=True)
                cpu.flush_caches()
                try:
                    hpa = cpu.translate(rip, "x")
                    blk = cpu.code.get(cpu, rip, hpa, True)
                except (Fault, VmExit, CpuStop) as exc:
                    done = exc
                    break
                # Xen carries the instruction out for the guest: like the instructions
                # Xen completes after other exits, its cost is charged to Xen
                # (shadow_sync), and it retires as the guest's instruction (counted
                # once, below). The cycles a rep string adds per element are taken
                # back for the same reason.
                cycles = cpu.cycles
                err: Exception | None = None
                try:
                    blk.fn(cpu)
                except (Fault, VmExit, CpuStop) as exc:
                    err = exc
                cpu.cycles = cycles
                if err is None:
                    done = True
                    cpu.icount += 1
                    break
                # Nothing architectural happened (the CPU reads every operand and
                # translates every page before it writes), or a rep string made
                # partial progress, which x86 allows: either way it can go again.
                cpu.rip = rip
                done = err
                if not self._open_more(v, err, opened, written):
                    break
        finally:
            for slot in opened:
                mem.write_u64(slot, mem.read_u64(slot) & ~RW)
            cpu.tlb.flush(include_global=True)
            cpu.flush_caches()
            cpu.root = True
        self.stats["emulated writes"] += 1
        changes: list[tuple[int, int]] = []
        for g, before in written.items():
            if g not in self.pagetables:
                continue            # a CR0.WP=0 write to a plain page: nothing to re-derive
            after = bytes(mem.frame(self.p2m[g]))
            if after != before:
                b, a = memoryview(before).cast("Q"), memoryview(after).cast("Q")
                changes += [(g, i) for i in range(512) if a[i] != b[i]]
        levels = sorted(self.pagetables.get(gfn, ()))
        if levels:
            what = (f"write to {va:#x} (gpa {gpa:#x}), a frame that is a guest "
                    f"{' and '.join(f'L{lvl}' for lvl in levels)} table and so read-only in every shadow")
        else:
            what = (f"write to {va:#x} (gpa {gpa:#x}) with the guest's CR0.WP clear, to a page its tables mark "
                    f"read-only: the real CR0.WP stays set, so the shadow refuses it")
        if done is True:
            how = (f"Xen emulated the instruction at {rip:#x}; {len(changes)} entr"
                   f"{'y' if len(changes) == 1 else 'ies'} of its page tables changed")
        else:
            how = f"Xen could not complete the instruction at {rip:#x} ({done!r}); the guest runs it again"
        self._event(v, "shadow fault", va, ec, min(levels) if levels else 1, "emulated" if done is True else "retry",
                    f"{what}: {how}")
        for g, i in changes:
            for lvl in sorted(self.pagetables.get(g, ())):
                self._resync(v, g, lvl, i)

    def _open(self, path: list[int], opened: dict[int, None]) -> None:
        """Make the shadow entries on a path writable for the emulated instruction."""
        for slot in path:
            val = self.mem.read_u64(slot)
            if val & P and not val & RW and slot not in opened:
                self.mem.write_u64(slot, val | RW)
                opened[slot] = None

    def _open_more(self, v, exc: Exception, opened: dict[int, None], written: dict[int, bytes]) -> bool:
        """The emulated instruction met another page: fill it, or open it too if the guest may write it."""
        if not isinstance(exc, Fault) or exc.vector != 14 or exc.cr2 is None:
            return False
        access, cpl = self._access_of(exc.error_code or 0)
        res, bad = self._guest_walk(v, exc.cr2, access, cpl)
        if bad is not None or res is None or not res.ok:
            return False            # the guest's own fault: it meets it when it runs the instruction
        _, path, level = self._propagate(v, exc.cr2, res)
        self.stats["shadow syncs"] += 1
        self._event(v, "shadow sync", exc.cr2, res.pa, level, "filled",
                    f"the emulated instruction also {_ACCESS[access].split()[-1]}s {exc.cr2:#x}: Xen fills its shadow "
                    f"entries too")
        if access == "w" and not self._allows(v, exc.cr2, access, cpl):
            written.setdefault(res.pa >> 12, bytes(self.mem.frame(self.p2m[res.pa >> 12])))
            self._open(path, opened)
        return True

    def _resync(self, v, gfn: int, level: int, index: int) -> None:
        """Re-derive one shadow entry from the guest entry the guest just wrote (validate_gl*e)."""
        smfn = self.shadows.get((gfn, level))
        if smfn is None:
            return
        nxe = self._nxe(v)
        ge = self.mem.read_u64((self.p2m[gfn] << 12) + index * 8)
        slot = (smfn << 12) + index * 8
        new = 0
        if ge & P and not _reserved(ge, level, nxe):
            if level == 1:
                new = self._leaf_entry(ge, (ge & PADDR_MASK) >> 12, nxe)
            elif paging.is_leaf(ge, level):
                child = self.splinters.get((paging.entry_frame(ge, level), level - 1))
                new = self._table_entry(ge, child, True, nxe) if child is not None else 0
            else:
                child = self.shadows.get(((ge & PADDR_MASK) >> 12, level - 1))
                new = self._table_entry(ge, child, False, nxe) if child is not None else 0
        old = self._set(slot, new, leaf=level == 1)
        self.stats["shadow syncs"] += 1
        if new:
            how = f"shadow entry now {new:#x}"
        elif ge & P and not ge & A:
            how = "shadow entry left empty until the first access sets A"
        elif ge & P:
            how = "shadow entry left empty until an access needs it"
        else:
            how = "shadow entry cleared"
        self._event(v, "shadow sync", (gfn << 12) + index * 8, ge, level, how,
                    f"the guest wrote entry {index} of its L{level} table at gpa {gfn << 12:#x} "
                    f"(was {old:#x} in the shadow): Xen re-derived the shadow entry from it")
        self._finish()

    # ------------------------------------------------------------------ injecting the guest's own #PF
    def _inject(self, v, va: int, ec: int, reason: str) -> None:
        cpu = v.cpu
        self.stats["injected #PF"] += 1
        names = " ".join(paging.decode_error_code(ec)) or "-"
        self._event(v, "inject #PF", va, ec, None, "#PF",
                    f"not a shadow fault: the guest's own tables refuse it ({reason}); Xen injects #PF, "
                    f"error code {ec:#x} ({names}), CR2 {va:#x}, into the guest")
        self._finish()
        self._prefetch_for_delivery(v)
        self.guest_cr2[v.id] = va
        cpu.cr2 = va
        cpu.root = False                # delivered as on VM entry, through the guest's IDT
        self.host.emit(v, "trap", vector=14, mnemonic="#PF", error_code=ec, cr2=va, rip=cpu.rip, cpl=cpu.cpl,
                       handler="idt", reason=reason)
        cpu.deliver(14, ec, software=False)
        self.guest_cr2[v.id] = cpu.cr2      # a fault during the delivery itself sets CR2 again

    def _prefetch_for_delivery(self, v) -> None:
        """Make sure the shadow maps what an event delivery touches.

        The lab's CPU delivers a #PF met *during* an event delivery straight to
        the guest instead of exiting (real VMX exits, with the event in the
        IDT-vectoring information, and Xen re-injects it). So before the guest
        can take an interrupt or an injected fault, Xen fills the shadow for
        the IDT, the TSS's RSP0 and the stacks the CPU will push to, when the
        guest's own tables map them.
        """
        cpu = v.cpu
        if not cpu.paging or self.bound.get(v.id) is None or not self.dom.alive:
            return
        base, limit = cpu.idtr
        if limit:
            for page in range(base & ~0xFFF, base + limit + 1, 4096):
                self._ensure(v, max(page, base), "r")
        tops = []
        if cpu.tss_base:
            self._ensure(v, cpu.tss_base + 4, "r")
            rsp0 = self._read_guest(v, cpu.tss_base + 4)
            if rsp0:
                tops.append(rsp0)
        if cpu.cpl == 0:
            tops.append(cpu.regs[4])
        for top in tops:
            top &= ~0xF
            for va in (top - 8, top - 48):
                if is_canonical(va):
                    self._ensure(v, va, "w")
        self._finish()

    def _read_guest(self, v, va: int) -> int | None:
        res = self.guest_walk(v, va)
        if res is None or not res.ok:
            return None
        return self.mem.read_u64(res.hpa)

    def _ensure(self, v, va: int, access: str) -> None:
        """Fill the shadow for a supervisor access the guest allows, unless it is already there."""
        if self._allows(v, va, access, 0):
            return
        probe = self.guest_walk(v, va, access)
        if probe is None or not probe.ok:
            return
        # For a stack page this sets the guest's D bit a little before the push
        # that would set it: the delivery writes there.
        res, bad = self._guest_walk(v, va, access, 0)
        if bad is not None or res is None or not res.ok:
            return
        leaf_slot, path, level = self._propagate(v, va, res)
        self.stats["shadow syncs"] += 1
        self._event(v, "shadow sync", va, self.mem.read_u64(leaf_slot), level, "prefetched",
                    f"{va:#x} filled ahead of an event delivery that may need it (IDT, TSS or stack)")

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict:
        """Xen's bookkeeping as plain data; the shadow tables themselves are in machine memory."""
        return {
            "shadows": sorted([g, lvl, m] for (g, lvl), m in self.shadows.items()),
            "splinters": sorted([g, lvl, m] for (g, lvl), m in self.splinters.items()),
            "unpaged": sorted([lvl, k, m] for (lvl, k), m in self.unpaged.items()),
            "frames": [[m, list(kind)] for m, kind in self.frames.items()],
            "pagetables": sorted([g, sorted(lv)] for g, lv in self.pagetables.items()),
            "rmap": [[g, list(slots)] for g, slots in self.rmap.items()],
            "bound": sorted([vid, g] for vid, g in self.bound.items()),
            "guest_cr2": sorted([vid, c] for vid, c in self.guest_cr2.items()),
            "unpaged_root": self.unpaged_root, "null_root": self.null_root, "stats": dict(self.stats),
        }

    def restore(self, snap: dict) -> None:
        self.shadows = {(g, lvl): m for g, lvl, m in snap["shadows"]}
        self.splinters = {(g, lvl): m for g, lvl, m in snap["splinters"]}
        self.unpaged = {(lvl, k): m for lvl, k, m in snap["unpaged"]}
        self.frames = {m: tuple(kind) for m, kind in snap["frames"]}
        self.pagetables = {g: set(lv) for g, lv in snap["pagetables"]}
        self.rmap = {g: dict.fromkeys(slots) for g, slots in snap["rmap"]}
        self.bound = {vid: g for vid, g in snap["bound"]}
        self.guest_cr2 = {vid: c for vid, c in snap["guest_cr2"]}
        self.unpaged_root, self.null_root = snap["unpaged_root"], snap["null_root"]
        self.stats = dict(snap["stats"])

    # ------------------------------------------------------------------ inspection
    def describe(self) -> list[str]:
        """Lines for `xl debug-keys`-style reports and the TUI."""
        out = [f"d{self.dom.domid}: shadow paging, {len(self.frames)} shadow frames, "
               f"{len(self.pagetables)} guest page-table frames write-protected"]
        out += [f"  {k}: {n}" for k, n in self.stats.items()]
        for v in self.dom.vcpus:
            if v.cpu is None:
                continue
            g = self.bound.get(v.id)
            out.append(f"  {v.label}: guest CR3 {v.cpu.cr3:#x}, "
                       + (f"shadow L4 mfn {v.cpu.shadow_cr3 >> 12:#x}" if g is not None else "no shadow bound")
                       + ("" if v.cpu.paging else " (guest paging off: 1:1 map)"))
        return out

    def leaves(self) -> list[tuple[int, int, int]]:
        """(shadow table mfn, index, mapped mfn) of every present leaf entry in every shadow."""
        out = []
        for smfn, kind in self.frames.items():
            if self._level_of(kind) != 1:
                continue
            f = self.mem.frame(smfn)
            view = memoryview(bytes(f)).cast("Q")
            for i in range(512):
                if view[i] & P:
                    out.append((smfn, i, (view[i] & PADDR_MASK) >> 12))
        return out
