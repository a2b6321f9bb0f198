"""An Armv8-A core: EL0, EL1 and EL2, AArch64 only, executing the lab's A64 subset.

State is what the Arm ARM names: x0-x30, one stack pointer per exception
level (SP_EL0, SP_EL1, SP_EL2, chosen by PSTATE.SPSel), the PC, and PSTATE
(N, Z, C, V; D, A, I, F; the current EL; SPSel). System registers are read
and written with ``mrs``/``msr``; an access from too low an EL is Undefined,
and HCR_EL2 decides which accesses and instructions trap to EL2 (TVM, TWI,
TSC, IMO and VM, as Xen sets them for a guest).

Exceptions are taken as the architecture takes them (DDI 0487 D1.10): the
target EL's ELR, SPSR, ESR and FAR (and HPFAR_EL2 for a stage-2 abort) are
written, PSTATE.DAIF is masked, and the PC goes to the target's VBAR plus
the vector offset for where the exception came from and what it is. A
``hypervisor`` object, when set, is Xen written in Python: an exception
taken to EL2 calls its ``trap(cpu, syndrome)`` instead of running code at
VBAR_EL2, as the x86 profile's Xen is called on a VM exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ...isa.a64 import A64, A64DecodeError, ZR, decode, decode_bit_masks
from ...isa.bits import M32, M64
from ...isa.a64_sysregs import SYSREG_BY_ENCODING, SYSREGS, TVM_TRAPPED, SysReg
from ..memory import BusError, MachineMemory
from . import exceptions as X
from .gic import Gic
from .mmu import TranslationFault, Regime, WalkResult, stage1_walk
from .timer import GenericTimer

#: Decoded words: decoding is pure and an A64 is immutable, so one table serves every core.
#: Bounded, since a guest may execute any word; clearing it changes nothing but speed.
_DECODED: dict[int, A64] = {}
_DECODED_MAX = 1 << 16
_TIMER_REGS = frozenset({"cntfrq_el0", "cntvct_el0", "cntv_ctl_el0", "cntv_cval_el0", "cntv_tval_el0",
                         "cntvoff_el2"})


class Abort(Exception):
    """An exception raised while executing one instruction: where it goes and why."""

    def __init__(self, syndrome: X.Syndrome, target_el: int, next_pc: bool = False) -> None:
        super().__init__(syndrome.describe())
        self.syndrome = syndrome
        self.target_el = target_el
        self.next_pc = next_pc          # the preferred return address is the next instruction (svc, hvc)


@dataclass(frozen=True)
class TlbEntry:
    """One cached translation, as the TLB pane and ``tlb`` show it."""
    vmid: int
    asid: int                   # Tlb.GLOBAL for a global (nG = 0) entry
    page: int                   # the virtual page number
    res: WalkResult

    def describe(self) -> str:
        r = self.res
        tag = "global" if self.asid == Tlb.GLOBAL else f"ASID {self.asid}"
        rights = ("RW" if r.writable else "RO") + (" X" if r.executable else " XN") + (" EL0" if r.el0 else " EL1")
        where = f"VMID {self.vmid}" if self.vmid >= 0 else "EL2"
        return f"{where} {tag}: {self.page << 12:#x} -> PA {(r.pa or 0) & ~0xFFF:#x} 4K {rights}"


class Tlb:
    """Translations cached per 4 KiB page, tagged by VMID and ASID (global entries match any ASID).
    Each entry is combined: stage 1 and stage 2 in one, VA to machine address."""

    GLOBAL = -1

    def __init__(self) -> None:
        self.cache: dict[tuple[int, int, int], tuple[int, WalkResult]] = {}

    def entries(self) -> list[TlbEntry]:
        """Every cached translation, by VMID, then page."""
        return [TlbEntry(k[0], k[1], k[2], v[1]) for k, v in sorted(self.cache.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1]))]

    def lookup(self, vmid: int, asid: int, page: int) -> tuple[int, WalkResult] | None:
        return self.cache.get((vmid, asid, page)) or self.cache.get((vmid, self.GLOBAL, page))

    def fill(self, vmid: int, asid: int, page: int, res: WalkResult) -> None:
        assert res.pa is not None
        tag = self.GLOBAL if res.global_ else asid
        self.cache[(vmid, tag, page)] = (res.pa >> 12, res)

    def invalidate(self, vmid: int | None = None, asid: int | None = None, page: int | None = None) -> int:
        """Drop matching entries (None matches all); how many went."""
        gone = [k for k in self.cache if (vmid is None or k[0] == vmid) and
                (asid is None or k[1] in (asid, self.GLOBAL)) and (page is None or k[2] == page)]
        for k in gone:
            del self.cache[k]
        return len(gone)


class ArmCpu:
    """One physical core. Memory is machine memory; guests see it through stage 2."""

    #: The sysregs kept as plain storage (the rest are computed: currentel, daif, nzcv ...).
    _COMPUTED = {"currentel", "daif", "nzcv", "spsel", "sp_el0", "sp_el1", "cntfrq_el0", "cntvct_el0",
                 "cntv_tval_el0", "cntv_ctl_el0", "cntv_cval_el0", "cntvoff_el2"}

    def __init__(self, mem: MachineMemory, *, cpu_id: int = 0, cpu_hz: int = 2_000_000_000,
                 counter_hz: int = 62_500_000) -> None:
        self.mem = mem
        self.x = [0] * 31
        self.sp = [0, 0, 0]             # SP_EL0, SP_EL1, SP_EL2
        self.pc = 0
        self.el = 1
        self.spsel = 1
        self.nzcv = 0                   # N Z C V in bits 3..0
        self.daif = 0xF                 # D A I F in bits 3..0: all masked out of reset
        self.sys: dict[str, int] = {r.name: 0 for r in SYSREGS.values()
                                    if r.name not in self._COMPUTED and not r.name.startswith(("icc_", "ich_"))}
        self.sys["midr_el1"] = 0x410FD034       # Arm Cortex-A53 r0p4: what a learner's board reports
        self.sys["mpidr_el1"] = (1 << 31) | cpu_id
        self.gic = Gic()
        self.timer = GenericTimer(cpu_hz, counter_hz)
        self.tlb = Tlb()
        self.icount = 0
        self.cycles = 0
        #: Cycles per A64 operation (the cost table's [a64]); an operation it does not name costs
        #: its "default", and with no table every instruction costs one cycle.
        self.op_cycles: dict[str, int] = {}
        self.halted = False             # in wfi, waiting for an interrupt
        self.stopped: str | None = None
        self.hypervisor: Any = None     # Xen in Python: trap(cpu, syndrome) for exceptions taken to EL2
        self.emit: Callable[..., Any] | None = None
        self.last_exception: X.Syndrome | None = None
        self.last_walk: WalkResult | None = None

    # -- registers ------------------------------------------------------------
    def reg(self, n: int, sf: bool = True, sp: bool = False) -> int:
        if n == ZR:
            v = self.sp_now if sp else 0
        else:
            v = self.x[n]
        return v if sf else v & M32

    def set_reg(self, n: int, value: int, sf: bool = True, sp: bool = False) -> None:
        value &= M64 if sf else M32
        if n == ZR:
            if sp:
                self.sp_now = value
            return
        self.x[n] = value

    @property
    def rip(self) -> int:
        """The PC, under the name the lab's views give every architecture's program counter."""
        return self.pc

    @property
    def cpl(self) -> int:
        """The privilege the views place a CPU at: the current EL (0 user, 1 kernel, 2 Xen)."""
        return self.el

    @property
    def root(self) -> bool:
        """The hypervisor's own level, as x86's root mode: EL2."""
        return self.el == 2

    @property
    def sp_now(self) -> int:
        return self.sp[self.el if self.spsel else 0]      # EL0 always uses SP_EL0 (EL0t)

    @sp_now.setter
    def sp_now(self, value: int) -> None:
        self.sp[self.el if self.spsel else 0] = value & M64

    @property
    def pstate(self) -> int:
        """PSTATE as SPSR_ELx holds it: NZCV 31:28, DAIF 9:6, M[3:0] = EL:SPSel."""
        return (self.nzcv << 28) | (self.daif << 6) | (self.el << 2) | (self.spsel if self.el else 0)

    def set_pstate(self, spsr: int) -> None:
        self.nzcv = (spsr >> 28) & 0xF
        self.daif = (spsr >> 6) & 0xF
        self.el = (spsr >> 2) & 3
        self.spsel = spsr & 1 if self.el else 0

    # -- system registers -----------------------------------------------------------
    def read_sysreg(self, name: str) -> int:
        if name == "currentel":
            return self.el << 2
        if name == "daif":
            return self.daif << 6
        if name == "nzcv":
            return self.nzcv << 28
        if name == "spsel":
            return self.spsel
        if name == "sp_el0":
            return self.sp[0]
        if name == "sp_el1":
            return self.sp[1]
        if name in _TIMER_REGS:
            return self.timer.read(name, self.cycles)
        if name.startswith(("icc_", "ich_")):
            return self.gic.read(name, virtual=self._virtual_gic())
        return self.sys[name]

    def write_sysreg(self, name: str, value: int) -> None:
        value &= M64
        if name == "daif":
            self.daif = (value >> 6) & 0xF
        elif name == "nzcv":
            self.nzcv = (value >> 28) & 0xF
        elif name == "spsel":
            self.spsel = value & 1
        elif name == "sp_el0":
            self.sp[0] = value
        elif name == "sp_el1":
            self.sp[1] = value
        elif name in _TIMER_REGS:
            self.timer.write(name, value, self.cycles)
        elif name.startswith(("icc_", "ich_")):
            self.gic.write(name, value, virtual=self._virtual_gic())
        else:
            self.sys[name] = value

    def _virtual_gic(self) -> bool:
        """EL1's GIC accesses reach the virtual CPU interface when HCR_EL2.IMO routes IRQs to EL2."""
        return self.el < 2 and bool(self.sys["hcr_el2"] & X.HCR_IMO)

    # -- translation -----------------------------------------------------------------
    def regime(self, el: int | None = None) -> Regime:
        el = self.el if el is None else el
        if el == 2:
            return Regime(self.sys["sctlr_el2"], self.sys["tcr_el2"], self.sys["ttbr0_el2"], 0)
        hcr = self.sys["hcr_el2"]
        return Regime(self.sys["sctlr_el1"], self.sys["tcr_el1"], self.sys["ttbr0_el1"], self.sys["ttbr1_el1"],
                      stage2=bool(hcr & X.HCR_VM), vttbr=self.sys["vttbr_el2"], vtcr=self.sys["vtcr_el2"])

    def _tags(self) -> tuple[int, int]:
        """(VMID, ASID) of the current regime; EL2's own translations use VMID -1."""
        if self.el == 2:
            return -1, 0
        vmid = (self.sys["vttbr_el2"] >> 48) & 0xFF if self.sys["hcr_el2"] & X.HCR_VM else 0
        return vmid, (self.sys["ttbr0_el1"] >> 48) & 0xFFFF

    def translate(self, va: int, access: str) -> int:
        """The machine address of ``va`` for an access ("r", "w", "x"), or an Abort."""
        vmid, asid = self._tags()
        page = va >> 12
        hit = self.tlb.lookup(vmid, asid, page)
        if hit is not None:
            ppage, res = hit
            if self._allowed(res, access):
                return (ppage << 12) | (va & 0xFFF)
        res = stage1_walk(self.mem, self.regime(), va, access, el=self.el if self.el < 2 else 1)
        self.last_walk = res
        if res.fault is not None:
            raise self._abort(va, access, res.fault)
        if res.pa is None:
            raise self._abort(va, access, TranslationFault(1, X.FSC_TRANSLATION, 0))
        self.tlb.fill(vmid, asid, page, res)
        return res.pa

    def _allowed(self, res: WalkResult, access: str) -> bool:
        if self.el == 0 and not res.el0:
            return False
        if access == "w":
            return res.writable
        if access == "x":
            return res.executable
        return True

    def walk(self, va: int, access: str = "r") -> WalkResult:
        """A look at the tables (no TLB fill, no fault taken): for panes and the ``walk`` command."""
        return stage1_walk(self.mem, self.regime(), va, access, el=self.el if self.el < 2 else 1)

    def _abort(self, va: int, access: str, fault: TranslationFault) -> Abort:
        lower = self.el < 2
        if fault.stage == 2:
            target = 2
            ec = X.EC_IABT_LOW if access == "x" else X.EC_DABT_LOW
        else:
            target = max(self.el, 1)
            same = self.el == target
            ec = (X.EC_IABT_CUR if same else X.EC_IABT_LOW) if access == "x" else \
                (X.EC_DABT_CUR if same else X.EC_DABT_LOW)
        iss = fault.code
        if access == "w":
            iss |= 1 << 6                               # WnR
        if fault.s1ptw:
            iss |= 1 << 7
        del lower
        return Abort(X.Syndrome(ec, iss, far=va, ipa=fault.ipa if fault.stage == 2 else None), target)

    # -- memory ------------------------------------------------------------------------
    def load(self, va: int, size: int) -> int:
        pa = self.translate(va, "r")
        if (va & 0xFFF) + size > 4096:
            lo = 4096 - (va & 0xFFF)
            return self.load(va, lo) | (self.load(va + lo, size - lo) << (8 * lo))
        return self._bus(lambda: self.mem.read_uint(pa, size), va, "r")

    def store(self, va: int, size: int, value: int) -> None:
        pa = self.translate(va, "w")
        if (va & 0xFFF) + size > 4096:
            lo = 4096 - (va & 0xFFF)
            self.store(va, lo, value)
            self.store(va + lo, size - lo, value >> (8 * lo))
            return
        self._bus(lambda: self.mem.write_uint(pa, size, value), va, "w")

    def _bus(self, fn: Callable[[], Any], va: int, access: str) -> Any:
        try:
            return fn()
        except BusError:
            # No RAM behind the address: a synchronous external abort in hardware; the lab
            # reports it as a translation fault at level 3 so a guest can never raise.
            raise self._abort(va, access, TranslationFault(1, X.FSC_TRANSLATION, 3)) from None

    # -- exceptions --------------------------------------------------------------------
    def take_exception(self, target: int, syndrome: X.Syndrome | None, kind: int, return_pc: int) -> None:
        """Enter ``target`` EL (DDI 0487 D1.10.2): save PSTATE and the return address, mask, vector."""
        from_el = self.el
        name = f"{'el2' if target == 2 else 'el1'}"
        self.sys[f"spsr_{name}"] = self.pstate
        self.sys[f"elr_{name}"] = return_pc & M64
        if syndrome is not None:
            self.sys[f"esr_{name}"] = syndrome.esr
            if syndrome.far is not None:
                self.sys[f"far_{name}"] = syndrome.far & M64
            if syndrome.ipa is not None and target == 2:
                self.sys["hpfar_el2"] = (syndrome.ipa >> 12) << 4
            self.last_exception = syndrome
        if target == from_el:
            offset = X.VEC_CUR_SPX if self.spsel else X.VEC_CUR_SP0
        else:
            offset = X.VEC_LOWER_A64
        self.el, self.spsel, self.daif = target, 1, 0xF
        self.halted = False
        self.pc = (self.sys[f"vbar_{name}"] + offset + kind) & M64
        if self.emit is not None:
            self.emit("exception", target_el=target, from_el=from_el, kind=kind,
                      esr=syndrome.esr if syndrome else None, elr=return_pc,
                      why=syndrome.describe() if syndrome else {X.VEC_IRQ: "IRQ", X.VEC_FIQ: "FIQ"}.get(kind, "SError"))
        if target == 2 and self.hypervisor is not None:
            self.hypervisor.trap(self, syndrome, kind)

    def eret(self) -> None:
        """Return from an exception: PC from ELR, PSTATE from SPSR of the current EL."""
        name = "el2" if self.el == 2 else "el1"
        spsr, elr = self.sys[f"spsr_{name}"], self.sys[f"elr_{name}"]
        target = (spsr >> 2) & 3
        if target > self.el or (spsr >> 4) & 1:        # to a higher EL, or to AArch32: an illegal return
            raise Abort(X.Syndrome(X.EC_ILLEGAL_STATE), self.el)
        self.set_pstate(spsr)
        self.pc = elr

    # -- state ---------------------------------------------------------------------------
    def save_state(self) -> dict:
        """Everything that decides what the core does next (the TLB too: a stale entry is state)."""
        return {"x": list(self.x), "sp": list(self.sp), "pc": self.pc, "el": self.el, "spsel": self.spsel,
                "nzcv": self.nzcv, "daif": self.daif, "sys": dict(self.sys), "gic": self.gic.save_state(),
                "timer": (self.timer.ctl, self.timer.cval, self.timer.voff),
                "tlb": dict(self.tlb.cache), "icount": self.icount, "cycles": self.cycles,
                "halted": self.halted, "stopped": self.stopped}

    def snapshot(self) -> dict:
        """The state as the recorder's fingerprints read every architecture's core."""
        return self.save_state()

    def load_state(self, s: dict) -> None:
        self.x, self.sp = list(s["x"]), list(s["sp"])
        self.pc, self.el, self.spsel, self.nzcv, self.daif = s["pc"], s["el"], s["spsel"], s["nzcv"], s["daif"]
        self.sys = dict(s["sys"])
        self.gic.load_state(s["gic"])
        self.timer.ctl, self.timer.cval, self.timer.voff = s["timer"]
        self.tlb.cache = dict(s["tlb"])
        self.icount, self.cycles, self.halted, self.stopped = s["icount"], s["cycles"], s["halted"], s["stopped"]

    # -- running -----------------------------------------------------------------------
    def pending_interrupt(self) -> int | None:
        """Where an interrupt would be taken now (1 or 2), or None."""
        hcr = self.sys["hcr_el2"]
        self.timer.tick(self.cycles, self.gic)
        if self.gic.physical_pending():
            if hcr & X.HCR_IMO and self.el < 2:
                return 2                     # routed to EL2, not masked by EL0/EL1's PSTATE.I
            if not self.daif & 0b0010:
                return max(self.el, 1)
        if self.el < 2 and hcr & X.HCR_IMO and not self.daif & 0b0010 and self.gic.virtual_pending():
            return 1                         # a virtual IRQ from a list register
        return None

    def step(self) -> None:
        """Run one instruction (or take a pending interrupt, or stay in wfi)."""
        if self.stopped:
            return
        target = self.pending_interrupt()
        if target is not None:
            self.take_exception(target, None, X.VEC_IRQ, self.pc)
            return
        if self.halted:
            self.cycles += 1
            return
        pc = self.pc
        cost = 1
        try:
            if pc & 3:
                raise Abort(X.Syndrome(X.EC_PC_ALIGN, far=pc), max(self.el, 1))
            pa = self.translate(pc, "x")
            try:
                word = self.mem.read_uint(pa, 4)
            except BusError:
                raise self._abort(pc, "x", TranslationFault(1, X.FSC_TRANSLATION, 3)) from None
            insn = _DECODED.get(word)
            if insn is None:
                try:
                    insn = decode(word)
                except A64DecodeError:
                    raise Abort(X.Syndrome(X.EC_UNKNOWN), max(self.el, 1)) from None
                if len(_DECODED) >= _DECODED_MAX:
                    _DECODED.clear()
                _DECODED[word] = insn
            self.pc = (pc + 4) & M64
            if self.op_cycles:
                cost = self.op_cycles.get(insn.op, self.op_cycles.get("default", 1))
            self.execute(insn, pc)
        except Abort as a:
            ret = (pc + 4) if a.next_pc else pc
            self.take_exception(a.target_el, a.syndrome, X.VEC_SYNC, ret)
        self.icount += 1
        self.cycles += cost

    def run(self, n: int) -> int:
        """Up to ``n`` instructions or until the core stops; how many steps ran."""
        done = 0
        while done < n and not self.stopped:
            self.step()
            done += 1
        return done

    # -- execution ---------------------------------------------------------------------
    def execute(self, i: A64, pc: int) -> None:
        handler = _HANDLERS.get(i.op)
        if handler is None:
            raise Abort(X.Syndrome(X.EC_UNKNOWN), max(self.el, 1))
        handler(self, i, pc)

    def _flags_add(self, a: int, b: int, carry: int, sf: bool) -> int:
        bits = 64 if sf else 32
        mask = (1 << bits) - 1
        unsigned = (a & mask) + (b & mask) + carry
        result = unsigned & mask
        sa, sb, sr = a >> (bits - 1) & 1, b >> (bits - 1) & 1, result >> (bits - 1)
        n, z, c = sr, int(result == 0), int(unsigned > mask)
        v = int(sa == sb and sr != sa)
        self.nzcv = (n << 3) | (z << 2) | (c << 1) | v
        return result

    def cond_holds(self, cond: int) -> bool:
        n, z, c, v = (self.nzcv >> 3) & 1, (self.nzcv >> 2) & 1, (self.nzcv >> 1) & 1, self.nzcv & 1
        base = cond >> 1
        result = (z == 1, c == 1, n == 1, v == 1, c == 1 and z == 0, n == v, n == v and z == 0, True)[base]
        return not result if cond & 1 and cond != 15 else result

    def _sysreg_access(self, i: A64, read: bool) -> SysReg:
        reg = SYSREG_BY_ENCODING.get(i.sysreg)
        if reg is None or reg.el > self.el or (not read and not reg.writable):
            raise Abort(X.Syndrome(X.EC_UNKNOWN), max(self.el, 1))
        if self.el == 1 and not read and reg.name in TVM_TRAPPED and self.sys["hcr_el2"] & X.HCR_TVM:
            raise Abort(X.Syndrome(X.EC_SYSREG, _sysreg_iss(reg, i.rd, read)), 2)
        return reg


