"""The hypercall ABI as the running Xen reports it: numbers, errno values, refusals, handlers.

Numbers are checked in the trace events of guests that really made the calls;
success and refusal paths are driven through ``lab.xen.hypercall_table.dispatch``
(what Xen's entry code does with the registers) from a PV and an HVM guest,
with argument structures put in guest memory by ``copy_to_guest``.
"""

from __future__ import annotations

import struct

import pytest

from lab.xen.console import guest_console_write
from lab.xen.guestmem import copy_from_guest, copy_to_guest
from lab.xen.hypercall_table import dispatch_python
from xen_helpers import (DOMID_SELF, ERRNO, HYPERCALL_NR, SVM_EXIT, VMX_EXIT, default_run, domid, events, peek,
                         hypercall, last_event, script_guest, small_host, vendor_run)

NR = HYPERCALL_NR


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """dom0, a PV guest (kernel mode, its own tables) and an HVM guest (ring 0, paging off),
    built but not yet run: the state in which dispatch() is called below."""
    d = tmp_path_factory.mktemp("hc")
    host, xl = small_host(mem_mib=192)
    pv = script_guest(xl, d, "pv-a", "pv", memory=16)
    pv2 = script_guest(xl, d, "pv-b", "pv", memory=16)
    hvm = script_guest(xl, d, "hvm-a", "hvm", memory=16)
    return host, xl, pv, pv2, hvm


def put(host, g, offset: int, data: bytes) -> int:
    va = g.buf(offset)
    copy_to_guest(host, g.vcpu, va, data)
    return va


def get(host, g, va: int, n: int) -> bytes:
    return copy_from_guest(host, g.vcpu, va, n)


def check_event(host, name, nr, ret, errno, dom=None):
    ev = last_event(host)
    assert (ev.data["name"], ev.data["nr"], ev.data["ret"], ev.data["errno"]) == (name, nr, ret, errno)
    if dom is not None:
        assert ev.dom == dom
    return ev


# ---------------------------------------------------------------- numbers in the trace
@pytest.mark.machine
def test_hypercall_numbers_in_the_trace_are_xens():
    host, _ = default_run()
    calls = events(host, "hypercall")
    seen = {}
    for ev in calls:
        name = ev.data["name"]
        assert ev.data["nr"] == NR[name], name
        seen.setdefault(name, ev)
    # The PV kernel's and the toolstack's calls, by Xen's numbers.
    for name in ("mmu_update", "mmuext_op", "update_va_mapping", "set_trap_table", "stack_switch",
                 "callback_op", "iret", "sched_op", "event_channel_op", "xen_version", "domctl"):
        assert name in seen, name
    assert seen["mmu_update"].data["nr"] == 1
    assert seen["iret"].data["nr"] == 23
    assert seen["domctl"].dom == 0                         # xl create, as dom0
    guests = (domid(host, "pv-guest"), domid(host, "hvm-guest"))
    assert all(ev.data["errno"] is None and ev.data["ret"] >= 0 for ev in calls if ev.dom in guests)


@pytest.mark.machine
def test_vmx_exit_reasons_in_the_trace_are_intels():
    host, _ = default_run()
    pv, hvm = domid(host, "pv-guest"), domid(host, "hvm-guest")
    exits = events(host, "vmexit", dom=hvm)
    by_reason = {}
    for ev in exits:
        assert ev.data["nr"] == VMX_EXIT[ev.data["reason"]], ev.data
        by_reason.setdefault(ev.data["reason"], ev)
    assert {"VMCALL", "IO_INSTRUCTION", "CPUID", "MSR_WRITE"} <= set(by_reason)
    assert by_reason["VMCALL"].data["nr"] == 18
    assert by_reason["IO_INSTRUCTION"].data["nr"] == 30
    assert by_reason["CPUID"].data["nr"] == 10
    # The VMCALL exit is followed by the hypercall it carried.
    nxt = next(e for e in host.trace.since(by_reason["VMCALL"].seq + 1) if e.dom == hvm and e.kind == "hypercall")
    assert (nxt.data["name"], nxt.data["nr"]) == ("xen_version", 17)
    assert events(host, "vmexit", dom=pv) == []              # a PV guest never exits


