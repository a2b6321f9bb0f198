"""Descriptor tables and vCPU areas from a hostile PV guest: set_gdt, update_descriptor,
VCPUOP_initialise and VCPUOP_register_vcpu_info, answered as Xen answers them
(xen/arch/x86/pv/descriptor-tables.c, xen/common/domain.c).

A GDT frame must be the guest's, with no writable mapping, and every descriptor in it must
pass check_descriptor(): no call gate into Xen's selectors, no system descriptor but a call
gate, DPL raised to the guest kernel's ring. Once a descriptor table it cannot be mapped
writable. vcpu_info moves once, into the guest's own writable page, not across a page.
"""

from __future__ import annotations

import struct

import pytest

from attack_support import DIRECT_MAP, Arena
from lab.xen import abi
from lab.xen.descriptors import check_descriptor

pytestmark = pytest.mark.machine       # every test here boots a whole machine

EINVAL, EEXIST, EFAULT, EBUSY, ENXIO, EACCES = (-abi.ERRNO[n] for n in
                                                ("EINVAL", "EEXIST", "EFAULT", "EBUSY", "ENXIO", "EACCES"))
#: A flat 64-bit code segment at DPL 0 (the guest asks for ring 0), a data segment, and
#: 64-bit call gates (two slots each) into Xen's own code selector and into a guest one.
CODE_DPL0 = 0x00AF9A000000FFFF
DATA_DPL3 = 0x00CFF2000000FFFF
XEN_CS = 0xE008


def _gate(selector: int, dpl: int = 3, offset: int = 0x401000) -> list[int]:
    low = (offset & 0xFFFF) | (selector << 16) | ((0x8C00 | (dpl << 13)) << 32) | ((offset >> 16 & 0xFFFF) << 48)
    return [low, offset >> 32]


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def _gdt_frame(arena, g, pfn: int, descriptors: list[int]) -> int:
    """One of the guest's frames, filled with descriptors, its direct-map mapping removed."""
    mfn = g.dom.p2m[pfn]
    arena.host.mem.write(mfn << 12, struct.pack(f"<{len(descriptors)}Q", *descriptors))
    assert arena.call(g, "update_va_mapping", DIRECT_MAP + (pfn << 12), 0, abi.UVMF_INVLPG) == 0
    return mfn


def _set_gdt(arena, g, frames: list[int], entries: int) -> int:
    g.write(g.buf(), struct.pack(f"<{len(frames)}Q", *frames))
    return arena.call(g, "set_gdt", g.buf(), entries)


def test_check_descriptor_raises_dpl_and_refuses_gates_into_xen():
    class Pv:
        mode = "pv"
    fixed = check_descriptor(Pv, CODE_DPL0)
    assert fixed is not None and (fixed >> 45) & 3 == 3, "a code segment's DPL is raised to ring 3"
    assert check_descriptor(Pv, _gate(XEN_CS)[0]) is None, "a call gate into Xen's code"
    gate = check_descriptor(Pv, _gate(0x10)[0])
    assert gate is not None and (gate >> 45) & 3 == 0 and (gate >> 16) & 3 == 3, "DPL 0, the DPL kept in RPL"
    assert check_descriptor(Pv, 0x0000890000000067) is None, "a TSS is no guest's"
    assert check_descriptor(Pv, 0x0000090000000067) == 0x0000090000000067, "not present: harmless"


