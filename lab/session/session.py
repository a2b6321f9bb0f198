"""A session: one machine, the learner's focus and breakpoints, and views of state.

Front ends (the TUI, the shell, ``xenlab`` subcommands) drive a machine only
through a Session, and read what they show from its views and from trace
events; none of them reaches into the simulator's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import LabBug, UserError
from ..hw import paging
from ..hw.ept import EptTranslator, ept_walk
from ..hw.cpu import Cpu
from ..hw.flags import describe as describe_flags
from ..isa.disassembler import disassemble
from ..isa.encoding import INSN_SIZE, DecodeError, decode
from ..isa.registers import GPR64
from ..trace import Event
from ..xen import abi
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


class Session:
    """A machine and what the learner set on it: focus, breakpoints, and where it came from.

    ``target`` is the file the machine was built from (None when it was given
    ready made): ``reset`` builds it again from there, ``open`` from another.
    """

    def __init__(self, machine: Any, target: str | None = None) -> None:
        self.machine = machine
        self.target = target
        self.breakpoints: list[EventSpec] = []
        self.break_hit: Event | None = None
        self._focus = 0
        #: A focused domain whose vCPU runs no guest code (Domain-0's services), else None.
        self.service_dom: int | None = None
        #: Set when the simulator itself failed: the machine stays as it was, and runs no more.
        self.fault: str | None = None
        #: Warnings from building the machine (an xl.cfg option the lab ignores ...).
        self.warnings: list[str] = []
        #: Called with every :class:`Input` as it applies (recordings, lesson checks).
        self.input_listeners: list[Callable[[Input], None]] = []
        #: Trace listeners that follow the session to every machine it holds (``reset``, ``open``).
        self.trace_listeners: list[Callable[[Event], None]] = [self._watch]
        #: Called after ``reset`` or ``open`` put a new machine in place.
        self.machine_listeners: list[Callable[["Session"], None]] = []
        machine.trace.listeners.append(self._watch)

    # -- the machine -----------------------------------------------------------
    def listen(self, listener: Callable[[Event], None]) -> None:
        """Hear every trace event of this machine and of every machine ``reset``/``open`` brings."""
        self.trace_listeners.append(listener)
        self.machine.trace.listeners.append(listener)

    def replace_machine(self, machine: Any, target: str | None) -> None:
        """Put ``machine`` in place of the current one; breakpoints stay, focus starts again."""
        old = self.machine.trace.listeners
        for listener in self.trace_listeners:
            if listener in old:
                old.remove(listener)
        self.machine = machine
        self.target = target
        self._focus = 0
        self.service_dom = None
        self.fault = None
        self.break_hit = None
        for listener in self.trace_listeners:
            machine.trace.listeners.append(listener)
        for notify in list(self.machine_listeners):
            notify(self)

    def reset(self) -> str:
        """Build the machine again from its file: the scenario from its start."""
        if self.target is None:
            raise UserError("this machine was not opened from a file, so there is nothing to reset it to")
        return self.open(self.target)

    def open(self, target: str) -> str:
        """Build the machine ``target`` names and put it in place of this one."""
        from .targets import build_machine
        machine, path, warnings = build_machine(target)
        self.warnings = warnings
        self.replace_machine(machine, path)
        return path

    def _guarded(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run the machine; a failure inside the simulator stops the machine, never the session."""
        if self.fault is not None:
            raise UserError(f"the machine stopped after an internal error in the simulator ({self.fault}); "
                            "'reset' starts it again from its file, 'open PATH' opens another")
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as e:
            self.fault = f"{type(e).__name__}: {e}"
            raise LabBug(f"internal error in the simulator: {self.fault}. The machine is stopped where it "
                         "failed (its state can still be read); 'reset' starts it again from its file") from e

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
        insns, cycles = self.clock()
        inp = Input(kind, text, insns, cycles)
        for listener in list(self.input_listeners):
            listener(inp)
        return inp

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
        return sorted(self.machine.services) if self.xen else []

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
            self._guarded(m.step)
            done += 1
        self._stopped_at_break()
        return done

    def run(self, n: int | None = None, stop: Callable[[], bool] | None = None) -> Event | None:
        """Run ``n`` instructions (or until the machine stops); stop at a breakpoint.

        ``stop`` (a Xen host only) is asked between two vCPU runs whether to stop there.
        """
        self.break_hit = None
        budget = n if n is not None else 1 << 62
        if stop is not None and self.xen:
            self.idle = self._guarded(self.machine.run, budget, stop=stop) is False
        else:
            self._guarded(self.machine.run, budget)
        return self._stopped_at_break()

    #: Whether the last ``run`` with ``stop`` found nothing at all that could run.
    idle = False

    def until(self, spec: EventSpec, limit: int = 50_000_000) -> Event | None:
        self.break_hit = None
        ev = self._guarded(self.machine.run_until, spec.matches, max_insns=limit)
        if ev is not None:
            self.focus_event(ev)
        else:
            self._stopped_at_break()
        return ev

    # -- views -------------------------------------------------------------
    def cpu_view(self, ref: VcpuRef | None = None) -> dict[str, Any]:
        ref = ref or self.focus
        c = ref.cpu
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
        smap = self.source_map(ref.dom)
        here = smap.place(rip)
        if here is None:
            return [(rip, f"{rip:#018x}  {self.disassemble_at(rip, ref)}", True)]
        out = []
        for k in range(-radius, radius + 1):
            addr = rip + k * INSN_SIZE
            place = smap.place(addr)
            if place is None or place.page != here.page:
                continue
            if here.in_hypercall_page:
                out.append((addr, f"{HYPERCALL_PAGE_LABEL}:+{place.offset:#x}  {self._stub_text(place, ref)}",
                            k == 0))
            else:
                out.append((addr, f"{place.file}:{place.line}  {place.text.strip()}", k == 0))
        return out

    def hypercall_page_at(self, addr: int, ref: VcpuRef | None = None) -> int | None:
        """The start of the focused domain's hypercall page if ``addr`` is inside it, else None."""
        return self.source_map((ref or self.focus).dom).hypercall_page_at(addr)

    def _stub_text(self, place: Any, ref: VcpuRef) -> str:
        """One instruction of the hypercall page, with the hypercall a stub's first line selects."""
        text = self.disassemble_at(place.addr, ref)
        if place.offset % abi.HYPERCALL_STUB_SIZE == 0 and place.offset < HYPERCALL_PAGE_SIZE - abi.HYPERCALL_STUB_SIZE \
                and text.startswith("mov eax"):
            h = abi.HYPERCALL_BY_NR.get(place.stub)
            if h is not None:
                text += f"    ; stub {place.stub}: {h.name}"
        return text

    def console(self, ref: VcpuRef | None = None) -> str:
        dom = self.focused.dom if ref is None else ref.dom
        return self.machine.console_of(dom)
