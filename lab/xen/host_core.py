"""The host core: what Xen's common code does on every architecture.

Both hosts (``lab/xen/host.py`` for x86, ``lab/xen/arm/host.py`` for Arm)
are a :class:`HostCore`: the domains, per-pCPU time, the trace and Xen's
console, dom0's services and their queued work, the scheduler's run loop,
and domain control (pause, shutdown, crash, destroy), as ``xen/common/``
holds them. An architecture supplies only what differs, as ``xen/arch/*``
does:

- running a guest vCPU on a pCPU (``_run_guest``): entering the guest, and
  every trap and exception entry that comes back from it;
- its timers (``_fire_timers``, ``_idle``): x86's set_timer_op and emulated
  PIT, Arm's generic timer;
- how a domain's memory goes back to Xen when it is destroyed
  (``_release_domain``): x86's M2P and page types, Arm's stage 2;
- making a vCPU leave its run loop (``_kick``), and the event upcall (in
  ``lab/xen/evtchn.py``);
- its hypercall table (``hypercalls``, ``lab/xen/hypercall_table.py``) and
  what the common handlers ask of it: ``xen_caps``, XENVER_get_features'
  architecture part (``paging_mode_translate``, ``is_domain_direct_mapped``,
  ``arch_guest_features``), and
  memory_op's architecture part (``xenmem_add_to_physmap``,
  ``reservation_op``, ``arch_memory_op``).

Time is per pCPU. The run loop always advances the pCPU whose clock is
furthest behind, so the interleaving of domains is a pure function of the inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from ..hw.costs import Costs, load_costs
from ..hw.memory import MachineMemory
from ..trace import Event, Trace
from . import abi
from .conring import ConsoleRing, conring_size
from .domain import RUNNING, RUNSTATE_RUNNING, Domain, Vcpu
from .domain_control import DomainControl
from .evtchn import EventChannels
from .heap import FreeFrames
from .hypercall_table import HypercallTable
from .scheduler import Scheduler
from .services import Dom0Services

FOREVER = 1 << 62


@dataclass(kw_only=True, eq=False)
class HostCoreConfig:
    """What a scenario's ``[host]`` says on every architecture (docs/scenarios.md); each
    architecture's config adds its own keys. Compared by identity, as snapshots keep it."""

    STATE_CONSTANT = True       # configuration: snapshots keep it by identity

    pcpus: int = 1
    mem_mib: int = 512
    cpu_mhz: int = 2000
    timeslice_us: int = 1000
    #: What each instruction and each of Xen's paths costs in cycles (lab/hw/costs.py).
    costs: Costs = field(default_factory=load_costs)
    #: Xen's ``conring_size=`` boot parameter in bytes; 0 lets Xen size its console ring
    #: from the number of pCPUs (lab/xen/conring.py).
    conring_size: int = 0

    def __post_init__(self) -> None:
        if self.costs is None:      # an explicit None is the default table too
            self.costs = load_costs()