def _sysreg_iss(reg: SysReg, rt: int, read: bool) -> int:
    """ISS of a trapped MSR/MRS (EC 0x18): Op0, Op2, Op1, CRn, Rt, CRm, direction."""
    return (reg.op0 << 20) | (reg.op2 << 17) | (reg.op1 << 14) | (reg.crn << 10) | (rt << 5) | (reg.crm << 1) | int(read)


# ----------------------------------------------------------------- instruction semantics
def _addsub(c: ArmCpu, i: A64, pc: int) -> None:
    sub = i.op.startswith("sub")
    flags = i.op.endswith("s")
    imm = i.mode == "imm"
    a = c.reg(i.rn, i.sf, sp=imm)
    if imm:
        b = i.imm << (12 * i.shift)
    else:
        b = _shifted(c.reg(i.rm, i.sf), i.shift, i.amount, i.sf)
    mask = M64 if i.sf else M32
    if sub:
        b = ~b & mask
    if flags:
        result = c._flags_add(a, b, int(sub), i.sf)
    else:
        result = (a + b + int(sub)) & mask
    c.set_reg(i.rd, result, i.sf, sp=imm and not flags)


def _shifted(v: int, kind: int, amount: int, sf: bool) -> int:
    bits = 64 if sf else 32
    mask = (1 << bits) - 1
    if kind == 0:
        return (v << amount) & mask
    if kind == 1:
        return v >> amount
    if kind == 2:
        signed = v - (1 << bits) if v >> (bits - 1) else v
        return (signed >> amount) & mask
    return ((v >> amount) | (v << (bits - amount))) & mask


