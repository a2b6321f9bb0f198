"""Timers: every deadline Xen keeps for a guest, in one heap.

Xen gives each vCPU two timers (struct vcpu's ``periodic_timer`` and
``singleshot_timer``, xen/common/sched/core.c), emulates an HVM domain's
PIT (xen/arch/x86/emul-i8254.c) and each HVM vCPU's local APIC timer (the
periodic_time of hvm/vlapic.c, driven by hvm/vpt.c). The lab keeps all of them in one heap ordered
by (deadline, sequence number): the next deadline is at its top, so the host
finds it, and jumps to it when every vCPU is blocked, without looking at any
vCPU. The sequence number breaks ties in the order timers were set, so the
order in which timers fire never depends on anything but the inputs.

An armed timer is its owner's slot (``Vcpu.singleshot_timer``,
``Vcpu.periodic_timer``, ``Vcpu.vlapic_timer``, ``Domain.pit_timer``) holding
(deadline, sequence);
an entry of the heap counts only while its owner's slot still holds it, so
stopping or moving a timer is one assignment and the stale entry is dropped
when it reaches the top (or when the heap is compacted).

Time: Xen's system time is nanoseconds since boot (``NOW()``); the lab's is
cycles, ``cpu_mhz`` of them per microsecond. Guests read it through the
pvclock record Xen keeps in each vcpu_info (``update_vcpu_system_time``).
"""

from __future__ import annotations

import heapq
import struct
from typing import Any

from . import abi
from .vcpu_info import maddr as vcpu_info_maddr

#: The owners' slot names: which timer an entry of the heap is.
SINGLESHOT, PERIODIC, PIT, VLAPIC = "singleshot_timer", "periodic_timer", "pit_timer", "vlapic_timer"

#: Guests ask for a period of at least 1 ms and at most STIME_DELTA_MAX ns (common/domain.c).
MIN_PERIOD_NS = 1_000_000
STIME_DELTA_MAX = (1 << 62) - 1
#: do_set_timer_op(): a timeout 2^50 ns or more ahead (or negative) is taken as 100 ms on.
SET_TIMER_HUGE_SHIFT = 50
SET_TIMER_HUGE_FALLBACK_NS = 100_000_000
#: PV vCPUs start with a 100 Hz ticker (pv_vcpu_initialise(), xen/arch/x86/pv/domain.c).
PV_DEFAULT_PERIOD_NS = 10_000_000

#: struct vcpu_time_info in vcpu_info (public/xen.h): version, pad, tsc_timestamp,
#: system_time, tsc_to_system_mul, tsc_shift, flags, pad.
VCPU_TIME_INFO_OFFSET = 32
VCPU_TIME_INFO = struct.Struct("<IIQQIbB2x")


class TimerHeap:
    """Every armed timer of the host, earliest first."""

    #: Compaction keeps the heap within twice its live entries (and at least this many).
    MIN_COMPACT = 256

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, str, Any]] = []
        self.seq = 0
        self.compact_at = self.MIN_COMPACT

    def push(self, deadline: int, kind: str, owner: Any) -> tuple[int, int]:
        self.seq += 1
        heapq.heappush(self.heap, (deadline, self.seq, kind, owner))
        if len(self.heap) > self.compact_at:
            # Stopped timers leave their entries behind: a guest that re-arms far in the
            # future over and over must not grow the heap without bound.
            self.heap = [e for e in self.heap if _live(e)]
            heapq.heapify(self.heap)
            self.compact_at = max(self.MIN_COMPACT, 2 * len(self.heap))
        return deadline, self.seq

    def top(self) -> tuple[int, int, str, Any] | None:
        """The earliest live entry (stale ones above it are dropped)."""
        heap = self.heap
        while heap:
            entry = heap[0]
            if _live(entry):
                return entry
            heapq.heappop(heap)
        return None

    def __len__(self) -> int:
        return len(self.heap)


def _live(entry: tuple[int, int, str, Any]) -> bool:
    _deadline, seq, kind, owner = entry
    slot = getattr(owner, kind)
    if slot is None or slot[1] != seq:
        return False
    dom = owner if kind == PIT else owner.domain
    return dom.alive


# ---------------------------------------------------------------- the one API
def set_timer(host, owner, kind: str, deadline: int) -> None:
    """set_timer(): arm (or move) ``owner``'s timer ``kind`` at ``deadline`` (cycles)."""
    setattr(owner, kind, host.timers.push(deadline, kind, owner))


def stop_timer(owner, kind: str) -> None:
    """stop_timer(): the timer will not fire (its heap entry is now stale)."""
    setattr(owner, kind, None)


def next_deadline(host) -> int | None:
    """The earliest armed timer of any vCPU or emulated device."""
    entry = host.timers.top()
    return None if entry is None else entry[0]


def ns_to_cycles(host, ns: int) -> int:
    return ns * host.cpu_hz // 1_000_000_000


