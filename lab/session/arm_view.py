"""What the session shows of an Arm core: EL, PC, x0-x30, the system registers, the two-stage walk.

The x86 views speak of rings, rip and cr3; an Arm vCPU has exception levels,
a PC and TTBRs, with Xen's stage 2 under the guest's stage 1. The session's
views and commands ask this module whenever the focused CPU is an Arm core.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import UserError

# The Arm hardware loads with the first Arm machine, not with the session: an x86 lab
# (and the screen's first frame) never needs it.
if TYPE_CHECKING:
    from ..hw.arm.cpu import ArmCpu
    from ..hw.arm.mmu import WalkResult

INSN_SIZE = 4
WHO = {0: "user program", 1: "guest kernel", 2: "Xen"}
SYSREGS = ("sctlr_el1", "ttbr0_el1", "ttbr1_el1", "tcr_el1", "vbar_el1", "esr_el1", "far_el1", "elr_el1",
           "spsr_el1", "hcr_el2", "vttbr_el2", "vtcr_el2", "esr_el2", "far_el2", "hpfar_el2", "elr_el2")


def is_arm(cpu: Any) -> bool:
    # An Arm core exists only once its module is loaded, so asking loads nothing.
    module = sys.modules.get("lab.hw.arm.cpu")
    return module is not None and isinstance(cpu, module.ArmCpu)


def _regime(cpu: ArmCpu):
    return cpu.regime(1)              # what the guest's own accesses go through (stage 1, then stage 2)


def walk(session, va: int, ref) -> tuple[WalkResult, list[str]]:
    """VA -> IPA -> PA as the focused vCPU's EL1&0 regime sees it: every descriptor of both stages."""
    from ..hw.arm.mmu import stage1_walk, walk_text
    c = ref.cpu
    res = stage1_walk(session.machine.mem, _regime(c), va, "r", el=1)
    return res, walk_text(res)


def translate_quietly(session, va: int, ref) -> int | None:
    from ..hw.arm.mmu import stage1_walk
    res = stage1_walk(session.machine.mem, _regime(ref.cpu), va, "r", el=1)
    return res.pa if res.ok else None


def disassemble_at(session, addr: int, ref) -> str:
    from ..isa.a64 import A64DecodeError, decode, disassemble
    pa = translate_quietly(session, addr, ref)
    if pa is None or pa + 4 > session.machine.mem.size:
        return "(not mapped)"
    try:
        return disassemble(decode(session.machine.mem.read_uint(pa, 4)), addr)
    except A64DecodeError:
        return "(undefined)"


def cpu_view(session, ref) -> dict[str, Any]:
    from ..hw.arm.exceptions import describe_hcr
    c: ArmCpu = ref.cpu
    regs = {f"x{i}": c.x[i] for i in range(31)}
    regs["sp"] = c.sp_now
    n, z, cf, v = (c.nzcv >> 3) & 1, (c.nzcv >> 2) & 1, (c.nzcv >> 1) & 1, c.nzcv & 1
    flags = " ".join(name for bit, name in ((n, "N"), (z, "Z"), (cf, "C"), (v, "V")) if bit) or "-"
    return {
        "arch": "arm64", "label": ref.label, "dom": ref.dom, "vcpu": ref.vcpu,
        "el": c.el, "who": WHO[c.el], "pc": c.pc, "rip": c.pc, "pstate": c.pstate, "flags": flags,
        "daif": c.daif, "regs": regs, "sys": {name: c.sys.get(name, 0) for name in SYSREGS},
        "hcr": describe_hcr(c.sys.get("hcr_el2", 0)),
        "gic": gic_lines(c),
        "cpl": c.el, "root": c.el == 2, "paging": bool(c.sys.get("sctlr_el1", 0) & 1),
        "halted": c.halted, "stopped": c.stopped, "icount": c.icount, "cycles": c.cycles,
        "next": disassemble_at(session, c.pc, ref),
    }


LR_STATES = {0: "invalid", 1: "pending", 2: "active", 3: "pending+active"}


def gic_lines(c: ArmCpu) -> list[str]:
    """The GIC as this vCPU sees it: Xen's list registers, then the physical interface."""
    from ..hw.arm.gic import lr_fields
    out = []
    for n, value in enumerate(c.gic.lr):
        f = lr_fields(value)
        if f["state"] == 0:
            out.append(f"ICH_LR{n}_EL2 {value:#018x} free")
            continue
        hw = f" HW pINTID {f['pintid']}" if f["hw"] else ""
        out.append(f"ICH_LR{n}_EL2 {value:#018x} vINTID {f['vintid']} {LR_STATES[f['state']]}, "
                   f"priority {f['priority']:#x}{hw}")
    pending = ", ".join(str(i) for i in sorted(c.gic.pending)) or "none"
    active = ", ".join(str(i) for i in sorted(c.gic.active)) or "none"
    out.append(f"physical: pending {pending}; active {active}")
    return out


def where_text(v: dict[str, Any]) -> str:
    state = f" [{v['stopped']}]" if v["stopped"] else (" [in wfi]" if v["halted"] else "")
    return f"{v['label']}: EL{v['el']} ({v['who']}), pc {v['pc']:#x}: {v['next']}{state}"


def regs_text(v: dict[str, Any]) -> list[str]:
    names = list(v["regs"])
    lines = ["  ".join(f"{n:>3} {v['regs'][n]:016x}" for n in names[i:i + 4]) for i in range(0, len(names), 4)]
    lines.append(f"PSTATE {v['pstate']:#x} [{v['flags']}] DAIF {v['daif']:04b} EL{v['el']}")
    s = v["sys"]
    for i in range(0, len(SYSREGS), 4):
        lines.append("  ".join(f"{n} {s[n]:#x}" for n in SYSREGS[i:i + 4]))
    lines.append(f"HCR_EL2: {v['hcr']}")
    lines += v["gic"]
    return lines


def walk_header(va: int, ref) -> str:
    c = ref.cpu
    return (f"walk {va:#x} (TTBR0_EL1 {c.sys['ttbr0_el1']:#x}, SCTLR_EL1.M {c.sys['sctlr_el1'] & 1}; "
            f"VTTBR_EL2 {c.sys['vttbr_el2']:#x}, VMID {(c.sys['vttbr_el2'] >> 48) & 0xFF})")


def require_arm(cpu) -> None:
    if not is_arm(cpu):
        raise UserError("this is an Arm command; the focused CPU is x86")
