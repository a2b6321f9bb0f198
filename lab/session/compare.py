"""``xenlab compare``: the same program in each mode, counted side by side.

Every figure comes from the trace of a fresh run: guest instructions from
the vCPU, everything else by counting events of the guest's domain. That
keeps the table explainable: each number can be found, event by event, in
``xenlab run ... --trace``.
"""

from __future__ import annotations

import gc
import re

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..dom0.xlcfg import DiskSpec, DomainConfig, VifSpec, vdev_to_devid
from ..errors import UserError
from ..paths import KERNELS, display
from .build import DEFAULT_PROGRAM, native_machine

#: The modes the lab can run, with what each needs. Every guest gets one disk and one
#: network card: a PV disk (xvda) and vif for PV and PVH, an emulated IDE disk (hda) and
#: NE2000 for HVM, which the HVM kernels with PV drivers unplug to use the same disk and
#: network through the split drivers.
MODES: dict[str, dict[str, Any]] = {
    "native": {"what": "bare metal, kernel in ring 0"},
    "pv": {"type": "pv", "kernel": "pv.s", "what": "64-bit PV, kernel in ring 3"},
    "pv32": {"type": "pv", "kernel": "pv32.s", "pv32": True, "what": "32-bit PV profile, kernel in ring 1"},
    "hvm": {"type": "hvm", "kernel": "hvm.s", "hap": True, "what": "HVM, EPT, emulated devices"},
    "hvm-shadow": {"type": "hvm", "kernel": "hvm.s", "hap": False, "what": "HVM, shadow paging (hap=0)"},
    "hvm-pvdrivers": {"type": "hvm", "kernel": "hvm_pvdrivers.s", "hap": True,
                      "what": "HVM with PV drivers, emulated interrupts"},
    "pvhvm": {"type": "hvm", "kernel": "pvhvm.s", "hap": True,
              "what": "PVHVM: PV drivers, callback vector, PV timer"},
    "pvh": {"type": "pvh", "kernel": "pvh.s", "hap": True, "what": "PVH, EPT, no device model"},
    "arm": {"what": "Xen on Arm: EL1 guest, stage 2, hvc (the workload's Arm translation)"},
}
DEFAULT_MODES = ["native", "pv", "pv32", "hvm", "hvm-shadow", "hvm-pvdrivers", "pvhvm", "pvh", "arm"]
LIMIT = 50_000_000


def guest_devices(mode: str) -> tuple[list[DiskSpec], list[VifSpec]]:
    """The disk (an empty in-memory image) and network card a compared guest gets (the only
    guest on its host, so one MAC serves every mode)."""
    hvm = MODES[mode].get("type") == "hvm"
    vdev = "hda" if hvm else "xvda"
    disk = DiskSpec(target=None, vdev=vdev, devid=vdev_to_devid(vdev), spec=f"vdev={vdev}, access=rw")
    mac = "00:16:3e:00:01:01"
    vif = VifSpec(devid=0, mac=mac, type="ioemu" if hvm else "vif", model="ne2k_pci" if hvm else None)
    return [disk], [vif]


@dataclass
class ModeResult:
    mode: str
    what: str
    instructions: int = 0
    cycles: int = 0
    #: dom0's cycles while the guest ran: its backends, device model, bridge and
    #: xenstored working for the guest (the only guest on its host).
    dom0_cycles: int = 0
    #: Xen's own work on the guest's vCPU, inside ``cycles``: the cost its hypercall and
    #: VM-exit events record (the time from the trap into Xen to the return to the guest).
    xen_cycles: int = 0
    checksum: str = ""
    #: the program's exit code as the kernel reported it (None: it never exited)
    exit_code: int | None = None
    stopped: str = ""
    traps: Counter = field(default_factory=Counter)
    hypercalls: Counter = field(default_factory=Counter)
    vmexits: Counter = field(default_factory=Counter)
    io_exits: int = 0
    ioreqs: int = 0
    ring_requests: int = 0
    evtchn_notifications: int = 0
    shadow_syncs: int = 0
    syscalls: int = 0
    ratio: float = 1.0
    #: xl create refused the guest on this host (the mode is not available there)
    refused: bool = False

    @property
    def total_cycles(self) -> int:
        return self.cycles + self.dom0_cycles

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "description": self.what, "instructions": self.instructions,
                "cycles": self.cycles, "dom0_cycles": self.dom0_cycles, "xen_cycles": self.xen_cycles,
                "total_cycles": self.total_cycles,
                "ratio_to_native": round(self.ratio, 3), "checksum": self.checksum,
                "exit_code": self.exit_code, "refused": self.refused,
                "stopped": self.stopped, "syscalls": self.syscalls,
                "traps": dict(sorted(self.traps.items())), "traps_total": sum(self.traps.values()),
                "hypercalls": dict(sorted(self.hypercalls.items())), "hypercalls_total": sum(self.hypercalls.values()),
                "vmexits": dict(sorted(self.vmexits.items())), "vmexits_total": sum(self.vmexits.values()),
                "io_exits": self.io_exits, "ioreqs": self.ioreqs, "ring_requests": self.ring_requests,
                "evtchn_notifications": self.evtchn_notifications, "shadow_syncs": self.shadow_syncs}


