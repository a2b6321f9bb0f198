"""Xen's timers: one heap of deadlines ordered by (deadline, sequence); the per-vCPU periodic and
single-shot timers answered as xen/common/sched/core.c and xen/common/domain.c answer them; the
emulated PIT as a timer of its domain; the pvclock record guests read the time from."""

from __future__ import annotations

import struct

import pytest

from lab.xen import abi, timers
from lab.xen.domain import RUNSTATE_BLOCKED
from lab.xen.vcpu_info import maddr as vcpu_info_maddr
from xen_helpers import hypercall, script_guest, small_host

pytestmark = pytest.mark.machine

E = abi.ERRNO
MS = 1_000_000


@pytest.fixture
def env(tmp_path):
    host, xl = small_host(mem_mib=128)
    g = script_guest(xl, tmp_path, "pv-a", "pv", memory=16)
    h = script_guest(xl, tmp_path, "hvm-a", "hvm", memory=16)
    return host, g, h


def _quiet(host) -> None:
    """No timer armed anywhere and the PIT stopped: nothing is due."""
    for d in host.domains.values():
        for v in d.vcpus:
            v.singleshot_timer = v.periodic_timer = None
            v.periodic_period = 0
        pit = d.devices.get("vpit")
        if pit is not None:
            pit.running = False
        d.pit_timer = None
        pic = d.devices.get("vpic")
        if pic is not None:
            pic.waiting = False


def _bind_timer(host, v) -> int:
    return host.evtchn.bind_virq(v.domain.domid, abi.VIRQ_TIMER, v.id)


def _pending(host, v, port: int) -> bool:
    base = v.domain.shared_info_mfn << 12
    return bool(host.mem.read_u64(base + 2048 + (port // 64) * 8) >> (port % 64) & 1)


def _clear(host, v, port: int) -> None:
    base = v.domain.shared_info_mfn << 12
    addr = base + 2048 + (port // 64) * 8
    host.mem.write_u64(addr, host.mem.read_u64(addr) & ~(1 << (port % 64)))


def _ns(host, cycles: int) -> int:
    return cycles * 1_000_000_000 // host.cpu_hz


# ---------------------------------------------------------------- the heap
def test_a_round_with_nothing_due_emits_nothing(env):
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 1)     # due one cycle later: not yet
    seq = host.trace.seq
    timers.fire(host, now)
    assert host.trace.seq == seq and g.vcpu.timer_deadline == now + 1
    assert host.next_deadline() == now + 1


def test_the_next_deadline_is_the_heaps_top_and_stopped_timers_drop_out(env):
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 500)
    timers.set_timer(host, h.vcpu, timers.SINGLESHOT, now + 300)
    assert host.next_deadline() == now + 300
    timers.stop_timer(h.vcpu, timers.SINGLESHOT)
    assert host.next_deadline() == now + 500
    timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 900)    # moved: the old entry is stale
    assert host.next_deadline() == now + 900
    timers.stop_timer(g.vcpu, timers.SINGLESHOT)
    assert host.next_deadline() is None


def test_timers_due_together_fire_in_the_order_they_were_set(env, monkeypatch):
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    fired = []
    monkeypatch.setattr(timers, "send_timer_event", lambda host, v: fired.append(v.domain.domid))
    timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 20)
    timers.set_timer(host, h.vcpu, timers.SINGLESHOT, now + 10)      # the higher domid, set first
    timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 10)      # moved earlier, set last
    timers.fire(host, now + 30)
    assert fired == [h.dom.domid, g.dom.domid]     # by (deadline, sequence): the stale entry is gone


def test_a_guest_that_rearms_forever_cannot_grow_the_heap(env):
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    for i in range(5_000):
        timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 10**9 + i)
    assert len(host.timers) <= 2 * timers.TimerHeap.MIN_COMPACT
    assert host.next_deadline() == now + 10**9 + 4_999


def test_a_dead_domains_timers_do_not_count(env):
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    timers.set_timer(host, g.vcpu, timers.SINGLESHOT, now + 50)
    g.dom.state = "crashed"
    assert host.next_deadline() is None


# ---------------------------------------------------------------- firing
def test_a_due_single_shot_timer_sends_virq_timer_once_and_disarms(env):
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    v = h.vcpu                                      # the highest domid
    port = _bind_timer(host, v)
    timers.set_timer(host, v, timers.SINGLESHOT, now)
    timers.fire(host, now)
    assert v.singleshot_timer is None and _pending(host, v, port)
    _clear(host, v, port)
    timers.fire(host, now + 10**6)
    assert not _pending(host, v, port)


