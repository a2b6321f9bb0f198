"""The CPU pane: where the focused (v)CPU runs, its registers and the code about to run."""

from __future__ import annotations

import re
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.geometry import Region
from textual.content import Content
from .text import Text

from ...hw.x86 import X86_CR0_PE, X86_CR0_PG, X86_CR0_WP, X86_CR4_PAE, X86_CR4_PGE
from ..explain import display
from ...session.view import StateView
from .cpu_time import MUTED, focused_info, time_parts

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
CELL = 14          # width of one cell of the rings picture

CR0_BITS = ((X86_CR0_PE, "PE"), (X86_CR0_WP, "WP"), (X86_CR0_PG, "PG"))
CR4_BITS = ((X86_CR4_PAE, "PAE"), (X86_CR4_PGE, "PGE"))
EFER_BITS = ((1 << 0, "SCE"), (1 << 8, "LME"), (1 << 10, "LMA"), (1 << 11, "NXE"))

_SOURCE = re.compile(r"^(?P<file>.+?):(?P<line>\d+|\+0x[0-9a-f]+)  (?P<text>.*)$")

CHANGED = "$text-warning bold"
CURRENT = "reverse $accent"


def where_words(cpl: int, root: bool, mode: str = "", role: str = "") -> str:
    """What running at this ring and mode means, for the caption.

    ``mode`` is the domain's guest mode ("" on bare metal or when unknown) and
    ``role`` whose code runs ("kernel" or "user"), which for a PV guest the
    ring alone does not tell.
    """
    if mode in ("pv", "pv32"):
        if role == "kernel" and cpl == 3:
            return ("the 64-bit PV guest kernel: it shares ring 3 with its programs; Xen, in ring 0, tells "
                    "them apart by the vCPU's kernel mode and gives each its own page tables")
        if role == "kernel" and cpl == 1:
            return "the 32-bit PV guest kernel in ring 1: Xen keeps ring 0, the programs run in ring 3"
        if role == "user":
            return ("a user program of the PV guest: its system calls go to Xen first, which bounces them "
                    "to the guest kernel")
    elif mode:
        if not root and cpl == 0:
            return ("the guest kernel in VMX non-root ring 0: privileged inside the VM, while Xen sees the "
                    "exits the VMCS asks for")
        if not root and cpl == 3:
            return "a user program inside the HVM or PVH guest (non-root ring 3)"
    if root:
        return {0: "full privilege: a bare-metal kernel, or Xen itself",
                1: "a 32-bit PV guest kernel (Xen keeps ring 0)",
                2: "unused by Xen and by common kernels",
                3: "user mode (and, under 64-bit PV, the guest kernel too)"}[cpl]
    return {0: "an HVM or PVH guest kernel under VMX non-root: privileged, but Xen sees the exits",
            1: "non-root ring 1 (unusual)", 2: "non-root ring 2 (unusual)",
            3: "a user program inside an HVM or PVH guest"}[cpl]


ROLE_WORDS = {"kernel": "kernel", "user": "user"}


def decode_bits(value: int, bits: tuple[tuple[int, str], ...]) -> str:
    return " ".join(name for bit, name in bits if value & bit)


def _cell_lines(items: list[tuple[str, str]], width: int) -> list[list[tuple[str, str]]]:
    """Items of one cell of the rings picture, wrapped onto as many lines as they need."""
    lines: list[list[tuple[str, str]]] = [[]]
    used = 0
    for text, style in items:
        need = len(text) + (1 if lines[-1] else 0)
        if lines[-1] and used + need > width:
            lines.append([])
            used = 0
            need = len(text)
        lines[-1].append((text, style))
        used += need
    return lines


def rings_content(view: StateView) -> Content:
    """Rings 0..3 against root and non-root, with every vCPU placed where it runs now.

    Xen sits in ring 0 root whenever there are domains. The focused vCPU is
    marked and says whose code it runs (guest kernel or user): for a 64-bit PV
    guest both are in ring 3, told apart by Xen's kernel-mode flag.
    """
    cells: dict[tuple[int, bool], list[tuple[str, str]]] = {}
    hypervisor = view.xen or any(v.dom is not None for v in view.vcpus)
    if hypervisor:
        cells.setdefault((0, True), []).append(("Xen", "$text-warning"))
    for v in view.vcpus:
        if not v.has_cpu:
            continue
        name = v.label if v.dom is None else f"d{v.dom}v{v.vcpu}"
        if v.focused:
            role = ROLE_WORDS.get(v.role, "")
            text = f"▶ {name} {role}".rstrip() if v.dom is not None else f"▶ {name}"
            cells.setdefault((v.cpl, v.root), []).append((text, CURRENT))
        else:
            cells.setdefault((v.cpl, v.root), []).append((name, MUTED))
    parts: list[Any] = [("ring  " + "root".ljust(CELL + 1) + "non-root\n", "bold")]
    for ring in range(4):
        columns = [_cell_lines(cells.get((ring, root), []), CELL) for root in (True, False)]
        for k in range(max(len(c) for c in columns)):
            parts.append((f"  {ring}   " if k == 0 else "      ", "bold"))
            for col, lines in enumerate(columns):
                line = lines[k] if k < len(lines) else []
                used = 0
                if not line:
                    if k == 0:
                        parts.append(("·", MUTED))
                        used = 1
                for i, (text, style) in enumerate(line):
                    if i:
                        parts.append(" ")
                        used += 1
                    parts.append((text, style))
                    used += len(text)
                if col == 0:
                    parts.append(" " * max(1, CELL + 1 - used))
            parts.append("\n")
    return Content.assemble(*parts).rstrip()


