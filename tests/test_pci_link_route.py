"""PCI interrupt link routing: XEN_DMOP_set_pci_link_route and hvm_set_pci_link_route()
(xen/arch/x86/hvm/dm.c, xen/arch/x86/hvm/irq.c): who may set it, Xen's errno for bad
values, a link's asserted sources moving with its route, and the NE2000's INTA following."""

from __future__ import annotations

import struct

import pytest

from lab.xen import abi
from lab.xen.guestmem import copy_to_guest
from lab.xen.hypercall_table import dispatch_python
from lab.xen.vdev import irq as hvm_irq
from xen_helpers import ERRNO, GUESTS, HYPERCALL_NR, ScriptGuest, hypercall, last_event, small_host, write_cfg

NE2K_SLOT = 4                                   # 00:04.0, INTA: link (4 + 0) & 3 = 0
NE2K_LINK = 0
EINVAL, EPERM, ESRCH = -ERRNO["EINVAL"], -ERRNO["EPERM"], -ERRNO["ESRCH"]
#: public/errno.h
E2BIG, ENODATA = -7, -61


@pytest.fixture
def lab(tmp_path):
    """dom0, an HVM guest with an NE2000 (its device model up), and two script guests (HVM, PV)
    that call dm_op as guest code; built, not run."""
    host, xl = small_host(mem_mib=192)
    nic = xl.create(write_cfg(tmp_path, "nic", "hvm", GUESTS / "hvm_script.s", memory=16, hap=1,
                              vif=["model=ne2k_pci, type=ioemu, mac=00:16:3e:00:00:42"]), paused=True)
    callers = [ScriptGuest(host, xl.create(write_cfg(tmp_path, name, type_, GUESTS / f"{type_}_script.s",
                                                     memory=16), paused=True))
               for name, type_ in (("hvm-caller", "hvm"), ("pv-caller", "pv"))]
    return host, nic, callers


def ne2k(host, dom):
    return host.services.device_model.instance(dom).pci.functions[(NE2K_SLOT, 0)]


def set_route_as_qemu(host, dom, link: int, isa_irq: int) -> int:
    """QEMU in dom0 passing hvmloader's PIRQ write on (xendevicemodel_set_pci_link_route)."""
    return dispatch_python(host, host.domains[0].vcpus[0], HYPERCALL_NR["dm_op"],
                           [f"d{dom.domid}", "XEN_DMOP_set_pci_link_route", link, isa_irq],
                           lambda: hvm_irq.set_pci_link_route(host, dom, link, isa_irq))


def irr_bit(dom, isa_irq: int) -> bool:
    pic = dom.devices["vpic"] if isa_irq < 8 else dom.devices["vpic_io"].slave
    return bool(pic.irr >> (isa_irq & 7) & 1)


def test_hvmloaders_routing_is_where_a_domain_starts(lab):
    host, nic, _ = lab
    assert nic.devices["hvm_irq"].pci_link_route == [5, 10, 11, 5]


def test_a_new_route_moves_the_ne2000s_inta_to_the_new_isa_irq(lab):
    host, nic, _ = lab
    q, s = host.services.device_model.instance(nic), nic.devices["hvm_irq"]
    assert set_route_as_qemu(host, nic, NE2K_LINK, 10) == 0
    assert s.pci_link_route[NE2K_LINK] == 10
    assert host.dmesg[-1] == f"(XEN) arch/x86/hvm/irq.c:368: Dom{nic.domid} PCI link 0 changed 5 -> 10"
    seq = host.trace.seq
    q.set_pci_intx_level(ne2k(host, nic), True)               # the card raises INTA
    assert irr_bit(nic, 10) and not irr_bit(nic, 5)
    assert s.gsi_assert_count[10] == 1 and s.gsi_assert_count[5] == 0
    raised = [e for e in host.trace.iter_all() if e.seq >= seq and e.kind == "interrupt"]
    assert [e.data["vector"] for e in raised] == [nic.devices["vpic_io"].slave.vector_base + 2]
    assert "link 0" in raised[0].data["source"] and "ISA IRQ 10" in raised[0].data["source"]


def test_an_asserted_link_takes_its_count_from_the_old_irq_to_the_new(lab):
    host, nic, _ = lab
    q, s = host.services.device_model.instance(nic), nic.devices["hvm_irq"]
    hvm_irq.pci_intx_assert(host, nic, 3, 0)                   # 00:03.0 INTA: link 3, ISA IRQ 5 too
    q.set_pci_intx_level(ne2k(host, nic), True)               # link 0 on ISA IRQ 5: shared
    assert s.gsi_assert_count[5] == 2 and irr_bit(nic, 5)
    assert set_route_as_qemu(host, nic, NE2K_LINK, 11) == 0
    assert s.gsi_assert_count[5] == 1 and irr_bit(nic, 5)       # link 3 still holds IRQ 5 up
    assert s.gsi_assert_count[11] == 1 and irr_bit(nic, 11)
    assert set_route_as_qemu(host, nic, 3, 0) == 0              # link 3 disabled: IRQ 5 falls
    assert s.gsi_assert_count[5] == 0 and not irr_bit(nic, 5)
    q.set_pci_intx_level(ne2k(host, nic), False)              # the card lowers INTA on its new IRQ
    assert s.gsi_assert_count[11] == 0 and not irr_bit(nic, 11)
    assert s.pci_link_assert_count == [0, 0, 0, 1]              # 00:03.0 still asserted, routed nowhere
    hvm_irq.pci_intx_deassert(host, nic, 3, 0)
    assert not any(s.gsi_assert_count) and not any(s.pci_link_assert_count)


