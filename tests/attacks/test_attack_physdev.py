"""physdev_op from a domain that is not the hardware domain (xen/arch/x86/physdev.c).

In the manner of XTF's XSA tests: a PV and an HVM attacker ask for the host's hardware
(IO-APIC registers, GSIs, PCI devices, MSI-X, MMCONFIG, the debug port) and for pirqs of
their own and of the victim; the default XSM policy answers -EPERM (XSM_PRIV, XSM_DM_PRIV),
an HVM guest's filter (hvm_physdev_op) -ENOSYS, and nothing changes for anybody else.
"""

from __future__ import annotations

import struct

import pytest

from attack_support import Arena
from lab.xen import abi
from xen_helpers import events

pytestmark = pytest.mark.machine       # every test here boots a whole machine

EPERM, EINVAL, ENOSYS, EBUSY = (-abi.ERRNO[n] for n in ("EPERM", "EINVAL", "ENOSYS", "EBUSY"))

#: Sub-ops of the hardware domain's, with an argument Xen would otherwise accept.
HWDOM_OPS = {
    abi.PHYSDEVOP_apic_read: struct.pack("<QII", 0xFEC00000, 0x10, 0),
    abi.PHYSDEVOP_apic_write: struct.pack("<QII", 0xFEC00000, 0x10, 0xDEAD),
    abi.PHYSDEVOP_alloc_irq_vector: struct.pack("<ii", 5, 0),
    abi.PHYSDEVOP_manage_pci_add: struct.pack("<BB", 0, 8),
    abi.PHYSDEVOP_manage_pci_remove: struct.pack("<BB", 0, 8),
    abi.PHYSDEVOP_manage_pci_add_ext: struct.pack("<BBxxIIBBxx", 0, 8, 0, 0, 0, 0),
    abi.PHYSDEVOP_prepare_msix: struct.pack("<HBB", 0, 0, 8),
    abi.PHYSDEVOP_release_msix: struct.pack("<HBB", 0, 0, 8),
    abi.PHYSDEVOP_pci_mmcfg_reserved: struct.pack("<QHBBI", 0xE0000000, 0, 0, 255, 1),
    abi.PHYSDEVOP_setup_gsi: struct.pack("<iBBxx", 9, 1, 1),
    abi.PHYSDEVOP_dbgp_op: struct.pack("<BxHHBB", 1, 0, 0, 0, 0),
    abi.PHYSDEVOP_pci_device_add: struct.pack("<HBBI", 0, 0, 8, 0),
    abi.PHYSDEVOP_pci_device_remove: struct.pack("<HBB", 0, 0, 8),
    abi.PHYSDEVOP_pci_device_reset: struct.pack("<HBBI", 0, 0, 8, 0),
}


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def _op(arena, g, cmd: int, arg: bytes) -> int:
    g.write(g.buf(), arg.ljust(64, b"\0"))
    return arena.call(g, "physdev_op", cmd, g.buf())


def test_a_pv_domu_asking_for_the_hosts_hardware_is_eperm(arena):
    g = arena.pv
    for cmd, arg in HWDOM_OPS.items():
        assert _op(arena, g, cmd, arg) == EPERM, abi.errno_name(cmd)
    # physdev_map_pirq()/physdev_unmap_pirq(): XSM_DM_PRIV, for itself and for the victim alike
    for domid in (abi.DOMID_SELF, arena.victim.dom.domid):
        assert _op(arena, g, abi.PHYSDEVOP_map_pirq, struct.pack("<Hxxiii", domid, 1, 9, -1)) == EPERM
        assert _op(arena, g, abi.PHYSDEVOP_unmap_pirq, struct.pack("<Hxxi", domid, 9)) == EPERM
    assert _op(arena, g, abi.PHYSDEVOP_map_pirq, struct.pack("<Hxxiii", 0x7FEF, 1, 9, -1)) == -abi.ERRNO["ESRCH"]
    # setup_gsi checks the line before the permission; add_ext its flags
    assert _op(arena, g, abi.PHYSDEVOP_setup_gsi, struct.pack("<iBBxx", 4096, 1, 1)) == EINVAL
    assert _op(arena, g, abi.PHYSDEVOP_manage_pci_add_ext, struct.pack("<BBxxII", 0, 8, 2, 0)) == EINVAL
    # set_iopl is the guest's own (its virtual IOPL) and opens no port: a domU has no I/O capability
    assert _op(arena, g, abi.PHYSDEVOP_set_iopl, struct.pack("<I", 4)) == EINVAL
    assert _op(arena, g, abi.PHYSDEVOP_set_iopl, struct.pack("<I", 3)) == 0
    # an I/O bitmap pointing into Xen's range is refused (guest_handle_okay())
    assert _op(arena, g, abi.PHYSDEVOP_set_iobitmap, struct.pack("<QI", 0xFFFF_8000_0000_0000, 1024)) == EINVAL
    assert _op(arena, g, abi.PHYSDEVOP_set_iobitmap, struct.pack("<QI", g.buf(256), 65537)) == EINVAL
    # its own pirqs: no pirq is bound, so nothing to EOI; a status query past nr_pirqs is -EINVAL
    assert _op(arena, g, abi.PHYSDEVOP_eoi, struct.pack("<I", 9)) == EINVAL
    assert _op(arena, g, abi.PHYSDEVOP_irq_status_query, struct.pack("<II", 1 << 20, 0)) == EINVAL
    assert _op(arena, g, 0x7777, b"") == ENOSYS
    hypercalls = [e for e in events(arena.host, "hypercall", dom=g.dom.domid) if e.data["name"] == "physdev_op"]
    assert all(e.data["errno"] != "ENOSYS" or e.data["args"][0] == "30583" for e in hypercalls)
    assert g.dom.alive
    arena.untouched()


