"""The wire layout of every event-channel and grant-table sub-op, held against Xen's headers.

The C declarations below are written out from xen/include/public/event_channel.h and
grant_table.h (x86-64: domid_t u16, evtchn_port_t, grant_ref_t and grant_handle_t u32,
xen_pfn_t and guest handles 8 bytes); ctypes lays them out with C's alignment rules, and
each ``Layout`` in lab/xen/abi must agree with it field by field. The sub-op tables the
handlers dispatch through must name a layout for every sub-op they implement.
"""

from __future__ import annotations

import ctypes as C

import pytest

import lab.xen.host  # noqa: F401 (imports every subsystem, which fills the sub-op tables)
from lab.xen import abi
from lab.xen.abi._layout import Layout
from lab.xen.grant import GNTTAB_OPS
from lab.xen.hypercall_table import SubOps
from lab.xen.hypercalls import EVTCHN_OPS

domid_t, evtchn_port_t, grant_ref_t, grant_handle_t = C.c_uint16, C.c_uint32, C.c_uint32, C.c_uint32


class evtchn_alloc_unbound(C.Structure):
    _fields_ = [("dom", domid_t), ("remote_dom", domid_t), ("port", evtchn_port_t)]


class evtchn_bind_interdomain(C.Structure):
    _fields_ = [("remote_dom", domid_t), ("remote_port", evtchn_port_t), ("local_port", evtchn_port_t)]


class evtchn_bind_virq(C.Structure):
    _fields_ = [("virq", C.c_uint32), ("vcpu", C.c_uint32), ("port", evtchn_port_t)]


class evtchn_bind_ipi(C.Structure):
    _fields_ = [("vcpu", C.c_uint32), ("port", evtchn_port_t)]


class evtchn_close(C.Structure):
    _fields_ = [("port", evtchn_port_t)]


class evtchn_send(C.Structure):
    _fields_ = [("port", evtchn_port_t)]


class _status_unbound(C.Structure):
    _fields_ = [("dom", domid_t)]


class _status_interdomain(C.Structure):
    _fields_ = [("dom", domid_t), ("port", evtchn_port_t)]


class _status_u(C.Union):
    _fields_ = [("unbound", _status_unbound), ("interdomain", _status_interdomain), ("pirq", C.c_uint32),
                ("virq", C.c_uint32)]


class evtchn_status(C.Structure):
    _fields_ = [("dom", domid_t), ("port", evtchn_port_t), ("status", C.c_uint32), ("vcpu", C.c_uint32),
                ("u", _status_u)]


class evtchn_unmask(C.Structure):
    _fields_ = [("port", evtchn_port_t)]


class evtchn_reset(C.Structure):
    _fields_ = [("dom", domid_t)]


class gnttab_map_grant_ref(C.Structure):
    _fields_ = [("host_addr", C.c_uint64), ("flags", C.c_uint32), ("ref", grant_ref_t), ("dom", domid_t),
                ("status", C.c_int16), ("handle", grant_handle_t), ("dev_bus_addr", C.c_uint64)]


class gnttab_unmap_grant_ref(C.Structure):
    _fields_ = [("host_addr", C.c_uint64), ("dev_bus_addr", C.c_uint64), ("handle", grant_handle_t),
                ("status", C.c_int16)]


class gnttab_setup_table(C.Structure):
    _fields_ = [("dom", domid_t), ("nr_frames", C.c_uint32), ("status", C.c_int16), ("frame_list", C.c_uint64)]


class _copy_u(C.Union):
    _fields_ = [("ref", grant_ref_t), ("gmfn", C.c_uint64)]


class gnttab_copy_ptr(C.Structure):
    _fields_ = [("u", _copy_u), ("domid", domid_t), ("offset", C.c_uint16)]


class gnttab_copy(C.Structure):
    _fields_ = [("source", gnttab_copy_ptr), ("dest", gnttab_copy_ptr), ("len", C.c_uint16), ("flags", C.c_uint16),
                ("status", C.c_int16)]


class gnttab_query_size(C.Structure):
    _fields_ = [("dom", domid_t), ("nr_frames", C.c_uint32), ("max_nr_frames", C.c_uint32), ("status", C.c_int16)]


HEADERS = {cls.__name__: cls for cls in (
    evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_bind_ipi, evtchn_close, evtchn_send,
    evtchn_status, evtchn_unmask, evtchn_reset, gnttab_map_grant_ref, gnttab_unmap_grant_ref, gnttab_setup_table,
    gnttab_copy, gnttab_query_size)}


def c_fields(cls, base: int = 0, prefix: str = "") -> dict[str, tuple[int, int]]:
    """Every field's (offset, size); one level of nested structures as ``outer.inner``."""
    out = {}
    for name, typ in cls._fields_:
        desc = getattr(cls, name)
        if prefix == "" and issubclass(typ, C.Structure) and cls is gnttab_copy:
            out.update(c_fields(typ, base + desc.offset, f"{name}."))
        else:
            out[prefix + name] = (base + desc.offset, desc.size)
    return out


LAYOUTS = [(f"EVTCHNOP_{abi.EVTCHNOP_NAMES[cmd]}", lay) for cmd, lay in abi.EVTCHNOP_LAYOUTS.items()] + \
          [(f"GNTTABOP_{abi.GNTTABOP_NAMES[cmd]}", lay) for cmd, lay in abi.GNTTABOP_LAYOUTS.items()]


@pytest.mark.parametrize("subop, layout", LAYOUTS, ids=[name for name, _ in LAYOUTS])
def test_each_wire_layout_is_the_header_s(subop, layout):
    cls = HEADERS[layout.c_name]
    assert layout.size == C.sizeof(cls), f"sizeof(struct {layout.c_name})"
    assert layout.fields == c_fields(cls), f"the fields of struct {layout.c_name}"


def test_the_sub_op_tables_implement_what_they_have_layouts_for():
    assert {abi.EVTCHNOP_NAMES[c] for c in EVTCHN_OPS.handlers} == {
        "bind_interdomain", "bind_virq", "close", "send", "status", "alloc_unbound", "bind_ipi", "unmask", "reset",
        "reset_cont"}
    assert {abi.GNTTABOP_NAMES[c] for c in GNTTAB_OPS.handlers} == {
        "map_grant_ref", "unmap_grant_ref", "setup_table", "copy", "query_size"}
    for table in (EVTCHN_OPS, GNTTAB_OPS):
        assert set(table.handlers) == set(table.layouts)


def test_arms_event_channel_sub_ops_go_through_the_same_layouts():
    from lab.xen.arm.hypercalls import ARM_EVTCHN_OPS
    assert {abi.EVTCHNOP_NAMES[c] for c in ARM_EVTCHN_OPS.handlers} == {"send", "alloc_unbound", "close", "unmask"}
    assert all(ARM_EVTCHN_OPS.layout(c) is abi.EVTCHNOP_LAYOUTS[c] for c in ARM_EVTCHN_OPS.handlers)


def test_a_sub_op_without_a_layout_cannot_be_registered():
    table = SubOps("event_channel_op", {abi.EVTCHNOP_send: Layout("evtchn_send", 4, {"port": (0, 4)})})
    with pytest.raises(ValueError, match="sub-op 2 has no wire layout"):
        table.op(abi.EVTCHNOP_bind_pirq)(lambda *a: 0)
    table.op(abi.EVTCHNOP_send)(lambda *a: 0)
    with pytest.raises(ValueError, match="sub-op 4 has a handler already"):
        table.op(abi.EVTCHNOP_send)(lambda *a: 0)