def test_set_gdt_takes_only_the_guests_own_checked_unmapped_frames(arena):
    host, g = arena.host, arena.pv
    pv = host.mm.pv
    assert _set_gdt(arena, g, [g.dom.p2m[0x300]], 7169 * 1) == EINVAL, "beyond FIRST_RESERVED_GDT_ENTRY"
    assert _set_gdt(arena, g, [arena.victim.dom.p2m[0x300]], 16) == EINVAL, "the victim's frame"
    assert _set_gdt(arena, g, [g.vcpu.guest_table], 16) == EINVAL, "its own L4"
    assert _set_gdt(arena, g, [g.dom.p2m[0xC01]], 16) == EINVAL, "a frame it still maps writable"
    bad = _gdt_frame(arena, g, 0xC02, [0, CODE_DPL0] + _gate(XEN_CS))
    assert _set_gdt(arena, g, [bad], 16) == EINVAL, "a call gate into Xen's code selector"
    assert pv.pages[bad].type != abi.PGT_seg_desc_page
    good = _gdt_frame(arena, g, 0xC03, [0, CODE_DPL0, DATA_DPL3] + _gate(0x10))
    assert _set_gdt(arena, g, [good], 16) == 0
    assert pv.pages[good].type == abi.PGT_seg_desc_page
    assert (host.mem.read_u64((good << 12) + 8) >> 45) & 3 == 3, "stored with its DPL raised"
    # a descriptor table is never writable: not by a mapping, only by update_descriptor
    pte = (good << 12) | 0x7
    assert arena.call(g, "update_va_mapping", DIRECT_MAP + (0xC03 << 12), pte, abi.UVMF_INVLPG) == EBUSY
    assert arena.call(g, "update_descriptor", (good << 12) + 32, _gate(XEN_CS)[0]) == EINVAL
    assert arena.call(g, "update_descriptor", (good << 12) + 33, DATA_DPL3) == EINVAL, "unaligned"
    assert arena.call(g, "update_descriptor", (good << 12) + 32, CODE_DPL0) == 0
    assert (host.mem.read_u64((good << 12) + 32) >> 45) & 3 == 3
    # update_descriptor on a page table or on the victim is refused; on a plain page it is a write
    assert arena.call(g, "update_descriptor", g.vcpu.guest_table << 12, DATA_DPL3) == EINVAL
    assert arena.call(g, "update_descriptor", arena.victim.dom.p2m[0x300] << 12, DATA_DPL3) == EINVAL
    assert arena.call(g, "update_descriptor", g.dom.p2m[0xC04] << 12, DATA_DPL3) == 0
    assert pv.check_invariants() == []
    arena.untouched()
    # a new GDT drops the old one's references; destruction drops the rest
    assert _set_gdt(arena, g, [], 0) == 0 and pv.pages[good].type_count == 0
    assert _set_gdt(arena, g, [good], 16) == 0
    arena.xl.destroy(g.dom.name)
    assert good in host.free_frames and pv.check_invariants() == []


def test_vcpu_initialise_and_register_vcpu_info_are_checked_as_xen_does(arena):
    host, g = arena.host, arena.pv
    args = g.buf(512)
    assert arena.call(g, "vcpu_op", abi.VCPUOP_initialise, 0, args) == EEXIST, "vCPU 0 runs already"
    assert arena.call(g, "vcpu_op", abi.VCPUOP_initialise, 0, 0xFFFF_8000_0000_0000) == EFAULT
    assert arena.call(g, "vcpu_op", abi.VCPUOP_initialise, 7, args) == -abi.ERRNO["ENOENT"]

    def register(frame: int, offset: int) -> int:
        g.write(args, struct.pack("<QII", frame, offset, 0))
        return arena.call(g, "vcpu_op", abi.VCPUOP_register_vcpu_info, 0, args)
    own = g.dom.p2m[0xC05]
    assert register(own, 4090) == ENXIO, "crosses the page"
    assert register(own, 4) == ENXIO, "not aligned"
    assert register(own, 1 << 13) == EINVAL, "the offset overflows the frame"
    assert register(arena.victim.dom.p2m[0x305], 0) == EINVAL, "the victim's frame"
    assert register(g.vcpu.guest_table, 0) == EACCES, "a page table is never written by Xen"
    assert register(own, 64) == 0
    assert register(own, 128) == EBUSY, "once only"
    held = [h for h in host.frames.held() if h.holder.endswith("vcpu_info")]
    assert [h.mfn for h in held] == [own]
    from lab.xen.vcpu_info import maddr
    assert maddr(host, g.dom, 0) == (own << 12) + 64
    assert host.mem.read((own << 12) + 64, 1) == b"\x01", "pending set after the move: the guest rescans"
    assert host.mm.pv.get_page_type(own, abi.PGT_l1_page_table, g.dom.domid) != 0
    arena.untouched()
    arena.xl.destroy(g.dom.name)
    assert not [h for h in host.frames.held() if h.holder.endswith("vcpu_info")]
    assert host.mm.pv.check_invariants() == []
