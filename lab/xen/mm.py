"""PV direct paging: Xen's page-table rules for paravirtualised guests.

A PV guest builds its own x86-64 page tables out of machine frames and puts
machine frame numbers straight into its entries ("direct paging"). It may not
write those tables itself: they are mapped read-only, and every change goes
through Xen (``mmu_update``, ``update_va_mapping``, ``mmuext_op``), which
checks that the guest can only ever reach memory it owns. This module is that
checker, modelled on ``xen/arch/x86/mm.c`` and ``xen/arch/x86/pv/mm.h``.

The bookkeeping is Xen's ``struct page_info``, one per machine frame:

* ``count`` (Xen's ``count_info``): general references. Being allocated to a
  domain holds one (``PGC_allocated``); every present L1 entry that maps the
  frame holds one; so does every L2/L3/L4 entry that points at it as a table,
  a pin, and a vCPU's base pointer (``guest_table``/``guest_table_user``).
  A frame whose count drops to zero is free.
* ``type`` and ``type_count`` (``type_info``): what the frame is being used as
  (``PGT_l1_page_table`` .. ``PGT_l4_page_table``, ``PGT_seg_desc_page``,
  ``PGT_writable_page``...) and how many references hold it as that. The type
  can change only while ``type_count`` is 0, so a frame cannot be a page
  table and writably mapped at the same time: an L1 entry with RW takes a
  ``PGT_writable_page`` reference on its target, an L2 entry takes an
  ``PGT_l1_page_table`` reference on its target, and so on.
* Taking a page-table type when ``type_count`` goes 0 -> 1 *validates* the
  frame: every entry is checked and takes its own references
  (``promote_l1_table`` .. ``promote_l4_table``). Dropping the last type
  reference *devalidates* it and releases what its entries held
  (``demote_lN_table``). Pinning (``MMUEXT_PIN_Ln_TABLE``) holds one type
  reference so a table stays validated while nothing else points at it.

What is checked, as in Xen:

* Entry flags against the disallow masks of ``mm.c``. ``base_disallow_mask``
  allows only P, RW, US, A, D, the software bits 9-11 and 52-62, and NX; in
  Xen's 24-bit flag view that is ``0xFF000198``: PWT, PCD, bit 7 (PS/PAT) and
  G are refused in L2/L3/L4 entries ("Bad L2 flags 80" for a superpage). L1
  entries use ``L1_DISALLOW_MASK = (base | _PAGE_GNTTAB) & ~_PAGE_GLOBAL``
  (``_PAGE_GNTTAB`` is 0 in release builds), and a domain without cache-flush
  rights (no I/O access, every ordinary domU) also loses the cache attributes
  PWT, PCD and PAT: so G is allowed in an L1 entry, PWT/PCD/PAT are refused
  ("Bad L1 flags 0x80").
* Ownership: an entry may reference only frames of the domain named as the
  page owner (the caller, or ``foreigndom`` for a privileged caller). Frames
  of ``DOMID_XEN`` are refused; frames of ``DOMID_IO`` and frames beyond the
  end of RAM are MMIO, which needs I/O rights ("d1 non-privileged attempt to
  map MMIO space ...", -EPERM) and is forced uncacheable.
* Types: an RW L1 entry to a page table fails ("Bad type (saw ... != exp
  ...)", "Could not get page type PGT_writable_page", then "Error getting
  mfn ... from L1 entry ...", -EBUSY as in current Xen); an L(n) entry must
  point at an L(n-1) table or the validation fails with -EINVAL.
* Linear ("recursive") page tables: an L2/L3/L4 entry may point at a table of
  its own level only read-only ("Attempt to create linear p.t. with write
  perms"); a table pointing at itself takes no reference, one pointing at
  another same-level table takes one, and a table may not both contain
  linear entries and be used as a linear table (the XSA-240 rule).
* L4 slots 256-271 belong to Xen (0xFFFF800000000000-0xFFFF880000000000).
  Validation skips whatever the guest left there and overwrites them with
  Xen's entries (``init_xen_l4_slots``); updating them is refused ("L4
  update in Xen-private area, slot 0x100", -EINVAL).
* The "fast path": an update that changes only A, D, US, G, NX or the
  software bits of a present entry is written without revalidation, exactly
  as ``mod_lN_entry`` does; RW is not on that list (XSA-182).

What the lab simplifies, and says so:

* One CPU at a time: batches are preempted only between entries (the
  hypercall layer reads them one by one and makes the continuation,
  ``lab/xen/hypercalls.py``), never inside one validation: no partial
  validation (``PGT_partial``), no ``page_lock`` races. Failed validations are
  unwound at once (Xen defers part of that to ``old_guest_table``).
* Only 4-level tables. The lab's 32-bit PV profile uses the same 4-level
  tables (no PAE L3 with Xen's slot 3, no compat L2 Xen slots).
* No shadow paging, log-dirty, IOMMU, L1TF or PKEY handling; no superpages
  (Xen refuses PSE in PV entries too, ``MMUEXT_MARK_SUPER`` is -EOPNOTSUPP in
  Xen itself); no MMIO read-only ranges; no XSM beyond the dummy policy
  (control domain may act on others).
* Xen's own entries in L4 slots 256-271 come from the ``xen_l4_slots`` hook;
  without it those slots are cleared (nothing of Xen is mapped in the lab).
* Xen adjusts 64-bit PV entries (``adjust_guest_l1e``: US forced on, kernel
  pages tagged with software bit 52, user pages made global; US on L2/L3, A
  and US on L4). That is on only for domains the ``adjust_guest`` option
  names, because the lab's kernels set their own flags.
* Guest pointers to vCPU bitmaps (``TLB_FLUSH_MULTI``, ``INVLPG_MULTI``,
  ``update_va_mapping`` with a mask) are read through the ``read_vcpumask``
  hook; without it the action carries the pointer for the caller to read.
* ``MMUEXT_SET_LDT`` and every TLB operation are checked here and returned
  as :class:`MmuAction` records for the caller to apply to the vCPUs; this
  module never touches a CPU.
* The seg_desc type (GDT/LDT frames) is not descriptor-checked here; the code
  that handles ``set_gdt`` checks descriptors before taking the type.
* In Xen, grant mappings are installed by the grant-table code, not by
  ``get_page_from_l1e`` (``create_grant_pv_mapping``). The lab's grant code
  writes its entry through this module, and the ``grant_ok(domid, mfn,
  writable, slot)`` hook accepts another domain's frame only in the one L1
  slot (machine address ``slot``) where a live grant mapping put it: a plain
  ``mmu_update`` can never map a foreign frame, nor copy a grant entry
  elsewhere. Unlike Xen's, the lab's grant entry also holds the references
  any L1 entry holds, so a guest that zaps it with ``mmu_update`` leaves the
  counts balanced (the grant mapping keeps its own until it is unmapped).
* Frames beyond the end of RAM in a PV entry are MMIO (I/O rights needed).

Messages go to ``log`` as a debug build's ``xl dmesg`` shows them: Xen prints
most of them with ``gdprintk``, which only debug builds compile in, prefixed
with the source file and line: ``(XEN) arch/x86/mm.c:865:d1v0 Bad L1 flags
0x80``. A release build prints none of those. The few ``gprintk`` ones
(``Error mfn ...``) appear in both builds as ``(XEN) d1v0 ...``.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from dataclasses import dataclass
from collections import deque
from itertools import filterfalse, repeat
from operator import attrgetter, floordiv
from typing import Any, Callable, Iterable

from lab.hw.memory import PAGE_SHIFT, PAGE_SIZE, MachineMemory
from lab.hw.snapshot import Plain
from lab.hw.x86 import (PADDR_MASK, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_PAT,
                        _PAGE_PCD, _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER,
                        is_canonical)
from lab.isa.bits import M64
from lab.xen.abi import (INVALID_M2P_ENTRY,
                         DOMID_IO, DOMID_SELF, DOMID_XEN, EACCES, EBUSY, EFAULT, EINVAL,
                         ENOSYS, EOPNOTSUPP, EPERM, ESRCH, HYPERVISOR_VIRT_END, MMU_MACHPHYS_UPDATE,
                         MMU_NAMES, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE,
                         MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE,
                         MMUEXT_FLUSH_CACHE, MMUEXT_FLUSH_CACHE_GLOBAL, MMUEXT_INVLPG_ALL,
                         MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_MARK_SUPER, MMUEXT_NAMES,
                         MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE,
                         MMUEXT_PIN_L4_TABLE, MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_ALL,
                         MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNMARK_SUPER,
                         MMUEXT_UNPIN_TABLE, PGT_NAMES, PGT_TYPE_SHIFT, PGT_l1_page_table,
                         PGT_l2_page_table, PGT_l3_page_table, PGT_l4_page_table, PGT_none,
                         PGT_pinned, PGT_validated, PGT_writable_page, UVMF_ALL,
                         UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_LOCAL, UVMF_TLB_FLUSH, errno_name)


# Where a debug build of Xen prints each gdprintk from (file:line in xen/ of Xen master,
# commit c447b7308b); the messages that come from one place per level are tabled here.
_BAD_LNE_FLAGS = {2: "arch/x86/mm.c:1125", 3: "arch/x86/mm.c:1148", 4: "arch/x86/mm.c:1172"}
_MOD_LNE_FLAGS = {2: "arch/x86/mm.c:2285", 3: "arch/x86/mm.c:2347", 4: "arch/x86/mm.c:2409"}
_PROMOTE_FAILURE = {1: "arch/x86/mm.c:1357", 2: "arch/x86/mm.c:1465", 3: "arch/x86/mm.c:1601",
                    4: "arch/x86/mm.c:1792"}
L1_PAGETABLE_ENTRIES = PAGE_SIZE // 8
_TABLE = struct.Struct("<512Q")

#: config.h: the L4 slots Xen keeps in every 64-bit PV address space.
ROOT_PAGETABLE_FIRST_XEN_SLOT = 256
ROOT_PAGETABLE_LAST_XEN_SLOT = 271

# -- Xen's 24-bit view of entry flags (asm/x86_64/page.h) ---------------------------------
# get_pte_flags() folds entry bits 63:52 into flag bits 23:12 next to bits 11:0.
_PAGE_AVAIL = 0xE00                 # bits 9-11, free for software
_PAGE_AVAIL_HIGH = 0x7FF << 12      # entry bits 52-62
_PAGE_NX_BIT = 1 << 23              # entry bit 63
_PAGE_GNTTAB = 0                    # 1 << 22 in debug builds only (page.h, #ifdef NDEBUG)
_PAGE_GUEST_KERNEL = 1 << 12        # entry bit 52: adjust_guest_l1e's kernel-page tag
PAGE_CACHE_ATTRS = _PAGE_PAT | _PAGE_PCD | _PAGE_PWT
_PAGE_UC = _PAGE_PCD | _PAGE_PWT

#: arch_init_memory(): what a guest may set in any entry.
BASE_DISALLOW_MASK = ~(_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
                       | _PAGE_AVAIL | _PAGE_AVAIL_HIGH | _PAGE_NX_BIT) & 0xFFFF_FFFF
assert BASE_DISALLOW_MASK == 0xFF000198
#: Global is allowed in L1 entries ("intended for user mappings").
L1_DISALLOW_MASK = (BASE_DISALLOW_MASK | _PAGE_GNTTAB) & ~_PAGE_GLOBAL
L2_DISALLOW_MASK = BASE_DISALLOW_MASK
L3_DISALLOW_MASK = BASE_DISALLOW_MASK     # 64-bit guests (0xFFFFF198 for 32-bit PAE)
L4_DISALLOW_MASK = BASE_DISALLOW_MASK

#: Flags a guest may change in a present entry without revalidation (mm.c).
FASTPATH_FLAG_WHITELIST = (_PAGE_NX_BIT | _PAGE_AVAIL_HIGH | _PAGE_AVAIL | _PAGE_GLOBAL
                           | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_USER)

#: XEN_MSR_PAT (asm/processor.h): memory type per PAT index, the ABI with PV guests.
_MT_UC, _MT_WC, _MT_WT, _MT_WP, _MT_WB, _MT_UCM = 0, 1, 4, 5, 6, 7
XEN_PAT_TYPES = (_MT_WB, _MT_WT, _MT_UCM, _MT_UC, _MT_WC, _MT_WP, _MT_UC, _MT_UC)

PGC_allocated = 1 << 63
#: An L1 entry whose address bits are all ones: Xen's L1TF-safe "INVALID_MFN".
_INVALID_PTE_MFN = PADDR_MASK >> PAGE_SHIFT

#: adjust_guest_l1e()'s kernel-page tag, and with the global bit, as entry bits.
_ENTRY_GUEST_KERNEL = _PAGE_GUEST_KERNEL << 40
_ENTRY_KERNEL_GLOBAL = _ENTRY_GUEST_KERNEL | _PAGE_GLOBAL

_PT_TYPES = (PGT_l1_page_table, PGT_l2_page_table, PGT_l3_page_table, PGT_l4_page_table)
_CACHE_FLUSH = "flush_cache"


def get_pte_flags(entry: int) -> int:
    """Xen's 24-bit flags of an entry: bits 63:52 at 23:12, bits 11:0 as they are."""
    return ((entry >> 40) & 0xFFF000) | (entry & 0xFFF)


