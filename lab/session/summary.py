"""What happened, counted: the headless summary of a run.

Grouped per domain and vCPU as xenalyze's ``--summary`` groups per vCPU:
hypercalls by name, VM exits by reason, traps by vector, with counts and the
cycles they cost where the events carry a cost.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from ..trace import Event

#: The system calls the lab's kernels implement, by number: Linux's x86-64 numbers
#: (arch/x86/entry/syscalls/syscall_64.tbl), which the kernels and programs in machines/
#: use, plus the lab's own two above Linux's range.
SYSCALL_NAMES = {0: "read", 1: "write", 12: "brk", 17: "pread64", 18: "pwrite64", 24: "sched_yield",
                 39: "getpid", 60: "exit", 512: "lab_ping", 513: "lab_shell_return"}


def syscall_label(nr: object) -> str:
    """``write (1)`` for a system-call number the lab knows, else the number."""
    try:
        name = SYSCALL_NAMES.get(int(str(nr)))
    except ValueError:
        return str(nr)
    return f"{name} ({nr})" if name else str(nr)


def summarize(events: Iterable[Event]) -> dict[str, Any]:
    groups: dict[tuple, dict[str, Counter]] = {}
    cycles: dict[tuple, dict[str, Counter]] = {}
    totals: Counter = Counter()
    for ev in events:
        totals[ev.kind] += 1
        key = (ev.dom, ev.vcpu)
        g = groups.setdefault(key, {"hypercalls": Counter(), "vmexits": Counter(), "traps": Counter(),
                                    "syscalls": Counter(), "ioports": Counter()})
        c = cycles.setdefault(key, {"hypercalls": Counter(), "vmexits": Counter()})
        cost = ev.data.get("cost", 0) or 0
        if ev.kind == "hypercall":
            g["hypercalls"][ev.data.get("name")] += 1
            c["hypercalls"][ev.data.get("name")] += cost
        elif ev.kind == "vmexit":
            g["vmexits"][ev.data.get("reason")] += 1
            c["vmexits"][ev.data.get("reason")] += cost
        elif ev.kind == "trap":
            vec = ev.data.get("vector")
            g["traps"][f"{ev.data.get('mnemonic')}" + (f" ({vec})" if vec is not None else "")] += 1
        elif ev.kind == "syscall":
            g["syscalls"][str(ev.data.get("nr"))] += 1
        elif ev.kind == "ioport":
            g["ioports"][f"{ev.data.get('dir')} {ev.data.get('port', 0):#x}"] += 1
    out = {"events": dict(sorted(totals.items())), "vcpus": []}
    for key in sorted(groups, key=lambda k: (-1 if k[0] is None else k[0], k[1])):
        g = groups[key]
        entry = {"dom": key[0], "vcpu": key[1]}
        for name, counter in g.items():
            entry[name] = dict(sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))
        entry["hypercall_cycles"] = dict(sorted(cycles[key]["hypercalls"].items()))
        entry["vmexit_cycles"] = dict(sorted(cycles[key]["vmexits"].items()))
        out["vcpus"].append(entry)
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    xen = any(v["dom"] is not None for v in summary["vcpus"])
    for v in summary["vcpus"]:
        if v["dom"] is None and xen:
            lines.append("-- Xen (events of no domain) --")
            continue
        who = "bare metal" if v["dom"] is None else f"d{v['dom']}"
        lines.append(f"-- {who} v{v['vcpu']} --")
        for title, key, cyc in (("Hypercalls", "hypercalls", "hypercall_cycles"),
                                ("Exit reasons", "vmexits", "vmexit_cycles"),
                                ("Traps", "traps", None), ("System calls", "syscalls", None),
                                ("Port I/O", "ioports", None)):
            items = v[key]
            if not items:
                continue
            lines.append(f" {title}:")
            for name, count in items.items():
                if key == "syscalls":
                    name = syscall_label(name)
                extra = f"  {v[cyc].get(name, 0):>12} cycles" if cyc and v[cyc].get(name) else ""
                lines.append(f"   {name:<28} {count:>8}{extra}")
    lines.append(" Events: " + ", ".join(f"{k} {n}" for k, n in summary["events"].items()))
    return "\n".join(lines)