@pytest.mark.machine
def test_svm_exit_codes_on_an_amd_host():
    host, _ = vendor_run("amd")
    hvm = host.domain_by_name("hvm-guest")
    codes = {ev.data["nr"] for ev in events(host, "vmexit", dom=hvm.domid)}
    assert {SVM_EXIT["VMMCALL"], SVM_EXIT["IOIO"], SVM_EXIT["CPUID"], SVM_EXIT["MSR"]} <= codes
    assert VMX_EXIT["VMCALL"] not in codes and VMX_EXIT["IO_INSTRUCTION"] not in codes
    vmmcall = events(host, "vmexit", dom=hvm.domid, nr=0x81)
    assert vmmcall and all(e.data["nr"] == 0x81 for e in vmmcall)
    assert events(host, "hypercall", dom=hvm.domid, name="xen_version")[0].data["ret"] == (4 << 16) | 23


def test_errno_values_are_xens():
    from lab.xen import abi
    for name, value in ERRNO.items():
        assert abi.ERRNO[name] == value
        assert abi.errno_name(-value) == name


# ---------------------------------------------------------------- refusals before any handler
@pytest.mark.parametrize("nr", [11, 31, 38, 43, 47, 56, 60, 63, 64, 200, 1 << 40])
@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_unknown_numbers_are_enosys(env, who, nr):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    assert hypercall(host, g.vcpu, nr, 1, 2, 3) == -38
    ev = last_event(host)
    assert (ev.data["nr"], ev.data["ret"], ev.data["errno"], ev.dom) == (nr, -38, "ENOSYS", g.dom.domid)


@pytest.mark.parametrize("name", ["set_trap_table", "mmu_update", "stack_switch", "set_callbacks",
                                  "update_va_mapping", "iret", "callback_op", "set_segment_base", "nmi_op",
                                  "update_va_mapping_otherdomain", "event_channel_op_compat", "kexec_op"])
@pytest.mark.machine
def test_pv_only_hypercalls_are_enosys_from_hvm(env, name):
    host, _, _, _, hvm = env
    assert hypercall(host, hvm.vcpu, name, hvm.buf(), 1, 0, DOMID_SELF) == -38
    check_event(host, name, NR[name], -38, "ENOSYS", hvm.dom.domid)


@pytest.mark.parametrize("name", ["domctl", "sysctl", "platform_op"])
@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_control_domain_hypercalls_are_eperm_from_a_domu(env, who, name):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    # A domctl that would pause the other guest, were the caller dom0.
    va = put(host, g, 0, struct.pack("<IIH", 3, 0x15, pv.dom.domid if g is hvm else hvm.dom.domid))
    assert hypercall(host, g.vcpu, name, va) == -1
    check_event(host, name, NR[name], -1, "EPERM", g.dom.domid)
    assert pv.dom.pause_count == 0 and hvm.dom.pause_count == 0


@pytest.mark.machine
def test_domctl_from_dom0_through_the_toolstack(env):
    host, xl, _, pv2, _ = env
    xl.pause(pv2.dom.name)
    ev = check_event(host, "domctl", 36, 0, None, 0)
    assert "pausedomain" in ev.data["args"]
    assert pv2.dom.pause_count == 1
    xl.unpause(pv2.dom.name)
    check_event(host, "domctl", 36, 0, None, 0)
    assert pv2.dom.pause_count == 0


@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_console_io_write_is_eperm_from_a_domu(env, who):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    va = put(host, g, 0, b"hello from a domU\n")
    before = (g.dom.console_output, host.dmesg.logged)
    assert hypercall(host, g.vcpu, "console_io", 0, 18, va) == -1          # CONSOLEIO_write
    check_event(host, "console_io", 18, -1, "EPERM", g.dom.domid)
    assert (g.dom.console_output, host.dmesg.logged) == before


@pytest.mark.machine
def test_console_io_write_is_accepted_from_dom0(env):
    host, _, _, _, _ = env
    dom0 = host.domains[0]
    dispatch_python(host, dom0.vcpus[0], 18, ["CONSOLEIO_write", 11],
                    lambda: guest_console_write(host, dom0, "dom0 says hi\n"))
    check_event(host, "console_io", 18, 0, None, 0)
    assert "(d0) dom0 says hi" in host.dmesg


@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_bad_guest_pointers_are_efault(env, who):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    # PV: nothing is mapped at 0x1000 or in the non-canonical hole; HVM (paging off):
    # 1 GiB is far beyond the guest's 16 MiB.
    bad = [0x1000, 0x0000_8000_0000_0000] if who == "pv" else [0x4000_0000, 0xFFFF_FFFF_F000]
    for ptr in bad:
        calls = [("xen_version", (1, ptr)), ("event_channel_op", (4, ptr)), ("sched_op", (2, ptr)),
                 ("memory_op", (3, ptr)), ("multicall", (ptr, 1)), ("vcpu_op", (4, 0, ptr))]
        if who == "pv":
            calls += [("set_trap_table", (ptr,)), ("mmu_update", (ptr, 1, 0, DOMID_SELF)),
                      ("mmuext_op", (ptr, 1, 0, DOMID_SELF)), ("callback_op", (0, ptr))]
        for name, args in calls:
            assert hypercall(host, g.vcpu, name, *args) == -14, (name, hex(ptr))
            check_event(host, name, NR[name], -14, "EFAULT", g.dom.domid)
    assert g.dom.alive