def put_pte_flags(flags: int) -> int:
    """The entry bits of 24-bit flags (inverse of :func:`get_pte_flags`)."""
    return (((flags & ~0xFFF) << 40) | (flags & 0xFFF)) & M64


def entry_mfn(entry: int) -> int:
    return (entry & PADDR_MASK) >> PAGE_SHIFT


def _has_changed(old: int, new: int, flags: int) -> bool:
    """lNe_has_changed(): do the address or the flags in ``flags`` differ?"""
    return bool((old ^ new) & (PADDR_MASK | put_pte_flags(flags & 0xFFFFFF)))


def is_guest_l4_slot(slot: int) -> bool:
    return slot < ROOT_PAGETABLE_FIRST_XEN_SLOT or slot > ROOT_PAGETABLE_LAST_XEN_SLOT


def addr_ok(va: int) -> bool:
    """__addr_ok(): the lower canonical half, or above Xen's reserved range."""
    return va < (1 << 47) or va >= HYPERVISOR_VIRT_END


def _pd(domid: int | None) -> str:
    """Xen's %pd: d1, d[XEN], d[IO], or NULL."""
    if domid is None:
        return "NULL"
    names = {DOMID_IO: "[IO]", DOMID_XEN: "[XEN]", 0x7FF3: "[COW]", 0x7FFF: "[IDLE]"}
    return "d" + names.get(domid, str(domid))


# -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class PageInfo:
    """One machine frame's ``struct page_info``."""
    owner: int | None = None    # domid; DOMID_XEN, DOMID_IO; None = free
    count: int = 0              # general references (count_info), allocation included
    type: int = PGT_none        # PGT_* (small number; type_info bits 63:61)
    type_count: int = 0         # type references
    pinned: bool = False
    validated: bool = False
    allocated: bool = False     # PGC_allocated: the owner's own reference
    #: linear_pt_count: > 0 = this table holds that many linear entries,
    #: < 0 = this table is used as a linear table that many times.
    linear: int = 0

    @property
    def type_name(self) -> str:
        return PGT_NAMES[self.type]

    def copy(self) -> "PageInfo":
        return PageInfo(self.owner, self.count, self.type, self.type_count, self.pinned,
                        self.validated, self.allocated, self.linear)


_page_row = attrgetter("owner", "count", "type", "type_count", "pinned", "validated", "allocated", "linear")
#: Frames per saved chunk of the frame table.
_CHUNK = 512


def _chunks_of(pages: dict[int, PageInfo]) -> dict[int, dict[int, tuple]]:
    """Every frame's row, by chunk of _CHUNK frames."""
    rows = dict(zip(dict.keys(pages), map(_page_row, dict.values(pages))))
    keys = sorted(rows)
    chunks: dict[int, dict[int, tuple]] = {}
    i = 0
    while i < len(keys):
        cid = keys[i] // _CHUNK
        j = bisect_left(keys, (cid + 1) * _CHUNK, i)
        part = keys[i:j]
        chunks[cid] = dict(zip(part, map(rows.__getitem__, part)))
        i = j
    return chunks


def _set_page(pg: PageInfo, row: tuple) -> None:
    (pg.owner, pg.count, pg.type, pg.type_count, pg.pinned, pg.validated, pg.allocated, pg.linear) = row