def why_not_running(view: StateView, info: Any) -> str:
    """Why the focused vCPU is not on a pCPU now, in Xen's words (its runstate), or ""."""
    if info is None or not view.xen or info.runstate in ("", "running"):
        return ""
    if info.runstate == "runnable":
        holders = [f"{v.label.split()[0]} vcpu{v.vcpu} holds pCPU{v.pcpu}"
                   for d in view.domains for v in d.vcpus if v.runstate == "running" and v.pcpu is not None]
        held = "; ".join(holders) if holders else "the scheduler has not picked it yet"
        never = "" if info.pcpu is not None else " (it has not run yet)"
        return f"runnable, waiting for a pCPU{never}: {held}"
    if info.runstate == "blocked":
        return "blocked: it gave up its pCPU (hlt or SCHEDOP_block) until an event or timer wakes it"
    return f"{info.runstate}: Xen does not schedule it"


def summary_content(view: StateView) -> Content:
    cpu = view.cpu
    if view.service is not None:
        dom = next((d for d in view.domains if d.domid == view.focus_dom), None)
        name = f"d{dom.domid} {dom.name} ({dom.mode})" if dom is not None else "this domain"
        return Content.assemble((name, "bold"), "  ", ("dom0 services", "$text-accent bold"), "\n",
                                (view.service, MUTED))
    info = focused_info(view)
    runstate = info.runstate if info is not None else ""
    # The CPU's own state when it has stopped or halted; else, under Xen, the vCPU's runstate.
    state = f"stopped: {cpu['stopped']}" if cpu["stopped"] else ("halted" if cpu["halted"] else runstate or "ready")
    state_style = "$text-error bold" if cpu["stopped"] else ("$text-warning" if cpu["halted"] else "$text-success")
    label = cpu["label"]
    if cpu["dom"] is None:
        who = label
    else:
        who = label if label.startswith(f"d{cpu['dom']} ") else f"d{cpu['dom']} {label}"
        who = f"{who} vcpu {cpu['vcpu']}"
    mode = "root" if cpu["root"] else "non-root"
    role = info.role if info is not None else ""
    dmode = info.mode if info is not None else ""
    parts: list[Any] = [(who, "bold"), "  ", (state, state_style)]
    if info is not None and info.runstate:
        parts.append((f" on pCPU {info.pcpu}" if info.pcpu is not None else " (no pCPU yet)", MUTED))
    why = why_not_running(view, info)
    if why:
        parts += ["\n", (why, "$text-warning")]
    ring = f"{cpu['cpl']} {mode}"
    parts += ["\n", ("ring ", MUTED), (ring, "$text-accent bold"), ": ",
              (where_words(cpu["cpl"], cpu["root"], dmode, role), MUTED), "\n",
              ("next ", MUTED), (cpu["next"], "bold"), "\n",
              ("rip  ", MUTED), f"{cpu['rip']:#x}\n"]
    return Content.assemble(*parts, *time_parts(view, info))




def registers_content(cpu: dict[str, Any], prev: dict[str, Any] | None) -> Content:
    """General and control registers; values that differ from ``prev`` stand out."""
    def val(name: str, value: int, width: int = 16) -> tuple[str, str]:
        changed = prev is not None and prev.get(name, value) != value
        return (f"{value:0{width}x}", CHANGED if changed else "")

    regs = dict(cpu["regs"])
    prev_regs = dict(prev["regs"]) if prev is not None else None
    flat_prev = None if prev is None else {**prev_regs, **{k: prev[k] for k in
                                                          ("rip", "rflags", "cr0", "cr2", "cr3", "cr4", "efer")}}
    parts: list[Any] = []
    names = [n for n in GPRS if n in regs] + [n for n in regs if n not in GPRS]
    half = (len(names) + 1) // 2
    for i in range(half):
        row = [names[i]] + ([names[i + half]] if i + half < len(names) else [])
        for k, n in enumerate(row):
            if k:
                parts.append("   ")
            parts.append((f"{n:>3} ", MUTED))
            changed = flat_prev is not None and flat_prev.get(n, regs[n]) != regs[n]
            parts.append((f"{regs[n]:016x}", CHANGED if changed else ""))
        parts.append("\n")
    prevd = flat_prev

    def ctl(name: str, bits: tuple[tuple[int, str], ...] | None = None) -> None:
        v = cpu[name]
        changed = prevd is not None and prevd.get(name, v) != v
        parts.append((f"{name:>6} ", MUTED))
        parts.append((f"{v:016x}", CHANGED if changed else ""))
        if bits:
            parts.append((f" {decode_bits(v, bits)}", MUTED))
        parts.append("\n")

    ctl("rip")
    rf = cpu["rflags"]
    changed = prevd is not None and prevd.get("rflags", rf) != rf
    parts.append(("rflags ", MUTED))
    parts.append((f"{rf:016x}", CHANGED if changed else ""))
    parts.append((f" {cpu['flags']}", "$text-accent"))
    parts.append("\n")
    ctl("cr0", CR0_BITS)
    ctl("cr2")
    ctl("cr3")
    ctl("cr4", CR4_BITS)
    ctl("efer", EFER_BITS)
    parts.append(("   cpl ", MUTED))
    parts.append(f"{cpu['cpl']}  {'root' if cpu['root'] else 'non-root'}  paging "
                 f"{'on' if cpu['paging'] else 'off'}")
    return Content.assemble(*parts)