@pytest.mark.machine
def test_writing_through_a_read_only_mapping_is_efault(env):
    """Xen writes guest memory with the guest's rights: a page table is mapped read-only."""
    host, _, pv, _, _ = env
    from lab.hw.boot import DIRECT_MAP
    dom = pv.dom
    l4 = pv.vcpu.guest_table
    pfn = next(p for p, m in enumerate(dom.p2m) if m == l4)
    va = DIRECT_MAP + (pfn << 12)
    before = host.mem.read(l4 << 12, 4096)
    assert hypercall(host, pv.vcpu, "xen_version", 1, va) == -14            # XENVER_extraversion
    assert host.mem.read(l4 << 12, 4096) == before
    assert hypercall(host, pv.vcpu, "xen_version", 1, pv.buf(64)) == 0
    assert get(host, pv, pv.buf(64), 5) == b"-dev\0"


# ---------------------------------------------------------------- information
@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_xen_version(env, who):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    assert hypercall(host, g.vcpu, "xen_version", 0, 0) == (4 << 16) | 23
    check_event(host, "xen_version", 17, (4 << 16) | 23, None, g.dom.domid)
    assert hypercall(host, g.vcpu, "xen_version", 7, 0) == 4096                 # XENVER_pagesize
    va = g.buf(256)
    assert hypercall(host, g.vcpu, "xen_version", 3, va) == 0                   # XENVER_capabilities
    assert get(host, g, va, 14) == b"xen-3.0-x86_64"
    copy_to_guest(host, g.vcpu, g.buf(2048), struct.pack("<II", 0, 0))
    assert hypercall(host, g.vcpu, "xen_version", 6, g.buf(2048)) == 0          # XENVER_get_features
    feats = struct.unpack("<I", get(host, g, g.buf(2052), 4))[0]
    # xen/common/kernel.c: translated guests get writable_page_tables (0) and
    # auto_translated_physmap (2); PV gets preserve_ad (5), highmem_assist (6) and
    # gnttab_map_avail_bits (7); HVM gets hvm_callback_vector (8) and hvm_safe_pvclock (9).
    common = (1 << 13) | (1 << 18) | (1 << 19) | (1 << 20)
    if who == "pv":
        assert feats == common | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 17)
    else:
        assert feats == common | (1 << 0) | (1 << 2) | (1 << 8) | (1 << 9) | (1 << 16)
    copy_to_guest(host, g.vcpu, g.buf(2048), struct.pack("<II", 1, 0))
    assert hypercall(host, g.vcpu, "xen_version", 6, g.buf(2048)) == -22        # submap_idx 1: EINVAL
    assert hypercall(host, g.vcpu, "xen_version", 0x7777, 0) == -38


@pytest.mark.machine
def test_memory_op_reservations_and_machphys_mapping(env):
    host, _, pv, pv2, hvm = env
    for g in (pv, hvm):
        va = put(host, g, 512, struct.pack("<H", DOMID_SELF))
        assert hypercall(host, g.vcpu, "memory_op", 3, va) == g.dom.mem_pages    # current_reservation
        assert hypercall(host, g.vcpu, "memory_op", 4, va) == g.dom.max_pages    # maximum_reservation
        va = put(host, g, 512, struct.pack("<H", g.dom.domid))
        assert hypercall(host, g.vcpu, "memory_op", 3, va) == g.dom.mem_pages
        # Another domain's reservation: the control domain only.
        va = put(host, g, 512, struct.pack("<H", pv2.dom.domid))
        assert hypercall(host, g.vcpu, "memory_op", 3, va) == -1
        check_event(host, "memory_op", 12, -1, "EPERM", g.dom.domid)
        assert hypercall(host, g.vcpu, "memory_op", 0x3F, va) == -38
    # XENMEM_machphys_mapping (12): the read-only M2P for PV, -ENOSYS for HVM.
    va = pv.buf(1024)
    assert hypercall(host, pv.vcpu, "memory_op", 12, va) == 0
    v_start, v_end, max_mfn = struct.unpack("<QQQ", get(host, pv, va, 24))
    # A domU is told MACH2PHYS_NR_ENTRIES - 1 (x86_64/mm.c); only dom0 gets the host's max_page - 1.
    assert (v_start, v_end, max_mfn) == (0xFFFF_8000_0000_0000, 0xFFFF_8040_0000_0000, (0x40_0000_0000 >> 3) - 1)
    assert hypercall(host, hvm.vcpu, "memory_op", 12, hvm.buf(1024)) == -38
    check_event(host, "memory_op", 12, -38, "ENOSYS", hvm.dom.domid)


