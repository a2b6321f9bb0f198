"""XENMEM_increase_reservation, XENMEM_decrease_reservation, XENMEM_populate_physmap.

How a guest (its balloon driver, say) gives memory back to Xen and takes it
again, as ``xen/common/memory.c`` does it:

* the argument is ``struct xen_memory_reservation {extent_start (a guest
  array of frame numbers), nr_extents, extent_order, mem_flags, domid}``; the
  result is the number of extents done, never an errno: whatever is wrong
  (an unreadable argument, a domain that does not exist, another domain's
  memory without the control domain's privilege (XSM_TARGET), an order above
  ``max_order()``) just stops the call at the extent it reached;
* ``increase_reservation`` and ``populate_physmap`` allocate from Xen's heap
  while the domain stays within its ``max_pages`` (xl.cfg ``maxmem``); a PV
  guest is told each new machine frame in its array, a translated one gets
  the frame mapped at the gfn it named (populate_physmap);
* ``decrease_reservation`` gives frames back (``guest_remove_page()``): a
  frame that is not the domain's stops the call; the frame leaves the p2m at
  once and is freed, wiped, when the last reference to it goes (a pinned
  table is unpinned first; a grant mapping or a loaded base pointer keeps it);
* every extent is charged, and a long call is preempted with a continuation
  (the extent reached goes into the command's upper bits, MEMOP_EXTENT_SHIFT).

An extent is ``2**extent_order`` pages, up to ``max_order()`` of the *caller*
(9 for a domU, 12 for the control domain); a larger order does nothing (the
call answers the extents done so far, as memory.c does, not an errno). A new
extent is one aligned block of contiguous machine frames (the buddy
allocator's); the whole extent must fit under ``max_pages`` ("Over-allocation").
``decrease_reservation`` removes an extent page by page and stops at the first
page it cannot remove (that extent is not counted). ``populate_physmap`` on a
gfn that holds RAM already does what ``p2m_add_page()`` does: the new frame
takes the gfn, the old frame's M2P entry becomes invalid, and the old frame
stays the domain's (counted in its pages, in no p2m slot) until the domain
goes. The lab maps an extent with 4 KiB EPT entries, where Xen uses a 2 MiB
or 1 GiB entry when the gfn and the frames are aligned to it.
"""

from __future__ import annotations

import struct

from ..hw.x86 import is_canonical
from ..isa.bits import M32
from . import abi
from .guestmem import GuestFault, copy_from_guest, copy_to_guest
from .hvm import EPT_GFN_BITS, _clear_m2p, _remove_ram_page, _set_p2m, _special_frames
from .hypercall_table import Preempted, preempt_check
from .paging_pool import pool_of

#: xen/common/Kconfig DOMU_MAX_ORDER and CTLDOM_MAX_ORDER (x86): the largest extent order.
DOMU_MAX_ORDER, CTLDOM_MAX_ORDER = 9, 12
#: sizeof(struct xen_memory_reservation) on x86-64
RESERVATION_SIZE = 32
_OPS = {abi.XENMEM_increase_reservation: "increase_reservation",
        abi.XENMEM_decrease_reservation: "decrease_reservation",
        abi.XENMEM_populate_physmap: "populate_physmap"}


def max_order(dom) -> int:
    return CTLDOM_MAX_ORDER if dom.privileged else DOMU_MAX_ORDER


def _array_ok(va: int, first: int, last: int) -> bool:
    """guest_handle_subrange_okay(): the array's entries first..last lie in guest space (access_ok)."""
    lo, hi = va + 8 * first, va + 8 * last + 7
    return is_canonical(lo) and is_canonical(hi) and (hi < 0xFFFF_8000_0000_0000 or lo >= 0xFFFF_8800_0000_0000) \
        and (lo >> 47) == (hi >> 47)