def test_the_pirq_eoi_page_must_be_the_callers_writable_ram_and_is_held_once(arena):
    """physdev.c PHYSDEVOP_pirq_eoi_gmfn: get_page_from_gfn() + get_page_type(PGT_writable_page),
    -EINVAL otherwise; a second registration is -EBUSY; the reference goes with the domain."""
    host, g = arena.host, arena.pv
    victim_mfn = arena.victim.dom.p2m[5]
    assert _op(arena, g, abi.PHYSDEVOP_pirq_eoi_gmfn_v2, struct.pack("<Q", victim_mfn)) == EINVAL
    assert _op(arena, g, abi.PHYSDEVOP_pirq_eoi_gmfn_v2, struct.pack("<Q", 1 << 60)) == EINVAL
    table = g.vcpu.guest_table                        # its own L4: a page table, never writable
    assert _op(arena, g, abi.PHYSDEVOP_pirq_eoi_gmfn_v1, struct.pack("<Q", table)) == EINVAL
    own = g.dom.p2m[0x300]
    assert _op(arena, g, abi.PHYSDEVOP_pirq_eoi_gmfn_v2, struct.pack("<Q", own)) == 0
    assert _op(arena, g, abi.PHYSDEVOP_pirq_eoi_gmfn_v2, struct.pack("<Q", own)) == EBUSY
    assert [h.mfn for h in host.frames.held() if "pirq EOI" in h.holder] == [own]
    # the held page cannot become a page table while Xen holds it
    assert host.mm.pv.get_page_type(own, abi.PGT_l1_page_table, g.dom.domid) != 0
    arena.untouched()
    arena.xl.destroy(g.dom.name)
    assert not [h for h in host.frames.held() if "pirq EOI" in h.holder]
    assert own in host.free_frames
    assert host.mm.pv.check_invariants() == []


def test_an_hvm_guest_gets_only_what_hvm_physdev_op_lets_through(arena):
    """hvm/hypercall.c hvm_physdev_op(): map/unmap_pirq reach do_physdev_op (and XSM's -EPERM);
    the pirq sub-ops need has_pirq() and are -ENOSYS; everything else is -ENOSYS."""
    h = arena.hvm
    for cmd, arg in HWDOM_OPS.items():
        assert _op(arena, h, cmd, arg) == ENOSYS
    for cmd in (abi.PHYSDEVOP_eoi, abi.PHYSDEVOP_irq_status_query, abi.PHYSDEVOP_get_free_pirq,
                abi.PHYSDEVOP_set_iopl, abi.PHYSDEVOP_pirq_eoi_gmfn_v2):
        assert _op(arena, h, cmd, bytes(16)) == ENOSYS
    assert _op(arena, h, abi.PHYSDEVOP_map_pirq, struct.pack("<Hxxiii", abi.DOMID_SELF, 1, 9, -1)) == EPERM
    assert _op(arena, h, abi.PHYSDEVOP_unmap_pirq, struct.pack("<Hxxi", arena.victim.dom.domid, 9)) == EPERM
    assert h.dom.alive
    arena.untouched()