# ---------------------------------------------------------------- PV traps, stacks, callbacks
@pytest.mark.machine
def test_set_trap_table(env):
    host, _, pv, _, _ = env
    dom = pv.dom
    table = struct.pack("<BBH4xQ", 14, 0, 0xE030, 0xFFFF_8880_0020_0100) + \
        struct.pack("<BBH4xQ", 0x80, 3, 0xE030, 0xFFFF_8880_0020_0200) + bytes(16)
    va = put(host, pv, 0, table)
    assert hypercall(host, pv.vcpu, "set_trap_table", va) == 0
    ev = check_event(host, "set_trap_table", 0, 0, None, dom.domid)
    assert "14->0xffff888000200100" in ev.data["args"]
    assert dom.trap_table[14] == (0, 0xE030, 0xFFFF_8880_0020_0100)
    assert dom.trap_table[0x80] == (3, 0xE030, 0xFFFF_8880_0020_0200)
    assert hypercall(host, pv.vcpu, "set_trap_table", 0) == 0                # NULL: clear the table
    assert dom.trap_table == {}
    # A handler that is not canonical is refused; the entries before it stay (as in Xen).
    table = struct.pack("<BBH4xQ", 6, 0, 0xE030, 0xFFFF_8880_0020_0300) + \
        struct.pack("<BBH4xQ", 13, 0, 0xE030, 0x0000_8000_0000_0000) + \
        struct.pack("<BBH4xQ", 14, 0, 0xE030, 0xFFFF_8880_0020_0100) + bytes(16)
    va = put(host, pv, 0, table)
    assert hypercall(host, pv.vcpu, "set_trap_table", va) == -22
    check_event(host, "set_trap_table", 0, -22, "EINVAL", dom.domid)
    assert dom.trap_table == {6: (0, 0xE030, 0xFFFF_8880_0020_0300)}
    assert hypercall(host, pv.vcpu, "set_trap_table", 0) == 0


@pytest.mark.machine
def test_stack_switch_and_callbacks(env):
    host, _, pv, _, _ = env
    v, dom = pv.vcpu, pv.dom
    assert hypercall(host, v, "stack_switch", 0xE02B, 0xFFFF_8880_0034_0000) == 0
    check_event(host, "stack_switch", 3, 0, None, dom.domid)
    assert (v.kernel_ss, v.kernel_sp) == (0xE02B, 0xFFFF_8880_0034_0000)
    # callback_op(CALLBACKOP_register, {type, flags, address})
    for typ, key in ((2, "syscall"), (0, "event"), (1, "failsafe")):
        va = put(host, pv, 0, struct.pack("<HH4xQ", typ, 0, 0xFFFF_8880_0020_0000 + typ))
        assert hypercall(host, v, "callback_op", 0, va) == 0
        assert dom.callbacks[key] == 0xFFFF_8880_0020_0000 + typ
    check_event(host, "callback_op", 30, 0, None, dom.domid)
    va = put(host, pv, 0, struct.pack("<HH4xQ", 3, 0, 0x1234))                # sysenter_deprecated
    assert hypercall(host, v, "callback_op", 0, va) == -22
    assert hypercall(host, v, "callback_op", 9, va) == -38                    # unknown command
    va = put(host, pv, 0, struct.pack("<HH4xQ", 1, 0, 0))
    assert hypercall(host, v, "callback_op", 1, va) == 0                      # unregister failsafe
    assert "failsafe" not in dom.callbacks
    va = put(host, pv, 0, struct.pack("<HH4xQ", 2, 0, 0x0000_8000_0000_1000))  # not canonical
    assert hypercall(host, v, "callback_op", 0, va) == -22
    assert dom.callbacks["syscall"] == 0xFFFF_8880_0020_0002
    # set_callbacks(event, failsafe, syscall): a non-canonical one is skipped, as Xen does
    assert hypercall(host, v, "set_callbacks", 0xFFFF_8880_0020_0010, 0x8000_0000_0000_0000,
                     0xFFFF_8880_0020_0030) == 0
    check_event(host, "set_callbacks", 4, 0, None, dom.domid)
    assert dom.callbacks["event"] == 0xFFFF_8880_0020_0010 and "failsafe" not in dom.callbacks
    assert dom.callbacks["syscall"] == 0xFFFF_8880_0020_0030