def _count(res: ModeResult, events, dom) -> None:
    for ev in events:
        if ev.dom != dom:
            continue
        k = ev.kind
        d = ev.data
        if k == "trap" and d.get("mnemonic") == "SVC from AArch64":
            res.syscalls += 1                  # an Arm system call is an exception to EL1, no syscall event
        elif k == "trap":
            res.traps[d.get("mnemonic")] += 1
        elif k == "hypercall":
            res.hypercalls[d.get("name")] += 1
            res.xen_cycles += d.get("cost") or 0
        elif k == "vmexit":
            res.vmexits[d.get("reason")] += 1
            res.xen_cycles += d.get("cost") or 0
            if d.get("reason") in ("IO_INSTRUCTION", "IOIO"):
                res.io_exits += 1
        elif k == "ioreq" and d.get("state") in ("ready", "STATE_IOREQ_READY", 1):
            res.ioreqs += 1
        elif k == "ring_io" and d.get("op", "").startswith("request"):
            res.ring_requests += 1
        elif k == "evtchn" and d.get("op") == "send":
            res.evtchn_notifications += 1
        elif k == "pagetable" and d.get("op") == "shadow sync":
            res.shadow_syncs += 1
        elif k == "syscall":
            res.syscalls += 1


def _exit_code(text: str) -> int | None:
    """The code in the kernel's "program exited with code N" line (common/kernel.s)."""
    m = re.search(r"program exited with code (-?\d+)", text)
    return int(m.group(1)) if m else None


def disagreement(results: list[ModeResult]) -> str | None:
    """What the modes disagree on (checksum or exit code), or None: the same program must give
    the same answer in every mode, only its costs differ."""
    ran = [r for r in results if not r.refused]
    for what, values in (("checksum", [r.checksum for r in ran]),
                         ("exit code", [r.exit_code for r in ran])):
        if len(set(values)) > 1:
            shown = ", ".join(f"{r.mode} {v if v not in (None, '') else '-'}" for r, v in zip(ran, values))
            return f"the modes disagree on the program's {what}: {shown}"
    return None


def _checksum(text: str) -> str:
    for line in text.splitlines():
        if "checksum" in line:
            return line.split("checksum", 1)[1].strip()
    return ""


class _FreshHost:
    """Xen with Domain-0 booted once, and put back to that instant for each mode.

    Booting is the same work for every mode (the frame table, the M2P, dom0's
    services); restoring a snapshot of the booted host gives each mode exactly
    the host a fresh boot would (docs/snapshots.md: the same digest, the same
    trace from there on) for a fraction of the cost."""

    def __init__(self, scenario: Path | None = None) -> None:
        self.scenario = scenario
        self._booted: tuple | None = None

    def get(self):
        from .scenario import DEFAULT_SCENARIO, boot_host, load_scenario
        if self._booted is None:
            sc = load_scenario(self.scenario or DEFAULT_SCENARIO)
            if sc.host is None:
                raise UserError(f"{display(sc.path)}: compare needs a scenario with a Xen host ([host]), "
                                "not a bare machine")
            host, xl = boot_host(sc.host, sc.dom0_memory, sc.dom0_vcpus)
            self._booted = (host, xl, host.snapshot())
        else:
            host, xl, snap = self._booted
            host.restore(snap)
        return self._booted[0], self._booted[1]