def test_bad_links_and_irqs_are_einval_and_change_nothing(lab):
    host, nic, _ = lab
    logged = host.dmesg.logged
    for link, isa_irq in ((4, 5), (255, 5), (0, 16), (0, 255)):
        assert hvm_irq.set_pci_link_route(host, nic, link, isa_irq) == EINVAL
    assert nic.devices["hvm_irq"].pci_link_route == [5, 10, 11, 5] and host.dmesg.logged == logged
    assert hvm_irq.set_pci_link_route(host, nic, 2, 11) == 0   # unchanged, and Xen still says so
    assert host.dmesg[-1].endswith(f"Dom{nic.domid} PCI link 2 changed 11 -> 11")


def test_the_callback_via_a_pci_intx_follows_the_links_route(lab):
    host, nic, _ = lab
    from lab.xen.hvm import _callback_line
    nic.callback_via_type, nic.callback_via = "pci_intx", (3, 0)   # link 3
    assert _callback_line(nic)[0] == 5
    hvm_irq.set_pci_link_route(host, nic, 3, 10)
    assert _callback_line(nic)[0] == 10
    hvm_irq.set_pci_link_route(host, nic, 3, 0)
    assert _callback_line(nic) == (None, "PCI INTx 00:03.0 INTA (link 3, routed to no ISA IRQ)")


def test_routes_are_saved_and_restored(lab):
    host, nic, _ = lab
    set_route_as_qemu(host, nic, 1, 7)
    snap = host.snapshot()
    set_route_as_qemu(host, nic, 1, 9)
    host.restore(snap)
    assert nic.devices["hvm_irq"].pci_link_route == [5, 7, 11, 5]


# ---------------------------------------------------------------- dm_op from guest code
def dm_op(host, g, domid: int, nr_bufs: int = 1, op: int = 10, pad: int = 0, body: bytes = b"\x00\x0a",
          size: int | None = None) -> int:
    """dm_op(domid, nr_bufs, bufs) with one xen_dm_op_buf pointing at a struct xen_dm_op."""
    bufs, h = g.buf(0), g.buf(64)
    payload = struct.pack("<II", op, pad) + body
    copy_to_guest(host, g.vcpu, bufs, struct.pack("<QQ", h, len(payload) if size is None else size))
    copy_to_guest(host, g.vcpu, h, payload)
    return hypercall(host, g.vcpu, "dm_op", domid, nr_bufs, bufs)


def test_a_guest_is_not_a_device_model(lab):
    host, nic, (hvm_caller, pv_caller) = lab
    for g in (hvm_caller, pv_caller):
        assert dm_op(host, g, nic.domid) == EPERM                  # XSM_DM_PRIV: not its device model
        assert last_event(host).data["detail"]["why"].startswith("not the target's device model")
        assert dm_op(host, g, g.dom.domid) == EPERM                # never on itself, PV or HVM
        assert dm_op(host, g, 0x7FEF) == ESRCH
        assert dm_op(host, g, nic.domid, nr_bufs=0) == ENODATA
        assert dm_op(host, g, nic.domid, nr_bufs=3) == E2BIG
    assert dm_op(host, hvm_caller, pv_caller.dom.domid) == EINVAL    # is_hvm_domain() comes before XSM
    assert nic.devices["hvm_irq"].pci_link_route == [5, 10, 11, 5]


def test_the_control_domains_dm_op_routes_a_link_and_checks_what_it_reads(lab):
    host, nic, (_, pv_caller) = lab
    pv_caller.dom.privileged = True             # a control domain's rights (XSM_DM_PRIV lets it)
    assert dm_op(host, pv_caller, nic.domid, body=bytes([1, 3])) == 0
    assert nic.devices["hvm_irq"].pci_link_route == [5, 3, 11, 5]
    ev = last_event(host)
    assert ev.data["name"] == "dm_op" and ev.data["args"] == [f"d{nic.domid}", "XEN_DMOP_set_pci_link_route", 1, 3]
    assert dm_op(host, pv_caller, nic.domid, body=bytes([4, 3])) == EINVAL
    assert dm_op(host, pv_caller, nic.domid, body=bytes([0, 16])) == EINVAL
    assert dm_op(host, pv_caller, nic.domid, pad=1) == EINVAL
    assert dm_op(host, pv_caller, nic.domid, size=9) == -ERRNO["EFAULT"]      # the body does not fit
    assert dm_op(host, pv_caller, nic.domid, size=4) == -ERRNO["EFAULT"]      # nor the header
    assert dm_op(host, pv_caller, nic.domid, op=99) == -ERRNO["EOPNOTSUPP"]
    assert nic.devices["hvm_irq"].pci_link_route == [5, 3, 11, 5]


def test_hvmop_set_pci_link_route_is_gone_from_do_hvm_op(lab):
    host, nic, (hvm_caller, _) = lab
    va = hvm_caller.buf(0)
    copy_to_guest(host, hvm_caller.vcpu, va, struct.pack("<HBB", nic.domid, 0, 10))
    assert hypercall(host, hvm_caller.vcpu, "hvm_op", abi.HVMOP_set_pci_link_route, va) == -ERRNO["ENOSYS"]
    assert last_event(host).data["detail"]["why"] == "a dm_op since Xen 4.9 (XEN_DMOP_*)"
    assert nic.devices["hvm_irq"].pci_link_route == [5, 10, 11, 5]