# ---------------------------------------------------------------- scheduling, timers, vCPUs
@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_sched_op_yield_and_bad_commands(env, who):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    assert hypercall(host, g.vcpu, "sched_op", 0, 0) == 0                    # SCHEDOP_yield
    check_event(host, "sched_op", 29, 0, None, g.dom.domid)
    # SCHEDOP_shutdown_code with a reason Xen does not name: kept as a u8, not refused
    # (do_sched_op, common/sched/core.c); the domain runs on.
    va = put(host, g, 0, struct.pack("<I", 0x1_06))
    assert hypercall(host, g.vcpu, "sched_op", 5, va) == 0
    assert g.dom.extra["shutdown_code"] == 6
    assert hypercall(host, g.vcpu, "sched_op", 99, 0) == -38
    assert g.dom.alive


@pytest.mark.machine
def test_sched_op_shutdown_with_an_unnamed_reason_is_not_refused(tmp_path):
    host, xl = small_host()
    g = script_guest(xl, tmp_path, "odd-reason", "pv", memory=16)
    va = put(host, g, 0, struct.pack("<I", 9))
    assert hypercall(host, g.vcpu, "sched_op", 2, va) == 0
    assert g.dom.state == "shutdown" and g.dom.shutdown_reason == "code 9"
    # getdomaininfo carries the code in flags bits 16-23 (XEN_DOMINF_shutdownshift), and
    # xl list prints '?' for a code beyond its letters (xl_info.c).
    from lab.xen.hypercalls import getdomaininfo
    flags = struct.unpack_from("<I", getdomaininfo(host, g.dom), 4)[0]
    assert flags & (1 << 2) and flags >> 16 & 0xFF == 9
    line = next(ln for ln in xl.list().splitlines() if ln.startswith("odd-reason"))
    assert line.split()[4] == "---s?-"


@pytest.mark.machine
def test_sched_op_block_blocks_until_an_event(env):
    host, _, _, pv2, _ = env
    v = pv2.vcpu
    assert hypercall(host, v, "sched_op", 1, 0) == 0                         # SCHEDOP_block
    assert v.runstate == "blocked"
    host.wake(v, "test")
    assert v.runstate == "runnable"


@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_set_timer_op(env, who):
    host, _, pv, _, hvm = env
    v = (pv if who == "pv" else hvm).vcpu
    assert hypercall(host, v, "set_timer_op", 5_000_000) == 0                # 5 ms, absolute
    assert v.timer_deadline == 5_000_000 * host.cpu_hz // 1_000_000_000
    check_event(host, "set_timer_op", 15, 0, None, v.domain.domid)
    assert hypercall(host, v, "set_timer_op", 0) == 0
    assert v.timer_deadline is None


@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_vcpu_op(env, who):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    v = g.vcpu
    assert hypercall(host, v, "vcpu_op", 3, 0, 0) == 1                       # VCPUOP_is_up
    assert hypercall(host, v, "vcpu_op", 3, 1, 0) == -2                      # no vCPU 1: ENOENT
    check_event(host, "vcpu_op", 24, -2, "ENOENT", g.dom.domid)
    va = g.buf(3000)
    assert hypercall(host, v, "vcpu_op", 4, 0, va) == 0                      # get_runstate_info
    state = struct.unpack("<i", get(host, g, va, 4))[0]
    assert state == {"running": 0, "runnable": 1, "blocked": 2, "offline": 3}[v.runstate]
    va = put(host, g, 3000, struct.pack("<Q", 1000))                          # 1 us: too short
    assert hypercall(host, v, "vcpu_op", 6, 0, va) == -22
    va = put(host, g, 3000, struct.pack("<Q", 10_000_000))                    # 10 ms periodic
    assert hypercall(host, v, "vcpu_op", 6, 0, va) == 0
    assert v.periodic_period == 10_000_000 * host.cpu_hz // 1_000_000_000
    assert hypercall(host, v, "vcpu_op", 7, 0, 0) == 0                       # stop_periodic_timer
    assert v.periodic_period == 0
    assert hypercall(host, v, "vcpu_op", 9, 0, 0) == 0                       # stop_singleshot_timer
    assert v.timer_deadline is None
    assert hypercall(host, v, "vcpu_op", 99, 0, 0) == -38