def run_mode(mode: str, program: Path, scenario: Path | None = None,
             hosts: _FreshHost | None = None) -> ModeResult:
    spec = MODES[mode]
    res = ModeResult(mode, spec["what"])
    if mode == "native":
        m = native_machine(program=program)
        m.run(LIMIT)
        m.console.flush()
        res.instructions, res.cycles, res.stopped = m.cpu.icount, m.cpu.cycles, m.cpu.stopped or ""
        res.checksum = _checksum(m.console.output)
        res.exit_code = _exit_code(m.console.output)
        _count(res, m.trace.iter_all(), None)
        return res
    if mode == "arm":
        return _run_arm(res)
    host, xl = (hosts or _FreshHost(scenario)).get()
    conf = DomainConfig(name=f"{mode}-guest", type=spec["type"], memory=32, maxmem=32,
                        kernel=str(KERNELS / spec["kernel"]), lab_pv32=spec.get("pv32", False),
                        hap=spec.get("hap", True), lab_program=str(program), on_poweroff="preserve",
                        on_crash="preserve", filename=f"<compare {mode}>")
    conf.disks, conf.vifs = guest_devices(mode)
    start = host.trace.seq               # this mode's events: those from its domain's creation on
    try:
        dom = xl.create(conf)
    except UserError as e:
        # the host cannot run this mode (no VT-x/AMD-V for HVM and PVH): xl's refusal, shown
        res.stopped = "refused: " + str(e).splitlines()[0]
        res.refused = True
        return res
    dom0 = host.domains[0].vcpus[0]
    dom0_before = dom0.run_cycles
    host.run(LIMIT)
    v = dom.vcpus[0]
    res.instructions = v.cpu.icount
    res.cycles = v.run_cycles
    res.dom0_cycles = dom0.run_cycles - dom0_before
    res.stopped = dom.crash_reason or dom.shutdown_reason or dom.state
    res.checksum = _checksum(dom.console_output)
    res.exit_code = _exit_code(dom.console_output)
    _count(res, host.trace.since(start), dom.domid)
    return res


def _run_arm(res: ModeResult) -> ModeResult:
    """The Arm column: the shipped Arm guest (machines/arm), the only guest on an arm64 host."""
    from ..dom0.arm.toolstack import ARM_MACHINES
    from .scenario import boot_host, load_scenario
    sc = load_scenario(ARM_MACHINES / "arm.toml")
    host, xl = boot_host(sc.host, sc.dom0_memory)
    dom = xl.create(ARM_MACHINES / "guest.cfg")
    dom0 = host.domains[0].vcpus[0]
    host.run(LIMIT)
    v = dom.vcpus[0]
    res.instructions, res.cycles, res.dom0_cycles = v.cpu.icount, v.run_cycles, dom0.run_cycles
    res.stopped = dom.crash_reason or dom.shutdown_reason or dom.state
    res.checksum = _checksum(dom.console_output)
    res.exit_code = _exit_code(dom.console_output)
    _count(res, host.trace.iter_all(), dom.domid)
    return res


#: Allocations between two collections of the youngest generation while compare runs
#: (CPython's default is 700).
COMPARE_GC_THRESHOLD = 100_000