class FrameTable(dict):
    """Xen's frame table (mfn -> page_info), filled in as frames are first looked at:
    a frame nobody has touched is free, and most of a large host never is.

    Once a snapshot has saved it, the table notes the frames looked up since
    (``touched``): only those can have changed, so the next snapshot or restore
    looks at them alone. Xen's code reaches a page_info only through a lookup."""

    __slots__ = ("touched",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.touched: set[int] | None = None        # None: not noted (every frame may have changed)

    def __getitem__(self, mfn: int) -> PageInfo:
        t = self.touched
        if t is not None:
            t.add(mfn)
        return dict.__getitem__(self, mfn)

    def get(self, mfn: int, default: Any = None) -> Any:
        t = self.touched
        if t is not None:
            t.add(mfn)
        return dict.get(self, mfn, default)

    def __setitem__(self, mfn: int, pg: PageInfo) -> None:
        t = self.touched
        if t is not None:
            t.add(mfn)
        dict.__setitem__(self, mfn, pg)

    def __delitem__(self, mfn: int) -> None:
        t = self.touched
        if t is not None:
            t.add(mfn)
        dict.__delitem__(self, mfn)

    def __missing__(self, mfn: int) -> PageInfo:
        pg = self[mfn] = PageInfo()
        return pg

    def in_order(self):
        """(mfn, page_info) of every frame looked at so far, by frame number."""
        return sorted(self.items())


@dataclass(frozen=True)
class MmuAction:
    """Something the caller must do to vCPUs after a memory-management call.

    kinds: ``new_baseptr`` / ``new_user_baseptr`` (load ``mfn`` as the kernel or
    user CR3 of ``vcpu``: a CR3 write, which flushes the non-global TLB),
    ``tlb_flush``, ``invlpg`` (``va``), ``flush_cache``, ``set_ldt`` (``va`` =
    LDT base, ``nr_ents``). ``scope`` is ``local`` (the calling vCPU),
    ``multi`` (the vCPUs in ``vcpumask``, or read it from the guest at
    ``vcpumask_ptr``) or ``all`` (every vCPU of the domain).
    """
    kind: str
    domid: int
    vcpu: int
    scope: str = "local"
    mfn: int | None = None
    va: int | None = None
    vcpumask: int | None = None
    vcpumask_ptr: int | None = None
    nr_ents: int | None = None
    reason: str = ""


class PvMM:
    """Xen's PV memory manager over one machine's memory."""

    LOG_PREFIX = "(XEN) "
    #: Wiring and the per-call scratch state; everything else is saved by save_state.
    NOT_STATE = frozenset({"mem", "log", "emit", "grant_ok", "on_free", "_l1_slot", "privileged", "iomem_permitted", "_domain_exists",
                           "xen_l4_slots", "adjust_guest", "read_vcpumask", "on_action", "_saved_chunks",
                           "_saved_table"})

    def __init__(self, mem: MachineMemory, nr_frames: int | None = None,
                 log: Callable[[str], None] | None = None,
                 emit: Callable[..., None] | None = None, *,
                 grant_ok: Callable[[int, int, bool, int | None], bool] | None = None,
                 on_free: Callable[[int, int | None], None] | None = None,
                 privileged: Callable[[int], bool] | None = None,
                 iomem_permitted: Callable[[int, int], bool] | None = None,
                 domain_exists: Callable[[int], bool] | None = None,
                 xen_l4_slots: Callable[[int, int], dict[int, int]] | None = None,
                 adjust_guest: bool | Callable[[int], bool] = False,
                 read_vcpumask: Callable[[int, int], int | None] | None = None,
                 on_action: Callable[[MmuAction], None] | None = None,
                 pv_linear_pt: bool = True) -> None:
        self.mem = mem
        self.nr_frames = mem.nr_frames if nr_frames is None else nr_frames
        self.log = log or (lambda _s: None)
        self.emit = emit
        self.grant_ok = grant_ok
        #: Told (mfn, former owner) whenever a frame's last reference goes.
        self.on_free = on_free
        #: Machine address of the L1 slot being validated or written (for ``grant_ok``).
        self._l1_slot: int | None = None
        #: The control domain (dom0) in the default XSM policy.
        self.privileged = privileged or (lambda d: d == 0)
        self.iomem_permitted = iomem_permitted or (lambda d, _mfn: self.privileged(d))
        self._domain_exists = domain_exists
        self.xen_l4_slots = xen_l4_slots
        self.adjust_guest = adjust_guest
        self.read_vcpumask = read_vcpumask
        self.on_action = on_action
        self.pv_linear_pt = pv_linear_pt

        self.pages: FrameTable = FrameTable()
        #: Xen's machine-to-phys table: mfn -> gpfn (abi.INVALID_M2P_ENTRY when unset).
        self.m2p: dict[int, int] = {}
        #: (domid, vcpu) -> [kernel base mfn, user base mfn] (None = no table).
        self.bases: dict[tuple[int, int], list[int | None]] = {}
        #: (domid, vcpu) -> (LDT base, entries).
        self.ldt: dict[tuple[int, int], tuple[int, int]] = {}
        #: References taken through the public get_* calls (grant code, builders).
        self.ext_refs: dict[int, int] = {}
        self.ext_type_refs: dict[int, int] = {}
        self._owned: dict[int, int] = {}
        self._dying: dict[int, bool] = {}
        #: Actions of the last call (also passed to ``on_action``).
        self.actions: list[MmuAction] = []
        #: Xen's messages during the last call, without prefix.
        self.messages: list[str] = []
        #: Internal inconsistencies (a reference dropped that was never taken...).
        self.errors: list[str] = []
        self._ctx: tuple[int, int] | None = None
        self._dry_run = 0
        self._saved_chunks: dict[int, dict[int, tuple]] = {}
        self._saved_table: FrameTable | None = None

    # ---------------------------------------------------------------- context and output
    def _begin(self, domid: int, vcpu: int) -> tuple[int, int] | None:
        prev = self._ctx
        self._ctx = (domid, vcpu)
        self.actions = []
        self.messages = []
        return prev

    def _warn(self, msg: str, where: str | None = None) -> None:
        """One of Xen's messages. ``where`` is the ``file:line`` of a ``gdprintk`` (debug
        builds only), which prints ``file:line:dNvM msg``; without it the message is a
        ``gprintk``, printed by every build as ``dNvM msg`` (xen/include/xen/lib.h)."""
        self.messages.append(msg)
        if self._dry_run:
            return
        vcpu = f"{_pd(self._ctx[0])}v{self._ctx[1]}" if self._ctx else ""
        if where is not None:
            self.log(f"{self.LOG_PREFIX}{where}:{vcpu} {msg}")
        else:
            self.log(f"{self.LOG_PREFIX}{vcpu} {msg}" if vcpu else f"{self.LOG_PREFIX}{msg}")

    def _event(self, op: str, addr: int | None, value: int | None, level: int | None, rc: int,
               first_msg: int) -> None:
        if self.emit is None or self._dry_run:
            return
        msg = self.messages[first_msg] if len(self.messages) > first_msg else ""
        self.emit(kind="pagetable", op=op, addr=addr, value=value, level=level,
                  result="ok" if rc == 0 else errno_name(rc), message=msg)

    def _action(self, kind: str, domid: int, vcpu: int, **kw: Any) -> None:
        a = MmuAction(kind, domid, vcpu, **kw)
        self.actions.append(a)
        if self.on_action is not None:
            self.on_action(a)

    def _adjusts(self, domid: int) -> bool:
        a = self.adjust_guest
        return a(domid) if callable(a) else bool(a)

    def domain_exists(self, domid: int) -> bool:
        if self._domain_exists is not None:
            return self._domain_exists(domid)
        return self._owned.get(domid, 0) > 0

    # ---------------------------------------------------------------- frame state
    def valid(self, mfn: int) -> bool:
        return 0 <= mfn < self.nr_frames

    def frame_info(self, mfn: int) -> PageInfo:
        return self.pages[mfn]

    def type_info(self, mfn: int) -> int:
        """The frame's type_info word as Xen prints it (type, pinned, validated, count)."""
        pg = self.pages[mfn]
        return ((pg.type << PGT_TYPE_SHIFT) | (PGT_pinned if pg.pinned else 0)
                | (PGT_validated if pg.validated else 0) | max(pg.type_count, 0))

    def count_info(self, mfn: int) -> int:
        pg = self.pages[mfn]
        return (PGC_allocated if pg.allocated else 0) | max(pg.count, 0)

    def get_gpfn_from_mfn(self, mfn: int) -> int:
        return self.m2p.get(mfn, INVALID_M2P_ENTRY)

    def describe(self, mfn: int) -> str:
        pg = self.pages[mfn]
        bits = [f"mfn {mfn:#x}", _pd(pg.owner), PGT_NAMES[pg.type],
                f"type_count={pg.type_count}", f"count={pg.count}"]
        if pg.pinned:
            bits.append("pinned")
        if pg.validated and pg.type in _PT_TYPES:
            bits.append("validated")
        return " ".join(bits)

    def baseptr(self, domid: int, vcpu: int = 0) -> tuple[int | None, int | None]:
        b = self.bases.get((domid, vcpu))
        return (b[0], b[1]) if b else (None, None)

    def _read_table(self, mfn: int) -> tuple[int, ...]:
        return _TABLE.unpack_from(self.mem.frame(mfn))

    def _write_entry(self, addr: int, value: int) -> None:
        if self._dry_run:
            return                       # validate_entry(): a dry run changes nothing
        self.mem.write_u64(addr, value)

    # ---------------------------------------------------------------- ownership
    def assign(self, mfn: int, domid: int) -> None:
        """Give a free frame to ``domid`` (the domain builder, memory_op).

        Frames of DOMID_XEN are Xen's own; like Xen's read-only shared pages
        they hold a PGT_none type reference, so nobody can take them as
        writable or as a page table. Frames of DOMID_IO are MMIO and hold a
        writable type reference, as ``assign_io_page`` sets them up.
        """
        if not self.valid(mfn):
            raise ValueError(f"mfn {mfn:#x} is beyond the end of memory")
        pg = self.pages.get(mfn)          # (a frame never looked at is free)
        if pg is not None and (pg.owner is not None or pg.count):
            raise ValueError(f"mfn {mfn:#x} is not free ({self.describe(mfn)})")
        self.pages[mfn] = pg = PageInfo(owner=domid, count=1, allocated=True)
        if domid == DOMID_XEN:
            pg.type, pg.type_count, pg.validated = PGT_none, 1, True
        elif domid == DOMID_IO:
            pg.type, pg.type_count, pg.validated = PGT_writable_page, 1, True
        self._owned[domid] = self._owned.get(domid, 0) + 1

    def assign_many(self, mfns: list[int], domid: int) -> None:
        """:meth:`assign` of free frames to an ordinary domain, in one pass (a domain's
        whole memory at creation: a million frames for 4 GiB)."""
        pages, nr = self.pages, self.nr_frames
        # The frame table notes the frames looked at once for the whole list, then the
        # loop goes round plain dict methods (a domain's memory is tens of thousands of frames).
        touched = getattr(pages, "touched", None)
        if touched is not None:
            touched.update(mfns)
        n = len(mfns)
        get = dict.get
        if (n and 0 <= min(mfns) and max(mfns) < nr and len(set(mfns)) == n
                and not any(pg.owner is not None or pg.count
                            for pg in filter(None, map(get, repeat(pages, n), mfns)))):
            # Every frame is free (the usual case): the pages are made in C loops.
            dict.update(pages, zip(mfns, map(PageInfo, repeat(domid, n), repeat(1), repeat(PGT_none),
                                             repeat(0), repeat(False), repeat(False), repeat(True),
                                             repeat(0))))
        else:
            put = dict.__setitem__
            for mfn in mfns:
                pg = get(pages, mfn)
                if not 0 <= mfn < nr or (pg is not None and (pg.owner is not None or pg.count)):
                    raise ValueError(f"mfn {mfn:#x} is not a free frame")
                put(pages, mfn, PageInfo(domid, 1, PGT_none, 0, False, False, True, 0))
        self._owned[domid] = self._owned.get(domid, 0) + n

    def release(self, mfn: int, domid: int | None = None) -> int:
        """Drop the owner's allocation reference (guest_remove_page).

        A pinned table is unpinned first. The frame is free once nothing else
        references it; until then it stays with its owner, as in Xen.
        """
        if not self.valid(mfn):
            return -EINVAL
        pg = self.pages[mfn]
        if pg.owner is None or not pg.allocated or (domid is not None and pg.owner != domid):
            return -EINVAL
        if pg.pinned:
            pg.pinned = False
            self._put_page_and_type(mfn)
        if pg.owner in (DOMID_XEN, DOMID_IO) and pg.type_count:
            pg.type_count -= 1
        self.m2p.pop(mfn, None)
        pg.allocated = False
        self._put_page(mfn)
        return 0

    def _free(self, mfn: int) -> None:
        pg = self.pages[mfn]
        if pg.type_count:
            self.errors.append(f"mfn {mfn:#x} freed with type_count {pg.type_count}")
        if pg.owner is not None:
            n = self._owned.get(pg.owner, 0) - 1
            if n > 0:
                self._owned[pg.owner] = n
            else:
                self._owned.pop(pg.owner, None)
                self._dying.pop(pg.owner, None)
        owner = pg.owner
        self.pages[mfn] = PageInfo()
        if self.on_free is not None and not self._dry_run:
            self.on_free(mfn, owner)

    # ---------------------------------------------------------------- general references
    def _get_page(self, mfn: int, d: int) -> bool:
        """get_page(): a reference on a frame that ``d`` owns."""
        pg = self.pages[mfn]
        owner = pg.owner if pg.count > 0 else None
        if owner is not None and owner == d:
            pg.count += 1
            return True
        if not self._dying.get(d, False):
            self._warn(f"Error mfn {mfn:05x}: rd={_pd(d)} od={_pd(owner)} "
                       f"caf={self.count_info(mfn):08x} taf={self.type_info(mfn):016x}")
        return False

    def _put_page(self, mfn: int) -> None:
        pg = self.pages[mfn]
        if pg.count <= 0:
            self.errors.append(f"put_page on mfn {mfn:#x} with count {pg.count}")
            return
        pg.count -= 1
        if pg.count == 0:
            self._free(mfn)

    def _get_page_from_mfn(self, mfn: int, d: int) -> bool:
        if not self.valid(mfn) or not self._get_page(mfn, d):
            self._warn(f"Could not get page ref for mfn {mfn:05x}", "arch/x86/include/asm/mm.h:417")
            return False
        return True

    # ---------------------------------------------------------------- type references
    def _get_type(self, mfn: int, typ: int) -> int:
        """_get_page_type(): the caller holds a general reference."""
        pg = self.pages[mfn]
        if pg.type_count == 0:
            if pg.type != typ:
                if pg.type == PGT_writable_page and pg.owner is not None:
                    # Xen flushes stale TLB entries on a type change: no CPU may keep
                    # a writable mapping of a frame about to become a page table.
                    self._action("tlb_flush", pg.owner, 0, scope="all",
                                 reason=f"mfn {mfn:#x} changes type")
                pg.type = typ
                pg.validated = False
            pg.type_count = 1
            if pg.validated:
                return 0
            if typ not in _PT_TYPES:
                pg.validated = True
                return 0
            rc = self._promote(mfn, typ)
            if rc == 0:
                pg.validated = True
                return 0
            taf = self.type_info(mfn)
            self._warn(f"Error while validating mfn {mfn:05x} (pfn {self.get_gpfn_from_mfn(mfn):05x})"
                       f" for type {typ << PGT_TYPE_SHIFT:016x}: caf={self.count_info(mfn):08x}"
                       f" taf={taf:016x}", "arch/x86/mm.c:2658")
            pg.type, pg.type_count, pg.validated = PGT_none, 0, False
            return rc
        if pg.type != typ:
            # Skip the message where a linear mapping may still be accepted.
            if (pg.type, typ) in ((PGT_l2_page_table, PGT_l1_page_table),
                                  (PGT_l3_page_table, PGT_l2_page_table),
                                  (PGT_l4_page_table, PGT_l3_page_table)):
                return -EINVAL
            self._warn(f"Bad type (saw {self.type_info(mfn):016x} != exp "
                       f"{typ << PGT_TYPE_SHIFT:016x}) for mfn {mfn:05x} "
                       f"(pfn {self.get_gpfn_from_mfn(mfn):05x})", "arch/x86/mm.c:2951")
            return -EINVAL
        if not pg.validated:
            # Only while this very frame is being validated further up the call
            # chain; Xen would wait for the other validation to finish.
            return -EINVAL
        pg.type_count += 1
        return 0

    def _put_type(self, mfn: int) -> None:
        pg = self.pages[mfn]
        if pg.type_count <= 0:
            self.errors.append(f"put_page_type on mfn {mfn:#x} with type_count {pg.type_count}")
            return
        if pg.type_count == 1 and pg.type in _PT_TYPES and pg.validated:
            # Last reference to a page table: devalidate it, dropping everything
            # its entries hold, then let the count fall to zero.
            pg.validated = False
            self._demote(mfn, pg.type)
        pg.type_count -= 1

    def _put_page_and_type(self, mfn: int) -> None:
        self._put_type(mfn)
        self._put_page(mfn)

    def _get_page_and_type_from_mfn(self, mfn: int, typ: int, d: int) -> int:
        if not self._get_page_from_mfn(mfn, d):
            return -EINVAL
        rc = self._get_type(mfn, typ)
        if rc:
            self._put_page(mfn)
        return rc

    # ---------------------------------------------------------------- public reference API
    def get_page(self, mfn: int, domid: int) -> bool:
        """Take a general reference on a frame ``domid`` owns (Xen's get_page)."""
        if not self.valid(mfn) or not self._get_page(mfn, domid):
            return False
        self.ext_refs[mfn] = self.ext_refs.get(mfn, 0) + 1
        return True

    def put_page(self, mfn: int) -> None:
        n = self.ext_refs.get(mfn, 0)
        if n <= 0:
            self.errors.append(f"put_page({mfn:#x}) without a matching get_page")
            return
        self._dec_ext(self.ext_refs, mfn)
        self._put_page(mfn)

    def get_page_type(self, mfn: int, typ: int, domid: int) -> int:
        """Take a type reference (Xen's get_page_type). The caller must already
        hold a general reference (from :meth:`get_page`); the frame must be
        ``domid``'s. Taking l1..l4 validates the table. Returns 0 or -errno."""
        if not self.valid(mfn) or self.pages[mfn].owner != domid or self.pages[mfn].count <= 0:
            return -EINVAL
        rc = self._get_type(mfn, typ)
        if rc == 0:
            self.ext_type_refs[mfn] = self.ext_type_refs.get(mfn, 0) + 1
        return rc

    def put_page_type(self, mfn: int) -> None:
        if self.ext_type_refs.get(mfn, 0) <= 0:
            self.errors.append(f"put_page_type({mfn:#x}) without a matching get_page_type")
            return
        self._dec_ext(self.ext_type_refs, mfn)
        self._put_type(mfn)

    def get_page_and_type(self, mfn: int, domid: int, typ: int) -> int:
        """Both references at once (Xen's get_page_and_type): 0 or -errno."""
        if not self.get_page(mfn, domid):
            return -EINVAL
        rc = self.get_page_type(mfn, typ, domid)
        if rc:
            self.put_page(mfn)
        return rc

    def put_page_and_type(self, mfn: int) -> None:
        self.put_page_type(mfn)
        self.put_page(mfn)

    @staticmethod
    def _dec_ext(d: dict[int, int], mfn: int) -> None:
        n = d[mfn] - 1
        if n:
            d[mfn] = n
        else:
            del d[mfn]

    # ---------------------------------------------------------------- disallow masks
    def l1_disallow_mask(self, domid: int) -> int:
        """l1_disallow_mask(d): cache attributes only for domains with I/O rights."""
        if domid != DOMID_IO and not self.privileged(domid):
            return L1_DISALLOW_MASK
        return L1_DISALLOW_MASK & ~PAGE_CACHE_ATTRS

    def cache_flush_permitted(self, domid: int) -> bool:
        return self.privileged(domid)

    # ---------------------------------------------------------------- guest entry adjustment
    def _adjust(self, level: int, entry: int, d: int) -> int:
        if not (entry & _PAGE_PRESENT) or not self._adjusts(d):
            return entry
        if level == 1:
            f = get_pte_flags(entry)
            if f & (_PAGE_GUEST_KERNEL | _PAGE_GLOBAL) == (_PAGE_GUEST_KERNEL | _PAGE_GLOBAL):
                self._warn(f"Global bit is set in kernel page {entry_mfn(entry):x}", "arch/x86/pv/mm.h:119")
            if not f & _PAGE_USER:
                f |= _PAGE_GUEST_KERNEL | _PAGE_USER
            if not f & _PAGE_GUEST_KERNEL:
                f |= _PAGE_GLOBAL | _PAGE_USER
            return (entry & ~put_pte_flags(0xFFFFFF)) | put_pte_flags(f)
        if level in (2, 3):
            return entry | _PAGE_USER
        return entry | _PAGE_ACCESSED | _PAGE_USER

    # ---------------------------------------------------------------- L1 entries
    def _is_iomem(self, mfn: int) -> bool:
        return not self.valid(mfn) or self.pages[mfn].owner == DOMID_IO

    def _get_page_from_l1e(self, entry: int, l1e_owner: int, pg_owner: int) -> int:
        """get_page_from_l1e(): 0 on success, -errno, or > 0 = flags to flip."""
        f = get_pte_flags(entry)
        disallow = self.l1_disallow_mask(l1e_owner)
        if f & disallow:
            self._warn(f"Bad L1 flags {f & disallow:#x}", "arch/x86/mm.c:865")
            return -EINVAL
        mfn = entry_mfn(entry)
        valid = self.valid(mfn)
        real: int | None = None
        if valid and self.pages[mfn].count > 0:
            # page_get_owner_and_reference()
            self.pages[mfn].count += 1
            real = self.pages[mfn].owner
        if not valid or real == DOMID_IO:
            if valid:
                self._put_page(mfn)
            owner = l1e_owner if pg_owner == DOMID_IO else pg_owner
            if not self.iomem_permitted(owner, mfn):
                if mfn != _INVALID_PTE_MFN:
                    self._warn(f"d{owner} non-privileged attempt to map MMIO space {mfn:05x}", "arch/x86/mm.c:888")
                    return -EPERM
                return -EINVAL
            if owner != l1e_owner and not self.iomem_permitted(l1e_owner, mfn):
                if mfn != _INVALID_PTE_MFN:
                    cur = self._ctx[0] if self._ctx else l1e_owner
                    self._warn(f"d{cur} attempted to map MMIO space {mfn:05x} in d{owner} "
                               f"to d{l1e_owner}", "arch/x86/mm.c:901")
                    return -EPERM
                return -EINVAL
            # MMIO must not be mapped cacheable: force UC unless UC, UC- or WC.
            attr = ((f >> 5) & 4) | ((f >> 3) & 3)
            if XEN_PAT_TYPES[attr] not in (_MT_UC, _MT_UCM, _MT_WC):
                return (f & PAGE_CACHE_ATTRS) ^ _PAGE_UC
            return 0
        rw = bool(f & _PAGE_RW)
        if real != pg_owner:
            if (real is not None and self.grant_ok is not None
                    and self.grant_ok(l1e_owner, mfn, rw, self._l1_slot)):
                pg_owner = real                       # the entry a grant mapping installed
            elif real is None or pg_owner == l1e_owner or not self.privileged(pg_owner):
                # %pd in Xen's message: d[XEN], d[IO], NULL for a free frame
                self._warn(f"pg_owner {_pd(pg_owner)} l1e_owner {_pd(l1e_owner)}, but real_pg_owner {_pd(real)}",
                           "arch/x86/mm.c:979")
                return self._could_not_pin(entry, mfn, real, l1e_owner, pg_owner)
            else:
                pg_owner = real
        if rw and self._get_type(mfn, PGT_writable_page) != 0:
            self._warn("Could not get page type PGT_writable_page", "arch/x86/mm.c:1005")
            return self._could_not_pin(entry, mfn, real, l1e_owner, pg_owner)
        return 0

    def _could_not_pin(self, entry: int, mfn: int, real: int | None, l1e_owner: int,
                       pg_owner: int) -> int:
        self._warn(f"Error getting mfn {mfn:05x} (pfn {self.get_gpfn_from_mfn(mfn):05x}) from L1 "
                   f"entry {entry:016x} for l1e_owner d{l1e_owner}, pg_owner d{pg_owner}", "arch/x86/mm.c:1031")
        if real is not None:
            self._put_page(mfn)
        return -EBUSY

    def _put_page_from_l1e(self, entry: int) -> None:
        if not entry & _PAGE_PRESENT:
            return
        mfn = entry_mfn(entry)
        if self._is_iomem(mfn):
            return
        if entry & _PAGE_RW:
            self._put_page_and_type(mfn)
        else:
            self._put_page(mfn)

    # ---------------------------------------------------------------- L2-L4 entries
    @staticmethod
    def _disallow(level: int) -> int:
        return {2: L2_DISALLOW_MASK, 3: L3_DISALLOW_MASK, 4: L4_DISALLOW_MASK}[level]

    def _get_page_from_lne(self, level: int, entry: int, table: int, d: int) -> int:
        """get_page_from_l2e/l3e/l4e: the target must be an L(level-1) table of ``d``,
        or this table's own level through a read-only linear mapping."""
        f = get_pte_flags(entry)
        mask = self._disallow(level)
        if f & mask:
            self._warn(f"Bad L{level} flags {f & mask:x}", _BAD_LNE_FLAGS[level])
            return -EINVAL
        rc = self._get_page_and_type_from_mfn(entry_mfn(entry), level - 1, d)
        if rc == -EINVAL and self._get_linear_pagetable(level, entry, table, d):
            rc = 0
        return rc

    def _get_linear_pagetable(self, level: int, entry: int, table: int, d: int) -> bool:
        if not self.pv_linear_pt:
            self._warn("Attempt to create linear p.t. (feature disabled)", "arch/x86/mm.c:677")
            return False
        if entry & _PAGE_RW:
            self._warn("Attempt to create linear p.t. with write perms", "arch/x86/mm.c:684")
            return False
        mfn = entry_mfn(entry)
        if mfn == table:
            return True                  # a table mapping itself takes no reference
        ptpg = self.pages[table]
        if ptpg.owner != d:
            return False
        if not self._get_page_from_mfn(mfn, d):
            return False
        pg = self.pages[mfn]
        if ptpg.linear < 0:              # inc_linear_entries: this table is itself used as linear
            self._put_page(mfn)
            return False
        ptpg.linear += 1
        if pg.linear > 0:                # inc_linear_uses: the target holds linear entries
            ptpg.linear -= 1
            self._put_page(mfn)
            return False
        pg.linear -= 1
        if pg.type != level or not pg.validated or pg.type_count <= 0:
            pg.linear += 1
            ptpg.linear -= 1
            self._put_page(mfn)
            return False
        pg.type_count += 1
        return True

    def _put_page_from_lne(self, entry: int, table: int) -> None:
        if not entry & _PAGE_PRESENT:
            return
        mfn = entry_mfn(entry)
        if mfn == table:
            return
        pg, ptpg = self.pages[mfn], self.pages[table]
        if pg.type == ptpg.type:         # a linear entry: undo the linear counts
            pg.linear += 1
            ptpg.linear -= 1
        self._put_page_and_type(mfn)

    # ---------------------------------------------------------------- (de)validation
    def _promote(self, mfn: int, typ: int) -> int:
        """promote_lN_table(): validate every entry, taking its references."""
        d = self.pages[mfn].owner
        assert d is not None
        if typ == PGT_l1_page_table:
            return self._promote_l1(mfn, d)
        entries = list(self._read_table(mfn))
        base = mfn << PAGE_SHIFT
        taken: list[int] = []
        for i, e in enumerate(entries):
            if typ == PGT_l4_page_table and not is_guest_l4_slot(i):
                continue
            if not e & _PAGE_PRESENT:
                continue
            first = len(self.messages)
            if typ == PGT_l1_page_table:
                self._l1_slot = base | (i << 3)
                rc = self._get_page_from_l1e(e, d, d)
                self._l1_slot = None
            else:
                rc = self._get_page_from_lne(typ, e, mfn, d)
            if rc < 0:
                self._warn(f"Failure {rc} in promote_l{typ}_table: slot {i:#x}", _PROMOTE_FAILURE[typ])
                self._event("validate", base | (i << 3), e, typ, rc, first)
                for j in reversed(taken):
                    if typ == PGT_l1_page_table:
                        self._put_page_from_l1e(entries[j])
                    else:
                        self._put_page_from_lne(entries[j], mfn)
                return rc
            new = e
            if rc > 0:
                new ^= put_pte_flags(rc)
            new = self._adjust(typ, new, d)
            if new != e:
                self._write_entry(base | (i << 3), new)
                entries[i] = new
            taken.append(i)
        if typ == PGT_l4_page_table:
            self._init_xen_l4_slots(mfn, d)
        return 0

    def _promote_l1(self, mfn: int, d: int) -> int:
        """promote_l1_table(): every present entry through get_page_from_l1e().

        The common entry (allowed flags, a RAM frame of ``d`` itself) is taken here
        in a few operations: a general reference, and for a writable one a
        PGT_writable_page type reference (a frame with no type references
        takes that type, as _get_page_type() gives it; one already writable adds
        a reference). Such an entry cannot fail and Xen prints nothing for it.
        Every other entry (MMIO, a foreign or free frame, a page table mapped
        writable, refused flags) goes through :meth:`_get_page_from_l1e`, in
        order. Entries that adjust_guest_l1e() changes are written back together
        (before any entry taken the long way, so that one sees the table as Xen
        would have left it)."""
        pages = self.pages
        touched = pages.touched
        page_of = dict.get
        entries = list(self._read_table(mfn))
        base = mfn << PAGE_SHIFT
        # get_pte_flags(e) & mask, tested on the entry's own bits
        refused = put_pte_flags(self.l1_disallow_mask(d))
        nr = self.nr_frames
        adjust = self._adjusts(d)
        ordinary = d != DOMID_IO
        taken: list[int] = []
        unwritten = False
        for i, e in enumerate(entries):
            if not e & _PAGE_PRESENT:
                continue
            rc = 1
            if not e & refused and ordinary:
                t = (e & PADDR_MASK) >> PAGE_SHIFT
                pg = page_of(pages, t) if t < nr else None
                if pg is not None and pg.count > 0 and pg.owner == d:
                    if not e & _PAGE_RW:
                        pg.count += 1
                        rc = 0
                    elif pg.type_count == 0:
                        pg.count += 1
                        pg.type, pg.type_count, pg.validated = PGT_writable_page, 1, True
                        rc = 0
                    elif pg.type == PGT_writable_page and pg.validated:
                        pg.count += 1
                        pg.type_count += 1
                        rc = 0
                    if rc == 0 and touched is not None:
                        touched.add(t)
            if rc:
                if unwritten:
                    self._write_table(mfn, entries)
                    unwritten = False
                first = len(self.messages)
                self._l1_slot = base | (i << 3)
                rc = self._get_page_from_l1e(e, d, d)
                self._l1_slot = None
                if rc < 0:
                    self._warn(f"Failure {rc} in promote_l1_table: slot {i:#x}", _PROMOTE_FAILURE[1])
                    self._event("validate", base | (i << 3), e, PGT_l1_page_table, rc, first)
                    for j in reversed(taken):
                        self._put_page_from_l1e(entries[j])
                    return rc
                if rc > 0:
                    e ^= put_pte_flags(rc)
                    entries[i] = e
                    unwritten = True
            if adjust:
                # adjust_guest_l1e(), its common cases on the entry's bits
                if e & _ENTRY_KERNEL_GLOBAL == _ENTRY_KERNEL_GLOBAL:
                    new = self._adjust(1, e, d)           # says why in the log
                else:
                    new = e if e & _PAGE_USER else e | _ENTRY_GUEST_KERNEL | _PAGE_USER
                    if not new & _ENTRY_GUEST_KERNEL:
                        new |= _PAGE_GLOBAL | _PAGE_USER
                if new != e:
                    entries[i] = new
                    unwritten = True
            taken.append(i)
        if unwritten:
            self._write_table(mfn, entries)
        return 0

    def _write_table(self, mfn: int, entries: list[int]) -> None:
        """The whole table at once (what writing each changed entry would leave)."""
        if not self._dry_run:
            self.mem.write(mfn << PAGE_SHIFT, _TABLE.pack(*entries))

    def _init_xen_l4_slots(self, mfn: int, d: int) -> None:
        """Overwrite slots 256-271 with Xen's entries (whatever the guest left there)."""
        xen = self.xen_l4_slots(mfn, d) if self.xen_l4_slots is not None else {}
        base = mfn << PAGE_SHIFT
        for slot in range(ROOT_PAGETABLE_FIRST_XEN_SLOT, ROOT_PAGETABLE_LAST_XEN_SLOT + 1):
            value = xen.get(slot, 0) & M64
            if self.mem.read_u64(base | (slot << 3)) != value:
                self._write_entry(base | (slot << 3), value)

    def _demote(self, mfn: int, typ: int) -> None:
        """demote_lN_table(): release what the entries hold (highest slot first
        for L2-L4, as Xen walks them)."""
        entries = self._read_table(mfn)
        if typ == PGT_l1_page_table:
            for e in entries:
                self._put_page_from_l1e(e)
            return
        for i in range(L1_PAGETABLE_ENTRIES - 1, -1, -1):
            if typ == PGT_l4_page_table and not is_guest_l4_slot(i):
                continue
            self._put_page_from_lne(entries[i], mfn)

    def validate_entry(self, level: int, entry: int, domid: int, table_mfn: int,
                       index: int) -> tuple[bool, str]:
        """Would Xen accept ``entry`` in slot ``index`` of ``table_mfn`` (a level
        ``level`` table of ``domid``)? A dry run: the bookkeeping is restored,
        nothing is written or logged. Returns (ok, Xen's first message)."""
        saved = self.messages
        saved_pages = FrameTable((m, p.copy()) for m, p in self.pages.items())
        saved_actions = self.actions
        self.messages = []
        self.actions = []
        self._dry_run += 1
        try:
            entry &= M64
            if not entry & _PAGE_PRESENT:
                return True, ""
            if level == 4 and not is_guest_l4_slot(index):
                return False, f"L4 update in Xen-private area, slot {index:#x}"
            if level == 1:
                rc = self._get_page_from_l1e(entry, domid, domid)
                if rc >= 0:
                    self._put_page_from_l1e(entry)
            else:
                rc = self._get_page_from_lne(level, entry, table_mfn, domid)
                if rc == 0:
                    self._put_page_from_lne(entry, table_mfn)
            msg = self.messages[0] if self.messages else ("" if rc >= 0 else errno_name(rc))
            return rc >= 0, msg
        finally:
            self._dry_run -= 1
            self.messages = saved
            self.actions = saved_actions
            self.pages = saved_pages

    # ---------------------------------------------------------------- entry updates
    @staticmethod
    def _update_intpte(old: int, new: int, preserve_ad: bool) -> int:
        if preserve_ad:
            new |= old & (_PAGE_ACCESSED | _PAGE_DIRTY)
        return new & M64

    def _mod_l1_entry(self, table: int, slot: int, nl1e: int, cmd: int, pt_dom: int,
                      pg_dom: int) -> tuple[int, int | None]:
        addr = (table << PAGE_SHIFT) | (slot << 3)
        preserve_ad = cmd == MMU_PT_UPDATE_PRESERVE_AD
        ol1e = self.mem.read_u64(addr)
        if nl1e & _PAGE_PRESENT:
            f = get_pte_flags(nl1e)
            disallow = self.l1_disallow_mask(pt_dom)
            if f & disallow:
                self._warn(f"Bad L1 flags {f & disallow:#x}", "arch/x86/mm.c:2169")
                return -EINVAL, None
            nl1e = self._adjust(1, nl1e, pt_dom)
            if not _has_changed(ol1e, nl1e, ~FASTPATH_FLAG_WHITELIST):
                value = self._update_intpte(ol1e, nl1e, preserve_ad)
                self._write_entry(addr, value)
                return 0, value
            self._l1_slot = addr
            try:
                rc = self._get_page_from_l1e(nl1e, pt_dom, pg_dom)
            finally:
                self._l1_slot = None
            if rc < 0:
                return rc, None
            if rc > 0:
                nl1e ^= put_pte_flags(rc)
        value = self._update_intpte(ol1e, nl1e, preserve_ad)
        self._write_entry(addr, value)
        self._put_page_from_l1e(ol1e)
        return 0, value

    def _mod_lne_entry(self, level: int, table: int, slot: int, nle: int, preserve_ad: bool,
                       d: int) -> tuple[int, int | None]:
        addr = (table << PAGE_SHIFT) | (slot << 3)
        if level == 4 and not is_guest_l4_slot(slot):
            self._warn(f"L4 update in Xen-private area, slot {slot:#x}", "arch/x86/mm.c:2398")
            return -EINVAL, None
        ole = self.mem.read_u64(addr)
        if nle & _PAGE_PRESENT:
            f = get_pte_flags(nle)
            mask = self._disallow(level)
            if f & mask:
                self._warn(f"Bad L{level} flags {f & mask:x}", _MOD_LNE_FLAGS[level])
                return -EINVAL, None
            nle = self._adjust(level, nle, d)
            if not _has_changed(ole, nle, ~FASTPATH_FLAG_WHITELIST):
                value = self._update_intpte(ole, nle, preserve_ad)
                self._write_entry(addr, value)
                return 0, value
            rc = self._get_page_from_lne(level, nle, table, d)
            if rc < 0:
                return rc, None
        value = self._update_intpte(ole, nle, preserve_ad)
        self._write_entry(addr, value)
        self._put_page_from_lne(ole, table)
        return 0, value

    # ---------------------------------------------------------------- domains in calls
    def _get_pg_owner(self, cur: int, domid: int) -> int | None:
        if domid == DOMID_SELF:
            return cur
        if domid == cur:
            self._warn("Cannot specify itself as foreign domain", "common/page_alloc.c:2936")
            return None
        if domid in (DOMID_IO, DOMID_XEN):
            return domid
        if self.domain_exists(domid):
            return domid
        self._warn(f"Unknown domain d{domid}", "common/page_alloc.c:2952")
        return None

    def _xsm_target(self, src: int, target: int) -> bool:
        """xsm_default_action(XSM_TARGET): itself, or the control domain."""
        return src == target or self.privileged(src)

    # ---------------------------------------------------------------- mmu_update
    def mmu_update(self, domid: int, reqs: Iterable[tuple[int, int]],
                   foreigndom: int = DOMID_SELF, *, vcpu: int = 0) -> tuple[int, int]:
        """HYPERVISOR_mmu_update: returns (rc, done). Stops at the first failure."""
        prev = self._begin(domid, vcpu)
        try:
            return self._mmu_update(domid, iter(reqs), foreigndom & 0xFFFF_FFFF, vcpu)
        finally:
            self._ctx = prev

    def _mmu_update(self, d: int, reqs: Iterable[tuple[int, int]], foreigndom: int,
                    vcpu: int) -> tuple[int, int]:
        pt_owner = d
        pt_dom = foreigndom >> 16
        if pt_dom:
            pt_owner = pt_dom - 1
            if pt_owner != d and not self.domain_exists(pt_owner):
                return -ESRCH, 0
        pg_owner = self._get_pg_owner(d, foreigndom & 0xFFFF)
        if pg_owner is None:
            return -ESRCH, 0
        rc = 0
        done = 0
        flush_linear_pt = False
        for ptr, val in reqs:
            ptr &= M64
            val &= M64
            cmd = ptr & 7
            first = len(self.messages)
            level: int | None = None
            value: int | None = val
            if cmd in (MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMU_PT_UPDATE_NO_TRANSLATE):
                if ((pg_owner != DOMID_IO and not self._xsm_target(d, pg_owner))
                        or not self._xsm_target(d, pt_owner)):
                    rc = -EPERM
                else:
                    rc, level, value = self._normal_update(ptr - cmd, val, cmd, pt_owner, pg_owner)
                    if rc == 0 and level is not None and level > 1:
                        flush_linear_pt = True
                addr = ptr - cmd
            elif cmd == MMU_MACHPHYS_UPDATE:
                rc = self._machphys_update(d, pt_owner, pg_owner, ptr, val)
                addr = ptr - cmd
            else:
                rc = -ENOSYS
                addr = ptr
            self._event(MMU_NAMES.get(cmd, f"mmu_update cmd {cmd}"), addr,
                        value if value is not None else val, level, rc, first)
            if rc:
                break
            done += 1
        if flush_linear_pt:
            # Xen flushes every CPU the page-table owner has run on after any
            # successful L2-L4 update.
            self._action("tlb_flush", pt_owner, vcpu, scope="all", reason="page directory update")
        return rc, done

    def _normal_update(self, ptr: int, val: int, cmd: int, pt_owner: int,
                       pg_owner: int) -> tuple[int, int | None, int | None]:
        """One MMU_NORMAL_PT_UPDATE: returns (rc, level of the table, value written)."""
        table = ptr >> PAGE_SHIFT
        slot = (ptr & (PAGE_SIZE - 1)) >> 3
        if not self.valid(table) or not self._get_page(table, pt_owner):
            self._warn("Could not get page for normal update", "arch/x86/mm.c:4120")
            return -EINVAL, None, None
        pg = self.pages[table]
        rc, level, value = -EINVAL, None, None
        if pg.validated and pg.type_count > 0:
            pg.type_count += 1                      # page_lock()
            typ = pg.type
            if typ == PGT_l1_page_table:
                level = 1
                rc, value = self._mod_l1_entry(table, slot, val, cmd, pt_owner, pg_owner)
            elif typ in (PGT_l2_page_table, PGT_l3_page_table, PGT_l4_page_table):
                level = typ
                if pg_owner == pt_owner:
                    rc, value = self._mod_lne_entry(typ, table, slot, val,
                                                    cmd == MMU_PT_UPDATE_PRESERVE_AD, pt_owner)
            elif typ == PGT_writable_page:
                self._write_entry(ptr, val)
                rc, value = 0, val
            pg.type_count -= 1                      # page_unlock()
        elif self._get_type(table, PGT_writable_page) == 0:
            # Not a page table in use: an ordinary checked write.
            self._write_entry(ptr, val)
            self._put_type(table)
            rc, value = 0, val
        self._put_page(table)
        return rc, level, value

    def _machphys_update(self, d: int, pt_owner: int, pg_owner: int, ptr: int, val: int) -> int:
        if d != pt_owner:
            return -EPERM
        if pg_owner != DOMID_IO and not self._xsm_target(d, pg_owner):
            return -EPERM
        mfn = ptr >> PAGE_SHIFT
        if not self._get_page_from_mfn(mfn, pg_owner):
            self._warn("Could not get page for mach->phys update", "arch/x86/mm.c:4244")
            return -EINVAL
        self.m2p[mfn] = val
        self._put_page(mfn)
        return 0

    # ---------------------------------------------------------------- update_va_mapping
    def update_va_mapping(self, domid: int, l1e_maddr: int | None, val: int, flags: int, *,
                          va: int | None = None, vcpu: int = 0,
                          foreigndom: int | None = None) -> int:
        """HYPERVISOR_update_va_mapping (``_otherdomain`` with ``foreigndom``).

        The caller finds the L1 entry that maps ``va`` in the vCPU's current
        tables (:meth:`l1e_maddr_for_va`) and passes its machine address, or
        None when no L1 table maps it. The flush the flags ask for is added to
        :attr:`actions` when the update succeeds.
        """
        prev = self._begin(domid, vcpu)
        try:
            first = len(self.messages)
            val &= M64
            rc, value = self._update_va_mapping(domid, l1e_maddr, val, flags, va, vcpu, foreigndom)
            self._event("update_va_mapping", l1e_maddr, value if value is not None else val, 1, rc,
                        first)
            return rc
        finally:
            self._ctx = prev

    def _update_va_mapping(self, d: int, l1e_maddr: int | None, val: int, flags: int,
                           va: int | None, vcpu: int,
                           foreigndom: int | None) -> tuple[int, int | None]:
        pg_owner = d
        if foreigndom is not None:
            owner = self._get_pg_owner(d, foreigndom & 0xFFFF)
            if owner is None:
                return -ESRCH, None
            pg_owner = owner
        if val & _PAGE_PRESENT and not self._xsm_target(d, pg_owner):
            return -EPERM, None
        if l1e_maddr is None or (va is not None and not addr_ok(va & M64)):
            return -EINVAL, None
        l1e_maddr &= M64
        table = l1e_maddr >> PAGE_SHIFT
        if not self._get_page_from_mfn(table, d):
            return -EINVAL, None
        pg = self.pages[table]
        if not (pg.validated and pg.type_count > 0) or pg.type != PGT_l1_page_table:
            self._put_page(table)
            return -EINVAL, None
        pg.type_count += 1
        rc, value = self._mod_l1_entry(table, (l1e_maddr & (PAGE_SIZE - 1)) >> 3, val,
                                       MMU_NORMAL_PT_UPDATE, d, pg_owner)
        pg.type_count -= 1
        self._put_page(table)
        if rc:
            return rc, None
        kind = {UVMF_TLB_FLUSH: "tlb_flush", UVMF_INVLPG: "invlpg"}.get(flags & UVMF_FLUSHTYPE_MASK)
        if kind is not None:
            scope_bits = flags & ~UVMF_FLUSHTYPE_MASK
            kw: dict[str, Any] = {"va": va} if kind == "invlpg" else {}
            if scope_bits == UVMF_LOCAL:
                self._action(kind, d, vcpu, scope="local", **kw)
            elif scope_bits == UVMF_ALL:
                self._action(kind, d, vcpu, scope="all", **kw)
            else:
                rc = self._multi_action(kind, d, vcpu, scope_bits, kw, bad=-EFAULT)
        return rc, value

    def _multi_action(self, kind: str, d: int, vcpu: int, ptr: int, kw: dict[str, Any],
                      bad: int) -> int:
        if self.read_vcpumask is None:
            self._action(kind, d, vcpu, scope="multi", vcpumask_ptr=ptr, **kw)
            return 0
        mask = self.read_vcpumask(d, ptr)
        if mask is None:
            return bad
        self._action(kind, d, vcpu, scope="multi", vcpumask=mask, **kw)
        return 0

    def l1e_maddr_for_va(self, l4_mfn: int, va: int) -> int | None:
        """The machine address of the L1 entry that maps ``va`` under ``l4_mfn``
        (Xen's map_guest_l1e), or None if an upper level is not present, is a
        superpage, or points outside memory."""
        va &= M64
        if not addr_ok(va) or not is_canonical(va):
            return None
        table = l4_mfn
        for level, shift in ((4, 39), (3, 30), (2, 21)):
            if not self.valid(table):
                return None
            e = self.mem.read_u64((table << PAGE_SHIFT) | (((va >> shift) & 0x1FF) << 3))
            if not e & _PAGE_PRESENT or (level < 4 and e & _PAGE_PSE):
                return None
            table = entry_mfn(e)
        if not self.valid(table):
            return None
        return (table << PAGE_SHIFT) | (((va >> 12) & 0x1FF) << 3)

    # ---------------------------------------------------------------- mmuext_op
    def mmuext_op(self, domid: int, ops: Iterable[dict[str, int]],
                  foreigndom: int = DOMID_SELF, *, vcpu: int = 0) -> tuple[int, int]:
        """HYPERVISOR_mmuext_op: returns (rc, done). Stops at the first failure.

        Each op is a dict with ``cmd`` and Xen's union arguments ``arg1``
        (mfn or linear_addr) and ``arg2`` (nr_ents, vcpumask pointer or
        src_mfn); the names ``mfn``, ``linear_addr``, ``nr_ents``,
        ``vcpumask`` and ``src_mfn`` are accepted too.
        """
        prev = self._begin(domid, vcpu)
        try:
            pg_owner = self._get_pg_owner(domid, foreigndom & 0xFFFF)
            if pg_owner is None:
                return -ESRCH, 0
            if not self._xsm_target(domid, pg_owner):
                return -EPERM, 0
            rc, done = 0, 0
            for op in ops:
                cmd = int(op.get("cmd", -1))
                arg1 = int(op.get("arg1", op.get("mfn", op.get("linear_addr", 0)))) & M64
                arg2 = int(op.get("arg2", op.get("nr_ents", op.get("vcpumask", op.get("src_mfn", 0))))) & M64
                first = len(self.messages)
                rc, level = self._mmuext_one(domid, vcpu, pg_owner, cmd, arg1, arg2)
                name = MMUEXT_NAMES.get(cmd, f"mmuext cmd {cmd}")
                self._event(name.removeprefix("MMUEXT_").lower(), arg1, arg2, level, rc, first)
                if rc:
                    break
                done += 1
            return rc, done
        finally:
            self._ctx = prev

    def _mmuext_one(self, d: int, vcpu: int, pg_owner: int, cmd: int, arg1: int,
                    arg2: int) -> tuple[int, int | None]:
        foreign = d != pg_owner
        if MMUEXT_PIN_L1_TABLE <= cmd <= MMUEXT_PIN_L4_TABLE:
            return self._pin(pg_owner, arg1, cmd - MMUEXT_PIN_L1_TABLE + 1), cmd + 1
        if cmd == MMUEXT_UNPIN_TABLE:
            return self._unpin(pg_owner, arg1), None
        if cmd == MMUEXT_NEW_BASEPTR:
            if foreign:
                return -EPERM, 4
            return self._new_guest_cr3(d, vcpu, arg1), 4
        if cmd == MMUEXT_NEW_USER_BASEPTR:
            if foreign:
                return -EPERM, 4
            return self._new_user_baseptr(d, vcpu, arg1), 4
        if cmd in (MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_ALL,
                   MMUEXT_INVLPG_ALL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_INVLPG_MULTI):
            if foreign:
                return -EPERM, None
            invlpg = cmd in (MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_MULTI)
            kind = "invlpg" if invlpg else "tlb_flush"
            kw: dict[str, Any] = {"va": arg1} if invlpg else {}
            if cmd in (MMUEXT_TLB_FLUSH_MULTI, MMUEXT_INVLPG_MULTI):
                if invlpg and not addr_ok(arg1):
                    # The mask is still read (and may fault); nothing is flushed.
                    if self.read_vcpumask is not None and self.read_vcpumask(d, arg2) is None:
                        return -EINVAL, None
                    return 0, None
                return self._multi_action(kind, d, vcpu, arg2, kw, bad=-EINVAL), None
            if cmd == MMUEXT_INVLPG_LOCAL:
                if is_canonical(arg1):
                    self._action(kind, d, vcpu, scope="local", **kw)
                return 0, None
            if cmd == MMUEXT_INVLPG_ALL and not addr_ok(arg1):
                return 0, None
            scope = "local" if cmd == MMUEXT_TLB_FLUSH_LOCAL else "all"
            self._action(kind, d, vcpu, scope=scope, **kw)
            return 0, None
        if cmd in (MMUEXT_FLUSH_CACHE, MMUEXT_FLUSH_CACHE_GLOBAL):
            if foreign:
                return -EPERM, None
            if not self.cache_flush_permitted(d):
                return -EACCES, None
            self._action(_CACHE_FLUSH, d, vcpu, scope="all")
            return 0, None
        if cmd == MMUEXT_SET_LDT:
            return self._set_ldt(d, vcpu, foreign, arg1, arg2), None
        if cmd == MMUEXT_CLEAR_PAGE:
            return self._clear_page(pg_owner, arg1), None
        if cmd == MMUEXT_COPY_PAGE:
            return self._copy_page(pg_owner, arg1, arg2), None
        if cmd in (MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER):
            return -EOPNOTSUPP, None
        return -ENOSYS, None

    def _get_page_from_gfn(self, d: int, mfn: int) -> bool:
        """get_page_from_gfn() for a PV domain: gfn == mfn, RAM of ``d`` only."""
        if d == DOMID_IO or not self.valid(mfn):
            return False
        return self._get_page(mfn, d)

    def _pin(self, pg_owner: int, mfn: int, typ: int) -> int:
        if not self._get_page_from_gfn(pg_owner, mfn):
            return -EINVAL
        rc = self._get_type(mfn, typ)
        if rc:
            self._warn(f"Error {rc} while pinning mfn {mfn:05x}", "arch/x86/mm.c:3585")
            self._put_page(mfn)
            return rc
        pg = self.pages[mfn]
        if pg.pinned:
            self._warn(f"mfn {mfn:05x} already pinned", "arch/x86/mm.c:3597")
            self._put_page_and_type(mfn)
            return -EINVAL
        pg.pinned = True
        return 0

    def _unpin(self, pg_owner: int, mfn: int) -> int:
        if not self._get_page_from_gfn(pg_owner, mfn):
            self._warn(f"mfn {mfn:05x} bad, or bad owner d{pg_owner}", "arch/x86/mm.c:3641")
            return -EINVAL
        pg = self.pages[mfn]
        if not pg.pinned:
            self._put_page(mfn)
            self._warn(f"mfn {mfn:05x} not pinned", "arch/x86/mm.c:3651")
            return -EINVAL
        pg.pinned = False
        self._put_page_and_type(mfn)
        self._put_page(mfn)
        return 0

    def _new_guest_cr3(self, d: int, vcpu: int, mfn: int) -> int:
        b = self.bases.setdefault((d, vcpu), [None, None])
        old = b[0]
        if old == mfn:
            self._action("new_baseptr", d, vcpu, mfn=mfn)
            return 0
        rc = self._get_page_and_type_from_mfn(mfn, PGT_l4_page_table, d)
        if rc:
            self._warn(f"Error while installing new baseptr {mfn:05x}", "arch/x86/mm.c:3357")
            return rc
        b[0] = mfn
        self._action("new_baseptr", d, vcpu, mfn=mfn)
        if old is not None:
            self._put_page_and_type(old)
        return 0

    def _new_user_baseptr(self, d: int, vcpu: int, mfn: int) -> int:
        b = self.bases.setdefault((d, vcpu), [None, None])
        old = b[1]
        if (old or 0) == mfn:
            return 0
        if mfn != 0:
            rc = self._get_page_and_type_from_mfn(mfn, PGT_l4_page_table, d)
            if rc:
                self._warn(f"Error {rc} installing new mfn {mfn:05x}", "arch/x86/mm.c:3717")
                return rc
        b[1] = mfn or None
        self._action("new_user_baseptr", d, vcpu, mfn=mfn or None)
        if old is not None:
            self._put_page_and_type(old)
        return 0

    def _set_ldt(self, d: int, vcpu: int, foreign: bool, ptr: int, ents: int) -> int:
        if foreign:
            return -EPERM
        if not ents:
            ptr = 0
        if ents > 8192 or (ents and ((ptr & (PAGE_SIZE - 1)) or not addr_ok(ptr))):
            self._warn(f"Bad args to SET_LDT: ptr={ptr:x}, ents={ents:x}", "arch/x86/mm.c:3843")
            return -EINVAL
        if self.ldt.get((d, vcpu), (0, 0)) != (ptr, ents):
            self.ldt[(d, vcpu)] = (ptr, ents)
            self._action("set_ldt", d, vcpu, va=ptr, nr_ents=ents)
        return 0

    def _clear_page(self, pg_owner: int, mfn: int) -> int:
        ok = self._get_page_from_gfn(pg_owner, mfn)
        if not ok or self._get_type(mfn, PGT_writable_page) != 0:
            if ok:
                self._put_page(mfn)
            self._warn(f"Error clearing mfn {mfn:05x}", "arch/x86/mm.c:3871")
            return -EINVAL
        self.mem.zero_frame(mfn)
        self._put_page_and_type(mfn)
        return 0

    def _copy_page(self, pg_owner: int, dst: int, src: int) -> int:
        if not self._get_page_from_gfn(pg_owner, src):
            self._warn(f"Error copying from mfn {src:05x}", "arch/x86/mm.c:3898")
            return -EINVAL
        ok = self._get_page_from_gfn(pg_owner, dst)
        if not ok or self._get_type(dst, PGT_writable_page) != 0:
            self._put_page(src)
            if ok:
                self._put_page(dst)
            self._warn(f"Error copying to mfn {dst:05x}", "arch/x86/mm.c:3919")
            return -EINVAL
        self.mem.write(dst << PAGE_SHIFT, bytes(self.mem.frame(src)))
        self._put_page_and_type(dst)
        self._put_page(src)
        return 0

    # ---------------------------------------------------------------- builder entry points
    def pin_table(self, domid: int, mfn: int, level: int) -> int:
        """Pin ``mfn`` as an L``level`` table of ``domid`` (the domain builder's
        MMUEXT_PIN_Ln_TABLE, made by the toolstack or by Xen for dom0)."""
        prev = self._begin(domid, 0)
        try:
            first = len(self.messages)
            rc = self._pin(domid, mfn, level)
            self._event(f"pin_l{level}_table", mfn, None, level, rc, first)
            return rc
        finally:
            self._ctx = prev

    def set_baseptr(self, domid: int, vcpu: int, mfn: int, user: bool = False) -> int:
        """Install the vCPU's kernel (or user) base table, as NEW_BASEPTR does."""
        prev = self._begin(domid, vcpu)
        try:
            first = len(self.messages)
            rc = (self._new_user_baseptr if user else self._new_guest_cr3)(domid, vcpu, mfn)
            self._event("new_user_baseptr" if user else "new_baseptr", mfn, None, 4, rc, first)
            return rc
        finally:
            self._ctx = prev

    def vcpu_destroy_pagetables(self, domid: int, vcpu: int) -> None:
        b = self.bases.pop((domid, vcpu), None)
        self.ldt.pop((domid, vcpu), None)
        if b is None:
            return
        for mfn in b:
            if mfn is not None:
                self._put_page_and_type(mfn)

    def destroy_domain(self, domid: int) -> None:
        """Tear a domain's memory down (domain_relinquish_resources).

        Base pointers and pins go first; then every still-valid page table is
        forcibly devalidated, which releases all references its entries hold;
        then each frame's allocation reference is dropped. Frames still mapped
        by other domains (grants) stay allocated to the dying domain until
        those mappings go, as in Xen.
        """
        self._dying[domid] = True
        for key in sorted(k for k in self.bases if k[0] == domid):
            self.vcpu_destroy_pagetables(*key)
        mine = [m for m, pg in self.pages.in_order() if pg.owner == domid]
        for mfn in mine:
            pg = self.pages[mfn]
            if pg.pinned:
                pg.pinned = False
                self._put_page_and_type(mfn)
        for mfn in mine:
            pg = self.pages[mfn]
            if pg.owner == domid and pg.type in _PT_TYPES and pg.validated:
                pg.validated = False
                self._demote(mfn, pg.type)
        for mfn in mine:
            pg = self.pages[mfn]
            if pg.owner == domid and pg.allocated:
                self.release(mfn)
        if domid not in self._owned:
            self._dying.pop(domid, None)

    # ---------------------------------------------------------------- state
    def save_state(self) -> dict[str, Any]:
        """The frame table as chunks of 512 frames (chunk -> {mfn: row}); a chunk with no
        frame looked up since the last snapshot is shared with it. Every other field is
        saved as it is."""
        pages = self.pages
        base = self._saved_chunks
        if pages.touched is None or self._saved_table is not pages:
            chunks = _chunks_of(pages)
        else:
            chunks = dict(base)
            for cid in {m // _CHUNK for m in pages.touched}:
                old = base.get(cid, {})
                new = dict(old)
                for m in range(cid * _CHUNK, (cid + 1) * _CHUNK):
                    if m in pages.touched:
                        pg = dict.get(pages, m)
                        if pg is None:
                            new.pop(m, None)
                        else:
                            new[m] = _page_row(pg)
                if new == old:
                    continue
                if new:
                    chunks[cid] = new
                else:
                    chunks.pop(cid, None)
        self._remember(chunks)
        state = {k: v for k, v in vars(self).items() if k not in self.NOT_STATE}
        state["pages"] = Plain(chunks)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        chunks = state.pop("pages")
        for k in [k for k in vars(self) if k not in self.NOT_STATE and k not in state and k != "pages"]:
            delattr(self, k)
        for k, v in state.items():
            setattr(self, k, v)
        self._load_frame_table(chunks)
        self._remember(chunks)

    def _remember(self, chunks: dict[int, dict[int, tuple]]) -> None:
        """The table now holds exactly ``chunks``: note the frames looked up from here on."""
        self._saved_chunks = chunks
        self._saved_table = self.pages
        self.pages.touched = set()

    def _load_frame_table(self, chunks: dict[int, dict[int, tuple]]) -> None:
        """Set the pages that can differ: those looked up since the last snapshot or restore,
        and those of the chunks where that one and ``chunks`` differ."""
        pages = self.pages
        base = self._saved_chunks
        if pages.touched is None or self._saved_table is not pages:
            suspects: Iterable[int] = set(pages) | {m for c in chunks.values() for m in c}
        else:
            suspects = set(pages.touched)
            for cid in base.keys() | chunks.keys():
                a, b = base.get(cid), chunks.get(cid)
                if a is not b:
                    suspects.update(a or ())
                    suspects.update(b or ())
        rows: dict[int, tuple] = {}             # the suspects' chunks, as one table
        for cid in set(map(floordiv, suspects, repeat(_CHUNK))):
            rows.update(chunks.get(cid, ()))
        # Frames the snapshot has no row for are free: out of the table (in C; most
        # suspects are a guest's frames, made after the snapshot).
        deque(map(dict.pop, repeat(pages), filterfalse(rows.__contains__, suspects), repeat(None)), maxlen=0)
        for m in filter(rows.__contains__, suspects):
            row = rows[m]
            pg = dict.get(pages, m)
            if pg is None:
                pg = PageInfo()
                _set_page(pg, row)
                dict.__setitem__(pages, m, pg)
            elif _page_row(pg) != row:
                _set_page(pg, row)

    def snapshot(self) -> dict[str, Any]:
        return {
            "pages": {m: p.copy() for m, p in self.pages.items()},
            "m2p": dict(self.m2p),
            "bases": {k: list(v) for k, v in self.bases.items()},
            "ldt": dict(self.ldt),
            "ext_refs": dict(self.ext_refs),
            "ext_type_refs": dict(self.ext_type_refs),
            "owned": dict(self._owned),
            "dying": dict(self._dying),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.pages = FrameTable((m, p.copy()) for m, p in snap["pages"].items())
        self.m2p = dict(snap["m2p"])
        self.bases = {k: list(v) for k, v in snap["bases"].items()}
        self.ldt = dict(snap["ldt"])
        self.ext_refs = dict(snap["ext_refs"])
        self.ext_type_refs = dict(snap["ext_type_refs"])
        self._owned = dict(snap["owned"])
        self._dying = dict(snap["dying"])

    def digest_into(self, h: Any) -> None:
        """Feed the bookkeeping, in frame order, into a hash."""
        for mfn, pg in self.pages.in_order():
            if pg.owner is None and not pg.count:
                continue
            h.update(struct.pack("<QqqqqBBBq", mfn, -1 if pg.owner is None else pg.owner, pg.count,
                                 pg.type, pg.type_count, pg.pinned, pg.validated, pg.allocated,
                                 pg.linear))
        for mfn in sorted(self.m2p):
            h.update(struct.pack("<QQ", mfn, self.m2p[mfn] & M64))
        for key in sorted(self.bases):
            k, u = self.bases[key]
            h.update(struct.pack("<qqqq", key[0], key[1], -1 if k is None else k, -1 if u is None else u))

    # ---------------------------------------------------------------- invariants
    def check_invariants(self, domains: Iterable[int] | None = None) -> list[str]:
        """Recount every reference from the tables themselves and compare.

        Checks: no frame of page-table type is mapped writable; every type and
        general count equals the references that hold it; no domain maps a
        frame it does not own (except through ``grant_ok`` or the control
        domain's foreign mappings); Xen's frames are never mapped or used as
        tables by guests; counts are never negative; linear-table counts are
        consistent. ``domains`` limits the ownership checks to those domids.
        """
        watch = None if domains is None else sorted(set(domains))
        out = list(self.errors)
        n = self.nr_frames
        exp_count = [0] * n
        exp_type = [0] * n
        lin_entries = [0] * n
        lin_uses = [0] * n

        def concerns(d: int | None) -> bool:
            return watch is None or d in watch

        for mfn, pg in self.pages.in_order():
            if pg.count < 0 or pg.type_count < 0:
                out.append(f"mfn {mfn:#x}: negative count ({self.describe(mfn)})")
            if pg.owner is None:
                if pg.count or pg.type_count or pg.pinned or pg.allocated:
                    out.append(f"mfn {mfn:#x}: free but referenced ({self.describe(mfn)})")
                continue
            if pg.count == 0:
                out.append(f"mfn {mfn:#x}: owned by {_pd(pg.owner)} with no references")
            if pg.allocated:
                exp_count[mfn] += 1
                if pg.owner in (DOMID_XEN, DOMID_IO):
                    exp_type[mfn] += 1
            if pg.owner == DOMID_XEN and pg.type != PGT_none:
                out.append(f"mfn {mfn:#x}: Xen's frame has type {PGT_NAMES[pg.type]}")
            if pg.pinned:
                exp_count[mfn] += 1
                exp_type[mfn] += 1
                if pg.type not in _PT_TYPES or not pg.validated:
                    out.append(f"mfn {mfn:#x}: pinned but not a validated table ({self.describe(mfn)})")
            if pg.type not in _PT_TYPES or pg.type_count <= 0:
                continue
            if not pg.validated:
                if not self._dying.get(pg.owner, False):
                    out.append(f"mfn {mfn:#x}: table in use but not validated ({self.describe(mfn)})")
                continue
            d = pg.owner
            entries = self._read_table(mfn)
            if pg.type == PGT_l4_page_table:
                xen = self.xen_l4_slots(mfn, d) if self.xen_l4_slots is not None else {}
                for i in range(ROOT_PAGETABLE_FIRST_XEN_SLOT, ROOT_PAGETABLE_LAST_XEN_SLOT + 1):
                    if entries[i] != xen.get(i, 0) & M64:
                        out.append(f"mfn {mfn:#x} ({_pd(d)}'s L4) slot {i:#x}: guest entry "
                                   f"{entries[i]:#x} in Xen's range")
            for i, e in enumerate(entries):
                if not e & _PAGE_PRESENT:
                    continue
                if pg.type == PGT_l4_page_table and not is_guest_l4_slot(i):
                    continue
                t = entry_mfn(e)
                where = f"mfn {mfn:#x} ({PGT_NAMES[pg.type]} of {_pd(d)}) slot {i:#x}"
                if pg.type == PGT_l1_page_table:
                    f = get_pte_flags(e)
                    if f & self.l1_disallow_mask(d):
                        out.append(f"{where}: disallowed flags {f & self.l1_disallow_mask(d):#x}")
                    if self._is_iomem(t):
                        if not self.iomem_permitted(d, t) and concerns(d):
                            out.append(f"{where}: maps MMIO {t:#x} without I/O rights")
                        continue
                    exp_count[t] += 1
                    tp = self.pages[t]
                    rw = bool(e & _PAGE_RW)
                    if rw:
                        exp_type[t] += 1
                        if tp.type != PGT_writable_page:
                            out.append(f"{where}: maps {t:#x} writable but it is {PGT_NAMES[tp.type]}")
                    if tp.owner != d and concerns(d):
                        if tp.owner == DOMID_XEN and not self.privileged(d):
                            out.append(f"{where}: maps Xen's frame {t:#x}")
                        elif not (self.privileged(d)
                                  or (self.grant_ok is not None
                                      and self.grant_ok(d, t, rw, (mfn << PAGE_SHIFT) | (i << 3)))):
                            out.append(f"{where}: maps {t:#x} owned by {_pd(tp.owner)}")
                    continue
                if e & _PAGE_PSE:
                    out.append(f"mfn {mfn:#x} ({PGT_NAMES[pg.type]} of {_pd(d)}) slot {i:#x}: "
                               f"superpage or reserved PS bit")
                f = get_pte_flags(e)
                if f & self._disallow(pg.type):
                    out.append(f"{where}: disallowed flags {f & self._disallow(pg.type):x}")
                if t == mfn:
                    if e & _PAGE_RW:
                        out.append(f"{where}: writable self-mapping")
                    continue
                if not self.valid(t):
                    out.append(f"{where}: points outside memory ({t:#x})")
                    continue
                tp = self.pages[t]
                exp_count[t] += 1
                exp_type[t] += 1
                if tp.owner != d:
                    out.append(f"{where}: table {t:#x} belongs to {_pd(tp.owner)}")
                if tp.type == pg.type:
                    if e & _PAGE_RW:
                        out.append(f"{where}: writable linear mapping of {t:#x}")
                    lin_entries[mfn] += 1
                    lin_uses[t] += 1
                elif tp.type != pg.type - 1:
                    out.append(f"{where}: points at {t:#x} of type {PGT_NAMES[tp.type]}")
        for key in sorted(self.bases):
            for mfn in self.bases[key]:
                if mfn is None:
                    continue
                exp_count[mfn] += 1
                exp_type[mfn] += 1
                pg = self.pages[mfn]
                if pg.type != PGT_l4_page_table or not pg.validated:
                    out.append(f"{_pd(key[0])}v{key[1]} base {mfn:#x} is not a validated L4")
        for mfn in sorted(self.ext_refs):
            exp_count[mfn] += self.ext_refs[mfn]
        for mfn in sorted(self.ext_type_refs):
            exp_type[mfn] += self.ext_type_refs[mfn]
        for mfn, pg in self.pages.in_order():
            if pg.owner is None:
                continue
            if pg.type_count != exp_type[mfn]:
                out.append(f"mfn {mfn:#x}: type_count {pg.type_count} but {exp_type[mfn]} "
                           f"type references ({self.describe(mfn)})")
            if pg.count != exp_count[mfn]:
                out.append(f"mfn {mfn:#x}: count {pg.count} but {exp_count[mfn]} references "
                           f"({self.describe(mfn)})")
            if lin_entries[mfn] and lin_uses[mfn]:
                out.append(f"mfn {mfn:#x}: has linear entries and is used as a linear table")
            if pg.linear != lin_entries[mfn] - lin_uses[mfn]:
                out.append(f"mfn {mfn:#x}: linear count {pg.linear}, expected "
                           f"{lin_entries[mfn] - lin_uses[mfn]}")
        return out