@pytest.mark.parametrize("who", ["pv", "hvm"])
@pytest.mark.machine
def test_vm_assist(env, who):
    host, _, pv, _, hvm = env
    g = pv if who == "pv" else hvm
    assert hypercall(host, g.vcpu, "vm_assist", 0, 2) == 0                   # enable writable_pagetables
    assert g.dom.vm_assist & 4
    assert hypercall(host, g.vcpu, "vm_assist", 1, 2) == 0
    assert not g.dom.vm_assist & 4
    assert hypercall(host, g.vcpu, "vm_assist", 7, 2) == -22
    check_event(host, "vm_assist", 21, -22, "EINVAL", g.dom.domid)


# ---------------------------------------------------------------- multicall
@pytest.mark.machine
def test_multicall_runs_each_entry_and_stores_each_result(env):
    host, _, pv, _, hvm = env
    for g in (pv, hvm):
        entries = [struct.pack("<QQ6Q", 17, 0, 0, 0, 0, 0, 0, 0),          # xen_version(XENVER_version)
                   struct.pack("<QQ6Q", 31, 0, 0, 0, 0, 0, 0, 0),          # xenoprof_op: gone
                   struct.pack("<QQ6Q", 13, 0, 0, 0, 0, 0, 0, 0),          # multicall inside multicall
                   struct.pack("<QQ6Q", 1, 0, 0, 0, 0, 0, 0, 0)]           # mmu_update
        va = put(host, g, 4096, b"".join(entries))
        seq = host.trace.seq
        assert hypercall(host, g.vcpu, "multicall", va, 4) == 0
        check_event(host, "multicall", 13, 0, None, g.dom.domid)
        results = [struct.unpack("<q", get(host, g, va + 64 * i + 8, 8))[0] for i in range(4)]
        mmu = -38 if g is hvm else 0                                        # zero requests is fine for PV
        assert results == [(4 << 16) | 23, -38, -22, mmu]
        inner = [e for e in host.trace.iter_all() if e.seq >= seq and e.kind == "hypercall"]
        assert [e.data["name"] for e in inner] == ["xen_version", "xenoprof_op", "mmu_update", "multicall"]


# ---------------------------------------------------------------- HVM restrictions
@pytest.mark.machine
def test_mmuext_op_from_hvm_only_pins_and_unpins(env):
    host, _, _, _, hvm = env
    dom = hvm.dom
    mfn = dom.p2m[0x400]
    before = host.mm.pv.describe(mfn)
    ops = struct.pack("<I4xQQ", 0, 0x400, 0) + struct.pack("<I4xQQ", 4, 0x400, 0)   # pin L1, unpin
    va = put(host, hvm, 0, ops)
    assert hypercall(host, hvm.vcpu, "mmuext_op", va, 2, hvm.buf(100), DOMID_SELF) == 0
    assert struct.unpack("<Q", get(host, hvm, hvm.buf(100), 8))[0] == 2
    # A translated guest's frames never take PV page types.
    assert host.mm.pv.describe(mfn) == before
    for cmd in (5, 6, 7, 10, 15, 16):            # NEW_BASEPTR, TLB flushes, INVLPG, NEW_USER_BASEPTR, CLEAR_PAGE
        va = put(host, hvm, 0, struct.pack("<I4xQQ", 3, 0x400, 0) + struct.pack("<I4xQQ", cmd, 0x400, 0))
        assert hypercall(host, hvm.vcpu, "mmuext_op", va, 2, hvm.buf(100), DOMID_SELF) == -95
        check_event(host, "mmuext_op", 26, -95, "EOPNOTSUPP", dom.domid)
        assert struct.unpack("<Q", get(host, hvm, hvm.buf(100), 8))[0] == 1
    assert host.mm.pv.check_invariants() == []


@pytest.mark.machine
def test_hvm_op_params(env):
    host, _, pv, _, hvm = env
    va = put(host, hvm, 0, struct.pack("<H2xIQ", DOMID_SELF, 2, 0x12))        # set STORE_EVTCHN
    assert hypercall(host, hvm.vcpu, "hvm_op", 0, va) == 0
    va = put(host, hvm, 0, struct.pack("<H2xIQ", DOMID_SELF, 2, 0))
    assert hypercall(host, hvm.vcpu, "hvm_op", 1, va) == 0                    # get it back
    assert struct.unpack("<Q", get(host, hvm, va + 8, 8))[0] == 0x12
    # STORE_PFN is the toolstack's: hvm_allow_set_param() refuses it to the guest
    va = put(host, hvm, 0, struct.pack("<H2xIQ", DOMID_SELF, 1, 0x1234))
    assert hypercall(host, hvm.vcpu, "hvm_op", 0, va) == -1
    va = put(host, hvm, 0, struct.pack("<H2xIQ", pv.dom.domid, 2, 0x99))       # another domain's
    assert hypercall(host, hvm.vcpu, "hvm_op", 0, va) == -1
    check_event(host, "hvm_op", 34, -1, "EPERM", hvm.dom.domid)
    # nor may another domU set this guest's parameter: it keeps the value it set itself
    va = put(host, pv, 0, struct.pack("<H2xIQ", hvm.dom.domid, 2, 0x99))
    assert hypercall(host, pv.vcpu, "hvm_op", 0, va) == -1
    check_event(host, "hvm_op", 34, -1, "EPERM", pv.dom.domid)
    assert hvm.dom.hvm_params[2] == 0x12
    va = put(host, hvm, 0, struct.pack("<H2xIQ", 0x7FF4, 2, 0))
    assert hypercall(host, hvm.vcpu, "hvm_op", 0, va) == -3                   # DOMID_INVALID: ESRCH