def _logic(c: ArmCpu, i: A64, pc: int) -> None:
    a = c.reg(i.rn, i.sf)
    if i.mode == "imm":
        b = decode_bit_masks(i.n, i.imms, i.immr, i.sf) or 0
    else:
        b = _shifted(c.reg(i.rm, i.sf), i.shift, i.amount, i.sf)
    result = {"and": a & b, "ands": a & b, "orr": a | b, "eor": a ^ b}[i.op]
    if i.op == "ands":
        bits = 64 if i.sf else 32
        c.nzcv = ((result >> (bits - 1)) << 3) | (int(result == 0) << 2)
    c.set_reg(i.rd, result, i.sf, sp=i.mode == "imm" and i.op != "ands")


def _movewide(c: ArmCpu, i: A64, pc: int) -> None:
    shift = 16 * i.shift
    if i.op == "movz":
        value = i.imm << shift
    elif i.op == "movn":
        value = ~(i.imm << shift)
    else:
        value = (c.reg(i.rd, i.sf) & ~(0xFFFF << shift)) | (i.imm << shift)
    c.set_reg(i.rd, value, i.sf)


def _madd(c: ArmCpu, i: A64, pc: int) -> None:
    product = c.reg(i.rn, i.sf) * c.reg(i.rm, i.sf)
    acc = c.reg(i.ra, i.sf)
    c.set_reg(i.rd, acc - product if i.op == "msub" else acc + product, i.sf)