def now_of(host, v) -> int:
    """NOW() as ``v`` sees it: its CPU's cycles (or its pCPU's clock for dom0's services)."""
    if v.cpu is not None:
        return v.cpu.cycles
    return host.clock[v.pcpu if v.pcpu is not None else 0]


# ---------------------------------------------------------------- the hypercalls
def now_ns(host, now: int) -> int:
    return now * 1_000_000_000 // host.cpu_hz


def do_set_timer_op(host, v, timeout: int) -> int:
    """do_set_timer_op() (xen/common/sched/core.c): the single-shot timer at ``timeout``
    ns of system time; 0 stops it. A timeout that is negative as an s64, or 2^50 ns or
    more ahead (Linux's wrapped jiffies), is taken as 100 ms from now. Always 0."""
    now = now_of(host, v)
    signed = timeout - (1 << 64) if timeout >> 63 else timeout
    offset = signed - now_ns(host, now)
    if timeout == 0:
        stop_timer(v, SINGLESHOT)
    elif signed < 0 or (offset > 0 and (offset >> SET_TIMER_HUGE_SHIFT) & 0xFFFFFFFF):
        set_timer(host, v, SINGLESHOT, now + ns_to_cycles(host, SET_TIMER_HUGE_FALLBACK_NS))
    else:
        set_timer(host, v, SINGLESHOT, ns_to_cycles(host, timeout))
    return 0


def vcpu_timer_op(host, v, cmd: int, target, arg: int, info: dict) -> int:
    """The timer commands of do_vcpu_op() (xen/common/domain.c), for ``target``, a vCPU of
    the caller's domain. A guest address that faults is -EFAULT (raised as GuestFault)."""
    from .guestmem import copy_from_guest, read_u64
    now = now_of(host, v)
    if cmd == abi.VCPUOP_set_periodic_timer:
        period_ns = read_u64(host, v, arg)               # struct vcpu_set_periodic_timer {u64 period_ns}
        info["args"][2] = f"{period_ns} ns"
        if period_ns < MIN_PERIOD_NS or period_ns > STIME_DELTA_MAX:
            info["why"] = "the period must be 1 ms to STIME_DELTA_MAX"
            return -abi.ERRNO["EINVAL"]
        set_periodic(host, target, period_ns, now)
        return 0
    if cmd == abi.VCPUOP_stop_periodic_timer:
        set_periodic(host, target, 0, now)
        return 0
    # The single-shot timer is the calling vCPU's own: Xen answers -EINVAL for another's.
    if target is not v:
        info["why"] = "a vCPU's single-shot timer is set by that vCPU only"
        return -abi.ERRNO["EINVAL"]
    if cmd == abi.VCPUOP_stop_singleshot_timer:
        stop_timer(v, SINGLESHOT)
        return 0
    # struct vcpu_set_singleshot_timer {u64 timeout_abs_ns; u32 flags} (16 bytes with padding)
    ns, flags = struct.unpack_from("<QI", copy_from_guest(host, v, arg, 16))
    info["args"][2] = f"{ns} ns" + (" (future)" if flags & abi.VCPU_SSHOTTMR_future else "")
    if ns < now_ns(host, now):
        # Since Xen 4.18 VCPU_SSHOTTMR_future is ignored: a timeout already past is not
        # -ETIME but the timer event at once (commit "xen/vcpu: ignore VCPU_SSHOTTMR_future").
        stop_timer(v, SINGLESHOT)
        send_timer_event(host, v)
        return 0
    set_timer(host, v, SINGLESHOT, ns_to_cycles(host, ns))
    return 0


# ---------------------------------------------------------------- firing
def fire(host, now: int) -> None:
    """Fire every timer due by ``now``, earliest first; then wake any HVM vCPU whose
    emulated PIC holds an interrupt it can take."""
    timers = host.timers
    heap = timers.heap
    while heap and heap[0][0] <= now:
        entry = heapq.heappop(heap)
        if not _live(entry):
            continue
        _deadline, _seq, kind, owner = entry
        setattr(owner, kind, None)
        if kind == SINGLESHOT:
            send_timer_event(host, owner)                 # vcpu_singleshot_timer_fn()
        elif kind == PERIODIC:
            periodic_timer_work(host, owner, now)         # vcpu_periodic_timer_fn()
        elif kind == VLAPIC:
            vlapic = owner.domain.devices.get("vlapic")
            if vlapic is not None:
                vlapic.timer_expired(host, owner, now)    # pt_timer_fn() for the vLAPIC's timer
        else:
            tick_devices(host, owner, now)
    for dom in host.domains.values():
        pic = dom.devices.get("vpic")
        if pic is not None and pic.waiting and dom.alive:
            _wake_for_interrupt(host, dom)


def send_timer_event(host, v) -> None:
    """send_timer_event(): VIRQ_TIMER to ``v``. Nothing happens if the guest never bound it
    (send_guest_vcpu_virq() finds no port): a blocked vCPU sleeps on."""
    host.evtchn.send_virq(v.domain.domid, abi.VIRQ_TIMER, v.id)