def reservation_op(host, v, cmd: int, va: int, info: dict) -> int | Preempted:
    op, start = cmd & abi.MEMOP_CMD_MASK, (cmd & M32) >> abi.MEMOP_EXTENT_SHIFT
    caller = v.domain
    try:
        raw = copy_from_guest(host, v, va, RESERVATION_SIZE)
    except GuestFault as e:
        info["why"] = str(e)
        return start
    extent_start, nr, order, _flags, domid = struct.unpack_from("<QQIIH", raw)
    info["args"] = [_OPS[op], f"d{domid:#x}" if domid != abi.DOMID_SELF else "DOMID_SELF", f"{nr} extents",
                    f"order {order}"]
    if nr > M32 >> abi.MEMOP_EXTENT_SHIFT or start >= nr:
        return start
    target = caller if domid in (abi.DOMID_SELF, caller.domid) else host.domains.get(domid)
    if target is None:
        return start
    if target is not caller and not caller.privileged:
        info["why"] = "another domain's memory (XSM_TARGET)"
        return start
    if order > max_order(caller):
        info["why"] = f"extent order {order} is above max_order() {max_order(caller)}"
        return start
    if (extent_start or op != abi.XENMEM_increase_reservation) and not _array_ok(extent_start, start, nr - 1):
        return start
    step = {abi.XENMEM_increase_reservation: _increase, abi.XENMEM_decrease_reservation: _decrease,
            abi.XENMEM_populate_physmap: _populate}[op]
    i = start
    while i < nr:
        if i != start and preempt_check(host, v):
            info["continuation_extent"] = i
            return Preempted([op | (i << abi.MEMOP_EXTENT_SHIFT), va])
        host.charge(v, "hypercall_batch_entry")
        why = step(host, v, target, extent_start, i, order)
        if why:
            info["why"] = f"extent {i}: {why}"
            break
        i += 1
    if i > start:
        host.emit(v, "pagetable", op=_OPS[op], addr=None, value=i - start, level=None, result="done",
                  message=f"XENMEM_{_OPS[op]} for d{target.domid}: {i - start} extent(s) of {1 << order} page(s); "
                          f"d{target.domid} now has "
                          f"{target.mem_pages} of at most {target.max_pages}")
    return i


def _new_extent(host, target, order: int) -> tuple[list[int] | None, str]:
    """alloc_domheap_pages(d, order): within max_pages ("Over-allocation", assign_pages()),
    one aligned block of 2**order contiguous frames from Xen's heap."""
    n = 1 << order
    if target.mem_pages + n > target.max_pages:
        if n == 1:
            return None, f"d{target.domid} is at its max_pages ({target.max_pages})"
        return None, f"Over-allocation for d{target.domid}: {target.mem_pages + n} > {target.max_pages}"
    if order == 0:
        if not host.free_frames:
            return None, "Xen's heap is empty"
        mfns = [host.alloc_frame(target.domid)]
    else:
        base = host.free_frames.take_block(order)
        if base is None:
            return None, f"Could not allocate order={order} extent: id={target.domid}"
        mfns = list(range(base, base + n))
        frames = target.extra.setdefault("frames", [])
        for mfn in mfns:                        # what alloc_frame() does for one
            host.mem.zero_frame(mfn)
            host.mm.assign(mfn, target.domid)
            frames.append(mfn)
    target.mem_pages += n
    return mfns, ""


def _increase(host, v, target, array: int, i: int, order: int) -> str:
    mfns, why = _new_extent(host, target, order)
    if mfns is None:
        return why
    if target.is_pv and array:
        try:
            copy_to_guest(host, v, array + 8 * i, mfns[0].to_bytes(8, "little"))
        except GuestFault as e:
            return str(e)
    return ""


def _read_entry(host, v, array: int, i: int) -> int | str:
    try:
        return int.from_bytes(copy_from_guest(host, v, array + 8 * i, 8), "little")
    except GuestFault as e:
        return str(e)