def _twosrc(c: ArmCpu, i: A64, pc: int) -> None:
    bits = 64 if i.sf else 32
    a, b = c.reg(i.rn, i.sf), c.reg(i.rm, i.sf)
    if i.op == "udiv":
        result = a // b if b else 0                 # Arm: division by zero gives 0, no trap
    elif i.op == "sdiv":
        sa = a - (1 << bits) if a >> (bits - 1) else a
        sb = b - (1 << bits) if b >> (bits - 1) else b
        result = 0 if sb == 0 else abs(sa) // abs(sb) * (1 if (sa < 0) == (sb < 0) else -1)
    else:
        kind = {"lslv": 0, "lsrv": 1, "asrv": 2}[i.op]
        result = _shifted(a, kind, b % bits, i.sf)
    c.set_reg(i.rd, result, i.sf)


def _bfm(c: ArmCpu, i: A64, pc: int) -> None:
    bits = 64 if i.sf else 32
    mask = (1 << bits) - 1
    src = c.reg(i.rn, i.sf)
    r, s = i.immr, i.imms
    if s >= r:                                       # extract bits s:r to the bottom
        width = s - r + 1
        field = (src >> r) & ((1 << width) - 1)
        top = width - 1
    else:                                            # insert bits s:0 at bit (bits - r)
        width = s + 1
        field = (src & ((1 << width) - 1)) << (bits - r)
        top = bits - r + s
    if i.op == "sbfm" and field >> top & 1:
        field |= mask & ~((1 << (top + 1)) - 1)
    c.set_reg(i.rd, field & mask, i.sf)