# ---------------------------------------------------------------- periodic timer
def periodic_timer_work(host, v, now: int) -> None:
    """vcpu_periodic_timer_work_locked(): an event if a period has passed since the
    last one, then the timer armed for the next (a period after the last event)."""
    if not v.periodic_period:
        return
    next_event = v.periodic_last_event + v.periodic_period
    if now >= next_event:
        send_timer_event(host, v)
        v.periodic_last_event = now
        next_event = now + v.periodic_period
    set_timer(host, v, PERIODIC, next_event)


def set_periodic(host, v, period_ns: int, now: int) -> None:
    """vcpu_set_periodic_timer(): stop the timer, take the new period (0: none), and run
    the periodic work at once, so the first event comes a period after the last one."""
    stop_timer(v, PERIODIC)
    v.periodic_period = ns_to_cycles(host, period_ns) if period_ns else 0
    if v.periodic_period:
        periodic_timer_work(host, v, now)


def vcpu_scheduled(host, v) -> None:
    """A vCPU goes onto a pCPU (sched_context_switch()): its periodic timer runs again,
    with an event at once if a period passed while it was off, and its time record
    in vcpu_info is brought up to date (update_vcpu_system_time())."""
    if v.cpu is None:
        return
    now = v.cpu.cycles
    if v.periodic_period:
        periodic_timer_work(host, v, now)
    update_vcpu_system_time(host, v)


def vcpu_descheduled(v) -> None:
    """A vCPU leaves its pCPU: ``stop_timer(&vprev->periodic_timer)``. A blocked vCPU is
    woken by its single-shot timer or an event, never by its periodic one."""
    if v.periodic_timer is not None:
        v.periodic_timer = None


# ---------------------------------------------------------------- the guest's clock
def time_scale(hz: int) -> tuple[int, int]:
    """set_time_scale() (xen/arch/x86/time.c): (tsc_to_system_mul, tsc_shift) so that
    ns = ((tsc << shift, or >> -shift) * mul) >> 32 for a clock of ``hz``."""
    tps, shift = hz, 0
    while tps > 2_000_000_000:
        tps >>= 1
        shift -= 1
    tps &= 0xFFFFFFFF
    while tps <= 1_000_000_000:
        tps <<= 1
        shift += 1
    return (1_000_000_000 << 32) // tps, shift


def vcpu_time_info(host, v) -> bytes:
    """The vCPU's struct vcpu_time_info: system time 0 at TSC 0 (plus the guest's TSC
    offset), scaled by the host's frequency. The lab's TSC never drifts, so the record
    only changes when the guest's TSC offset does."""
    mul, shift = time_scale(host.cpu_hz)
    tsc_offset = v.cpu.tsc_offset if v.cpu is not None else 0
    return VCPU_TIME_INFO.pack(0, 0, tsc_offset, 0, mul, shift, 0)


def update_vcpu_system_time(host, v) -> None:
    """__update_vcpu_system_time(): write the record, bumping ``version`` (odd while it
    changes, even after), unless it holds the same values already."""
    vi = vcpu_info_maddr(host, v.domain, v.id)
    if vi is None:
        return
    addr = vi + VCPU_TIME_INFO_OFFSET
    mem = host.mem
    old = mem.read(addr, VCPU_TIME_INFO.size)
    new = vcpu_time_info(host, v)
    if old[4:] == new[4:] and not old[0] & 1:
        return
    version = (int.from_bytes(old[:4], "little") + 2) & ~1 & 0xFFFFFFFF
    mem.write(addr, version.to_bytes(4, "little") + new[4:])


# ---------------------------------------------------------------- HVM's emulated PIT
def arm_pit(host, dom) -> None:
    """The PIT's next interrupt as a timer of its domain (after it was programmed or ticked)."""
    pit = dom.devices.get("vpit")
    nxt = pit.next_fire() if pit is not None else None
    cur = dom.pit_timer
    if nxt is None:
        if cur is not None:
            dom.pit_timer = None
    elif cur is None or cur[0] != nxt:
        set_timer(host, dom, PIT, nxt)


def tick_devices(host, dom, now: int) -> None:
    """The emulated PIT of an HVM guest raises IRQ 0 on its emulated PIC."""
    pit = dom.devices.get("vpit")
    pic = dom.devices.get("vpic")
    if pit is None or pic is None:
        return
    if pit.tick(now, pic.raise_irq):
        host.emit(dom.vcpus[0], "interrupt", vector=pic.vector_base, source="vpit")
    arm_pit(host, dom)
    if pic.waiting:
        _wake_for_interrupt(host, dom)


def _wake_for_interrupt(host, dom) -> None:
    for v in dom.vcpus:
        if v.cpu is not None and v.blocked and v.cpu.rflags & (1 << 9):
            v.cpu.halted = False
            host.wake(v, "interrupt")