def _populate(host, v, target, array: int, i: int, order: int) -> str:
    gpfn = _read_entry(host, v, array, i)
    if isinstance(gpfn, str):
        return gpfn
    n = 1 << order
    if target.is_hvm:
        if (gpfn + n - 1) >> EPT_GFN_BITS:
            return f"gfn {gpfn:#x} is beyond the guest's physical address width"
        if target.ept_root and pool_of(host, target).free < 3:
            return f"d{target.domid}'s paging pool is exhausted"
    mfns, why = _new_extent(host, target, order)
    if mfns is None:
        return why
    if target.is_hvm:
        return _physmap_add(host, target, gpfn, mfns)
    # guest_physmap_add_page() for PV: only the M2P learns the pfns; the guest is told the first mfn
    for k, mfn in enumerate(mfns):
        host.mm.set_m2p(mfn, (gpfn + k) & ((1 << 52) - 1))
    try:
        copy_to_guest(host, v, array + 8 * i, mfns[0].to_bytes(8, "little"))
    except GuestFault as e:
        return str(e)
    return ""


def _physmap_add(host, target, gpfn: int, mfns: list[int]) -> str:
    """p2m_add_page() (arch/x86/mm/p2m.c): the new frames take the gfns. A gfn that held RAM
    loses it: the old frame's M2P entry is made invalid and the frame stays the domain's."""
    frames = target.extra.setdefault("frames", [])
    for k, mfn in enumerate(mfns):
        gfn = gpfn + k
        if k and target.ept_root and pool_of(host, target).free < 3:
            # p2m_set_entry() -ENOMEM: the extent is not done; its frames stay the domain's
            return f"d{target.domid}'s paging pool ran out at gfn {gfn:#x}"
        old = target.gfn_to_mfn(gfn)
        if old is not None:
            _clear_m2p(host, old)               # set_gpfn_from_mfn(omfn, INVALID_M2P_ENTRY)
            if old not in frames:
                frames.append(old)              # still the domain's: freed when the domain goes
            host.emit(target.vcpus[0] if target.vcpus else None, "pagetable", op="p2m update", addr=gfn << 12,
                      value=mfn, level=None, result="replaced",
                      message=f"populate_physmap: gfn {gfn:#x} held mfn {old:#x}; the new mfn {mfn:#x} takes it "
                              f"and the old frame stays d{target.domid}'s, in no p2m slot (p2m_add_page)")
        _set_p2m(host, target, gfn, mfn)
        host.mm.set_m2p(mfn, gfn)
    return ""


def _decrease(host, v, target, array: int, i: int, order: int) -> str:
    """decrease_reservation(): the extent's pages one by one (guest_remove_page()); the first
    that cannot go stops the call, and that extent is not counted."""
    gmfn = _read_entry(host, v, array, i)
    if isinstance(gmfn, str):
        return gmfn
    for j in range(1 << order):
        why = _remove_one(host, target, gmfn + j)
        if why:
            return why
    return ""


def _remove_one(host, target, gmfn: int) -> str:
    if target.is_pv:
        mfn, gfn = gmfn, None
        pg = host.mm.pv.pages[mfn] if host.mm.pv.valid(mfn) else None
        if pg is None or pg.owner != target.domid or not pg.allocated:
            return f"mfn {gmfn:#x} is not d{target.domid}'s"            # guest_remove_page(): -EINVAL
        if mfn in _special_frames(host, target) or mfn == target.shared_info_mfn:
            return f"mfn {gmfn:#x} is not one of d{target.domid}'s RAM pages"
    else:
        gfn, mfn = gmfn, target.gfn_to_mfn(gmfn) if 0 <= gmfn < 1 << 52 else None
        if mfn is None:
            return f"gfn {gmfn:#x} maps nothing"                         # -ENOENT
        if mfn in _special_frames(host, target):
            _set_p2m(host, target, gfn, None)                             # unhooked, not freed
            _clear_m2p(host, mfn)
            return ""
    # The frame leaves the domain's memory map now (for PV, the lab's record of it).
    if gfn is not None:
        _set_p2m(host, target, gfn, None)
    else:
        try:
            target.p2m[target.p2m.index(mfn)] = None
        except ValueError:
            pass                                # a frame it got by increase_reservation: in no pfn
    _remove_ram_page(host, target, gfn if gfn is not None else -1, mfn)
    return ""