def _csel(c: ArmCpu, i: A64, pc: int) -> None:
    if c.cond_holds(i.cond):
        value = c.reg(i.rn, i.sf)
    else:
        value = c.reg(i.rm, i.sf) + (1 if i.op == "csinc" else 0)
    c.set_reg(i.rd, value, i.sf)


def _branch(c: ArmCpu, i: A64, pc: int) -> None:
    if i.op == "bl":
        c.x[30] = (pc + 4) & M64
    if i.op in ("b", "bl") or (i.op == "b.cond" and c.cond_holds(i.cond)):
        c.pc = (pc + i.imm) & M64
    elif i.op in ("cbz", "cbnz") and (c.reg(i.rd, i.sf) == 0) == (i.op == "cbz"):
        c.pc = (pc + i.imm) & M64


def _branch_reg(c: ArmCpu, i: A64, pc: int) -> None:
    target = c.reg(i.rn)
    if i.op == "blr":
        c.x[30] = (pc + 4) & M64
    c.pc = target


def _adr(c: ArmCpu, i: A64, pc: int) -> None:
    base = pc & ~0xFFF if i.op == "adrp" else pc
    c.set_reg(i.rd, base + i.imm)


def _exception_insn(c: ArmCpu, i: A64, pc: int) -> None:
    hcr = c.sys["hcr_el2"]
    if i.op == "svc":
        if c.el == 2:
            raise Abort(X.Syndrome(X.EC_SVC64, i.imm), 2, next_pc=True)
        raise Abort(X.Syndrome(X.EC_SVC64, i.imm), 1, next_pc=True)
    if i.op == "hvc":
        if c.el == 0:
            raise Abort(X.Syndrome(X.EC_UNKNOWN), 1)          # hvc is Undefined at EL0
        raise Abort(X.Syndrome(X.EC_HVC64, i.imm), 2, next_pc=True)
    if i.op == "smc":
        # No EL3 in the lab: smc is Undefined unless HCR_EL2.TSC traps it to EL2 (Xen handles PSCI there).
        if c.el == 1 and hcr & X.HCR_TSC:
            raise Abort(X.Syndrome(X.EC_SMC64, i.imm), 2)
        raise Abort(X.Syndrome(X.EC_UNKNOWN), max(c.el, 1))
    raise Abort(X.Syndrome(X.EC_BRK64, i.imm), max(c.el, 1))


