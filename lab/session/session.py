"""A session: one machine, the learner's focus and breakpoints, and views of state.

Front ends (the TUI, the shell, ``xenlab`` subcommands) drive a machine only
through a Session, and read what they show from its views and from trace
events; none of them reaches into the simulator's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from ..hw import paging
from ..hw.ept import EptTranslator, ept_walk
from ..hw.cpu import Cpu
from ..hw.flags import describe as describe_flags
from ..isa.disassembler import disassemble
from ..isa.encoding import INSN_SIZE, DecodeError, decode
from ..isa.registers import GPR64
from ..trace import Event
from .eventspec import EventSpec

#: How ``source_view`` names lines in a domain's hypercall page: Xen writes
#: that page at run time over the kernel's ``.zero 4096``, so it has no source.
HYPERCALL_PAGE_LABEL = "hypercall page (written by Xen)"
HYPERCALL_PAGE_SIZE = 4096
HYPERCALL_STUB_SIZE = 32


@dataclass(frozen=True)
class VcpuRef:
    """One (v)CPU the learner can focus: a label plus where it lives."""
    label: str
    dom: int | None
    vcpu: int
    cpu: Cpu


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
    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.breakpoints: list[EventSpec] = []
        self.break_hit: Event | None = None
        self._focus = 0
        #: Called with every :class:`Input` as it applies (recordings, lesson checks).
        self.input_listeners: list[Callable[[Input], None]] = []
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
        insns, cycles = self.clock()
        inp = Input(kind, text, insns, cycles)
        for listener in list(self.input_listeners):
            listener(inp)
        return inp

    # -- focus ------------------------------------------------------------
    def vcpus(self) -> list[VcpuRef]:
        return [VcpuRef(*v) for v in self.machine.vcpu_refs()]

    @property
    def focus(self) -> VcpuRef:
        refs = self.vcpus()
        return refs[min(self._focus, len(refs) - 1)]

    def set_focus(self, spec: str) -> VcpuRef:
        """Focus ``DOM`` or ``DOM.VCPU`` (by id or name); bare metal is ``0``."""
        dom_part, _, vcpu_part = spec.partition(".")
        for i, ref in enumerate(self.vcpus()):
            names = {str(ref.dom), ref.label.split()[0]} if ref.dom is not None else {"0", "native", "bare"}
            if dom_part in names and (not vcpu_part or vcpu_part == str(ref.vcpu)):
                self._focus = i
                return ref
        raise UserError(f"no domain or vCPU '{spec}'")

    # -- time -------------------------------------------------------------
    def _watch(self, ev: Event) -> None:
        if self.break_hit is None and any(b.matches(ev) for b in self.breakpoints):
            self.break_hit = ev
            for ref in self.vcpus():
                ref.cpu.yield_now = True
            if hasattr(self.machine, "yield_now"):
                self.machine.yield_now = True       # a Xen host: stop scheduling too

    def step(self, n: int = 1) -> int:
        """Single-step ``n`` instructions (stopping early at a breakpoint); return how many ran."""
        self.break_hit = None
        done = 0
        m = self.machine
        while done < n and not m.stopped and self.break_hit is None:
            m.step()
            done += 1
        return done

    def run(self, n: int | None = None) -> Event | None:
        """Run ``n`` instructions (or until the machine stops); stop at a breakpoint."""
        self.break_hit = None
        self.machine.run(n if n is not None else 1 << 62)
        return self.break_hit

    def until(self, spec: EventSpec, limit: int = 50_000_000) -> Event | None:
        self.break_hit = None
        return self.machine.run_until(spec.matches, max_insns=limit)

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
        page = self.hypercall_page_at(rip, ref)
        if page is not None:
            out = []
            for k in range(-radius, radius + 1):
                addr = rip + k * INSN_SIZE
                if page <= addr < page + HYPERCALL_PAGE_SIZE:
                    out.append((addr, f"{HYPERCALL_PAGE_LABEL}:+{addr - page:#x}  {self._stub_text(addr, page, ref)}",
                                k == 0))
            return out
        for image in self.machine.images_for(ref.dom).values():
            line = image.source_line(rip)
            if line is None:
                continue
            out = []
            for k in range(-radius, radius + 1):
                addr = rip + k * INSN_SIZE
                sl = image.source_line(addr)
                if sl is None:
                    continue
                out.append((addr, f"{sl.file}:{sl.line}  {sl.text.strip()}", k == 0))
            return out
        return [(rip, f"{rip:#018x}  {self.disassemble_at(rip, ref)}", True)]

    def hypercall_page_at(self, addr: int, ref: VcpuRef | None = None) -> int | None:
        """The start of the focused domain's hypercall page if ``addr`` is inside it, else None."""
        ref = ref or self.focus
        for image in self.machine.images_for(ref.dom).values():
            base = image.symbols.get("hypercall_page")
            if base is not None and base <= addr < base + HYPERCALL_PAGE_SIZE:
                return base
        return None

    def _stub_text(self, addr: int, page: int, ref: VcpuRef) -> str:
        """One instruction of the hypercall page, with the hypercall a stub's first line selects."""
        text = self.disassemble_at(addr, ref)
        off = addr - page
        if off % HYPERCALL_STUB_SIZE == 0 and off < HYPERCALL_PAGE_SIZE - HYPERCALL_STUB_SIZE \
                and text.startswith("mov eax"):
            from ..xen import abi
            nr = off // HYPERCALL_STUB_SIZE
            h = abi.HYPERCALL_BY_NR.get(nr)
            if h is not None:
                text += f"    ; stub {nr}: {h.name}"
        return text

    def console(self, ref: VcpuRef | None = None) -> str:
        return self.machine.console_of((ref or self.focus).dom)