def test_an_unbound_virq_timer_leaves_a_blocked_vcpu_asleep(env):
    # send_guest_vcpu_virq() finds no port: Xen has nothing to wake the vCPU with.
    host, g, h = env
    _quiet(host)
    now = max(host.clock)
    v = g.vcpu
    v.runstate = RUNSTATE_BLOCKED
    timers.set_timer(host, v, timers.SINGLESHOT, now)
    timers.fire(host, now)
    assert v.runstate == RUNSTATE_BLOCKED and v.singleshot_timer is None


def test_the_periodic_timer_fires_a_period_after_the_last_event_and_rearms(env):
    host, g, h = env
    _quiet(host)
    v = g.vcpu
    port = _bind_timer(host, v)
    now = v.cpu.cycles
    timers.set_periodic(host, v, 10 * MS, now)
    period = 10 * MS * host.cpu_hz // 1_000_000_000
    assert v.periodic_period == period and v.periodic_timer[0] == v.periodic_last_event + period
    due = v.periodic_timer[0]
    timers.fire(host, due + 7)                      # NOW() is a little late: the next is a period on from it
    assert _pending(host, v, port)
    assert v.periodic_last_event == due + 7 and v.periodic_timer[0] == due + 7 + period


def test_a_descheduled_vcpus_periodic_timer_stops_and_catches_up_once(env):
    # sched_context_switch(): stop_timer(&prev->periodic_timer); vcpu_periodic_timer_work(next)
    host, g, h = env
    _quiet(host)
    v = g.vcpu
    port = _bind_timer(host, v)
    timers.set_periodic(host, v, 10 * MS, v.cpu.cycles)
    period = v.periodic_period
    timers.vcpu_descheduled(v)
    assert v.periodic_timer is None
    v.cpu.cycles = v.periodic_last_event + 5 * period    # five periods off the pCPU
    _clear(host, v, port)
    timers.vcpu_scheduled(host, v)
    assert _pending(host, v, port)                          # one event, not five
    assert v.periodic_timer[0] == v.cpu.cycles + period


def test_a_pv_vcpu_starts_with_xens_100hz_ticker(env):
    # pv_vcpu_initialise(): "PV guests by default have a 100Hz ticker"; HVM vCPUs have none
    host, g, h = env
    assert g.vcpu.periodic_period == 10 * MS * host.cpu_hz // 1_000_000_000
    assert h.vcpu.periodic_period == 0


def test_the_pit_is_a_timer_of_its_domain(env):
    host, g, h = env
    _quiet(host)
    pit = h.dom.devices["vpit"]
    now = h.vcpu.cpu.cycles
    for port, value in ((0x43, 0x34), (0x40, 0x9C), (0x40, 0x2E)):       # 100 Hz, mode 2
        pit.port_out(port, value)
    timers.arm_pit(host, h.dom)
    assert h.dom.pit_timer[0] == pit.next_fire() == now + pit.period_cycles()
    timers.fire(host, pit.next_fire())
    assert pit.fired == 1 and h.dom.pit_timer[0] == pit.next_fire()
    last = host.trace.recent(3)
    assert any(e.kind == "interrupt" and e.data["source"] == "vpit" and e.dom == h.dom.domid for e in last)
    pit.port_out(0x43, 0x34)                        # a new control word stops the counter
    timers.arm_pit(host, h.dom)
    assert h.dom.pit_timer is None


# ---------------------------------------------------------------- the hypercalls
@pytest.mark.parametrize("who", ["pv", "hvm"])
def test_set_timer_op_as_do_set_timer_op(env, who):
    host, g, h = env
    _quiet(host)
    v = (g if who == "pv" else h).vcpu
    now = v.cpu.cycles
    assert hypercall(host, v, "set_timer_op", _ns(host, now) + 5 * MS) == 0
    assert v.singleshot_timer[0] == (_ns(host, now) + 5 * MS) * host.cpu_hz // 1_000_000_000
    assert hypercall(host, v, "set_timer_op", 0) == 0                      # 0 stops it
    assert v.singleshot_timer is None
    hundred_ms = 100 * MS * host.cpu_hz // 1_000_000_000
    # negative as an s64, or 2^50 ns or more ahead: "a reasonable middleground" of 100 ms
    assert hypercall(host, v, "set_timer_op", -5) == 0
    assert v.singleshot_timer[0] == now + hundred_ms
    assert hypercall(host, v, "set_timer_op", _ns(host, now) + (1 << 50)) == 0
    assert v.singleshot_timer[0] == now + hundred_ms
    assert hypercall(host, v, "set_timer_op", _ns(host, now) + (1 << 50) - 1) == 0
    assert v.singleshot_timer[0] > now + hundred_ms
    # a time already past is set as it is: it fires at the next round
    assert hypercall(host, v, "set_timer_op", 1) == 0
    assert v.singleshot_timer[0] == 1 * host.cpu_hz // 1_000_000_000