def _eret(c: ArmCpu, i: A64, pc: int) -> None:
    if c.el == 0:
        raise Abort(X.Syndrome(X.EC_UNKNOWN), 1)
    c.eret()


def _wfx(c: ArmCpu, i: A64, pc: int) -> None:
    if c.el < 2 and c.sys["hcr_el2"] & (X.HCR_TWI if i.op == "wfi" else X.HCR_TWE):
        raise Abort(X.Syndrome(X.EC_WFX, int(i.op == "wfe")), 2)
    if i.op == "wfi":
        c.halted = c.pending_interrupt() is None


def _nop(c: ArmCpu, i: A64, pc: int) -> None:
    pass


def _msr(c: ArmCpu, i: A64, pc: int) -> None:
    reg = c._sysreg_access(i, read=False)
    c.write_sysreg(reg.name, c.reg(i.rd))


def _mrs(c: ArmCpu, i: A64, pc: int) -> None:
    reg = c._sysreg_access(i, read=True)
    c.set_reg(i.rd, c.read_sysreg(reg.name))


def _daif(c: ArmCpu, i: A64, pc: int) -> None:
    if c.el == 0:
        raise Abort(X.Syndrome(X.EC_UNKNOWN), 1)
    if i.op == "msr daifset":
        c.daif |= i.imm
    else:
        c.daif &= ~i.imm & 0xF