# ---------------------------------------------------------------- event channels
def _alloc_unbound(host, g, dom: int, remote: int) -> tuple[int, int]:
    va = put(host, g, 0, struct.pack("<HHI", dom, remote, 0))
    rc = hypercall(host, g.vcpu, "event_channel_op", 6, va)
    return rc, struct.unpack("<I", get(host, g, va + 4, 4))[0]


def _status(host, g, port: int, dom: int = DOMID_SELF) -> int:
    va = put(host, g, 64, struct.pack("<HxxIII", dom, port, 0xEEEE, 0))
    rc = hypercall(host, g.vcpu, "event_channel_op", 5, va)
    assert rc in (0, -1)
    return struct.unpack("<I", get(host, g, va + 8, 4))[0] if rc == 0 else rc


@pytest.mark.machine
def test_event_channel_interdomain_lifecycle(env):
    host, _, pv, _, hvm = env
    ev = host.evtchn
    # The PV guest offers a port to the HVM guest.
    rc, port = _alloc_unbound(host, pv, DOMID_SELF, hvm.dom.domid)
    assert rc == 0 and port >= 1
    check_event(host, "event_channel_op", 32, 0, None, pv.dom.domid)
    assert _status(host, pv, port) == 1                                     # EVTCHNSTAT_unbound
    # The HVM guest binds to it.
    va = put(host, hvm, 0, struct.pack("<HxxII", pv.dom.domid, port, 0))
    assert hypercall(host, hvm.vcpu, "event_channel_op", 0, va) == 0        # bind_interdomain
    local = struct.unpack("<I", get(host, hvm, va + 8, 4))[0]
    assert local >= 1
    assert _status(host, pv, port) == 2 and _status(host, hvm, local) == 2  # interdomain
    # A send from the HVM end sets the pending bit in the PV guest's shared_info.
    base = pv.dom.shared_info_mfn << 12
    word, bit = divmod(port, 64)
    assert not host.mem.read_u64(base + 2048 + 8 * word) >> bit & 1
    va = put(host, hvm, 0, struct.pack("<I", local))
    assert hypercall(host, hvm.vcpu, "event_channel_op", 4, va) == 0        # send
    assert host.mem.read_u64(base + 2048 + 8 * word) >> bit & 1
    # Binding the same port again fails: it is no longer unbound.
    va = put(host, hvm, 0, struct.pack("<HxxII", pv.dom.domid, port, 0))
    assert hypercall(host, hvm.vcpu, "event_channel_op", 0, va) == -22
    # close() sets the other end back to unbound.
    va = put(host, hvm, 0, struct.pack("<I", local))
    assert hypercall(host, hvm.vcpu, "event_channel_op", 3, va) == 0
    assert _status(host, hvm, local) == 0 and _status(host, pv, port) == 1
    assert hypercall(host, hvm.vcpu, "event_channel_op", 4, va) == -22      # send on a closed port
    assert hypercall(host, hvm.vcpu, "event_channel_op", 3, va) == -22      # close it twice
    assert ev.ports[pv.dom.domid][port].remote_dom == hvm.dom.domid


