"""A session: one machine, the learner's focus and breakpoints, and views of state.

Front ends (the TUI, the shell, ``xenlab`` subcommands) drive a machine only
through a Session, and read what they show from its views and from trace
events; none of them reaches into the simulator's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from ..paths import display
from ..hw import paging
from ..hw.ept import EptTranslator, ept_walk
from ..hw.cpu import Cpu
from ..hw.flags import describe as describe_flags
from ..isa.disassembler import disassemble
from ..isa.encoding import INSN_SIZE, DecodeError, decode
from . import arm_view
from ..isa.registers import GPR64
from ..trace import Event
from ..xen.abi.hypercalls import HYPERCALL_BY_NR, HYPERCALL_STUB_SIZE
from .eventspec import EventSpec
from .sourcemap import HYPERCALL_PAGE_LABEL, HYPERCALL_PAGE_SIZE, SourceMap

__all__ = ["HYPERCALL_PAGE_LABEL", "FocusTarget", "Input", "Session", "VcpuRef"]


@dataclass(frozen=True)
class VcpuRef:
    """One (v)CPU the learner can focus: a label plus where it lives."""
    label: str
    dom: int | None
    vcpu: int
    cpu: Cpu


@dataclass(frozen=True)
class FocusTarget:
    """One vCPU the learner can focus, with or without guest code to show.

    Domain-0's vCPU runs the lab's dom0 services as Python code: it can be
    focused (its domain, its console, its I/O) but has no registers.
    """
    spec: str               # what ``focus`` takes: DOMID.VCPU
    dom: int | None
    vcpu: int
    label: str              # ``pv-guest (pv)``, ``bare metal``
    has_cpu: bool


@dataclass(frozen=True)
class Input:
    """One thing a learner (or a script, a lesson, a replay) did to the session.

    ``kind`` is ``command`` for a line of the command language; ``text`` is
    the line as given. ``insns`` and ``cycles`` stamp the simulated time at
    which it applied (:meth:`Session.clock`), so a recording can replay it
    at the same point and a lesson can ask what happened since.
    """
    kind: str
    text: str
    insns: int
    cycles: int
    #: True for an input noted after it took effect: the screen ran the machine
    #: outside the command language (``run`` with text ``INSNS``: up to that count).
    applied: bool = False


class Session:
    """A machine and what the learner set on it: focus, breakpoints, inputs and time travel."""

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.breakpoints: list[EventSpec] = []
        self.break_hit: Event | None = None
        self._focus = 0
        #: A focused domain whose vCPU runs no guest code (Domain-0's services), else None.
        self.service_dom: int | None = None
        #: Called with every :class:`Input` as it applies (recordings, lesson checks).
        self.input_listeners: list[Callable[[Input], None]] = []
        #: Called after each input has taken effect (recordings digest the state then).
        self.applied_listeners: list[Callable[[], None]] = []
        self._applied_clock: tuple[int, int] | None = None
        self._applying = False      # between an input being noted and it having taken effect
        #: While set, no run, step or until goes past this many instructions (time
        #: travel re-executes an input only up to the point it is going to).
        self.insn_cap: int | None = None
        #: (every, fn): called as runs pass multiples of ``every`` instructions (add_checkpoint).
        self.checkpoints: list[tuple[int, Callable[[], None]]] = []
        #: Set by lab.session.timetravel when the session can go back in time.
        self.time_machine: Any = None
        #: The live recording (lab.session.recorder.SessionRecorder), or None.
        self.recorder: Any = None
        machine.trace.listeners.append(self._watch)
        self._applied_clock = self.clock()      # the machine as built: nothing ran yet

    def replace_machine(self, machine: Any) -> None:
        """Drive another machine (time travel rebuilt the session's machine from its sources)."""
        try:
            self.machine.trace.listeners.remove(self._watch)
        except ValueError:
            pass
        self.machine = machine
        machine.trace.listeners.append(self._watch)

    # -- inputs -------------------------------------------------------------
    def clock(self) -> tuple[int, int]:
        """(instructions, cycles) of the whole machine: every vCPU's instructions, and the
        furthest pCPU's clock on a Xen host (the CPU's own on bare metal)."""
        m = self.machine
        clock = getattr(m, "clock", None)
        if clock:
            return m.instructions, max(clock)
        refs = self.vcpus()
        return sum(r.cpu.icount for r in refs), max((r.cpu.cycles for r in refs), default=0)

    def note_input(self, kind: str, text: str) -> Input:
        """Stamp an input with the time it applies and tell every listener."""
        self._catch_up()
        insns, cycles = self.clock()
        inp = Input(kind, text, insns, cycles)
        self._applying = True
        for listener in list(self.input_listeners):
            listener(inp)
        if kind not in ("command", "run"):
            self.input_applied()        # a lesson's action and the like: nothing to wait for
        return inp

    def input_applied(self) -> None:
        """The last input has taken effect."""
        self._applying = False
        self._applied_clock = self.clock()
        for fn in list(self.applied_listeners):
            fn()

    def note_done(self, kind: str, text: str) -> None:
        """An input the screen has already applied (its steps, say): noted now, stamped with
        the time it began."""
        if self._applied_clock is None or not self.input_listeners or self._applying:
            return
        inp = Input(kind, text, *self._applied_clock, applied=True)
        for listener in list(self.input_listeners):
            listener(inp)
        self.input_applied()

    def note_run(self, chunk: int | None = None) -> None:
        """The screen ran the machine outside the command language, up to here: note it as an
        input (``run`` to this instruction count, in runs of ``chunk`` when it ran that way)."""
        self._catch_up(chunk)

    def _catch_up(self, chunk: int | None = None) -> None:
        """If the machine ran since the last input without one (the screen's run key), note
        that run now, as an input that has already taken effect."""
        if self._applied_clock is None or not self.input_listeners or self._applying:
            return
        now = self.clock()
        if now[0] == self._applied_clock[0]:
            return
        text = str(now[0]) if chunk is None else f"{now[0]} by {chunk}"
        inp = Input("run", text, *self._applied_clock, applied=True)
        for listener in list(self.input_listeners):
            listener(inp)
        self.input_applied()

    # -- focus ------------------------------------------------------------
    @property
    def xen(self) -> bool:
        """Whether the machine is a Xen host (else the bare machine)."""
        return isinstance(getattr(self.machine, "domains", None), dict)

    def domains(self) -> list[Any]:
        """A Xen host's domains in domain-id order (none on bare metal)."""
        return sorted(self.machine.domains.values(), key=lambda d: d.domid) if self.xen else []

    def vcpus(self) -> list[VcpuRef]:
        return [VcpuRef(*v) for v in self.machine.vcpu_refs()]

    def xen_vcpu(self, ref: VcpuRef) -> Any:
        """Xen's vCPU behind a CPU (its runstate, pCPU, kernel mode); None on bare metal."""
        if not self.xen or ref.dom is None:
            return None
        d = self.machine.domains.get(ref.dom)
        return next((v for v in d.vcpus if v.id == ref.vcpu), None) if d is not None else None

    @property
    def cpu_hz(self) -> int:
        return self.machine.cpu_hz

    def service_names(self) -> list[str]:
        """dom0's services on a Xen host (xenstored, xenconsoled, the device model ...)."""
        return sorted(svc.name for svc in self.machine.services.in_start_order()) if self.xen else []

    def dom0_work_queued(self) -> int:
        return len(self.machine.dom0_work) if self.xen else 0

    @property
    def focus(self) -> VcpuRef:
        """The focused vCPU with guest code (the last one chosen, while a service domain is focused)."""
        refs = self.vcpus()
        return refs[min(self._focus, len(refs) - 1)]

    def focus_targets(self) -> list[FocusTarget]:
        """Every vCPU that ``focus`` can choose, in domain-id order (the CPU on bare metal)."""
        if not self.xen:
            return [FocusTarget(f"0.{r.vcpu}", r.dom, r.vcpu, r.label, True) for r in self.vcpus()]
        return [FocusTarget(f"{d.domid}.{v.id}", d.domid, v.id, f"{d.name} ({d.mode})", v.cpu is not None)
                for d in self.domains() for v in d.vcpus]

    @property
    def focused(self) -> FocusTarget:
        """What the panes show: the service domain's vCPU if one is focused, else :attr:`focus`."""
        if self.service_dom is not None:
            for t in self.focus_targets():
                if t.dom == self.service_dom:
                    return t
            self.service_dom = None          # the domain has gone
        ref = self.focus
        return FocusTarget(f"{0 if ref.dom is None else ref.dom}.{ref.vcpu}", ref.dom, ref.vcpu, ref.label, True)

    def set_focus(self, spec: str) -> FocusTarget:
        """Focus ``DOM`` or ``DOM.VCPU`` (by id, ``dID`` or name); bare metal is ``0``."""
        dom_part, _, vcpu_part = spec.partition(".")
        for i, ref in enumerate(self.vcpus()):
            names = {str(ref.dom), f"d{ref.dom}", ref.label.split()[0]} if ref.dom is not None \
                else {"0", "native", "bare"}
            if dom_part in names and (not vcpu_part or vcpu_part == str(ref.vcpu)):
                self._focus = i
                self.service_dom = None
                return self.focused
        for d in self.domains():
            if dom_part not in (str(d.domid), f"d{d.domid}", d.name):
                continue
            vcpus = [v for v in d.vcpus if not vcpu_part or str(v.id) == vcpu_part]
            if vcpus and all(v.cpu is None for v in vcpus):
                self.service_dom = d.domid
                return self.focused
        raise UserError(f"no domain or vCPU '{spec}' ('focus' lists them)")

    def focus_next(self) -> FocusTarget:
        """The next domain (its first vCPU); on bare metal, the next CPU."""
        targets = self.focus_targets()
        current = self.focused
        if self.xen:
            firsts: dict[Any, FocusTarget] = {}
            for t in targets:
                firsts.setdefault(t.dom, t)
            order = list(firsts.values())
            doms = [t.dom for t in order]
            nxt = order[(doms.index(current.dom) + 1) % len(order)] if current.dom in doms else order[0]
        else:
            specs = [t.spec for t in targets]
            nxt = targets[(specs.index(current.spec) + 1) % len(targets)] if current.spec in specs else targets[0]
        return self.set_focus(nxt.spec)

    def focus_event(self, ev: Event) -> None:
        """Focus the vCPU an event happened on (a stop shows where it happened); Xen's own
        events (no domain) leave the focus where it is."""
        if ev.dom is None and self.xen:
            return
        spec = f"{0 if ev.dom is None else ev.dom}.{ev.vcpu}"
        try:
            self.set_focus(spec)
        except UserError:
            pass                             # a domain that has gone since

    # -- time -------------------------------------------------------------
    def _watch(self, ev: Event) -> None:
        if self.break_hit is None and any(b.matches(ev) for b in self.breakpoints):
            self.break_hit = ev
            for ref in self.vcpus():
                ref.cpu.yield_now = True
            if self.xen:
                self.machine.yield_now = True       # a Xen host: stop scheduling too

    def _room(self, n: int) -> int:
        """``n`` instructions, or fewer if the cap is nearer."""
        if self.insn_cap is None:
            return n
        return max(0, min(n, self.insn_cap - self.clock()[0]))

    def _stopped_at_break(self) -> Event | None:
        if self.break_hit is not None:
            self.focus_event(self.break_hit)
        return self.break_hit

    def step(self, n: int = 1) -> int:
        """Single-step ``n`` instructions (stopping early at a breakpoint); return how many ran."""
        self.break_hit = None
        done = 0
        m = self.machine
        while done < n and not m.stopped and self.break_hit is None:
            if self.insn_cap is not None and self.clock()[0] >= self.insn_cap:
                break
            m.step()
            done += 1
        self._stopped_at_break()
        return done

    def run(self, n: int | None = None) -> Event | None:
        """Run ``n`` instructions (or until the machine stops); stop at a breakpoint."""
        self.break_hit = None
        budget = self._room(n if n is not None else 1 << 62)
        if budget <= 0:
            return self.break_hit
        if not self.checkpoints:
            self.machine.run(budget)
        elif self.xen:
            self._run_host_with_checkpoints(budget)
        else:
            self._run_with_checkpoints(budget)
        return self._stopped_at_break()

    def add_checkpoint(self, every: int, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` each time a run passes a multiple of ``every`` instructions, at a point
        where stopping would not change the machine's course; returns a function that stops it."""
        entry = (every, fn)
        self.checkpoints.append(entry)
        return lambda: entry in self.checkpoints and self.checkpoints.remove(entry)

    def _due(self, before: int, now: int) -> list[Callable[[], None]]:
        return [fn for every, fn in list(self.checkpoints) if now // every > before // every]

    def _run_with_checkpoints(self, budget: int) -> None:
        """The bare machine: a run cut at an instruction and continued is the same run, so
        it runs up to each checkpoint's next multiple and calls it there."""
        m = self.machine
        end = self.clock()[0] + budget
        while True:
            now = self.clock()[0]
            if now >= end or m.stopped or self.break_hit is not None:
                return
            mark = min([(now // every + 1) * every for every, _ in self.checkpoints] + [end])
            m.run(mark - now)
            after = self.clock()[0]
            if after == now:
                return
            for fn in self._due(now, after):
                fn()

    def _run_host_with_checkpoints(self, budget: int) -> None:
        """A Xen host: between two vCPU runs (its run loop's own pause points) the checkpoints
        whose multiple was passed are called; the run goes on as if nothing had looked."""
        m = self.machine
        last = [m.instructions]

        def look() -> bool:
            now = m.instructions
            if now != last[0]:
                for fn in self._due(last[0], now):
                    fn()
                last[0] = now
            return False
        m.run(budget, stop=look)
        look()                      # the run ended between two vCPU runs too

    def until(self, spec: EventSpec, limit: int = 50_000_000) -> Event | None:
        self.break_hit = None
        limit = self._room(limit)
        if limit <= 0:
            return None
        ev = self.machine.run_until(spec.matches, max_insns=limit)
        if ev is not None:
            self.focus_event(ev)
        else:
            self._stopped_at_break()
        return ev

    # -- views -------------------------------------------------------------
    def cpu_view(self, ref: VcpuRef | None = None) -> dict[str, Any]:
        ref = ref or self.focus
        c = ref.cpu
        if arm_view.is_arm(c):
            return arm_view.cpu_view(self, ref)
        regs = {name: c.regs[i] for i, name in enumerate(GPR64)}
        return {
            "label": ref.label, "dom": ref.dom, "vcpu": ref.vcpu,
            "cpl": c.cpl, "root": c.root, "rip": c.rip, "rflags": c.rflags,
            "flags": describe_flags(c.rflags), "regs": regs,
            "cr0": c.cr0, "cr2": c.cr2, "cr3": c.cr3, "cr4": c.cr4, "efer": c.efer,
            "halted": c.halted, "stopped": c.stopped, "icount": c.icount, "cycles": c.cycles,
            "paging": c.paging, "next": self.disassemble_at(c.rip, ref),
        }

    def _fetch(self, addr: int, ref: VcpuRef) -> bytes | None:
        try:
            return ref.cpu.read_virt(addr, INSN_SIZE, supervisor=True)
        except Exception:
            return None

    def disassemble_at(self, addr: int, ref: VcpuRef | None = None) -> str:
        ref = ref or self.focus
        if arm_view.is_arm(ref.cpu):
            return arm_view.disassemble_at(self, addr, ref)
        raw = self._inspect_bytes(addr, INSN_SIZE, ref)
        if raw is None:
            return "(not mapped)"
        try:
            return disassemble(decode(raw), addr)
        except DecodeError:
            return "(bad)"

    def _inspect_bytes(self, addr: int, n: int, ref: VcpuRef) -> bytes | None:
        """Read memory as the focused CPU sees it, without touching A/D bits or the TLB."""
        c = ref.cpu
        out = bytearray()
        for page_va in range(addr & ~0xFFF, addr + n, 0x1000):
            pa = self.translate_quietly(page_va, ref)
            if pa is None:
                return None
            out += self.machine.mem.read(pa, 0x1000)
        start = addr & 0xFFF
        del c
        return bytes(out[start:start + n])

    def _walk(self, c, va: int, cpl: int) -> paging.WalkResult:
        """A look at the tables that changes nothing: no A/D bits, no TLB fill.

        A non-root CPU with EPT walks two dimensions: each guest table and the
        final address are translated guest-physical -> machine through EPT.
        """
        ept = None
        root = c.walk_root()
        if not c.root and c.vmcs is not None and c.vmcs.ept:
            ept = EptTranslator(self.machine.mem, c.vmcs.eptp, set_ad=False)
        elif not c.root and hasattr(self.machine, "guest_phys_to_machine"):
            # Shadow paging: show the guest's own tables, translated through its p2m,
            # not Xen's shadow (which fills in lazily).
            dom = self._ref_of(c).dom

            def ept(gpa: int, access: str):
                return self.machine.guest_phys_to_machine(dom, gpa), []
            root = c.cr3
        return paging.walk(self.machine.mem, root, va, access="r", cpl=cpl, set_ad=False,
                           table_translate=ept)

    def _ref_of(self, cpu) -> VcpuRef:
        return next(r for r in self.vcpus() if r.cpu is cpu)

    def translate_quietly(self, va: int, ref: VcpuRef | None = None) -> int | None:
        ref = ref or self.focus
        c = ref.cpu
        if arm_view.is_arm(c):
            return arm_view.translate_quietly(self, va, ref)
        if not c.paging:
            if not c.root and c.vmcs is not None and c.vmcs.ept:
                res = ept_walk(self.machine.mem, c.vmcs.eptp, va, "r", set_ad=False)
                return res.hpa if res.ok else None
            if not c.root and hasattr(self.machine, "guest_phys_to_machine"):
                return self.machine.guest_phys_to_machine(ref.dom, va)
            return va
        res = self._walk(c, va, 0)
        return res.hpa if res.ok else None

    def walk(self, va: int, ref: VcpuRef | None = None) -> tuple[paging.WalkResult, list[str]]:
        """Walk ``va`` through the focused CPU's tables without changing anything."""
        ref = ref or self.focus
        c = ref.cpu
        if arm_view.is_arm(c):
            return arm_view.walk(self, va, ref)       # type: ignore[return-value]
        if not c.paging:
            raise UserError("paging is off on this CPU: addresses are physical")
        res = self._walk(c, va, c.cpl)
        return res, paging.walk_steps_text(res)

    def source_map(self, dom: int | None = None) -> SourceMap:
        """The images loaded for domain ``dom`` (the focused one by default)."""
        return SourceMap(self.machine.images_for(self.focus.dom if dom is None else dom).values())

    def source_view(self, radius: int = 6, ref: VcpuRef | None = None) -> list[tuple[int, str, bool]]:
        """Source lines around the instruction about to run: (address, text, is_current).

        ``text`` is ``file:line  source`` where the address has a source line,
        else ``address  disassembly``. Inside a domain's hypercall page (the
        kernel's ``hypercall_page``, which Xen fills with stubs when it builds
        the domain or when an HVM kernel asks), the lines are the stubs as they
        are in memory, disassembled: ``hypercall page (written by Xen):+OFFSET
        disassembly``.
        """
        ref = ref or self.focus
        rip = ref.cpu.rip
        size = arm_view.INSN_SIZE if arm_view.is_arm(ref.cpu) else INSN_SIZE
        smap = self.source_map(ref.dom)
        here = smap.place(rip)
        if here is None:
            return [(rip, f"{rip:#018x}  {self.disassemble_at(rip, ref)}", True)]
        out = []
        for k in range(-radius, radius + 1):
            addr = rip + k * size
            place = smap.place(addr)
            if place is None or place.page != here.page:
                continue
            if here.in_hypercall_page:
                out.append((addr, f"{HYPERCALL_PAGE_LABEL}:+{place.offset:#x}  {self._stub_text(place, ref)}",
                            k == 0))
            else:
                # display(): the same name whether the image was assembled from a relative or an absolute path
                out.append((addr, f"{display(place.file)}:{place.line}  {place.text.strip()}", k == 0))
        return out

    def hypercall_page_at(self, addr: int, ref: VcpuRef | None = None) -> int | None:
        """The start of the focused domain's hypercall page if ``addr`` is inside it, else None."""
        return self.source_map((ref or self.focus).dom).hypercall_page_at(addr)

    def _stub_text(self, place: Any, ref: VcpuRef) -> str:
        """One instruction of the hypercall page, with the hypercall a stub's first line selects."""
        text = self.disassemble_at(place.addr, ref)
        if place.offset % HYPERCALL_STUB_SIZE == 0 and place.offset < HYPERCALL_PAGE_SIZE - HYPERCALL_STUB_SIZE \
                and text.startswith("mov eax"):
            h = HYPERCALL_BY_NR.get(place.stub)
            if h is not None:
                text += f"    ; stub {place.stub}: {h.name}"
        return text

    def console(self, ref: VcpuRef | None = None) -> str:
        dom = self.focused.dom if ref is None else ref.dom
        return self.machine.console_of(dom)

    def consoles(self, ref: VcpuRef | None = None) -> tuple[tuple[str, str], ...]:
        """Each console the focused domain has, as xl console -t names them, with what it
        printed: the PV console (hvc0, the ring xenconsoled drains) and the serial port of its
        device model (an HVM guest's COM1), the primary one first (libxl__primary_console_find():
        the serial port of an HVM guest, the PV console of a PV or PVH one)."""
        dom_id = self.focused.dom if ref is None else ref.dom
        m = self.machine
        dom = getattr(m, "domains", {}).get(dom_id) if dom_id is not None else None
        if dom is None or dom.privileged:
            return ()
        services = getattr(m, "services", None)
        out: list[tuple[str, str]] = []
        dm = getattr(services, "device_model", None)
        if dm is not None and dm.wants(dom):
            out.append(("serial", dm.serial_output(dom)))
        cons = getattr(services, "xenconsoled", None)
        if cons is not None and getattr(dom, "console_pfn", 0) and hasattr(cons, "output"):
            out.append(("pv", cons.output(dom)))
        return tuple(out)