def _tlbi(c: ArmCpu, i: A64, pc: int) -> None:
    from ...isa.a64 import TLBI_OPS
    name = next(n for n, (op1, crm, op2, _) in TLBI_OPS.items() if (op1 << 7) | (crm << 3) | op2 == i.sysreg)
    el_needed = 2 if TLBI_OPS[name][0] == 4 else 1
    if c.el < el_needed:
        raise Abort(X.Syndrome(X.EC_UNKNOWN), max(c.el, 1))
    vmid, asid = c._tags()
    if c.el == 2:        # EL2 maintains the guest's entries: the VMID in VTTBR_EL2
        vmid = (c.sys["vttbr_el2"] >> 48) & 0xFF
    if name in ("vmalle1", "vmalle1is"):
        c.tlb.invalidate(vmid=vmid)
    elif name in ("vae1", "vaae1"):
        page = c.reg(i.rd) & ((1 << 44) - 1)
        c.tlb.invalidate(vmid=vmid, asid=None if name == "vaae1" else (c.reg(i.rd) >> 48) & 0xFFFF, page=page)
    elif name == "aside1":
        c.tlb.invalidate(vmid=vmid, asid=(c.reg(i.rd) >> 48) & 0xFFFF)
    elif name == "vmalls12e1":
        c.tlb.invalidate(vmid=vmid)
    elif name == "alle1":
        for key in [k for k in c.tlb.cache if k[0] != -1]:
            del c.tlb.cache[key]
    elif name == "alle2":
        c.tlb.invalidate(vmid=-1)
    else:                  # ipas2e1: by IPA; the lab's TLB keeps combined entries, so the VMID's go
        c.tlb.invalidate(vmid=vmid)