@pytest.mark.machine
def test_event_channel_refusals(env):
    host, _, pv, pv2, hvm = env
    # alloc_unbound in another domain's table: the control domain only.
    rc, _ = _alloc_unbound(host, pv, pv2.dom.domid, pv.dom.domid)
    assert rc == -1
    check_event(host, "event_channel_op", 32, -1, "EPERM", pv.dom.domid)
    # binding to a port offered to somebody else
    rc, port = _alloc_unbound(host, pv2, DOMID_SELF, hvm.dom.domid)
    assert rc == 0
    va = put(host, pv, 0, struct.pack("<HxxII", pv2.dom.domid, port, 0))
    assert hypercall(host, pv.vcpu, "event_channel_op", 0, va) == -22
    # ... or in a domain that does not exist
    va = put(host, pv, 0, struct.pack("<HxxII", 0x7F00, port, 0))
    assert hypercall(host, pv.vcpu, "event_channel_op", 0, va) == -3
    # another domain's port status: control domain only
    assert _status(host, pv, port, pv2.dom.domid) == -1
    # VIRQs: a bad number, a vCPU that does not exist, a second binding
    for virq, vcpu, err in ((24, 0, -22), (99, 0, -22), (0, 5, -2), (2, 1, -22)):
        va = put(host, pv, 0, struct.pack("<III", virq, vcpu, 0))
        assert hypercall(host, pv.vcpu, "event_channel_op", 1, va) == err, (virq, vcpu)
    va = put(host, pv, 0, struct.pack("<III", 1, 0, 0))                      # VIRQ_DEBUG on vCPU 0
    assert hypercall(host, pv.vcpu, "event_channel_op", 1, va) == 0
    assert hypercall(host, pv.vcpu, "event_channel_op", 1, va) == -17        # EEXIST
    # unknown sub-op
    assert hypercall(host, pv.vcpu, "event_channel_op", 77, va) == -38
    check_event(host, "event_channel_op", 32, -38, "ENOSYS", pv.dom.domid)


@pytest.mark.machine
def test_event_channel_unmask(env):
    host, _, _, pv2, _ = env
    dom = pv2.dom
    rc, port = _alloc_unbound(host, pv2, DOMID_SELF, DOMID_SELF)
    assert rc == 0
    base = dom.shared_info_mfn << 12
    word, bit = divmod(port, 64)
    host.mem.write_u64(base + 2560 + 8 * word, host.mem.read_u64(base + 2560 + 8 * word) | 1 << bit)
    va = put(host, pv2, 0, struct.pack("<I", port))
    assert hypercall(host, pv2.vcpu, "event_channel_op", 9, va) == 0
    assert not host.mem.read_u64(base + 2560 + 8 * word) >> bit & 1
    for bad in (4096, 0x10000, 0xFFFF_FFFF):
        va = put(host, pv2, 0, struct.pack("<I", bad))
        assert hypercall(host, pv2.vcpu, "event_channel_op", 9, va) == -22
    assert host.mm.pv.check_invariants() == []


@pytest.mark.machine
def test_console_io_read_hands_the_control_domain_what_was_typed_at_xens_console(env):
    host, _, pv, _, _ = env
    va = put(host, pv, 0, bytes(64))
    host.type_at_console("xl list\n")
    assert hypercall(host, pv.vcpu, "console_io", 1, 64, va) == -1            # a domU: EPERM
    pv.dom.privileged = True                      # as a control domain with a CPU would
    try:
        assert hypercall(host, pv.vcpu, "console_io", 1, 3, va) == 3          # CONSOLEIO_read, count 3
        assert hypercall(host, pv.vcpu, "console_io", 1, 64, va + 3) == 5     # the rest
        assert peek(host, pv.dom, va, 8) == b"xl list\n"
        assert hypercall(host, pv.vcpu, "console_io", 1, 64, va) == 0         # nothing more
    finally:
        pv.dom.privileged = False


def test_each_subsystem_registers_its_handlers_in_the_table_when_the_host_is_imported():
    import lab.xen.host  # noqa: F401 (imports every subsystem once, which fills the table)
    from lab.xen.hypercall_table import X86_HYPERCALLS as table
    owner = {name: table.handlers[nr].__module__ for name, nr in NR.items() if nr in table.handlers}
    assert owner["grant_table_op"] == "lab.xen.grant"
    assert owner["physdev_op"] == "lab.xen.physdev"
    assert owner["iret"] == "lab.xen.pv"
    assert owner["set_gdt"] == owner["update_descriptor"] == "lab.xen.descriptors"
    assert owner["mmu_update"] == "lab.xen.hypercalls"
    assert owner["memory_op"] == "lab.xen.memory" and owner["xen_version"] == "lab.xen.version"
    # the argument spec travels with the handler: what a trace event shows of the registers
    assert [table.nargs[NR[n]] for n in ("iret", "set_trap_table", "grant_table_op", "mmu_update")] == [0, 1, 3, 4]


def test_a_second_handler_for_one_hypercall_is_refused():
    from lab.xen.hypercall_table import X86_HYPERCALLS as table
    before = dict(table.handlers)
    with pytest.raises(ValueError, match="grant_table_op has a handler already: lab.xen.grant"):
        table.handler("grant_table_op")(lambda host, v, args, info: 0)
    assert table.handlers == before
