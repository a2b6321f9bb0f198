"""The Xen host: the machine Xen owns, its domains, and the scheduler that runs them.

Xen itself is Python code running "in root mode at ring 0": the CPUs call
into it (``on_syscall``, ``on_exception``, ``on_vmexit`` ...) whenever a guest
does something only the hypervisor may do, and Xen charges the cycles its
work costs to the pCPU that did it. Guests are programs executed instruction
by instruction on :class:`~lab.hw.cpu.Cpu` objects, one per vCPU.

Time is per pCPU. The host always advances the pCPU whose clock is furthest
behind, so the interleaving of domains is a pure function of the inputs.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from ..hw.costs import Costs, load_costs
from ..hw.cpu import CodeCache, Cpu
from ..hw.faults import Fault, VmExit
from ..hw.memory import PAGE_SHIFT, MachineMemory
from ..hw.snapshot import Snapshot, keeper_of
from ..trace import Event, Trace
from . import abi
from .domain_control import DomainControl
from .scheduler import Scheduler
from .domain import RUNNING, RUNSTATE_RUNNING, Domain, Vcpu
from .evtchn import EventChannels
from .frames import FrameAccess
from .heap import FreeFrames
from .mm_glue import XenMM
from . import events, hvm, pv, timers
# The hypercall table is filled by the subsystems' modules as they are imported: here, once.
from . import descriptors, grant, hypercalls, physdev  # noqa: F401
from .release import XEN_VERSION
from .services import Dom0Services

FOREVER = 1 << 62
#: How far one pCPU may run ahead of the others before the host switches to them.
QUANTUM = 20_000


class HostConfig:
    """What a scenario says about the host (see docs/scenarios.md)."""

    STATE_CONSTANT = True       # configuration: snapshots keep it by identity

    def __init__(self, *, pcpus: int = 2, mem_mib: int = 512, vendor: str = "intel", ept: bool = True,
                 cpu_mhz: int = 2000, timeslice_us: int = 1000, costs: Costs | None = None,
                 hvm: bool = True) -> None:
        self.pcpus = pcpus
        self.mem_mib = mem_mib
        self.vendor = vendor
        #: VT-x (Intel) or AMD-V (AMD) present: without it Xen has no HVM (hvm_enabled stays 0,
        #: xen/arch/x86/hvm/hvm.c hvm_enable()), so no HVM or PVH guests and no HAP.
        self.hvm = hvm
        self.ept = ept and hvm
        self.cpu_mhz = cpu_mhz
        self.timeslice_us = timeslice_us
        self.costs = costs or load_costs()


class XenHost(DomainControl, Scheduler):
    #: The snapshot keeper is how state is saved, not state.
    NOT_STATE = ("_keeper",)

    def __init__(self, config: HostConfig | None = None, keep_trace: bool = True) -> None:
        self.config = cfg = config or HostConfig()
        self.mem = MachineMemory(cfg.mem_mib << 20)
        self.vendor = cfg.vendor
        self.costs = cfg.costs
        self.cpu_hz = cfg.cpu_mhz * 1_000_000
        self.timeslice = cfg.timeslice_us * cfg.cpu_mhz
        self.trace = Trace(keep=keep_trace)
        table = {code: self.costs.of_mnemonic(info.name) for code, info in
                 __import__("lab.isa.opcodes", fromlist=["BY_CODE"]).BY_CODE.items()}
        self.code = CodeCache(self.mem, lambda insn: table[insn.op])
        self.clock = [0] * cfg.pcpus
        self.current: list[Vcpu | None] = [None] * cfg.pcpus
        self.slice_end = [0] * cfg.pcpus
        self.timers = timers.TimerHeap()          # every armed timer, earliest first
        self.domains: dict[int, Domain] = {}
        self.next_domid = 1
        self.dmesg: list[str] = []
        #: What was typed at Xen's console for dom0 and not read yet (CONSOLEIO_read).
        self.console_input = bytearray()
        self.images: dict[str, Any] = {}
        # Machine frames: Xen keeps the first 16 MiB for itself, more on a large host (its
        # M2P, 8 bytes per frame, and room for the p2m/EPT tables of all memory, one table
        # per 512 frames); the rest is its heap.
        nr = self.mem.nr_frames
        self.xen_reserved = max((16 << 20) >> PAGE_SHIFT, 0x100 + 1024 + (nr * 8 + 4095) // 4096 + nr // 256)
        self.free_frames = FreeFrames(self.xen_reserved, self.mem.nr_frames)   # pop() hands out ascending frames
        self.evtchn = EventChannels(self, events.mark_pending)
        self.mm = XenMM(self)
        self.frames = FrameAccess(self)
        #: Xen's grant tables (every domain's); mm asks them whether a mapping is granted.
        self.grant_tables = grant.GrantTables(self)
        self.mm.pv.grant_ok = self.grant_tables.grant_ok
        self.services = Dom0Services()          # dom0's services (xenstored, xenconsoled, ...), by role
        self.dom0_work: list[tuple[str, Callable[[], int]]] = []
        self.running_pcpu: int | None = None     # the pCPU whose vCPU is executing right now
        self.log(f"Xen version {XEN_VERSION[0]}.{XEN_VERSION[1]}{XEN_VERSION[2]} (lab)")
        self.log(f"{cfg.pcpus} pCPUs, {cfg.mem_mib} MiB, vendor {cfg.vendor}, "
                 f"{'HAP (EPT)' if cfg.ept and cfg.vendor == 'intel' else 'HAP (NPT)' if cfg.ept else 'no HAP: shadow paging only'}"
                 f"{'' if cfg.hvm else '; no VT-x/AMD-V: PV guests only'}")

    # -- logging and events -------------------------------------------------
    def type_at_console(self, text: str) -> None:
        """Bytes typed at Xen's own (serial) console while it is switched to dom0: kept for
        CONSOLEIO_read, and VIRQ_CONSOLE tells dom0 they are there (serial_rx -> __serial_rx)."""
        self.console_input += text.encode("latin-1", "replace")
        self.evtchn.send_global_virq(abi.VIRQ_CONSOLE)

    def log(self, text: str, vcpu: Vcpu | None = None) -> None:
        """A line of Xen's own console (``xl dmesg``)."""
        prefix = f"(XEN) {vcpu.label} " if vcpu is not None else "(XEN) "
        self.dmesg.append(prefix + text)
        # Bytes written to Xen's console ring: VIRQ_CON_RING to dom0, if it bound it.
        if getattr(self, "evtchn", None) is not None and 0 in self.evtchn.ports:
            self.evtchn.send_global_virq(abi.VIRQ_CON_RING)

    def emit(self, vcpu: Vcpu | None, kind: str, **data: Any) -> Event:
        if vcpu is None:
            return self.trace.emit(max(self.clock), 0, None, 0, kind, **data)
        p = vcpu.pcpu if vcpu.pcpu is not None else 0
        cyc = vcpu.cpu.cycles if vcpu.cpu is not None and self.current[p] is vcpu else self.clock[p]
        return self.trace.emit(cyc, p, vcpu.domain.domid, vcpu.id, kind, **data)

    def charge(self, vcpu: Vcpu, event_cost: str, extra: int = 0) -> int:
        """Add the cost of Xen work done for ``vcpu`` to the time of the pCPU running it."""
        c = self.costs.ev(event_cost) + extra
        if vcpu.cpu is not None and vcpu.pcpu is not None and self.current[vcpu.pcpu] is vcpu:
            vcpu.cpu.cycles += c
        elif vcpu.pcpu is not None:
            self.clock[vcpu.pcpu] += c
        return c

    # -- frames -------------------------------------------------------------
    def alloc_frame(self, owner: int | None) -> int:
        """A zeroed frame from Xen's heap, owned by domain ``owner`` (None: Xen)."""
        if not self.free_frames:
            raise MemoryError("out of machine memory")
        mfn = self.free_frames.pop()
        self.mem.zero_frame(mfn)
        self.mm.assign(mfn, owner)
        if owner is not None and owner in self.domains:
            self.domains[owner].extra.setdefault("frames", []).append(mfn)
        return mfn

    def free_frame(self, mfn: int) -> None:
        """A frame nobody references any more goes back to Xen's heap, wiped."""
        self.code.invalidate_frame(mfn)
        self.mem.zero_frame(mfn)
        self.free_frames.append(mfn)

    @property
    def free_pages(self) -> int:
        return len(self.free_frames)

    # -- domains ------------------------------------------------------------
    def new_domain(self, name: str, mode: str, mem_pages: int, vcpus: int, privileged: bool = False,
                   domid: int | None = None, config: Any = None, max_grant_frames: int = -1) -> Domain:
        """domain_create(): ``max_grant_frames`` -1 takes Xen's default (gnttab_max_frames), as
        grant_table_init() does; the toolstack has refused a value below one already."""
        if domid is None:
            domid = self.next_domid
            self.next_domid += 1
        if mem_pages > self.free_pages:
            raise MemoryError(f"not enough free memory for {name}: {mem_pages} pages wanted, "
                              f"{self.free_pages} free")
        dom = Domain(domid=domid, name=name, mode=mode, mem_pages=mem_pages, max_pages=mem_pages,
                     privileged=privileged, config=config,
                     max_grant_frames=abi.DEFAULT_MAX_GRANT_FRAMES if max_grant_frames < 0 else max_grant_frames)
        self.domains[domid] = dom
        # The domain's memory at once: the frames alloc_frame would pop one by one.
        mfns = self.free_frames.take(mem_pages)
        mem = self.mem
        touched = mem.frames.keys() | mem.watched
        for mfn in sorted(touched & set(mfns)) if touched else ():
            mem.zero_frame(mfn)                  # frames never written already read as zeros
        self.mm.assign_many(mfns, domid)
        self.mm.set_m2p_many(mfns)
        dom.p2m.extend(mfns)
        dom.extra.setdefault("frames", []).extend(mfns)
        self.evtchn.add_domain(dom)
        self.emit(None, "domain", op="create", name=name, state=RUNNING, reason=mode)
        self.log(f"d{domid}: created {name} ({mode}, {mem_pages * 4096 >> 20} MiB, {vcpus} vCPU)")
        return dom

    def new_vcpu(self, dom: Domain, vid: int, cpu: Cpu | None) -> Vcpu:
        v = Vcpu(domain=dom, id=vid, cpu=cpu)
        if cpu is not None:
            cpu.attach(self, v, self._cpu_emitter(v))
        dom.vcpus.append(v)
        return v

    def make_cpu(self) -> Cpu:
        return Cpu(self.mem, None, self.code, vendor=self.vendor, costs=self.costs.instruction)

    def _cpu_emitter(self, v: Vcpu) -> Callable[..., Event]:
        def emit(kind: str, **data: Any) -> Event:
            return self.trace.emit(v.cpu.cycles, v.pcpu if v.pcpu is not None else 0, v.domain.domid, v.id,
                                   kind, **data)
        return emit

    def domain_by_name(self, name_or_id: str) -> Domain | None:
        for d in self.domains.values():
            if d.name == name_or_id or str(d.domid) == name_or_id:
                return d
        return None

    def _kick(self, v: Vcpu) -> None:
        """The CPU leaves its run loop at the next block boundary."""
        if v.cpu is not None:
            v.cpu.yield_now = True

    # -- the CPU's calls into Xen ---------------------------------------------------
    def on_syscall(self, cpu: Cpu, nxt: int) -> None:
        pv.on_syscall(self, cpu.vcpu, nxt)

    def on_softint(self, cpu: Cpu, vector: int, nxt: int) -> None:
        pv.on_softint(self, cpu.vcpu, vector, nxt)

    def on_exception(self, cpu: Cpu, fault: Fault) -> None:
        pv.on_exception(self, cpu.vcpu, fault)

    def on_interrupt(self, cpu: Cpu, vector: int) -> None:
        self.emit(cpu.vcpu, "interrupt", vector=vector, source="host")

    def on_vmexit(self, cpu: Cpu, exc: VmExit) -> None:
        hvm.on_vmexit(self, cpu.vcpu, exc)

    def on_cpu_stop(self, cpu: Cpu, reason: str) -> None:
        v = cpu.vcpu
        self.crash(v.domain, reason, v)

    def next_deadline(self) -> int | None:
        """The earliest timer of any vCPU or emulated device (the top of the timer heap)."""
        return timers.next_deadline(self)

    def _fire_timers(self, now: int) -> None:
        timers.fire(self, now)

    @property
    def instructions(self) -> int:
        return sum(v.cpu.icount for d in self.domains.values() for v in d.vcpus if v.cpu is not None)

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

    def _idle(self, p: int) -> bool:
        """pCPU ``p`` has nothing to run: move its clock on, or report that the host is idle."""
        busy = [self.clock[i] for i in range(len(self.clock)) if self.current[i] is not None and i != p]
        targets = [c + QUANTUM for c in busy]
        dl = self.next_deadline()
        if dl is not None and dl > self.clock[p]:
            targets.append(dl)
        if self.dom0_work:
            targets.append(self._dom0_work_wait(p))
        if not targets:
            return False
        self.clock[p] = max(self.clock[p] + 1, min(targets))
        return True

    def _dom0_work_wait(self, p: int) -> int:
        """Until when idle pCPU ``p`` waits for dom0's queued work to be picked up.

        Dom0's vCPU may become runnable at any cycle, so ``p`` looks again one cycle
        on. But while each of dom0's vCPUs is running on another pCPU, nothing can
        change for ``p`` until that pCPU's turn comes: no vCPU can wake (deadlines
        are targets of their own, and no emulated interrupt is waiting), so one
        step to the cycle where ``p`` stops being the earliest pCPU is exactly the
        cycle-by-cycle steps it replaces.
        """
        now = self.clock[p]
        dom0 = self.domains.get(0)
        if dom0 is None or not dom0.vcpus or any(v.runstate != RUNSTATE_RUNNING or v.pcpu == p
                                                 for v in dom0.vcpus):
            return now + 1
        for d in self.domains.values():
            pic = d.devices.get("vpic")
            if pic is not None and pic.waiting:
                return now + 1
        others = [(self.clock[i], i) for i in range(len(self.clock)) if i != p]
        if not others:
            return now + 1
        clock, first = min(others)
        return max(now + 1, clock + (1 if p < first else 0))

    def _run_vcpu(self, p: int, v: Vcpu, budget: int) -> None:
        self.running_pcpu = p
        try:
            self._run_vcpu_on(p, v, budget)
        finally:
            self.running_pcpu = None

    def _run_vcpu_on(self, p: int, v: Vcpu, budget: int) -> None:
        if v.cpu is None:
            self._run_dom0_services(p, v)
            return
        cpu = v.cpu
        cpu.cycles = max(cpu.cycles, self.clock[p])
        if v.domain.is_pv:
            pv.deliver_upcall(self, v)
        until = min(self.slice_end[p], min((self.clock[i] for i in range(len(self.clock)) if i != p),
                                          default=FOREVER) + QUANTUM)
        dl = self.next_deadline()
        if dl is not None and dl > cpu.cycles:
            until = min(until, dl)
        until = max(until, cpu.cycles + 1)
        before_c, before_i = cpu.cycles, cpu.icount
        cpu.yield_now = False
        if cpu.halted and not cpu._interrupt_ready():
            # An HVM vCPU in hlt: blocked until an interrupt arrives.
            self.block(v, "hlt")
        else:
            cpu.run(budget, until)
        v.run_cycles += cpu.cycles - before_c
        self.clock[p] = max(self.clock[p], cpu.cycles)
        if cpu.cycles == before_c and cpu.icount == before_i and v.runstate == RUNSTATE_RUNNING:
            self.clock[p] += 1      # guarantee progress of time
        if v.runstate != RUNSTATE_RUNNING or cpu.stopped:
            self._deschedule(p, v.runstate)
        if cpu.stopped and v.domain.alive:
            self.crash(v.domain, cpu.stopped, v)
        timers.tick_devices(self, v.domain, cpu.cycles)

    def _run_dom0_services(self, p: int, v: Vcpu) -> None:
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
        hit: list[Event] = []

        def watch(ev: Event) -> None:
            if not hit and predicate(ev):
                hit.append(ev)
                self.yield_now = True
                for d in self.domains.values():
                    for v in d.vcpus:
                        if v.cpu is not None:
                            v.cpu.yield_now = True
        self.trace.listeners.append(watch)
        try:
            self.run(max_insns, stop=lambda: bool(hit))
        finally:
            self.trace.listeners.remove(watch)
        return hit[0] if hit else None

    def images_for(self, dom: int | None) -> dict[str, Any]:
        d = self.domains.get(dom) if dom is not None else None
        return d.images if d is not None else {}

    def guest_phys_to_machine(self, dom: int | None, gpa: int) -> int | None:
        """An HVM guest's physical address as a machine address (through its p2m)."""
        d = self.domains.get(dom) if dom is not None else None
        mfn = d.gfn_to_mfn(gpa >> 12) if d is not None else None
        return None if mfn is None else (mfn << 12) | (gpa & 0xFFF)

    def console_of(self, dom: int | None) -> str:
        d = self.domains.get(dom) if dom is not None else None
        return d.console_output if d is not None else ""

    # -- state ------------------------------------------------------------------------
    def vcpu_refs(self) -> list[tuple[str, int | None, int, Cpu]]:
        out = []
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            for v in d.vcpus:
                if v.cpu is not None:
                    out.append((f"{d.name} ({d.mode})", d.domid, v.id, v.cpu))
        return out

    @property
    def stopped(self) -> str | None:
        return None if any(d.alive and not d.privileged for d in self.domains.values()) else "no guest running"

    def snapshot(self) -> Snapshot:
        """The whole host: memory, Xen's bookkeeping, every domain and vCPU, dom0's services."""
        return keeper_of(self).save(self, self.instructions, max(self.clock), self.trace.seq)

    def restore(self, snap: Snapshot) -> None:
        """Back to ``snap`` (across ``xl create`` and ``xl destroy`` too): the same objects,
        holding what they held then, so the host runs on exactly as it did from there."""
        keeper_of(self).load(snap)

    def digest(self) -> str:
        h = hashlib.sha256()
        self.mem.digest_into(h)
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            h.update(repr((d.domid, d.name, d.state, d.pause_count, d.console_output,
                           [(v.runstate, v.kernel_mode, v.guest_table, v.guest_table_user, v.timer_deadline)
                            for v in d.vcpus])).encode())
            for v in d.vcpus:
                if v.cpu is not None:
                    v.cpu.digest_into(h)
        h.update(repr((self.clock, self.trace.seq, len(self.dmesg))).encode())
        return h.hexdigest()[:32]
