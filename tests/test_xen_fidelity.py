"""Smaller behaviours held against Xen's source: each test names the file it follows.

The guests are the scripted test kernels (tests/data/guests), built but not run, so
each hypercall or bounce is made by hand through the paths guest code takes.
"""

from __future__ import annotations

import struct

import pytest

from lab.hw import flags as F
from lab.xen import pv
from lab.xen.evtchn import SHINFO_MASK, SHINFO_PENDING
from lab.xen.vcpu_info import VCPU_INFO_SIZE
from lab.xen.guestmem import copy_from_guest, copy_to_guest, read_u64
from xen_helpers import hypercall, last_event, script_guest, small_host

XEN_DOMCTL_INTERFACE_VERSION = 0x18                    # public/domctl.h (master)


@pytest.fixture
def env(tmp_path):
    host, xl = small_host(mem_mib=160)
    g = script_guest(xl, tmp_path, "pv-a", "pv", memory=16)
    h = script_guest(xl, tmp_path, "hvm-a", "hvm", memory=16)
    g.vcpu.cpu.regs[4] = g.buf(12288)                    # a stack inside the script's buffer
    return host, xl, g, h


def upcall_mask(host, g) -> int:
    return host.mem.read((g.dom.shared_info_mfn << 12) + g.vcpu.id * 64 + 1, 1)[0]


def set_mask(host, g, masked: int) -> None:
    host.mem.write((g.dom.shared_info_mfn << 12) + g.vcpu.id * 64 + 1, bytes([masked]))


def frame(host, g) -> list[int]:
    """The bounce frame at the guest's stack: rcx, r11, rip, cs, rflags, rsp, ss."""
    sp = g.vcpu.cpu.regs[4]
    return list(struct.unpack("<7Q", copy_from_guest(host, g.vcpu, sp, 56)))


# ---------------------------------------------------------------- the bounce frame
@pytest.mark.parametrize("masked", [0, 1])
def test_bounce_frame_carries_the_saved_upcall_mask(env, masked):
    # x86_64/entry.S create_bounce_frame: CS bits 32-39 = saved_upcall_mask,
    # RFLAGS.IF = !saved_upcall_mask, IOPL cleared; TBF_INTERRUPT then masks events.
    host, _, g, _ = env
    set_mask(host, g, masked)
    cpu = g.vcpu.cpu
    cpu.rflags |= F.IF | F.IOPL_MASK
    pv.bounce(host, g.vcpu, 0xFFFF_8880_0020_1000, error_code=None, rip=0xFFFF_8880_0020_2000, what="test",
              disable_events=True)
    rcx, r11, rip, cs, rflags, rsp, ss = frame(host, g)
    assert rip == 0xFFFF_8880_0020_2000
    assert cs & 0xFFFF == 0xE030 and cs >> 32 == masked
    assert bool(rflags & F.IF) == (not masked) and not rflags & F.IOPL_MASK
    assert upcall_mask(host, g) == 1
    assert cpu.rip == 0xFFFF_8880_0020_1000
    # HYPERVISOR_iret restores the mask from the frame's IF (pv/iret.c): a bounce taken
    # with events masked returns with them still masked.
    sp = cpu.regs[4] + 16                                 # past rcx, r11: the iret_context is rax, r11, rcx, flags, ...
    ctx = struct.pack("<9Q", 0, r11, rcx, 0, rip, cs, rflags, rsp, ss)
    cpu.regs[4] = sp - 72 + 56
    copy_to_guest(host, g.vcpu, cpu.regs[4], ctx)
    hypercall(host, g.vcpu, "iret")
    assert upcall_mask(host, g) == masked


def test_callback_mask_events_is_honoured_on_the_syscall_bounce(env):
    # pv/callback.c: CALLBACKF_mask_events on the syscall callback sets
    # VGCF_syscall_disables_events, so the bounce masks events; without it, it does not.
    host, _, g, _ = env
    v = g.vcpu
    va = g.buf(512)
    for flags, expect in ((1, 1), (0, 0)):
        copy_to_guest(host, v, va, struct.pack("<HH4xQ", 2, flags, 0xFFFF_8880_0020_3000))   # CALLBACKTYPE_syscall
        assert hypercall(host, v, "callback_op", 0, va) == 0
        assert g.dom.callback_flags["syscall"] == flags
        set_mask(host, g, 0)
        v.kernel_mode = False                              # as if in guest user mode
        v.kernel_sp = v.cpu.regs[4]
        pv.on_syscall(host, v, 0x40_1000)
        assert v.cpu.rip == 0xFFFF_8880_0020_3000
        assert upcall_mask(host, g) == expect


@pytest.mark.parametrize("dpl,kernel,bounced", [(1, True, True), (0, True, False), (3, False, True),
                                               (1, False, False)])
def test_software_interrupt_gates_follow_permit_softint(env, dpl, kernel, bounced):
    # pv/traps.c permit_softint(): DPL >= 1 from the guest kernel (which runs in ring 3),
    # DPL 3 from guest user; otherwise #GP(vector * 8 + 2).
    host, _, g, _ = env
    v = g.vcpu
    g.dom.trap_table[0x80] = (dpl, 0xE030, 0xFFFF_8880_0020_4000)
    g.dom.trap_table[13] = (0, 0xE030, 0xFFFF_8880_0020_5000)
    v.kernel_mode = kernel
    v.kernel_sp = v.cpu.regs[4]
    pv.on_softint(host, v, 0x80, 0x40_2000)
    if bounced:
        assert v.cpu.rip == 0xFFFF_8880_0020_4000
    else:
        assert v.cpu.rip == 0xFFFF_8880_0020_5000
        trap = last_event(host, "trap")
        assert trap.data["mnemonic"] == "#GP" and trap.data["error_code"] == 0x80 * 8 + 2


