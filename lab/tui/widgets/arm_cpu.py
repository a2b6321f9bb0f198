"""The CPU and walk panes for an Arm vCPU: exception levels instead of rings, A64 registers, two stages.

On Arm the picture a learner needs is not rings against root and non-root but
three exception levels: Xen alone at EL2, each guest's kernel at EL1 and its
programs at EL0, the same for every guest since Xen on Arm has one guest type.
"""

from __future__ import annotations

from typing import Any

from textual.content import Content

from ...hw.arm.mmu import walk_text
from .cpu_time import MUTED, focused_info, time_parts

CURRENT = "reverse $accent"
CHANGED = "$text-warning bold"
EL_WORDS = {2: "Xen: stage 2, the vGIC, every hypercall (hvc) and trapped wfi",
            1: "the guest kernel: its own vectors, svc and IRQs, behind Xen's stage 2",
            0: "a user program: its system calls (svc) go to its own kernel at EL1, never to Xen"}


def els_content(view: Any) -> Content:
    """EL2, EL1 and EL0, with Xen and every vCPU placed where it runs now."""
    cells: dict[int, list[tuple[str, str]]] = {2: [("Xen", "$text-warning")]}
    for v in view.vcpus:
        if not v.has_cpu:
            continue
        name = f"d{v.dom}v{v.vcpu}"
        style = CURRENT if v.focused else MUTED
        cells.setdefault(v.cpl, []).append((f"▶ {name}" if v.focused else name, style))
    parts: list[Any] = [("EL   (one guest type)\n", "bold")]
    for el in (2, 1, 0):
        parts.append((f"EL{el} ", "bold"))
        items = cells.get(el) or [("·", MUTED)]
        for i, (text, style) in enumerate(items):
            if i:
                parts.append(" ")
            parts.append((text, style))
        parts.append("\n")
    return Content.assemble(*parts).rstrip()


def summary_content(view: Any) -> Content:
    cpu = view.cpu
    info = focused_info(view)
    # As on x86: the core's own state when stopped or in wfi, else the vCPU's runstate under Xen.
    runstate = info.runstate if info is not None else ""
    state = f"stopped: {cpu['stopped']}" if cpu["stopped"] else ("in wfi" if cpu["halted"] else runstate or "ready")
    parts: list[Any] = [(f"d{cpu['dom']} {cpu['label']} vcpu {cpu['vcpu']}", "bold"), "  ",
                        (state, "$text-error bold" if cpu["stopped"] else "$text-success"), "\n",
                        ("EL ", MUTED), (f"{cpu['el']}", "$text-accent bold"), ": ", (EL_WORDS[cpu["el"]], MUTED), "\n",
                        ("next ", MUTED), (cpu["next"], "bold"), "\n",
                        ("pc   ", MUTED), f"{cpu['pc']:#x}\n"]
    # The same story for time as the x86 pane: what the vCPU ran, its own clock and the host's.
    return Content.assemble(*parts, *time_parts(view, info))


def registers_content(cpu: dict[str, Any], prev: dict[str, Any] | None) -> Content:
    regs = cpu["regs"]
    before = prev.get("regs", {}) if prev is not None and prev.get("arch") == "arm64" else {}
    names = list(regs)
    parts: list[Any] = []
    for i in range(0, len(names), 2):
        for k, n in enumerate(names[i:i + 2]):
            if k:
                parts.append("   ")
            parts.append((f"{n:>3} ", MUTED))
            parts.append((f"{regs[n]:016x}", CHANGED if n in before and before[n] != regs[n] else ""))
        parts.append("\n")
    parts.append(("PSTATE ", MUTED))
    parts.append(f"{cpu['pstate']:#x} [{cpu['flags']}] DAIF {cpu['daif']:04b} EL{cpu['el']}\n")
    for name, value in cpu["sys"].items():
        parts.append((f"{name:>10} ", MUTED))
        parts.append(f"{value:016x}\n")
    parts.append(("   HCR_EL2 ", MUTED))
    parts.append(cpu["hcr"] + "\n")
    parts.append(("GIC (list registers: Xen's virtual interrupts for this vCPU)\n", "bold"))
    for line in cpu.get("gic", ()):
        parts.append((line + "\n", "$text-accent" if "vINTID" in line else MUTED))
    return Content.assemble(*parts).rstrip()


def walk_content(view: Any) -> Content:
    """Stage 1 (the guest's, VA -> IPA) and, under and after it, stage 2 (Xen's, IPA -> PA)."""
    res = view.walk
    if res is None:
        return Content.assemble(("no walk: ", "bold"), (view.walk_note or "nothing to walk", MUTED))
    what = "pc" if view.walk_requested is None else "pinned address"
    sys = view.cpu["sys"]
    parts: list[Any] = [("walk ", "bold"), (f"{res.va:#x}", "$text-accent bold"), (f" ({what})", MUTED),
                        f"   TTBR0_EL1 {sys['ttbr0_el1']:#x}   VTTBR_EL2 {sys['vttbr_el2']:#x}\n",
                        ("2-D walk: each stage-1 table, and the IPA it gives, go through Xen's stage 2\n",
                         "$text-warning")]
    parts += [(line + "\n", "") for line in walk_text(res)[1:]]
    return Content.assemble(*parts).rstrip()
