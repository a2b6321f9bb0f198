"""One view of the machine: what a screen draws, captured at one instant.

:func:`build_view` reads a :class:`~lab.session.session.Session` through its
declared API (its domains, focus targets, CPU views, walks, source map and
clock) into a :class:`StateView` of plain values. The screen builds one on
its simulation thread and draws it later, so it never reads a machine that
is changing under it; any other front end (a browser, a lesson, a test) gets
the same picture the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .session import Session


@dataclass(frozen=True)
class VcpuInfo:
    """One line of the domains tree, and one mark in the rings picture."""
    label: str
    dom: int | None
    vcpu: int
    spec: str               # what ``focus`` takes to select it
    state: str              # "running", "halted" or "stopped: why" (the CPU's); Xen's runstate for a service vCPU
    cpl: int
    root: bool
    focused: bool
    runstate: str = ""      # Xen's runstate: running, runnable, blocked, offline ("" on bare metal)
    pcpu: int | None = None  # the physical CPU it runs (or last ran) on
    role: str = ""          # whose code runs now: "kernel" or "user" ("" when unknown)
    has_cpu: bool = True    # False: the vCPU runs dom0's services in Python, no guest instructions
    mode: str = ""          # the domain's guest mode: pv, pv32, hvm, pvh ... ("" on bare metal)
    #: The cycles it has run (its running time: xl vcpu-list's Time(s), VCPUOP_get_runstate_info's
    #: RUNSTATE_running), on a Xen host; 0 on bare metal.
    run_cycles: int = 0


@dataclass(frozen=True)
class DomainInfo:
    """One domain of a Xen host, as the domains tree shows it."""
    domid: int
    name: str
    mode: str               # pv, pv32, hvm, hvm-pvdrivers, pvhvm, pvh
    type: str               # what Xen calls it: pv, hvm or pvh
    state: str              # running, runnable, blocked, paused, shutdown, crashed, dying
    flags: str              # the State column of ``xl list`` (r b p s c d)
    mem_mib: int
    vcpus: tuple[VcpuInfo, ...]
    focused: bool
    reason: str | None = None     # why it shut down or crashed


@dataclass(frozen=True)
class StateView:
    """Everything the state panes draw, captured at one instant on the sim thread."""
    gen: int
    vcpus: tuple[VcpuInfo, ...]
    cpu: dict[str, Any]
    source: tuple[tuple[int, str, bool], ...]
    tlb: tuple[Any, ...]
    walk: Any                         # a WalkResult, or None
    walk_lines: tuple[str, ...]
    walk_note: str                    # why there is no walk, or ""
    walk_requested: int | None        # the address asked for, None for rip
    console: str
    breakpoints: tuple[str, ...]
    images: dict[Any, tuple[Any, ...]]   # loaded images by domain, for mapping rip to a source line
    cpu_hz: int | None
    stopped: str | None
    #: The focused CPU as it was when the last step, run or command began: what
    #: the CPU pane compares against to highlight changed registers.
    before: dict[str, Any] | None = None
    #: A Xen host's domains, in domain-id order (empty on bare metal).
    domains: tuple[DomainInfo, ...] = ()
    xen: bool = False
    #: When the focused domain runs no guest code (Domain-0's services): what it does instead.
    service: str | None = None
    #: The focused domain (its id), None on bare metal.
    focus_dom: int | None = None
    #: Simulated time and instructions of the whole machine: the host's clock (its furthest
    #: pCPU's, Xen's NOW()) and every vCPU's instructions.
    host_cycles: int | None = None
    host_insns: int | None = None
    #: The focused guest's rings, event channels and grants (``io``), "" when there are none to show.
    io: str = ""
    #: Each console of the focused guest (xl console -t's names, primary first) and its output.
    consoles: tuple[tuple[str, str], ...] = ()


def role_of(mode: str, cpl: int, kernel_mode: bool | None) -> str:
    """Whose code a CPU runs: "kernel" or "user".

    A PV kernel is not told apart by its ring (a 64-bit PV kernel runs in ring 3
    like its programs): Xen keeps a kernel-mode flag per vCPU, switched on every
    entry to and exit from the guest kernel. Elsewhere ring 0 is the kernel.
    """
    if mode in ("pv", "pv32") and kernel_mode is not None:
        return "kernel" if kernel_mode else "user"
    return "kernel" if cpl == 0 else "user"


_STATE_LETTERS = (("running", "r"), ("blocked", "b"), ("paused", "p"), ("shutdown", "s"), ("crashed", "c"),
                  ("dying", "d"))


def domain_state(dom: Any) -> tuple[str, str]:
    """(one word, ``xl list``'s State column) for a domain."""
    flags = dom.state_flags()
    letters = "".join(letter if flags[key] else "-" for key, letter in _STATE_LETTERS)
    if dom.state != "running":
        return dom.state, letters
    for word in ("paused", "running", "blocked"):
        if flags[word]:
            return word, letters
    return "runnable", letters


def _service_text(session: Session, dom: Any) -> str:
    names = ", ".join(session.service_names()) or "none yet"
    parts = []
    for v in dom.vcpus:
        where = f"pCPU {v.pcpu}" if v.pcpu is not None else "no pCPU yet"
        parts.append(f"vcpu {v.id}: {v.runstate} ({where}), {v.run_cycles:,} cycles of work")
    queued = session.dom0_work_queued()
    return (f"{dom.name}'s vCPU runs the lab's dom0 services as Python code (services: {names}). "
            "Their work costs simulated cycles on a pCPU, but no guest instructions run, so there are "
            f"no registers, source or page tables to show. {'; '.join(parts)}; "
            f"{queued} piece{'s' if queued != 1 else ''} of work queued.")


def build_view(session: Session, gen: int, walk_addr: int | None,
               before: dict[str, Any] | None = None) -> StateView:
    """Read the session into a StateView (call only on the thread that owns the session)."""
    m = session.machine
    xen = session.xen
    doms = {d.domid: d for d in session.domains()}
    focused = session.focused
    service_dom = None if focused.has_cpu else focused.dom
    refs = session.vcpus()
    focus = session.focus
    infos = []
    by_ref: dict[tuple[Any, int], VcpuInfo] = {}
    for r in refs:
        c = r.cpu
        state = f"stopped: {c.stopped}" if c.stopped else ("halted" if c.halted else "running")
        spec = f"{0 if r.dom is None else r.dom}.{r.vcpu}"
        v = session.xen_vcpu(r)
        mode = v.domain.mode if v is not None else ""
        info = VcpuInfo(r.label, r.dom, r.vcpu, spec, state, c.cpl, c.root,
                        r == focus and service_dom is None,
                        runstate=v.runstate if v is not None else "", pcpu=v.pcpu if v is not None else None,
                        role=role_of(mode, c.cpl, v.kernel_mode if v is not None else None), mode=mode,
                        run_cycles=v.run_cycles if v is not None else 0)
        infos.append(info)
        by_ref[(r.dom, r.vcpu)] = info
    domains = []
    for d in doms.values():
        vinfos = []
        for v in d.vcpus:
            if (d.domid, v.id) in by_ref:
                vinfos.append(by_ref[(d.domid, v.id)])
            else:
                vinfos.append(VcpuInfo(f"{d.name} ({d.mode})", d.domid, v.id, f"{d.domid}.{v.id}", v.runstate,
                                       0, True, service_dom == d.domid, runstate=v.runstate, pcpu=v.pcpu,
                                       role="services" if v.cpu is None and d.privileged else "",
                                       has_cpu=v.cpu is not None,
                                       mode=d.mode, run_cycles=v.run_cycles))
        word, letters = domain_state(d)
        focused_dom = service_dom == d.domid if service_dom is not None else focus.dom == d.domid
        domains.append(DomainInfo(d.domid, d.name, d.mode, d.type, word, letters, d.mem_mib, tuple(vinfos),
                                  focused_dom, d.crash_reason or d.shutdown_reason))
    cpu = session.cpu_view()
    if before is not None and (before["dom"], before["vcpu"], before["label"]) != \
            (cpu["dom"], cpu["vcpu"], cpu["label"]):
        before = None                 # another vCPU: nothing to compare with
    service = None
    walk = None
    lines: tuple[str, ...] = ()
    note = ""
    tlb: tuple[Any, ...] = ()
    source: tuple[tuple[int, str, bool], ...] = ()
    if service_dom is not None:
        dom = doms[service_dom]
        service = _service_text(session, dom)
        note = f"{dom.name} runs no guest code in the lab: focus a guest to walk its page tables"
    else:
        try:
            source = tuple(session.source_view())
        except Exception as e:       # an unmapped rip must not take the pane down
            source = ((cpu["rip"], f"(no source: {e})", True),)
        va = cpu["rip"] if walk_addr is None else walk_addr
        try:
            walk, text = session.walk(va)
            lines = tuple(text)
        except UserError as e:
            note = str(e)
        except Exception as e:
            note = f"cannot walk {va:#x}: {e}"
        try:
            tlb = tuple(focus.cpu.tlb.entries())
        except Exception:
            tlb = ()
    console = session.console()
    consoles = session.consoles() if xen else ()
    images = {dom_id: tuple(m.images_for(dom_id).values())
              for dom_id in dict.fromkeys([r.dom for r in refs] + list(doms))}
    host_insns, host_cycles = session.clock() if xen else (None, None)
    io = ""
    focus_dom = focused.dom if xen else None
    if xen and focus_dom in doms:
        from .io_state import describe
        try:
            io = describe(m, focus_dom)
        except Exception as e:        # a guest's half-written table must not take the pane down
            io = f"(cannot read the I/O state: {e})"
    return StateView(
        gen=gen, vcpus=tuple(infos), cpu=cpu, source=source, tlb=tlb, walk=walk, walk_lines=lines,
        walk_note=note, walk_requested=walk_addr, console=console,
        breakpoints=tuple(str(b) for b in session.breakpoints),
        images=images, cpu_hz=session.cpu_hz,
        stopped=m.stopped, before=before, domains=tuple(domains), xen=xen, service=service,
        focus_dom=focus_dom, host_cycles=host_cycles, host_insns=host_insns, io=io, consoles=consoles)