@contextmanager
def _young_objects_collected_seldom():
    """Fewer cyclic-garbage collections for the length of a compare. Its modes make and drop
    some 100,000 objects each (events and their fields, frame-table entries, ioreqs...),
    freed by their reference counts; at the default threshold the collector ran about 500
    times and walked every live object (the booted host, the assembled kernels, the
    compiled blocks) in full a few times: 0.15 s of a warm compare's 2. What it would
    find is found at the next collection, after the compare."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], COMPARE_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def compare(program: str | None = None, modes: list[str] | None = None,
            scenario: str | None = None,
            progress: Callable[[int, int, str], None] | None = None) -> list[ModeResult]:
    """Run the program in each mode (on ``scenario``'s host); ``progress(i, n, mode)`` is told before
    each one starts."""
    prog = Path(program) if program else DEFAULT_PROGRAM
    if not prog.exists():
        raise UserError(f"{display(prog)}: no such file")
    wanted = list(modes or DEFAULT_MODES)
    for m in wanted:
        if m not in MODES:
            raise UserError(f"unknown mode '{m}' (available: {', '.join(MODES)})")
    if "arm" in wanted and prog.resolve() != DEFAULT_PROGRAM.resolve():
        # The Arm column runs the workload's Arm translation; an x86 program has none.
        if modes:
            raise UserError(f"{display(prog)}: the arm mode runs only the lab's workload (its Arm translation "
                            "is machines/arm/workload.s)")
        wanted.remove("arm")
    where = Path(scenario) if scenario else None
    hosts = _FreshHost(where)
    results = []
    with _young_objects_collected_seldom():
        for i, m in enumerate(wanted, 1):
            if progress is not None:
                progress(i, len(wanted), m)
            results.append(run_mode(m, prog, where, hosts))
    base = next((r for r in results if r.mode == "native"), None)
    if base is None and "native" not in wanted:
        base = run_mode("native", prog)
    for r in results:
        r.ratio = r.total_cycles / base.total_cycles if base and base.total_cycles else 0.0
    return results


def format_table(results: list[ModeResult], descriptions: bool = True) -> str:
    """The table; without ``descriptions`` it fits a narrow pane (the modes' names say enough)."""
    cols = [r.mode for r in results]
    rows: list[tuple[str, list[str]]] = [("description", [r.what for r in results])] if descriptions else []
    rows += [
        ("guest instructions", [f"{r.instructions:,}" for r in results]),
        ("system calls", [str(r.syscalls) for r in results]),
        ("traps", [str(sum(r.traps.values())) for r in results]),
        ("hypercalls", [str(sum(r.hypercalls.values())) for r in results]),
    ]
    names = sorted({n for r in results for n in r.hypercalls})
    rows += [(f"  {n}", [str(r.hypercalls.get(n, 0)) for r in results]) for n in names]
    rows.append(("VM exits", [str(sum(r.vmexits.values())) for r in results]))
    reasons = sorted({n for r in results for n in r.vmexits})
    rows += [(f"  {n}", [str(r.vmexits.get(n, 0)) for r in results]) for n in reasons]
    rows += [
        ("I/O exits", [str(r.io_exits) for r in results]),
        ("ioreqs", [str(r.ioreqs) for r in results]),
        ("ring requests", [str(r.ring_requests) for r in results]),
        ("event-channel sends", [str(r.evtchn_notifications) for r in results]),
        ("shadow syncs", [str(r.shadow_syncs) for r in results]),
        ("guest cycles", [f"{r.cycles:,}" for r in results]),
        ("dom0 cycles", [f"{r.dom0_cycles:,}" for r in results]),
        ("total cycles", [f"{r.total_cycles:,}" for r in results]),
        ("ratio to native", ["-" if r.refused else f"{r.ratio:.2f}x" for r in results]),
        ("checksum", [r.checksum or "-" for r in results]),
        ("exit code", ["-" if r.exit_code is None else str(r.exit_code) for r in results]),
    ]
    if any(r.refused for r in results):
        rows.append(("xl create", ["refused" if r.refused else "ok" for r in results]))
    w0 = max(len(n) for n, _ in rows)
    widths = [max(len(c), *(len(vals[i]) for _, vals in rows)) for i, c in enumerate(cols)]
    out = [" " * w0 + "  " + "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    for name, vals in rows:
        out.append(name.ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(vals, widths)))
    return "\n".join(out)


#: The bar chart's marks: the guest's own work, Xen's work for it, dom0's work for it.
CHART_MARKS = (("guest", "█"), ("Xen", "▓"), ("dom0", "░"))


def format_chart(results: list[ModeResult], width: int = 40) -> str:
    """Cycles per mode as bars split into guest, Xen and dom0 work, scaled to the longest."""
    longest = max((r.total_cycles for r in results), default=0) or 1
    name_w = max((len(r.mode) for r in results), default=4)
    legend = "  ".join(f"{mark} {what}" for what, mark in CHART_MARKS)
    out = [f"cycles per mode   {legend}"]
    for r in results:
        xen = min(r.xen_cycles, r.cycles)
        parts = (r.cycles - xen, xen, r.dom0_cycles)
        cells = [round(p * width / longest) for p in parts]
        bar = "".join(mark * n for (_, mark), n in zip(CHART_MARKS, cells))
        out.append(f"{r.mode:<{name_w}}  {bar:<{width}}  {r.total_cycles:>12,}  {r.ratio:.2f}x")
    return "\n".join(out)
