"""GNTTABOP_setup_table on Arm, as xen/common/grant_table.c answers a translated guest.

gnttab_setup_table() (common/grant_table.c:2079) copies out, per frame, gnttab_shared_gfn()
(line 2145), which on Arm is page_get_xenheap_gfn() (arch/arm/include/asm/grant_table.h:62):
the gfn where the guest placed the frame with XENMAPSPACE_grant_table, else INVALID_GFN.
Its refusals: count != 1 -EINVAL; no such domain GNTST_bad_domain (line 2101); another
domain's table without privilege GNTST_permission_denied (line 2107); more than
max_grant_frames GNTST_general_error (line 2116); a frame_list it cannot write
GNTST_bad_virt_addr (line 2152).
"""

from __future__ import annotations

import struct

from lab.dom0.arm.toolstack import boot_arm_host
from lab.xen import abi
from lab.xen.arm.gnttab_setup import INVALID_GFN
from lab.xen.arm.host import ArmHostConfig
from test_arm_xen import small_guest

GNTTAB_GFN = 0x40E00
OPS = 0x40900000
LISTS = OPS + 0x400
GRANT_OP = abi.hypercall_nr("grant_table_op")


def call(off: int, count: int, save: int, base: int = OPS) -> str:
    return (f"    mov x0, #{abi.GNTTABOP_setup_table}\n    movz x1, #{base >> 16:#x}, lsl #16\n"
            f"    add x1, x1, #{off}\n    mov x2, #{count}\n    mov x16, #{GRANT_OP}\n    hvc #0xea1\n"
            f"    mov x{save}, x0\n")


def op(dom: int, nr_frames: int, frame_list: int) -> bytes:
    return struct.pack("<HxxIhxxxxxxQ", dom, nr_frames, 0x7777, frame_list)


def status(host, dom, off: int) -> int:
    return struct.unpack("<h", host.read_guest(dom, OPS + off + 8, 2))[0]


def frame_list(host, dom, at: int, n: int) -> list[int]:
    return list(struct.unpack(f"<{n}Q", host.read_guest(dom, at, 8 * n)))


def test_setup_table_answers_the_gfns_the_guest_placed_its_frames_at(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    g = small_guest(tmp_path, xl, "g", call(0, 1, 19) + "    mov x20, #0\n" + call(0x20, 1, 21))
    assert host.add_to_physmap(g, abi.XENMAPSPACE_grant_table, 0, GNTTAB_GFN, {}) == 0
    host.write_guest(g, OPS, op(abi.DOMID_SELF, 3, LISTS))
    host.write_guest(g, OPS + 0x20, op(g.domid, 3, LISTS + 0x100))
    host.run(10)                                            # the first call, not yet the second
    cpu = g.vcpus[0].cpu
    assert status(host, g, 0x20) == 0x7777
    assert cpu.x[19] == 0 and status(host, g, 0) == abi.GNTST_okay
    # frame 0 where the guest put it; frames 1 and 2 exist now (the table grew) but are nowhere
    assert frame_list(host, g, LISTS, 3) == [GNTTAB_GFN, INVALID_GFN, INVALID_GFN]
    assert sorted(g.extra["gnttab_frames"]) == [0, 1, 2]
    assert host.add_to_physmap(g, abi.XENMAPSPACE_grant_table, 2, GNTTAB_GFN + 2, {}) == 0
    host.run(200)
    assert cpu.x[21] == 0 and status(host, g, 0x20) == abi.GNTST_okay
    assert frame_list(host, g, LISTS + 0x100, 3) == [GNTTAB_GFN, INVALID_GFN, GNTTAB_GFN + 2]
    ev = [e for e in host.trace.iter_all() if e.kind == "hypercall" and e.data["name"] == "grant_table_op"]
    assert ev[-1].data["detail"]["frames"] == [f"{GNTTAB_GFN:#x}", "INVALID_GFN", f"{GNTTAB_GFN + 2:#x}"]


def test_setup_table_refuses_as_common_code_does(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    other = small_guest(tmp_path, xl, "other", "1: wfi\n    b 1b\n")
    g = small_guest(tmp_path, xl, "g", call(0, 2, 19) + call(0x20, 1, 20) + call(0x40, 1, 21)
                    + call(0x60, 1, 22) + call(0x80, 1, 23) + call(0, 1, 24, base=0x80000000))
    host.write_guest(g, OPS, op(abi.DOMID_SELF, 1, LISTS))                      # count 2
    host.write_guest(g, OPS + 0x20, op(99, 1, LISTS))                           # no domain 99
    host.write_guest(g, OPS + 0x40, op(other.domid, 1, LISTS))                  # not ours
    host.write_guest(g, OPS + 0x60, op(abi.DOMID_SELF, g.max_grant_frames + 1, LISTS))
    host.write_guest(g, OPS + 0x80, op(abi.DOMID_SELF, 1, 0x80000000))          # frame_list outside RAM
    host.run(400)
    cpu = g.vcpus[0].cpu
    assert g.alive
    assert cpu.x[19] == (-abi.ERRNO["EINVAL"]) & (2**64 - 1) and status(host, g, 0) == 0x7777
    assert [cpu.x[n] for n in (20, 21, 22, 23)] == [0, 0, 0, 0]
    assert [status(host, g, off) for off in (0x20, 0x40, 0x60, 0x80)] == [
        abi.GNTST_bad_domain, abi.GNTST_permission_denied, abi.GNTST_general_error, abi.GNTST_bad_virt_addr]
    assert cpu.x[24] == (-abi.ERRNO["EFAULT"]) & (2**64 - 1)                    # the op itself unreadable
    assert "is limited to" in "\n".join(host.dmesg)
    assert "gnttab_frames" not in other.extra                                   # nothing grew elsewhere
