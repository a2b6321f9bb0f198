"""A PV guest's descriptor tables: set_gdt and update_descriptor, with Xen's check_descriptor().

A PV guest may not write its GDT or LDT directly: their frames are typed
``PGT_seg_desc_page`` (no writable mapping of them may exist, and none may be
made while they are), every descriptor in them passed ``check_descriptor()``
(``xen/arch/x86/pv/descriptor-tables.c``), and a change goes through
``HYPERVISOR_update_descriptor``, checked the same way. The check keeps a
guest from giving itself privilege: code and data descriptors get their DPL
raised to the guest kernel's ring, the only system descriptors allowed are
call gates, and a call gate may not lead into one of Xen's selectors.

The lab's CPU has no segmentation, so the descriptors themselves change
nothing when the guest runs; what the lab keeps is Xen's bookkeeping, which
is where the isolation lies: the frames, their type and the checks.
"""

from __future__ import annotations

import struct

from . import abi
from .guestmem import copy_from_guest
from .hypercall_table import X86_HYPERCALLS

E = abi.ERRNO
#: FIRST_RESERVED_GDT_PAGE (14) * 512: the GDT entries above this are Xen's.
FIRST_RESERVED_GDT_ENTRY = 14 * 512
_P, _DPL, _S, _TYPE, _L = 1 << 15, 3 << 13, 1 << 12, 0xF << 8, 1 << 21
_CALL_GATE = 0xC00
#: dom.extra key: vcpu id -> the frames of its GDT (each held with a seg_desc type reference).
GDT_FRAMES = "gdt_frames"


def _gate_selector_okay(dom, sel: int) -> bool:
    """guest_gate_selector_okay(): a guest GDT slot, the flat kernel CS, or an LDT selector."""
    flat = abi.FLAT_RING1_CS if dom.mode == "pv32" else abi.FLAT_KERNEL_CS64
    return (sel >> 3) < FIRST_RESERVED_GDT_ENTRY or sel == flat or bool(sel & 4)


def check_descriptor(dom, raw: int) -> int | None:
    """check_descriptor(): the descriptor as Xen stores it (DPL fixed up), or None if refused."""
    a, b = raw & 0xFFFF_FFFF, raw >> 32
    if not b & _P:
        return raw                                  # a not-present descriptor always faults
    kernel_rpl = 1 if dom.mode == "pv32" else 3
    dpl = max((b >> 13) & 3, kernel_rpl)            # __fixup_guest_selector()
    b = (b & ~_DPL) | (dpl << 13)
    if b & _S:
        if dom.mode == "pv32" and b & _L:
            return None                             # no 64-bit code segments for a 32-bit guest
        return a | (b << 32)
    if b & _TYPE == 0:
        return raw                                  # the second half of a call gate
    if b & _TYPE != _CALL_GATE:
        return None                                 # every other system descriptor
    cs = a >> 16
    if not _gate_selector_okay(dom, cs):
        return None
    # DPL 0, the original DPL kept in the selector's RPL: a use of the gate faults to Xen
    b &= ~_DPL
    a = (a & 0xFFFF) | (((cs & ~3) | dpl) << 16)
    if b & (0xE0 if dom.mode == "pv32" else 0xFF):
        return None                                 # reserved bits
    return a | (b << 32)


def _check_frame(host, dom, mfn: int) -> bool:
    """alloc_segdesc_page(): every descriptor of the frame passes, fixed up in place."""
    base = mfn << 12
    raw = host.mem.read(base, 4096)
    out = []
    for d in struct.unpack("<512Q", raw):
        fixed = check_descriptor(dom, d)
        if fixed is None:
            return False
        out.append(fixed)
    host.mem.write(base, struct.pack("<512Q", *out))
    return True


def _take_seg_desc(host, dom, mfn: int) -> bool:
    pv = host.mm.pv
    if not pv.valid(mfn) or not pv.get_page(mfn, dom.domid):
        return False
    if pv.pages[mfn].type != abi.PGT_seg_desc_page or not pv.pages[mfn].type_count:
        # The type can change only with no other type reference (no writable mapping):
        # look first, so the frame is checked only when it can become a descriptor table.
        if pv.pages[mfn].type_count or not _check_frame(host, dom, mfn):
            pv.put_page(mfn)
            return False
    if pv.get_page_type(mfn, abi.PGT_seg_desc_page, dom.domid) != 0:
        pv.put_page(mfn)
        return False
    return True


def release_gdt(host, dom, vcpu_id: int) -> None:
    """pv_destroy_gdt(): drop the references on the vCPU's GDT frames."""
    for mfn in dom.extra.get(GDT_FRAMES, {}).pop(vcpu_id, []):
        host.mm.pv.put_page_and_type(mfn)


@X86_HYPERCALLS.handler("set_gdt")
def set_gdt(host, v, args, info) -> int:
    """do_set_gdt(frame_list, entries) and pv_set_gdt() (pv/descriptor-tables.c)."""
    dom = v.domain
    va, entries = args[0], args[1] & 0xFFFF_FFFF
    info["args"] = [f"{va:#x}", f"{entries} entries"]
    if entries > FIRST_RESERVED_GDT_ENTRY:
        info["why"] = f"more than {FIRST_RESERVED_GDT_ENTRY} entries: the rest of the GDT is Xen's"
        return -E["EINVAL"]
    nr = (entries + 511) // 512
    frames = list(struct.unpack(f"<{nr}Q", copy_from_guest(host, v, va, 8 * nr))) if nr else []
    taken: list[int] = []
    for mfn in frames:
        if not _take_seg_desc(host, dom, mfn):
            for m in taken:
                host.mm.pv.put_page_and_type(m)
            info["why"] = f"mfn {mfn:#x} cannot be a descriptor table of d{dom.domid}'s"
            return -E["EINVAL"]
        taken.append(mfn)
    release_gdt(host, dom, v.id)
    dom.extra.setdefault(GDT_FRAMES, {})[v.id] = taken
    return 0


@X86_HYPERCALLS.handler("update_descriptor")
def update_descriptor(host, v, args, info) -> int:
    """do_update_descriptor(machine address, descriptor) (pv/descriptor-tables.c)."""
    dom = v.domain
    ma, desc = args[0], args[1]
    info["args"] = [f"{ma:#x}", f"{desc:#x}"]
    fixed = check_descriptor(dom, desc)
    if ma % 8 or fixed is None:
        info["why"] = "unaligned" if ma % 8 else "check_descriptor() refuses it"
        return -E["EINVAL"]
    mfn = ma >> 12
    pv = host.mm.pv
    if not pv.valid(mfn) or not pv.get_page(mfn, dom.domid):
        return -E["EINVAL"]
    typ = abi.PGT_seg_desc_page if pv.pages[mfn].type == abi.PGT_seg_desc_page else abi.PGT_writable_page
    if pv.get_page_type(mfn, typ, dom.domid) != 0:
        pv.put_page(mfn)
        info["why"] = f"mfn {mfn:#x} is in use as something that may not be written"
        return -E["EINVAL"]
    host.mem.write_u64(ma, fixed)
    pv.put_page_and_type(mfn)
    return 0
