"""Grant map, unmap and copy on Arm: through hvc #0xEA1, into the mapping domain's stage 2.

The granting side is set up as a guest does it (grant frame 0 placed with
XENMAPSPACE_grant_table, an entry written into it); the mapping side is a
small guest that makes the hypercall with ``hvc`` and then touches the IPA.
Hostile cases: refs past the table, entries for another domain, read-only
entries mapped writable, frames the granter does not own, IPAs in use, device
maps, bad handles, foreign frames in a copy, a granter that dies while mapped.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from lab.dom0.arm.toolstack import boot_arm_host
from lab.xen import abi
from lab.xen.abi.grant_table import (GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map,
                                     GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access, GTF_reading,
                                     GTF_readonly, GTF_writing)
from lab.xen.arm.host import ArmHostConfig
from test_arm_xen import small_guest

GNTTAB_GFN = 0x40E00          # where the granter puts its grant frame 0
DATA_IPA = 0x40800000         # the granter's page it grants
OPS_IPA = 0x40900000          # where a guest's batch of ops sits
MAP_IPA = 0x50000000          # a free IPA in the mapper's stage 2
GRANT_OP = abi.hypercall_nr("grant_table_op")


def two_guests(tmp_path, mapper_body: str, *, ref_flags: int = GTF_permit_access, grant_to: int | None = None,
               frame: int = DATA_IPA >> 12, ref: int = 8):
    """A host with a granter (d1, its grant entry ``ref`` made) and a mapper (d2) running ``mapper_body``."""
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    granter = small_guest(tmp_path, xl, "granter", "1: wfi\n    b 1b\n")
    mapper = small_guest(tmp_path, xl, "mapper", mapper_body)
    assert host.add_to_physmap(granter, abi.XENMAPSPACE_grant_table, 0, GNTTAB_GFN, {}) == 0
    host.write_guest(granter, (GNTTAB_GFN << 12) + 8 * ref,
                     struct.pack("<HHI", ref_flags, mapper.domid if grant_to is None else grant_to, frame))
    host.write_guest(granter, DATA_IPA, b"granted!")
    return host, xl, granter, mapper


def map_op(host_addr: int, flags: int, ref: int, dom: int) -> bytes:
    return struct.pack("<QIIHhIQ", host_addr, flags, ref, dom, 0, 0, 0)


def put_ops(host, dom, data: bytes) -> None:
    host.write_guest(dom, OPS_IPA, data)


def map_status(host, dom, n: int = 0) -> tuple[int, int, int]:
    return struct.unpack("<hIQ", host.read_guest(dom, OPS_IPA + 32 * n + 18, 14))


def gnttab_call(cmd: int, count: int = 1) -> str:
    return (f"    mov x0, #{cmd}\n    movz x1, #{OPS_IPA >> 16:#x}, lsl #16\n    mov x2, #{count}\n"
            f"    mov x16, #{GRANT_OP}\n    hvc #0xea1\n")


MAP_THEN_TOUCH = (gnttab_call(abi.GNTTABOP_map_grant_ref) + "    mov x19, x0\n"
                  f"    movz x3, #{MAP_IPA >> 16:#x}, lsl #16\n    ldr x20, [x3]\n"
                  "    movz x4, #0x4242\n    str x4, [x3, #8]\n    mov x21, #1\n")


def test_a_guest_maps_a_grant_into_its_stage_2_and_both_see_the_page(tmp_path):
    host, _, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH)
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    host.run(400)
    cpu = mapper.vcpus[0].cpu
    assert cpu.x[19] == 0 and cpu.x[21] == 1
    assert cpu.x[20] == int.from_bytes(b"granted!", "little")
    assert host.read_guest(granter, DATA_IPA + 8, 8) == (0x4242).to_bytes(8, "little")
    status, handle, bus = map_status(host, mapper)
    mfn = host.p2m(granter).lookup(DATA_IPA >> 12)
    assert (status, handle, bus) == (0, 0, mfn << 12)
    assert host.p2m(mapper).entries[MAP_IPA >> 12] == (mfn, "rw")      # p2m_grant_map_rw: never executable
    flags = int.from_bytes(host.read_guest(granter, GNTTAB_GFN << 12 | 64, 2), "little")
    assert flags == GTF_permit_access | GTF_reading | GTF_writing
    ev = next(e for e in host.trace.iter_all() if e.kind == "grant")
    assert (ev.data["op"], ev.data["status"], ev.data["frame"], ev.dom) == ("map_grant_ref", "GNTST_okay", mfn, 2)
    call = next(e for e in host.trace.iter_all() if e.kind == "hypercall" and e.data["name"] == "grant_table_op")
    assert call.data["detail"]["esr"] == "0x5a000ea1" and call.data["args"][0] == "map_grant_ref"


def test_unmap_removes_the_stage_2_entry_and_a_later_touch_aborts(tmp_path):
    body = (MAP_THEN_TOUCH + gnttab_call(abi.GNTTABOP_unmap_grant_ref, 1).replace(f"#{OPS_IPA >> 16:#x}, lsl #16",
                                                                                  f"#{(OPS_IPA >> 16) + 1:#x}, lsl #16")
            + "    mov x22, x0\n    ldr x23, [x3]\n")
    host, _, granter, mapper = two_guests(tmp_path, body)
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    host.write_guest(mapper, OPS_IPA + 0x10000, struct.pack("<QQIh", MAP_IPA, 0, 0, 1))
    host.run(600)
    assert mapper.vcpus[0].cpu.x[22] == 0
    assert host.read_guest(mapper, OPS_IPA + 0x10000 + 20, 2) == b"\0\0"        # GNTST_okay
    assert MAP_IPA >> 12 not in host.p2m(mapper).entries
    flags = int.from_bytes(host.read_guest(granter, GNTTAB_GFN << 12 | 64, 2), "little")
    assert flags == GTF_permit_access                                    # reading and writing cleared
    faults = [e for e in host.trace.iter_all() if e.kind == "pagetable" and e.data["op"] == "stage2 fault"]
    assert faults and faults[0].data["addr"] == MAP_IPA and mapper.state == "crashed"      # its own vector
    assert granter.alive


@pytest.mark.parametrize("case, flags, ref, entry, status", [
    ("ref past the table", GNTMAP_host_map, 512, {}, "GNTST_bad_gntref"),
    ("no host or device map", 0, 8, {}, "GNTST_bad_gntref"),
    ("a device map", GNTMAP_host_map | GNTMAP_device_map, 8, {}, "GNTST_general_error"),
    ("granted to another domain", GNTMAP_host_map, 8, {"grant_to": 7}, "GNTST_general_error"),
    ("a read-only entry mapped writable", GNTMAP_host_map, 8,
     {"ref_flags": GTF_permit_access | GTF_readonly}, "GNTST_general_error"),
    ("an entry never made", GNTMAP_host_map, 9, {}, "GNTST_general_error"),
    ("a frame outside the granter's memory", GNTMAP_host_map, 8, {"frame": 0x10000}, "GNTST_bad_page"),
    ("an IPA of the granter with nothing behind it", GNTMAP_host_map, 8, {"frame": 0x38000}, "GNTST_bad_page"),
])
def test_hostile_map_requests_are_refused_with_xen_s_status(tmp_path, case, flags, ref, entry, status):
    host, _, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH, **entry)
    put_ops(host, mapper, map_op(MAP_IPA, flags, ref, granter.domid))
    host.run(400)
    assert abi.GNTST_NAMES[map_status(host, mapper)[0]] == status, case
    assert MAP_IPA >> 12 not in host.p2m(mapper).entries
    assert host.grant_tables.refs == {}
    assert mapper.state == "crashed"              # its touch of the unmapped IPA: its own stage-2 abort
    assert granter.alive


def test_a_mapping_over_ram_or_outside_the_ipa_space_is_a_general_error(tmp_path):
    host, _, granter, mapper = two_guests(tmp_path, gnttab_call(abi.GNTTABOP_map_grant_ref, 3) + "    mov x19, x0\n")
    put_ops(host, mapper, map_op(0x40100000, GNTMAP_host_map, 8, granter.domid)
            + map_op(1 << 48, GNTMAP_host_map, 8, granter.domid)
            + map_op(MAP_IPA + 0x10, GNTMAP_host_map, 8, granter.domid))
    ram = host.p2m(mapper).lookup(0x40100)
    host.run(300)
    assert [abi.GNTST_NAMES[map_status(host, mapper, n)[0]] for n in range(3)] == ["GNTST_general_error"] * 3
    assert host.p2m(mapper).lookup(0x40100) == ram and host.grant_tables.refs == {}
    assert any("is in use" in line for line in host.dmesg)


def test_a_read_only_grant_is_read_only_in_stage_2(tmp_path):
    host, _, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH, ref_flags=GTF_permit_access | GTF_readonly)
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map | GNTMAP_readonly, 8, granter.domid))
    host.run(400)
    cpu = mapper.vcpus[0].cpu
    assert cpu.x[19] == 0 and cpu.x[20] == int.from_bytes(b"granted!", "little")
    assert mapper.state == "crashed" and "permission fault" in mapper.crash_reason      # its store
    assert host.read_guest(granter, DATA_IPA + 8, 8) == bytes(8)
    assert granter.alive


def test_bad_handles_and_the_wrong_ipa_do_not_unmap(tmp_path):
    host, _, granter, mapper = two_guests(tmp_path, gnttab_call(abi.GNTTABOP_map_grant_ref) + "    mov x19, x0\n"
                                          + gnttab_call(abi.GNTTABOP_unmap_grant_ref, 2).replace(
                                              f"#{OPS_IPA >> 16:#x}, lsl #16", f"#{(OPS_IPA >> 16) + 1:#x}, lsl #16")
                                          + "    mov x20, x0\n")
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    host.write_guest(mapper, OPS_IPA + 0x10000, struct.pack("<QQIh", MAP_IPA, 0, 99, 1) + bytes(2)
                     + struct.pack("<QQIh", 0x40100000, 0, 0, 1))
    host.run(400)
    statuses = [struct.unpack("<h", host.read_guest(mapper, OPS_IPA + 0x10000 + 24 * n + 20, 2))[0] for n in range(2)]
    assert [abi.GNTST_NAMES[s] for s in statuses] == ["GNTST_bad_handle", "GNTST_general_error"]
    mfn = host.p2m(granter).lookup(DATA_IPA >> 12)
    assert host.p2m(mapper).lookup(MAP_IPA >> 12) == mfn and host.grant_tables.refs == {mfn: 1}
    assert host.p2m(mapper).lookup(0x40100) is not None        # its RAM stays


def test_a_granter_destroyed_while_mapped_leaves_the_frame_with_the_mapper(tmp_path):
    host, xl, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH + "1: wfi\n    b 1b\n")
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    host.run(400)
    mfn = host.p2m(granter).lookup(DATA_IPA >> 12)
    xl.destroy("granter")
    assert mfn not in host.free_frames and host.mem.read(mfn << 12, 8) == b"granted!"
    small_guest(tmp_path, xl, "next", "1: wfi\n    b 1b\n")       # new guests never get that frame
    assert mfn not in host.domain_by_name("next").extra["frames"]
    xl.destroy("mapper")                                           # the last holder goes: the frame is freed
    assert mfn in host.free_frames and host.grant_tables.refs == {} and host.mem.read(mfn << 12, 8) == bytes(8)


def test_a_granter_cannot_give_a_mapped_frame_back_to_xen(tmp_path):
    host, _, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH + "1: wfi\n    b 1b\n")
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    host.run(400)
    mfn = host.p2m(granter).lookup(DATA_IPA >> 12)
    # the granter puts shared_info over the granted page: the RAM frame leaves it, but stays held
    assert host.add_to_physmap(granter, abi.XENMAPSPACE_shared_info, 0, DATA_IPA >> 12, {}) == 0
    assert mfn not in host.free_frames and host.p2m(mapper).lookup(MAP_IPA >> 12) == mfn
    # and the mapper may not put anything over its grant mapping
    info: dict = {}
    assert host.add_to_physmap(mapper, abi.XENMAPSPACE_shared_info, 0, MAP_IPA >> 12, info) == -abi.ERRNO["EBUSY"]
    assert "grant mapping" in info["why"]


def copy_op(src: tuple[int, int, int], dst: tuple[int, int, int], length: int, flags: int) -> bytes:
    return struct.pack("<QHH4xQHH4xHHh2x", src[0], src[1], src[2], dst[0], dst[1], dst[2], length, flags, 0)


def copy_status(host, dom, n: int) -> str:
    return abi.GNTST_NAMES[struct.unpack("<h", host.read_guest(dom, OPS_IPA + 40 * n + 36, 2))[0]]


def test_grant_copy_on_arm_and_its_refusals(tmp_path):
    host, _, granter, mapper = two_guests(tmp_path, gnttab_call(abi.GNTTABOP_copy, 5) + "    mov x19, x0\n")
    d = granter.domid
    SELF = abi.DOMID_SELF
    dst_gfn = 0x40A00
    put_ops(host, mapper, copy_op((8, d, 0), (dst_gfn, SELF, 0), 8, GNTCOPY_source_gref)        # ok: read the grant
            + copy_op((dst_gfn, SELF, 0), (8, d, 100), 8, GNTCOPY_dest_gref)                # ok: write into it
            + copy_op((DATA_IPA >> 12, d, 0), (dst_gfn, SELF, 0), 8, 0)                     # a foreign gfn
            + copy_op((8, d, 4090), (dst_gfn, SELF, 0), 8, GNTCOPY_source_gref)             # past the page
            + copy_op((0x38000, SELF, 0), (dst_gfn, SELF, 0), 8, 0))                       # not its memory
    host.run(300)
    assert mapper.vcpus[0].cpu.x[19] == 0
    assert [copy_status(host, mapper, n) for n in range(5)] == [
        "GNTST_okay", "GNTST_okay", "GNTST_permission_denied", "GNTST_bad_copy_arg", "GNTST_bad_page"]
    assert host.read_guest(mapper, dst_gfn << 12, 8) == b"granted!"
    assert host.read_guest(granter, DATA_IPA + 100, 8) == b"granted!"
    assert host.grant_tables.refs == {}


def test_a_huge_batch_is_continued_not_run_in_one_go(tmp_path):
    """count 2**31 - 1 over the guest's memory: each hvc does at most a slice and is re-entered
    with the rest in x0-x2 (the PC back on the hvc), so the guest is preemptible."""
    host, _, granter, mapper = two_guests(tmp_path, "    mov x0, #5\n    movz x1, #0x4090, lsl #16\n"
                                          "    movz x2, #0x7fff, lsl #16\n    movk x2, #0xffff\n"
                                          f"    mov x16, #{GRANT_OP}\n    hvc #0xea1\n    mov x19, x0\n")
    host.run(20)
    calls = [e for e in host.trace.iter_all() if e.kind == "hypercall" and e.data["name"] == "grant_table_op"]
    assert len(calls) > 3 and all(c.data["errno"] == "ERESTART" for c in calls[:3])
    cpu = mapper.vcpus[0].cpu
    assert cpu.x[0] == abi.GNTTABOP_copy and cpu.x[2] < 0x7FFFFFFF and mapper.alive


def test_xentrace_on_arm_records_grant_maps_and_the_scheduler_not_hypercalls(tmp_path):
    """Xen on Arm traces only common code's points: TRC_MEM_PAGE_GRANT_MAP/UNMAP with the
    granter's domid (grant_table.c) and the scheduler's; traps.c has no hypercall trace."""
    from lab.session.xentrace import attach_xentrace, read_xentrace
    from lab.xen.abi.trace import TRC_MEM_PAGE_GRANT_MAP, TRC_PV_HYPERCALL_V2, TRC_SCHED_SWITCH
    host, _, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH + "1: wfi\n    b 1b\n")
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    path = tmp_path / "arm.xt"
    writer = attach_xentrace(host, str(path))
    host.run(400)
    writer.close()
    records = read_xentrace(path.read_bytes())
    maps = [r for r in records if r.event == TRC_MEM_PAGE_GRANT_MAP]
    assert len(maps) == 1 and maps[0].extra == (granter.domid,)
    assert any(r.event == TRC_SCHED_SWITCH for r in records)
    assert not any(r.event & 0xFFFFF == TRC_PV_HYPERCALL_V2 & 0xFFFFF for r in records)


def test_the_io_view_shows_an_arm_guest_s_grants_and_who_maps_them(tmp_path):
    from lab.session.io_state import describe
    host, _, granter, mapper = two_guests(tmp_path, MAP_THEN_TOUCH + "1: wfi\n    b 1b\n")
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    host.run(400)
    text = describe(host, granter.domid)
    assert f"ref 8    d{mapper.domid} frame {DATA_IPA >> 12:#x} permit_access|reading|writing, mapped by d{mapper.domid} (rw)" in text


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from([abi.GNTTABOP_map_grant_ref, abi.GNTTABOP_unmap_grant_ref, abi.GNTTABOP_copy]),
                          st.binary(min_size=40, max_size=40)), min_size=1, max_size=6))
def test_random_grant_batches_never_reach_another_domain_s_frames(tmp_path_factory, batches):
    """Random map/unmap/copy entries from the mapper (with one real map among them): the host never
    raises, a bystander's memory is untouched, and no frame is both free and mapped or held."""
    tmp = tmp_path_factory.mktemp("gfuzz")
    body = "".join(gnttab_call(cmd, 1).replace(f"#{OPS_IPA >> 16:#x}, lsl #16", f"#{(OPS_IPA >> 16) + n:#x}, lsl #16")
                   for n, (cmd, _) in enumerate(batches))
    host, xl, granter, mapper = two_guests(tmp, gnttab_call(abi.GNTTABOP_map_grant_ref) + body + "1: wfi\n    b 1b\n")
    bystander = small_guest(tmp, xl, "bystander", "1: wfi\n    b 1b\n")
    host.write_guest(bystander, DATA_IPA, b"mine!!!!")
    put_ops(host, mapper, map_op(MAP_IPA, GNTMAP_host_map, 8, granter.domid))
    for n, (_, raw) in enumerate(batches):
        host.write_guest(mapper, OPS_IPA + 0x10000 * (n + 1), raw)
    before = {mfn: host.mem.read(mfn << 12, 4096) for mfn in bystander.extra["frames"]}
    host.run(3000)
    assert {mfn: host.mem.read(mfn << 12, 4096) for mfn in bystander.extra["frames"]} == before
    free = set(host.free_frames)
    for dom in (granter, mapper):
        for gfn, (mfn, _rights) in host.p2m(dom).entries.items():
            assert mfn not in free, (dom.name, hex(gfn))
    assert not set(host.grant_tables.refs) & free
    assert bystander.alive