class HostCore(DomainControl, Scheduler, ABC):
    """Xen's common part of a host; an architecture's host inherits it and supplies the rest."""

    # What the architecture's host sets up (declared here, defined there).
    free_frames: FreeFrames
    evtchn: EventChannels
    #: The architecture's hypercall table, and its XENVER_capabilities string.
    hypercalls: HypercallTable
    xen_caps: str
    #: A guest's SHUTDOWN_crash: a shutdown with that code (x86), or domain_crash() (the lab's Arm).
    shutdown_crash_crashes = False

    def __init__(self, config: HostCoreConfig, keep_trace: bool = True) -> None:
        self.config = cfg = config
        self.mem = MachineMemory(cfg.mem_mib << 20)
        self.costs = cfg.costs
        self.cpu_hz = cfg.cpu_mhz * 1_000_000
        self.timeslice = cfg.timeslice_us * cfg.cpu_mhz
        self.trace = Trace(keep=keep_trace)
        self.clock = [0] * cfg.pcpus
        self.current: list[Vcpu | None] = [None] * cfg.pcpus
        self.slice_end = [0] * cfg.pcpus
        self.domains: dict[int, Domain] = {}
        self.next_domid = 1
        #: Xen's console ring, what ``xl dmesg`` reads: a fixed number of bytes, the newest kept.
        self.dmesg = ConsoleRing(conring_size(cfg.pcpus, cfg.conring_size))
        #: What was typed at Xen's console for dom0 and not read yet (CONSOLEIO_read).
        self.console_input = bytearray()
        self.images: dict[str, Any] = {}
        self.services = Dom0Services()          # dom0's services (xenstored, xenconsoled, ...), by role
        self.dom0_work: list[tuple[str, Callable[[], int]]] = []
        self.yield_now = False
        self.running_pcpu: int | None = None     # the pCPU whose vCPU is executing right now

    # -- logging and events -------------------------------------------------
    def log(self, text: str, vcpu: Vcpu | None = None) -> None:
        """A line of Xen's own console (``xl dmesg``)."""
        prefix = f"(XEN) {vcpu.label} " if vcpu is not None else "(XEN) "
        self.dmesg.append(prefix + text)
        self._console_ring_written()

    def type_at_console(self, text: str) -> None:
        """Bytes typed at Xen's own (serial) console while it is switched to dom0: kept for
        CONSOLEIO_read, and VIRQ_CONSOLE tells dom0 they are there (serial_rx -> __serial_rx)."""
        self.console_input += text.encode("latin-1", "replace")
        self.evtchn.send_global_virq(abi.VIRQ_CONSOLE)

    def _console_ring_written(self) -> None:
        """What a new line in Xen's console ring raises (the architecture's, if anything)."""

    def emit(self, vcpu: Vcpu | None, kind: str, **data: Any) -> Event:
        if vcpu is None:
            return self.trace.record(max(self.clock), 0, None, 0, kind, data)
        p = vcpu.pcpu
        if p is None:
            p = 0
        cpu = vcpu.cpu
        cyc = cpu.cycles if cpu is not None and self.current[p] is vcpu else self.clock[p]
        return self.trace.record(cyc, p, vcpu.domain.domid, vcpu.id, kind, data)

    def charge(self, vcpu: Vcpu, event_cost: str, extra: int = 0) -> int:
        """Add the cost of Xen work done for ``vcpu`` to the time of the pCPU running it."""
        c = self.costs.event.get(event_cost, 0) + extra
        p = vcpu.pcpu
        if p is not None:
            cpu = vcpu.cpu
            if cpu is not None and self.current[p] is vcpu:
                cpu.cycles += c
            else:
                self.clock[p] += c
        return c

    # -- frames and domains ---------------------------------------------------
    def alloc_frame(self, owner: int | None) -> int:
        """A zeroed frame from Xen's heap, owned by domain ``owner`` (None: Xen)."""
        if not self.free_frames:
            raise MemoryError("out of machine memory")
        mfn = self.free_frames.pop()
        self.mem.zero_frame(mfn)
        self._assign_frame(mfn, owner)
        if owner is not None and owner in self.domains:
            self.domains[owner].extra.setdefault("frames", []).append(mfn)
        return mfn

    def _assign_frame(self, mfn: int, owner: int | None) -> None:
        """The architecture's record of a frame's owner, if it keeps one."""

    @property
    def free_pages(self) -> int:
        return len(self.free_frames)

    def _create_domain(self, name: str, mode: str, mem_pages: int, privileged: bool, domid: int | None,
                       config: Any, max_grant_frames: int) -> Domain:
        """domain_create()'s common part: the domain ID, the domain, its (empty) event channel table.
        ``max_grant_frames`` -1 takes Xen's default (gnttab_max_frames), as grant_table_init() does."""
        if domid is None:
            domid = self.next_domid
            self.next_domid += 1
        dom = Domain(domid=domid, name=name, mode=mode, mem_pages=mem_pages, max_pages=mem_pages,
                     privileged=privileged, config=config,
                     max_grant_frames=abi.DEFAULT_MAX_GRANT_FRAMES if max_grant_frames < 0 else max_grant_frames)
        self.domains[domid] = dom
        self.evtchn.add_domain(dom)
        return dom

    def _domain_created(self, dom: Domain, reason: str) -> None:
        self.emit(None, "domain", op="create", name=dom.name, state=RUNNING, reason=reason)

    # -- the architecture's part of memory_op (lab/xen/memory.py) --------------------
    @abstractmethod
    def xenmem_add_to_physmap(self, v: Vcpu, d: int, space: int, idx: int, gpfn: int, info: dict) -> int:
        """XENMEM_add_to_physmap after its arguments were read: the architecture's checks and mapping."""

    def reservation_op(self, v: Vcpu, cmd_word: int, va: int, info: dict) -> Any:
        """XENMEM_increase/decrease_reservation, populate_physmap: -ENOSYS where the lab lacks them."""
        return -abi.ERRNO["ENOSYS"]

    def arch_memory_op(self, v: Vcpu, cmd: int, va: int, info: dict) -> int:
        """The sub-ops of memory_op that are the architecture's (arch_memory_op())."""
        return -abi.ERRNO["ENOSYS"]

    # -- the architecture's part of XENVER_get_features (lab/xen/version.py) ----------
    @abstractmethod
    def paging_mode_translate(self, dom: Domain) -> bool:
        """Whether Xen translates ``dom``'s frames (paging_mode_translate())."""

    @abstractmethod
    def is_domain_direct_mapped(self, dom: Domain) -> bool:
        """Whether ``dom``'s guest frames are its machine frames though translated."""

    @abstractmethod
    def arch_guest_features(self, dom: Domain) -> int:
        """The XENFEAT_* bits kernel.c sets only for this architecture."""

    def domain_by_name(self, name_or_id: str) -> Domain | None:
        for d in self.domains.values():
            if d.name == name_or_id or str(d.domid) == name_or_id:
                return d
        return None

    def console_of(self, dom: int | None) -> str:
        d = self.domains.get(dom) if dom is not None else None
        return d.console_output if d is not None else ""

    def images_for(self, dom: int | None) -> dict[str, Any]:
        d = self.domains.get(dom) if dom is not None else None
        return d.images if d is not None else {}

    def vcpu_refs(self) -> list[tuple[str, int | None, int, Any]]:
        """Every vCPU that has a processor, by domain: (label, domid, vcpu id, processor)."""
        out = []
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            for v in d.vcpus:
                if v.cpu is not None:
                    out.append((f"{d.name} ({d.mode})", d.domid, v.id, v.cpu))
        return out

    @property
    def instructions(self) -> int:
        return sum(v.cpu.icount for d in self.domains.values() for v in d.vcpus if v.cpu is not None)

    @property
    def stopped(self) -> str | None:
        return None if any(d.alive and not d.privileged for d in self.domains.values()) else "no guest running"

    # -- the run loop ---------------------------------------------------------------
    def run(self, max_insns: int = FOREVER, stop: Callable[[], bool] | None = None) -> bool:
        """Run guests for up to ``max_insns`` instructions in all; False when nothing can run."""
        start = self.instructions
        self.yield_now = False
        while not self.yield_now:
            done = self.instructions - start
            if done >= max_insns:
                return True
            if stop is not None and stop():
                return True
            p = min(range(len(self.clock)), key=lambda i: (self.clock[i], i))
            now = self.clock[p]
            self._fire_timers(now)
            v = self.current[p]
            if v is None or v.runstate != RUNSTATE_RUNNING or now >= self.slice_end[p]:
                if v is not None:
                    self._deschedule(p, "timeslice")
                v = self._pick(p)
            if v is None:
                if not self._idle(p):
                    return False
                continue
            self._run_vcpu(p, v, max_insns - done)
        return True

    @abstractmethod
    def _fire_timers(self, now: int) -> None:
        """The architecture's timers due by ``now`` fire (they may wake vCPUs)."""

    @abstractmethod
    def _idle(self, p: int) -> bool:
        """pCPU ``p`` has nothing to run: move its clock on, or say (False) that the host is idle."""

    def _run_vcpu(self, p: int, v: Vcpu, budget: int) -> None:
        self.running_pcpu = p
        try:
            if v.cpu is None:
                self._run_dom0_services(p, v)
            else:
                self._run_guest(p, v, budget)
        finally:
            self.running_pcpu = None

    @abstractmethod
    def _run_guest(self, p: int, v: Vcpu, budget: int) -> None:
        """Run guest vCPU ``v`` on pCPU ``p`` for up to ``budget`` instructions: the architecture's
        entry into the guest, and Xen's work for every trap that comes back from it."""

    def _run_dom0_services(self, p: int, v: Vcpu) -> None:
        """Dom0's vCPU runs the lab's services (Python): one queued piece of work, or it blocks."""
        if not self.dom0_work:
            self.block(v, "idle")
            self._deschedule(p, "blocked")
            return
        label, fn = self.dom0_work.pop(0)
        cost = fn() or 0
        self.clock[p] += max(1, cost)
        v.run_cycles += max(1, cost)

    def step(self) -> None:
        """One guest instruction (on whichever vCPU the scheduler runs next)."""
        self.run(1)

    def run_until(self, predicate: Callable[[Event], bool], max_insns: int = 50_000_000) -> Event | None:
        """Run until an event satisfies ``predicate``; that event, or None when none did."""
        hit: list[Event] = []

        def watch(ev: Event) -> None:
            if not hit and predicate(ev):
                hit.append(ev)
                self.yield_now = True
                for d in self.domains.values():
                    for v in d.vcpus:
                        self._kick(v)
        self.trace.listeners.append(watch)
        try:
            self.run(max_insns, stop=lambda: bool(hit))
        finally:
            self.trace.listeners.remove(watch)
        return hit[0] if hit else None