# ---------------------------------------------------------------- vCPU and domain information
def test_runstate_info_has_xens_layout(env):
    # public/vcpu.h struct vcpu_runstate_info: int state; u64 state_entry_time (offset 8);
    # u64 time[4] (offset 16), 48 bytes.
    host, _, g, _ = env
    v = g.vcpu
    v.run_cycles = host.cpu_hz // 1000                   # 1 ms of running
    va = g.buf(1024)
    copy_to_guest(host, v, va, b"\xAA" * 64)
    assert hypercall(host, v, "vcpu_op", 4, 0, va) == 0  # VCPUOP_get_runstate_info
    raw = copy_from_guest(host, v, va, 64)
    state, pad, entry, t0, t1, t2, t3 = struct.unpack_from("<iIQ4Q", raw)
    assert state == {"running": 0, "runnable": 1, "blocked": 2, "offline": 3}[v.runstate]
    assert t0 == 1_000_000 and (t1, t2, t3) == (0, 0, 0)
    assert raw[48:] == b"\xAA" * 16                      # nothing written past the struct


def domctl(host, dom0v, va, cmd, domid, version=XEN_DOMCTL_INTERFACE_VERSION):
    copy_to_guest(host, dom0v, va, struct.pack("<IIH6x", cmd, version, domid) + bytes(256))
    return hypercall(host, dom0v, "domctl", va)


def test_getdomaininfo_flags_and_interface_version(env, tmp_path):
    # common/domctl.c: a wrong interface_version is -EACCES; getdomaininfo fills
    # struct xen_domctl_getdomaininfo (public/domctl.h) with XEN_DOMINF_* flags.
    host, xl, g, h = env
    dom0 = script_guest(xl, tmp_path, "ctl", "pv", memory=16)
    dom0.dom.privileged = True                              # a control domain for the test
    v = dom0.vcpu
    va = dom0.buf(0)
    assert domctl(host, v, va, 5, g.dom.domid, version=0x15) == -13
    assert last_event(host).data["errno"] == "EACCES"
    host.pause(h.dom)
    for target, expect in ((g, 0), (h, (1 << 1) | (1 << 3) | (1 << 8))):   # hvm_guest, paused, hap
        assert domctl(host, v, va, 5, target.dom.domid) == 0
        domain, _pad, flags, tot, maxp = struct.unpack_from("<HHIQQ", copy_from_guest(host, v, va + 16, 24))
        online, max_vcpu = struct.unpack_from("<II", copy_from_guest(host, v, va + 16 + 64, 8))
        assert domain == target.dom.domid and (tot, maxp) == (target.dom.mem_pages, target.dom.max_pages)
        assert flags & ~((1 << 4) | (1 << 5)) == expect
        assert (online, max_vcpu) == (1, 0)
    host.shutdown(g.dom, "reboot")
    assert domctl(host, v, va, 5, g.dom.domid) == 0
    flags = struct.unpack_from("<I", copy_from_guest(host, v, va + 20, 4))[0]
    assert flags & (1 << 2) and (flags >> 16) & 0xFF == 1 and not flags & ((1 << 4) | (1 << 5))


# ---------------------------------------------------------------- event channels
def _pending(host, dom, port) -> bool:
    return bool(host.mem.read_u64((dom.shared_info_mfn << 12) + SHINFO_PENDING + port // 64 * 8) >> (port % 64) & 1)


def test_evtchn_send_on_a_virq_port_is_einval_and_on_an_unbound_one_dropped(env):
    # common/event_channel.c evtchn_send(): ECS_INTERDOMAIN and ECS_IPI notify,
    # ECS_UNBOUND drops silently, anything else (VIRQ, PIRQ) is -EINVAL.
    host, _, g, _ = env
    v = g.vcpu
    virq = host.evtchn.bind_virq(g.dom.domid, 0, 0)          # VIRQ_TIMER
    unbound = host.evtchn.alloc_unbound(g.dom.domid, 0)
    va = g.buf(2048)
    for port, ret in ((virq, -22), (unbound, 0)):
        copy_to_guest(host, v, va, struct.pack("<I", port))
        assert hypercall(host, v, "event_channel_op", 4, va) == ret      # EVTCHNOP_send
        assert not _pending(host, g.dom, port)


def test_unmask_notifies_only_a_port_that_was_masked(env):
    # common/event_2l.c evtchn_2l_unmask(): test_and_clear the mask; only then, if
    # pending, set the selector bit and mark the vCPU's upcall pending.
    host, _, g, _ = env
    dom = g.dom
    base = dom.shared_info_mfn << 12
    port = host.evtchn.bind_ipi(dom.domid, 0)
    word, bit = divmod(port, 64)
    vi = base + g.vcpu.id * VCPU_INFO_SIZE
    host.mem.write_u64(base + SHINFO_PENDING + word * 8, 1 << bit)     # pending, not masked
    host.mem.write_u64(vi + 8, 0)
    host.mem.write(vi, b"\x00")
    va = g.buf(2048)
    copy_to_guest(host, g.vcpu, va, struct.pack("<I", port))
    assert hypercall(host, g.vcpu, "event_channel_op", 9, va) == 0      # EVTCHNOP_unmask
    assert host.mem.read_u64(vi + 8) == 0 and host.mem.read(vi, 1) == b"\x00"
    host.mem.write_u64(base + SHINFO_MASK + word * 8, 1 << bit)        # now masked and pending
    assert hypercall(host, g.vcpu, "event_channel_op", 9, va) == 0
    assert host.mem.read_u64(vi + 8) >> word & 1
    assert read_u64(host, g.vcpu, va) & 0xFFFF_FFFF == port