def _ldst(c: ArmCpu, i: A64, pc: int) -> None:
    base = c.reg(i.rn, sp=True)
    addr = base if i.mode == "post" else (base + i.imm) & M64
    if i.op == "ldr":
        c.set_reg(i.rd, c.load(addr, i.size))
    else:
        c.store(addr, i.size, c.reg(i.rd))
    if i.mode in ("pre", "post"):
        c.set_reg(i.rn, (base + i.imm) & M64, sp=True)


def _pair(c: ArmCpu, i: A64, pc: int) -> None:
    base = c.reg(i.rn, sp=True)
    addr = base if i.mode == "post" else (base + i.imm) & M64
    if i.op == "ldp":
        a, b = c.load(addr, 8), c.load(addr + 8, 8)
        c.set_reg(i.rd, a)
        c.set_reg(i.ra, b)
    else:
        a, b = c.reg(i.rd), c.reg(i.ra)
        c.store(addr, 8, a)
        c.store(addr + 8, 8, b)
    if i.mode in ("pre", "post"):
        c.set_reg(i.rn, (base + i.imm) & M64, sp=True)


_HANDLERS: dict[str, Callable[[ArmCpu, A64, int], None]] = {
    **{op: _addsub for op in ("add", "adds", "sub", "subs")},
    **{op: _logic for op in ("and", "orr", "eor", "ands")},
    **{op: _movewide for op in ("movz", "movn", "movk")},
    "madd": _madd, "msub": _madd,
    **{op: _twosrc for op in ("udiv", "sdiv", "lslv", "lsrv", "asrv")},
    "sbfm": _bfm, "ubfm": _bfm, "csel": _csel, "csinc": _csel,
    **{op: _branch for op in ("b", "bl", "b.cond", "cbz", "cbnz")},
    **{op: _branch_reg for op in ("br", "blr", "ret")},
    "adr": _adr, "adrp": _adr,
    **{op: _exception_insn for op in ("svc", "hvc", "smc", "brk")},
    "eret": _eret, "wfi": _wfx, "wfe": _wfx,
    **{op: _nop for op in ("nop", "yield", "isb", "dsb", "dmb")},
    "msr": _msr, "mrs": _mrs, "msr daifset": _daif, "msr daifclr": _daif, "tlbi": _tlbi,
    "ldr": _ldst, "str": _ldst, "ldp": _pair, "stp": _pair,
}