def split_source(text: str) -> tuple[str | None, str | None, str]:
    m = _SOURCE.match(text)
    if not m:
        return None, None, text
    file = m.group("file")
    # A source file is shown relative to the lab; a label such as the hypercall page's as it is.
    return (display(file) if file.endswith(".s") else file), m.group("line"), m.group("text")


def source_content(view: StateView, radius: int | None = None) -> Content:
    """The lines around the instruction about to run, the current one marked."""
    parts: list[Any] = []
    last_file = None
    lines = list(view.source)
    if radius is not None:
        here = next((i for i, (_, _, cur) in enumerate(lines) if cur), len(lines) // 2)
        lines = lines[max(0, here - radius):here + radius + 1]
    width = max((len(split_source(t)[1] or "") for _, t, _ in lines), default=0)
    for addr, text, current in lines:
        file, line, code = split_source(text)
        if file is not None and file != last_file:
            parts.append((file + "\n", MUTED))
            last_file = file
        marker = "▶ " if current else "  "
        if line is None:
            row = f"{marker}{code}"
        else:
            row = f"{marker}{line:>{width}}  {code}"
        parts.append((row, CURRENT if current else ""))
        parts.append("\n")
    if not view.source:
        parts.append(("(no source for this address)", MUTED))
    return Content.assemble(*parts).rstrip()


class CpuPane(VerticalScroll):
    """Rings picture, summary, source around rip, registers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._view: StateView | None = None
        self.source_radius: int | None = None     # None: every line the session gives

    def on_resize(self, event: Any) -> None:
        # Rings and summary side by side when there is room, else one above the other.
        self.query_one("#cpu-top").set_class(self.size.width < 80, "-stacked")
        if self.source_radius is not None and self._view is not None:
            self.call_after_refresh(self._reveal_current_line)

    def set_source_radius(self, radius: int | None) -> None:
        self.source_radius = radius
        if self._view is not None:
            self.query_one("#cpu-source", Text).show(source_content(self._view, radius))

    def compose(self) -> ComposeResult:
        with Horizontal(id="cpu-top"):
            yield Text("", id="cpu-rings")
            yield Text("booting...", id="cpu-summary", wraps=True)
        yield Text("", id="cpu-source")
        yield Text("", id="cpu-regs")

    def show(self, view: StateView) -> None:
        cpu = view.cpu
        if cpu.get("arch") == "arm64" and view.service is None:
            from . import arm_cpu
            self.query_one("#cpu-rings", Text).show(arm_cpu.els_content(view))
            self.query_one("#cpu-summary", Text).show(arm_cpu.summary_content(view))
            self.query_one("#cpu-source", Text).show(source_content(view, self.source_radius))
            self.query_one("#cpu-regs", Text).show(arm_cpu.registers_content(cpu, view.before))
            self._view = view
            return
        self.query_one("#cpu-rings", Text).show(rings_content(view))
        self.query_one("#cpu-summary", Text).show(summary_content(view))
        if view.service is not None:          # a domain with no guest code: nothing below the summary
            self.query_one("#cpu-source", Text).show(Content(""))
            self.query_one("#cpu-regs", Text).show(Content(""))
            self._view = view
            return
        self.query_one("#cpu-source", Text).show(source_content(view, self.source_radius))
        # Changed registers: against the CPU as it was when the last step, run or command began.
        self.query_one("#cpu-regs", Text).show(registers_content(cpu, view.before))
        moved = self._view is None or self._view.cpu.get("rip") != cpu.get("rip")
        self._view = view
        if moved and self.source_radius is not None:
            # A short pane (the narrow layout) keeps the line about to run in view.
            self.call_after_refresh(self._reveal_current_line)

    def _reveal_current_line(self) -> None:
        source = self.query_one("#cpu-source", Text)
        shown = source.shown
        if shown is None:
            return
        here = next((i for i, row in enumerate(shown.plain.split("\n")) if row.startswith("▶")), None)
        if here is None:
            return
        top = source.virtual_region.y + here
        if not (self.scroll_y <= top < self.scroll_y + self.scrollable_content_region.height):
            self.scroll_to_region(Region(0, top, 1, 1), animate=False, immediate=True)

    def show_message(self, text: str) -> None:
        self.query_one("#cpu-summary", Text).show(Content(text))