@pytest.mark.parametrize("who", ["pv", "hvm"])
def test_vcpu_op_timers_as_do_vcpu_op(env, who):
    host, g, h = env
    _quiet(host)
    s = g if who == "pv" else h
    v = s.vcpu
    va = s.buf(3000)
    s.write(va, struct.pack("<Q", MS - 1))
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_periodic_timer, 0, va) == -E["EINVAL"]
    s.write(va, struct.pack("<Q", 1 << 62))                                   # > STIME_DELTA_MAX
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_periodic_timer, 0, va) == -E["EINVAL"]
    s.write(va, struct.pack("<Q", MS))
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_periodic_timer, 0, va) == 0
    assert v.periodic_period == MS * host.cpu_hz // 1_000_000_000 and v.periodic_timer is not None
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_periodic_timer, 0, 1 << 63) == -E["EFAULT"]
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_stop_periodic_timer, 0, 0) == 0
    assert v.periodic_period == 0 and v.periodic_timer is None
    # the single-shot timer: a future deadline is armed, flags or not
    now = v.cpu.cycles
    s.write(va, struct.pack("<QI4x", _ns(host, now) + 3 * MS, abi.VCPU_SSHOTTMR_future))
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_singleshot_timer, 0, va) == 0
    assert v.singleshot_timer[0] == (_ns(host, now) + 3 * MS) * host.cpu_hz // 1_000_000_000
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_stop_singleshot_timer, 0, 0) == 0
    assert v.singleshot_timer is None
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_singleshot_timer, 0, 1 << 63) == -E["EFAULT"]


def test_a_past_single_shot_deadline_is_the_event_at_once_not_etime(env):
    # xen/common/domain.c since Xen 4.18 ("xen/vcpu: ignore VCPU_SSHOTTMR_future"): a
    # timeout already past stops the timer and sends the timer event; the call succeeds.
    host, g, h = env
    _quiet(host)
    v = g.vcpu
    port = _bind_timer(host, v)
    v.cpu.cycles = 10 * host.cpu_hz // 1000                 # 10 ms since boot
    va = g.buf(3000)
    g.write(va, struct.pack("<QI4x", 5 * MS, abi.VCPU_SSHOTTMR_future))
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_singleshot_timer, 0, va) == 0
    assert _pending(host, v, port) and v.singleshot_timer is None


def test_another_vcpus_single_shot_timer_is_einval(tmp_path):
    host, xl = small_host(mem_mib=128)
    g = script_guest(xl, tmp_path, "pv-2", "pv", memory=16, vcpus=2)
    v, other = g.dom.vcpus
    va = g.buf(3000)
    g.write(va, struct.pack("<QI4x", 10**12, 0))
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_singleshot_timer, 1, va) == -E["EINVAL"]
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_stop_singleshot_timer, 1, 0) == -E["EINVAL"]
    assert other.singleshot_timer is None
    # the periodic timer may be set for another vCPU of the domain
    g.write(va, struct.pack("<Q", 20 * MS))
    assert hypercall(host, v, "vcpu_op", abi.VCPUOP_set_periodic_timer, 1, va) == 0
    assert other.periodic_period == 20 * MS * host.cpu_hz // 1_000_000_000


# ---------------------------------------------------------------- the guest's clock
@pytest.mark.parametrize("hz, mul, shift", [(2_000_000_000, 1 << 31, 0),
                                            (3_000_000_000, (10**9 << 32) // 1_500_000_000, -1),
                                            (500_000_000, 1 << 31, 2)])
def test_time_scale_as_set_time_scale(hz, mul, shift):
    assert timers.time_scale(hz) == (mul, shift)


def _pvclock_ns(record: bytes, tsc: int) -> int:
    version, _pad, tsc_timestamp, system_time, mul, shift, _flags = timers.VCPU_TIME_INFO.unpack(record)
    delta = tsc - tsc_timestamp
    delta = delta << shift if shift >= 0 else delta >> -shift
    return system_time + (delta * mul >> 32)


def test_the_pvclock_record_gives_xens_system_time(env):
    host, g, h = env
    for s in (g, h):
        v = s.vcpu
        timers.update_vcpu_system_time(host, v)
        addr = vcpu_info_maddr(host, s.dom, v.id) + timers.VCPU_TIME_INFO_OFFSET
        record = host.mem.read(addr, timers.VCPU_TIME_INFO.size)
        assert struct.unpack_from("<I", record)[0] % 2 == 0 and record != bytes(len(record))
        for cycles in (0, 12_345_678, 3 * host.cpu_hz):
            assert abs(_pvclock_ns(record, cycles) - _ns(host, cycles)) <= 1
        # unchanged values are not rewritten (the version stays)
        timers.update_vcpu_system_time(host, v)
        assert host.mem.read(addr, timers.VCPU_TIME_INFO.size) == record
