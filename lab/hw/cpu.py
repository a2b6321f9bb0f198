"""The simulated x86-64 CPU: privilege rings, root and non-root operation.

One :class:`Cpu` is one hardware thread's architectural state (or one
vCPU's, under Xen). It executes translated blocks (see translate.py), keeps
x86's privilege rules (CPL, IOPL, privileged instructions), delivers
exceptions and interrupts through the IDT, and in non-root operation decides
which events leave the guest as VM exits.

Who handles what:
* bare metal (``host is None``): everything goes through the IDT;
* under Xen in root mode (a PV guest): Xen owns the IDT, so every exception,
  interrupt, system call and software interrupt goes to ``host`` first;
* non-root (an HVM guest): the guest's own IDT, except what the VMCS says
  exits, which goes to ``host.on_vmexit``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from ..isa.bits import M64
from ..isa.encoding import INSN_SIZE
from ..isa.registers import RIP_BASE
from . import flags as F
from . import paging
from .ept import EptMisconfig, EptTranslator, ept_walk
from .faults import CpuStop, Fault, VmExit, mnemonic
from .hypervisor import Hypervisor
from .memory import PAGE_SHIFT, BusError, MachineMemory
from .snapshot import Plain
from .tlb import Tlb
from .translate import Block, compile_block, fetch_run
from .vmx import INTR_BLOCKING_BY_STI, Vmcs
from .x86 import (EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, MSR_APIC_BASE, MSR_CSTAR, MSR_EFER,
                  MSR_FS_BASE, MSR_GS_BASE, MSR_IA32_TSC, MSR_LSTAR, MSR_SHADOW_GS_BASE, MSR_STAR,
                  MSR_SYSCALL_MASK, PFEC_write_access, X86_CR0_PE, X86_CR0_PG, X86_CR0_WP, X86_CR4_PAE, X86_CR4_PGE,
                  X86_EXC_BP, X86_EXC_CONTRIBUTORY, X86_EXC_DF, X86_EXC_GP, X86_EXC_PF, X86_EXC_UD,
                  is_canonical)

_PLAIN_MSRS = (MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK, MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE)


class Cpu:
    """Architectural state plus the execution engine for one (v)CPU."""

    def __init__(self, mem: MachineMemory, bus: Any, code: "CodeCache", *, vendor: str = "intel",
                 cpu_id: int = 0, costs: dict[str, int] | None = None,
                 emit: Callable[..., Any] | None = None) -> None:
        self.mem = mem
        self.bus = bus
        self.code = code
        self.vendor = vendor
        self.cpu_id = cpu_id
        self.costs = costs or {}
        self.emit = emit or (lambda kind, **data: None)
        self.host: Hypervisor | None = None     # the hypervisor, when one runs this CPU's guest (attach)
        self.vcpu: Any = None                   # ... and the vCPU it runs here
        #: Under shadow paging, the root the hardware walks in non-root operation instead of the
        #: guest's CR3 (and, while the guest's paging is off, Xen's 1:1 map): set by the hypervisor.
        self.shadow_cr3: int | None = None
        self.shadow_unpaged_cr3: int | None = None
        self.irq_source: Any = None        # object with pending() -> vector|None and ack(vector)
        self.tlb = Tlb()
        code.cpus.append(self)
        self.reset()

    def attach(self, host: Hypervisor, vcpu: Any, emit: Callable[..., Any]) -> None:
        """Run ``vcpu`` of ``host`` here: root-mode entries go to ``host``, events through ``emit``."""
        self.host, self.vcpu, self.emit = host, vcpu, emit

    # -- state ------------------------------------------------------------
    def reset(self) -> None:
        """The lab's reset state: flat protected mode, ring 0, paging off.

        Real x86 resets into 16-bit real mode; the lab starts where a boot
        loader would hand over, which is stated in docs/isa.md.
        """
        self.regs = [0] * 16
        self.rip = 0
        self.rf = F.FIXED
        self.lf: tuple | None = None
        self.cpl = 0
        self.cs = 0x08
        self.ss = 0x10
        self.cr0 = X86_CR0_PE
        self.cr2 = 0
        self.cr3 = 0
        self.cr4 = 0
        self.efer = 0
        self.msr: dict[int, int] = {m: 0 for m in _PLAIN_MSRS}
        self.apic_base = 0xFEE00900
        self.tsc_offset = 0
        self.idtr = (0, 0)
        self.gdtr = (0, 0)
        self.tr = 0
        self.tss_base = 0
        self.root = True
        self.vmcs: Vmcs | None = None
        self.halted = False
        self.stopped: str | None = None
        # STI's interrupt shadow: set by an sti that turned IF on, it blocks interrupts at the
        # boundary after the next instruction only (SDM vol. 2, STI); see _execute and vmentry.
        self.int_shadow = False
        self.vmentries = 0          # VM entries so far (an exit in sti's shadow may re-enter in it)
        self.yield_now = False      # set (e.g. by a breakpoint) to end run() at the next block
        self.reschedule = False     # set when a device's deadlines change: run() returns so they are re-read
        self.icount = 0
        self.cycles = 0
        self.loop_until = 0
        self.loop_target = 0
        # Calls of the slow memory paths: the only way generated code without system
        # instructions reaches devices, write hooks, events or code pages (translate.py).
        self.slow = 0
        self.tlb.flush(include_global=True)
        self._new_caches()

    def _new_caches(self) -> None:
        # Fast translation caches: virtual page -> frame, per privilege class.
        # rc/wc: page -> frame for reads/writes; xc: page -> frame address for
        # fetches; bc: rip -> translated block, valid while xc is.
        self._sup: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
        self._usr: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
        # The guest's caches, set aside while the CPU is in root operation after a
        # VM exit (VPID-tagged TLB entries survive exits and entries alike). Every
        # flush while they are set aside reaches them too.
        self._parked: tuple | None = None
        # Root operation's caches while the guest runs, for the next exit to empty and reuse.
        self._root_caches: tuple | None = None
        self._ept_cache: dict[tuple, int] = {}
        # The hypervisor's own walks of this vCPU's tables (copies to and from the
        # guest): (root, page, write) -> (the entries read, frame). Checked against
        # memory on every use, so no flush has to reach it.
        self.xen_walks: dict[tuple, tuple] = {}
        self._select_caches()

    def _select_caches(self) -> None:
        self.rc, self.wc, self.xc, self.bc = self._usr if self.cpl == 3 else self._sup

    def _cache_groups(self) -> tuple:
        return (self._sup, self._usr) + (self._parked or ())

    def drop_blocks(self) -> None:
        for group in self._cache_groups():
            group[3].clear()

    def flush_caches(self) -> None:
        for group in self._cache_groups():
            for c in group:
                c.clear()
        self._ept_cache.clear()

    def drop_write_caches(self) -> None:
        for group in self._cache_groups():
            group[1].clear()

    def set_cpl(self, cpl: int, why: str) -> None:
        if cpl != self.cpl:
            self.emit("ring", from_cpl=self.cpl, to_cpl=cpl, root=self.root, why=why)
            self.cpl = cpl
            self._select_caches()

    @property
    def paging(self) -> bool:
        return bool(self.cr0 & X86_CR0_PG)

    # rflags with the lazily computed arithmetic flags folded in.
    def arith(self) -> int:
        lf = self.lf
        if lf is None:
            return self.rf & F.ARITH
        k, res, a, b, size = lf
        if k in (F.K_INC, F.K_DEC) and isinstance(b, tuple):
            b = F.compute(*b) & F.CF
        f = F.compute(k, res, a, b, size)
        self.rf = (self.rf & ~F.ARITH) | f
        self.lf = None
        return f

    def cf_source(self):
        lf = self.lf
        if lf is None:
            return self.rf & F.CF
        if lf[0] in (F.K_INC, F.K_DEC):
            return lf[3]
        return lf

    @property
    def rflags(self) -> int:
        return (self.rf & ~F.ARITH) | self.arith() | F.FIXED

    @rflags.setter
    def rflags(self, value: int) -> None:
        self.lf = None
        self.rf = (value & 0x3F7FD5) | F.FIXED

    @property
    def iopl(self) -> int:
        return (self.rf >> F.IOPL_SHIFT) & 3

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.rf & F.IF)

    # -- memory -----------------------------------------------------------
    def translate(self, va: int, access: str, supervisor: bool = False, fill: bool = True) -> int:
        """Virtual to machine address, raising #PF/#GP or a VM exit."""
        cpl = 0 if supervisor else self.cpl
        if self.cr0 & X86_CR0_PG:
            if not is_canonical(va):
                raise Fault(X86_EXC_GP, 0, reason=f"non-canonical address {va:#x}")
            # Under shadow paging Xen keeps the real CR0.WP set whatever the
            # guest's CR0 says, so its read-only shadow entries hold in ring 0 too.
            wp = bool(self.cr0 & X86_CR0_WP) or self._shadowed()
            nxe = bool(self.efer & EFER_NXE)
            e = self.tlb.lookup(va)
            if e is not None and e.allows(access, cpl, wp=wp, nxe=nxe):
                gpa = e.translate(va)
            else:
                ept = self._ept_active()
                res = paging.walk(self.mem, self.walk_root(), va, access=access, cpl=cpl, wp=wp, nxe=nxe,
                                  table_translate=EptTranslator(self.mem, self.vmcs.eptp) if ept else None)
                if res.ept_exit is not None:
                    raise self._ept_exit(res.ept_exit)
                if res.fault is not None:
                    self.emit("pagetable", op="fault", addr=va, value=res.fault.error_code, level=None,
                              result="#PF", message=res.fault.reason)
                    raise Fault(X86_EXC_PF, res.fault.error_code, cr2=va, reason=res.fault.reason)
                if fill:
                    self.tlb.insert(va, res)
                return res.hpa if ept else res.pa
        else:
            gpa = va & 0x000F_FFFF_FFFF_FFFF
            if self._shadowed():
                return self._translate_unpaged_shadow(gpa, access, cpl, fill)
        if self._ept_active():
            return self._ept_translate(gpa, access, va)
        return gpa

    def _shadowed(self) -> bool:
        """Non-root under shadow paging: the hardware walks Xen's tables, not the guest's."""
        return not self.root and self.shadow_cr3 is not None

    def _translate_unpaged_shadow(self, gpa: int, access: str, cpl: int, fill: bool) -> int:
        """A guest with CR0.PG clear under shadow paging.

        Xen runs such a guest with paging really on, through its 1:1 map of
        guest-physical memory (unpaged mode): the address the guest uses is
        walked like a linear one, and a miss is a #PF that the VMCS sends to Xen.
        """
        nxe = bool(self.efer & EFER_NXE)
        e = self.tlb.lookup(gpa)
        if e is not None and e.allows(access, cpl, wp=True, nxe=nxe):
            return e.translate(gpa)
        res = paging.walk(self.mem, self.walk_root(), gpa, access=access, cpl=cpl, wp=True, nxe=nxe)
        if res.fault is not None or res.pa is None:
            code = res.fault.error_code if res.fault is not None else (PFEC_write_access if access == "w" else 0)
            why = res.fault.reason if res.fault is not None else f"guest-physical {gpa:#x} is beyond any shadow"
            self.emit("pagetable", op="fault", addr=gpa, value=code, level=None, result="#PF", message=why)
            raise Fault(X86_EXC_PF, code, cr2=gpa, reason=why)
        if fill:
            self.tlb.insert(gpa, res)
        return res.pa

    @staticmethod
    def _ept_exit(exc) -> VmExit:
        if isinstance(exc, EptMisconfig):
            return VmExit("EPT_MISCONFIG", 0, {"gpa": exc.gpa, "reason": exc.reason})
        return VmExit("EPT_VIOLATION", exc.qualification, {"gpa": exc.gpa, "gla": exc.gla, "reason": exc.reason})

    def walk_root(self) -> int:
        """The table the hardware walks: CR3, or Xen's shadow of it.

        In non-root operation under shadow paging (``shadow_cr3`` set) the
        hardware walks Xen's shadow of the guest's tables; ``cr3`` keeps the
        guest's own (guest-physical) value, which is what the guest reads back.
        While the guest has CR0.PG clear it walks ``shadow_unpaged_cr3``, when
        set: Xen's 1:1 map of guest-physical memory. (Real Xen hears of a CR0.PG
        change through a CR0 access exit and reloads the real CR3; the lab's
        VMCS has no CR0 exiting, so the choice is made here.)
        """
        shadow = self.shadow_cr3
        if shadow is None or self.root:
            return self.cr3
        if not self.cr0 & X86_CR0_PG:
            unpaged = self.shadow_unpaged_cr3
            if unpaged is not None:
                return unpaged
        return shadow

    def _ept_active(self) -> bool:
        return not self.root and self.vmcs is not None and self.vmcs.ept

    def _ept_translate(self, gpa: int, access: str, gla: int | None) -> int:
        # Guest-physical to machine translations are cached per page and access, as the
        # TLB caches combined mappings: once a walk has set the accessed (and, for a
        # write, dirty) flags, walking again changes nothing. Whoever changes the EPT
        # flushes these with the rest (INVEPT, in Xen's ept_sync_domain()).
        eptp = self.vmcs.eptp
        key = (gpa >> 12, access, eptp)
        base = self._ept_cache.get(key)
        if base is not None:
            return base | (gpa & 0xFFF)
        res = ept_walk(self.mem, eptp, gpa, access, gla=gla)
        if res.exit is not None:
            raise self._ept_exit(res.exit)
        self._ept_cache[key] = res.hpa & ~0xFFF
        return res.hpa

    def _frame(self, hpa: int) -> bytearray:
        try:
            return self.mem.frame(hpa >> PAGE_SHIFT)
        except BusError as e:
            raise Fault(X86_EXC_GP, 0, reason=str(e)) from None

    def load(self, va: int, size: int) -> int:
        f = self.rc.get(va >> 12)
        off = va & 0xFFF
        if f is not None and off + size <= 4096:
            return int.from_bytes(f[off:off + size], "little")
        return self._load_slow(va, size)

    def _load_slow(self, va: int, size: int, supervisor: bool = False) -> int:
        self.slow += 1
        va &= M64
        off = va & 0xFFF
        if off + size > 4096:
            lo = 4096 - off
            first = self._load_slow(va, lo, supervisor)
            return first | (self._load_slow((va + lo) & M64, size - lo, supervisor) << (8 * lo))
        hpa = self.translate(va, "r", supervisor)
        frame = self._frame(hpa)
        if not supervisor:
            self.rc[va >> 12] = frame
        return int.from_bytes(frame[off:off + size], "little")

    def store(self, va: int, size: int, value: int) -> None:
        f = self.wc.get(va >> 12)
        off = va & 0xFFF
        if f is not None and off + size <= 4096:
            f[off:off + size] = (value & F.MASK[size]).to_bytes(size, "little")
            return
        self._store_slow(va, size, value)

    def _store_slow(self, va: int, size: int, value: int, supervisor: bool = False) -> None:
        self.slow += 1
        va &= M64
        off = va & 0xFFF
        value &= (1 << (8 * size)) - 1
        if off + size > 4096:
            lo = 4096 - off
            # Translate both pages before writing either, so a fault leaves memory untouched.
            self.translate(va, "w", supervisor)
            self.translate((va + lo) & M64, "w", supervisor)
            self._store_slow(va, lo, value & ((1 << (8 * lo)) - 1), supervisor)
            self._store_slow((va + lo) & M64, size - lo, value >> (8 * lo), supervisor)
            return
        hpa = self.translate(va, "w", supervisor)
        mfn = hpa >> PAGE_SHIFT
        frame = self._frame(hpa)
        frame[off:off + size] = value.to_bytes(size, "little")
        if mfn in self.mem.watched:
            self.code.invalidate_frame(mfn)
        hook = self.mem.write_hooks.get(mfn) if self.mem.write_hooks else None
        if hook is not None:
            hook(hpa, size, value)
        elif not supervisor and mfn not in self.mem.watched:
            self.wc[va >> 12] = frame

    def read_virt(self, va: int, n: int, supervisor: bool = True) -> bytes:
        """Bytes at a virtual address (for the kernel's and Xen's own accesses)."""
        return bytes(self._load_slow(va + k, 1, supervisor) for k in range(n))

    # -- execution -----------------------------------------------------------
    def _block_here(self, single: bool) -> Block:
        rip = self.rip
        frame_pa = self.xc.get(rip >> 12)
        if frame_pa is None:
            hpa = self.translate(rip, "x")
            frame_pa = hpa & ~0xFFF
            self.xc[rip >> 12] = frame_pa
        hpa = frame_pa | (rip & 0xFFF)
        return self.code.get(self, rip, hpa, single)

    def step(self) -> None:
        """Execute one instruction, or deliver one pending interrupt."""
        if self.stopped:
            return
        if self._interrupt_ready():
            self._take_interrupt()
            return
        if self.halted:
            return
        self._execute(single=True, budget_cycles=None)

    def run(self, max_insns: int, until_cycle: int) -> None:
        """Run until ``max_insns`` more instructions, ``until_cycle``, a halt or a stop."""
        target = self.icount + max_insns
        irq = self.irq_source
        self.reschedule = False
        # The limits a block that loops by itself keeps to (see translate.py).
        self.loop_until = until_cycle
        self.loop_target = target
        while self.icount < target and self.cycles < until_cycle and not self.yield_now and not self.reschedule:
            if self.stopped:
                return
            if self.int_shadow:
                self._execute(single=True, budget_cycles=None)
                continue
            if irq is not None and irq.waiting and self.rf & F.IF and self._interrupt_ready():
                self._take_interrupt()
                continue
            if self.halted:
                return
            bc = self.bc
            blk = bc.get(self.rip)
            if blk is None:
                try:
                    blk = self._block_here(False)
                except (Fault, VmExit, CpuStop) as exc:
                    self._handle(exc, None)
                    continue
                bc[self.rip] = blk
            if self.cycles + blk.cost > until_cycle or self.icount + blk.n > target:
                self._execute(single=True, budget_cycles=None)
                continue
            # Chaining: a block without system instructions goes straight on to its
            # translated successor while nothing the loop above watches can have
            # changed. Privilege, halts, stops, interrupt shadows and cache switches
            # come only from system instructions; devices, write hooks, events (a
            # breakpoint) and code pages only through the slow memory paths, which
            # ``slow`` counts. The budget is the loop's own.
            sl = self.slow
            while True:
                self.cycles += blk.cost
                self.icount += blk.n
                try:
                    blk.fn(self)
                except (Fault, VmExit, CpuStop) as exc:
                    self._unwind(blk, exc.index)
                    self._handle(exc, blk)
                    break
                if not blk.chains or self.slow != sl:
                    break
                blk = bc.get(self.rip)
                if blk is None or self.cycles + blk.cost > until_cycle or self.cycles >= until_cycle \
                        or self.icount + blk.n > target:
                    break

    def _execute(self, single: bool, budget_cycles: int | None) -> None:
        if not self.int_shadow:
            self._execute_block(single)
            return
        # The instruction in sti's shadow (sti ends its block, so this is one instruction).
        # The shadow ends with it, whether it completes or faults; if it leaves the guest,
        # the VM exit saves the shadow and the entry decides whether it holds again.
        entries = self.vmentries
        try:
            self._execute_block(single)
        finally:
            if self.vmentries == entries:
                self.int_shadow = False

    def _execute_block(self, single: bool) -> None:
        try:
            blk = self._block_here(single)
        except (Fault, VmExit, CpuStop) as exc:
            self._handle(exc, None)
            return
        self.cycles += blk.cost
        self.icount += blk.n
        try:
            blk.fn(self)
        except (Fault, VmExit, CpuStop) as exc:
            self._unwind(blk, exc.index)
            self._handle(exc, blk)

    def _unwind(self, blk: Block, index: int) -> None:
        """Take back the cost of the instructions after the faulting one."""
        self.cycles -= blk.cost - blk.prefix[index]
        self.icount -= blk.n - index
        self.rip = blk.addrs[index]

    def _handle(self, exc: Exception, blk: Block | None) -> None:
        if isinstance(exc, Fault):
            # The faulting instruction does not count as executed.
            self.deliver_exception(exc)
        elif isinstance(exc, VmExit):
            # The exiting instruction has not completed: rip points at it and
            # the hypervisor emulates it (advancing rip) or lets it re-run.
            self.vmexit(exc)
        elif isinstance(exc, CpuStop):
            self.stop(exc.reason)

    def stop(self, reason: str) -> None:
        self.stopped = reason
        self.emit("halt", reason=reason)
        if self.host is not None:
            self.host.on_cpu_stop(self, reason)

    # -- interrupts and exceptions ------------------------------------------------
    def _interrupt_ready(self) -> bool:
        if not self.rf & F.IF or self.int_shadow or self.irq_source is None:
            return False
        return self.irq_source.pending() is not None

    def _take_interrupt(self) -> None:
        vector = self.irq_source.ack()
        if vector is None:
            return
        self.halted = False
        if not self.root and self.vmcs is not None and self.vmcs.external_interrupt_exiting:
            self.vmexit(VmExit("EXTERNAL_INTERRUPT", 0, {"vector": vector}))
            return
        if self.root and self.host is not None:
            self.host.on_interrupt(self, vector)
            return
        self.emit("interrupt", vector=vector, source=self.irq_source.name)
        self.deliver(vector, None, software=False, external=True)

    def deliver_exception(self, fault: Fault) -> None:
        if not self.root and self.vmcs is not None and self.vmcs.exits_on_exception(fault.vector):
            # A #PF that exits leaves CR2 alone. On VMX the exit qualification is the
            # faulting linear address and the error code travels in the VM-exit
            # interruption error code (SDM vol. 3C 28.2.1; vmx.c reads it as the address);
            # SVM's EXITINFO1 is the error code and EXITINFO2 the address (svm.c).
            if self.vmcs.vendor == "amd":
                qualification = fault.error_code or 0
            else:
                qualification = (fault.cr2 or 0) if fault.vector == X86_EXC_PF else 0
            self.vmexit(VmExit("EXCEPTION_NMI", qualification,
                               {"vector": fault.vector, "error_code": fault.error_code, "cr2": fault.cr2,
                                "reason": fault.reason}))
            return
        if fault.vector == X86_EXC_PF and fault.cr2 is not None:
            self.cr2 = fault.cr2
        if self.root and self.host is not None:
            self.host.on_exception(self, fault)
            return
        self.emit("trap", vector=fault.vector, mnemonic=fault.mnemonic, error_code=fault.error_code,
                  cr2=fault.cr2, rip=self.rip, cpl=self.cpl, handler="idt", reason=fault.reason)
        self.deliver(fault.vector, fault.error_code, software=False)

    def deliver(self, vector: int, error_code: int | None, software: bool, external: bool = False,
                return_rip: int | None = None, depth: int = 0) -> None:
        """Deliver through the IDT as x86-64 does, escalating to #DF and triple fault.

        A fault raised while delivering: after #DF it is a triple fault; after a
        contributory exception (#DE #TS #NP #SS #GP) a contributory one, or after
        #PF a contributory one or #PF, makes a double fault; otherwise (after
        #UD, a software int or an external interrupt) the new fault is simply
        delivered instead (Intel SDM vol. 3, table 6-5).
        """
        try:
            self._deliver_once(vector, error_code, software, external, return_rip)
            return
        except Fault as f2:
            second = f2
        if second.vector == X86_EXC_PF and second.cr2 is not None:
            self.cr2 = second.cr2
        if vector == X86_EXC_DF or depth > 3:
            self._triple_fault(f"{second!r} while delivering {mnemonic(vector)}")
            return
        first_contributory = vector in X86_EXC_CONTRIBUTORY and not software
        doubles = ((first_contributory and second.vector in X86_EXC_CONTRIBUTORY) or
                   (vector == X86_EXC_PF and (second.vector in X86_EXC_CONTRIBUTORY or second.vector == X86_EXC_PF)))
        if doubles:
            self.emit("trap", vector=X86_EXC_DF, mnemonic="#DF", error_code=0, cr2=None, rip=self.rip, cpl=self.cpl,
                      handler="idt", reason=f"{second!r} while delivering {mnemonic(vector)}")
            self.deliver(X86_EXC_DF, 0, False, depth=depth + 1)
            return
        self.emit("trap", vector=second.vector, mnemonic=second.mnemonic, error_code=second.error_code,
                  cr2=second.cr2, rip=self.rip, cpl=self.cpl, handler="idt",
                  reason=f"{second.reason} (while delivering {mnemonic(vector)})")
        self.deliver(second.vector, second.error_code, False, depth=depth + 1)

    def _triple_fault(self, why: str) -> None:
        if not self.root and self.vmcs is not None:
            self.vmexit(VmExit("TRIPLE_FAULT", 0, {"reason": why}))
            return
        self.stop(f"triple fault: {why}")

    def _sys_load(self, va: int, size: int) -> int:
        return self._load_slow(va, size, supervisor=True)

    def _sys_store(self, va: int, size: int, value: int) -> None:
        self._store_slow(va, size, value, supervisor=True)

    def _deliver_once(self, vector: int, error_code: int | None, software: bool, external: bool,
                      return_rip: int | None) -> None:
        base, limit = self.idtr
        ext = 1 if external else 0
        if vector * 16 + 15 > limit:
            raise Fault(X86_EXC_GP, vector * 8 + 2 + ext, reason=f"vector {vector} is beyond the IDT limit")
        lo = self._sys_load(base + vector * 16, 8)
        hi = self._sys_load(base + vector * 16 + 8, 8)
        attr = (lo >> 40) & 0xFF
        if not attr & 0x80:
            raise Fault(11, vector * 8 + 2 + ext, reason=f"IDT gate {vector} not present")
        dpl = (attr >> 5) & 3
        if software and self.cpl > dpl:
            raise Fault(X86_EXC_GP, vector * 8 + 2, reason=f"int {vector:#x} from CPL {self.cpl} needs DPL >= {self.cpl}")
        selector = (lo >> 16) & 0xFFFF
        offset = (lo & 0xFFFF) | ((lo >> 48) & 0xFFFF) << 16 | (hi & 0xFFFFFFFF) << 32
        new_cpl = selector & 3
        if new_cpl > self.cpl:
            raise Fault(X86_EXC_GP, selector & ~3, reason="interrupt gate to a less privileged ring")
        old_rsp, old_ss, old_cs, old_cpl = self.regs[4], self.ss, self.cs, self.cpl
        rip = self.rip if return_rip is None else return_rip
        flags = self.rflags
        if new_cpl < self.cpl:
            rsp = self._sys_load(self.tss_base + 4 + 8 * new_cpl, 8) if self.tss_base else 0
            if rsp == 0:
                raise Fault(10, self.tr & ~3, reason=f"no RSP{new_cpl} in the TSS for a ring change")
        else:
            rsp = old_rsp
        rsp &= ~0xF
        frame = [old_ss, old_rsp, flags, old_cs, rip]
        if error_code is not None:
            frame.append(error_code)
        sp = rsp
        for value in frame:
            sp = (sp - 8) & M64
            self._sys_store(sp, 8, value)
        self.regs[4] = sp
        self.cs = selector
        if new_cpl < self.cpl:
            self.ss = 0
        self.rip = offset
        newf = flags & ~(F.TF)
        if attr & 0xF == 0xE:
            newf &= ~F.IF
        self.rflags = newf
        self.set_cpl(new_cpl, f"{mnemonic(vector)} through the IDT")
        self.halted = False
        del old_cpl

    # -- VM exits ---------------------------------------------------------
    def vmexit(self, exc: VmExit) -> None:
        """Leave non-root operation and hand the exit to the hypervisor."""
        vm = self.vmcs
        if vm is None or self.host is None:
            self.stop(f"VM exit {exc.reason} with no hypervisor")
            return
        vm.record_exit(exc.reason, exc.qualification, self, INSN_SIZE)
        self.root = True
        if self._parked is None:
            # Root operation gets caches of its own, empty (those of the last exit, emptied,
            # rather than new ones at every exit); the guest's wait for the entry.
            self._parked = (self._sup, self._usr)
            spare = self._root_caches
            if spare is None:
                self._sup, self._usr = ({}, {}, {}, {}), ({}, {}, {}, {})
            else:
                self._sup, self._usr = spare
                for group in spare:
                    for c in group:
                        if c:
                            c.clear()
            self._select_caches()
        else:
            for group in (self._sup, self._usr):
                for c in group:
                    c.clear()
        self.host.on_vmexit(self, exc)

    def vmentry(self) -> None:
        self.root = False
        self.vmentries += 1
        vm = self.vmcs
        # VM entry loads the guest's interruptibility state (SDM vol. 3, "Loading Guest
        # State"): blocking by STI holds again when the guest resumes at the instruction
        # whose exit saved it. Xen clears the bit whenever it carries the guest past that
        # instruction (update_guest_eip(), hvm/vmx/vmx.c; __update_guest_eip(), svm.c), and
        # an injected event leaves no blocking behind; the lab's exit handlers and event
        # delivery move RIP without touching the field, so a RIP moved from the exit's
        # stands for that clearing.
        self.int_shadow = vm is not None and bool(vm.guest_interruptibility & INTR_BLOCKING_BY_STI) \
            and self.rip == vm.guest_rip
        if self._parked is not None:
            # Back to the guest's own caches: whatever changed its translations
            # while Xen ran (EPT or shadow updates, TLB flushes) has flushed them.
            self._root_caches = (self._sup, self._usr)
            self._sup, self._usr = self._parked
            self._parked = None
        else:
            self.flush_caches()
        self._select_caches()

    def _nonroot(self) -> bool:
        return not self.root and self.vmcs is not None

    def _require_cpl0(self, what: str) -> None:
        if self.cpl != 0:
            raise Fault(X86_EXC_GP, 0, reason=f"{what} is privileged (CPL {self.cpl})")

    # -- system instructions (called from translated code) ------------------------
    def op_int(self, insn, nxt: int) -> None:
        vector = insn.imm & 0xFF
        self._softint(vector, nxt)

    def op_int3(self, insn, nxt: int) -> None:
        self._softint(X86_EXC_BP, nxt)

    def _softint(self, vector: int, nxt: int) -> None:
        if self.root and self.host is not None:
            self.rip = nxt
            self.host.on_softint(self, vector, nxt)
            return
        self.emit("trap", vector=vector, mnemonic=mnemonic(vector) if vector < 32 else f"int {vector:#x}",
                  error_code=None, cr2=None, rip=nxt - INSN_SIZE, cpl=self.cpl, handler="idt",
                  reason="software interrupt")
        self.rip = nxt - INSN_SIZE
        self.deliver(vector, None, software=True, return_rip=nxt)

    def op_iretq(self, insn, nxt: int) -> None:
        sp = self.regs[4]
        new_rip = self._sys_load(sp, 8)
        new_cs = self._sys_load(sp + 8, 8) & 0xFFFF
        new_flags = self._sys_load(sp + 16, 8)
        new_rsp = self._sys_load(sp + 24, 8)
        new_ss = self._sys_load(sp + 32, 8) & 0xFFFF
        new_cpl = new_cs & 3
        if new_cpl < self.cpl:
            raise Fault(X86_EXC_GP, new_cs & ~3, reason="iretq to a more privileged ring")
        if not is_canonical(new_rip):
            raise Fault(X86_EXC_GP, 0, reason=f"iretq to non-canonical {new_rip:#x}")
        self._load_flags(new_flags, self.cpl)
        self.regs[4] = new_rsp
        self.cs, self.ss = new_cs, new_ss
        self.rip = new_rip
        self.set_cpl(new_cpl, "iretq")

    def _load_flags(self, value: int, cpl: int) -> None:
        """Write rflags as popfq/iretq do: IOPL only at CPL 0, IF only at CPL <= IOPL."""
        keep = 0
        cur = self.rflags
        if cpl > 0:
            keep |= F.IOPL_MASK
        if cpl > self.iopl:
            keep |= F.IF
        self.rflags = (value & ~keep) | (cur & keep)

    def op_popfq(self, nxt: int) -> None:
        v = self.load(self.regs[4], 8)
        self.regs[4] = (self.regs[4] + 8) & M64
        self._load_flags(v, self.cpl)

    def op_syscall(self, insn, nxt: int) -> None:
        if self.root and self.host is not None:
            self.rip = nxt
            self.host.on_syscall(self, nxt)
            return
        if not self.efer & EFER_SCE:
            raise Fault(X86_EXC_UD, reason="syscall with EFER.SCE clear")
        self.regs[1] = nxt                       # rcx
        self.regs[11] = self.rflags              # r11
        self.rflags = self.rflags & ~self.msr[MSR_SYSCALL_MASK]
        star = self.msr[MSR_STAR]
        self.cs = (star >> 32) & 0xFFFC
        self.ss = self.cs + 8
        self.rip = self.msr[MSR_LSTAR]
        self.emit("syscall", nr=self.regs[0], rip=nxt - INSN_SIZE, via="syscall")
        self.set_cpl(0, "syscall")

    def op_sysretq(self, insn, nxt: int) -> None:
        self._require_cpl0("sysretq")
        target = self.regs[1]
        if not is_canonical(target):
            raise Fault(X86_EXC_GP, 0, reason=f"sysretq to non-canonical {target:#x}")
        star = self.msr[MSR_STAR]
        self.rflags = (self.regs[11] & 0x3C7FD7) | F.FIXED
        self.cs = (((star >> 48) & 0xFFFF) + 16) | 3
        self.ss = (((star >> 48) & 0xFFFF) + 8) | 3
        self.rip = target
        self.emit("sysret", rip=target)
        self.set_cpl(3, "sysretq")

    def op_hlt(self, insn, nxt: int) -> None:
        self._require_cpl0("hlt")
        if self._nonroot() and self.vmcs.hlt_exiting:
            raise VmExit("HLT")
        self.rip = nxt
        if not self.rf & F.IF:
            raise CpuStop("hlt with interrupts disabled: the machine stops")
        self.halted = True

    def op_cli(self, insn, nxt: int) -> None:
        if self.cpl > self.iopl:
            raise Fault(X86_EXC_GP, 0, reason=f"cli at CPL {self.cpl} > IOPL {self.iopl}")
        self.rf &= ~F.IF

    def op_sti(self, insn, nxt: int) -> None:
        if self.cpl > self.iopl:
            raise Fault(X86_EXC_GP, 0, reason=f"sti at CPL {self.cpl} > IOPL {self.iopl}")
        if not self.rf & F.IF:
            self.int_shadow = True
        self.rf |= F.IF
        self.rip = nxt

    def _io_check(self, port: int, size: int, is_in: bool, value: int, insn) -> None:
        if self.cpl > self.iopl:
            raise Fault(X86_EXC_GP, 0, reason=f"{'in' if is_in else 'out'} port {port:#x} at CPL {self.cpl} > IOPL {self.iopl}")
        if self._nonroot() and self.vmcs.exits_on_io(port):
            imm = "i" in insn.form
            qual = (size - 1) | (8 if is_in else 0) | (0x40 if imm else 0) | (port << 16)
            raise VmExit("IO_INSTRUCTION", qual, {"port": port, "size": size, "dir": "in" if is_in else "out",
                                                  "value": value, "reg": 0})

    def op_in(self, insn, nxt: int) -> None:
        port = (insn.imm & 0xFF) if insn.form == "ri" else (self.regs[2] & 0xFFFF)
        size = insn.size
        self._io_check(port, size, True, 0, insn)
        value = self.bus.port_in(self, port, size) & F.MASK[size]
        if size == 4:
            self.regs[0] = value
        else:
            self.regs[0] = (self.regs[0] & ~F.MASK[size]) | value
        self.rip = nxt

    def op_out(self, insn, nxt: int) -> None:
        port = (insn.imm & 0xFF) if insn.form == "ir" else (self.regs[2] & 0xFFFF)
        size = insn.size
        value = self.regs[0] & F.MASK[size]
        self._io_check(port, size, False, value, insn)
        self.bus.port_out(self, port, size, value)
        self.reschedule = True
        self.rip = nxt

    def op_cpuid(self, insn, nxt: int) -> None:
        if self._nonroot():
            raise VmExit("CPUID", 0, {"leaf": self.regs[0] & 0xFFFFFFFF, "subleaf": self.regs[1] & 0xFFFFFFFF})
        a, b, c, d = native_cpuid(self.vendor, self.regs[0] & 0xFFFFFFFF, self.regs[1] & 0xFFFFFFFF)
        self.regs[0], self.regs[3], self.regs[1], self.regs[2] = a, b, c, d
        self.rip = nxt

    def op_rdmsr(self, insn, nxt: int) -> None:
        self._require_cpl0("rdmsr")
        msr = self.regs[1] & 0xFFFFFFFF
        if self._nonroot() and self.vmcs.exits_on_msr(msr, False):
            raise VmExit("MSR_READ", 0, {"msr": msr})
        value = self.read_msr(msr)
        self.regs[0] = value & 0xFFFFFFFF
        self.regs[2] = value >> 32
        self.rip = nxt

    def op_wrmsr(self, insn, nxt: int) -> None:
        self._require_cpl0("wrmsr")
        msr = self.regs[1] & 0xFFFFFFFF
        value = ((self.regs[2] & 0xFFFFFFFF) << 32) | (self.regs[0] & 0xFFFFFFFF)
        if self._nonroot() and self.vmcs.exits_on_msr(msr, True):
            raise VmExit("MSR_WRITE", 0, {"msr": msr, "value": value})
        self.write_msr(msr, value)
        self.rip = nxt

    def read_msr(self, msr: int) -> int:
        if msr == MSR_EFER:
            return self.efer
        if msr == MSR_IA32_TSC:
            return (self.cycles + self.tsc_offset) & M64
        if msr == MSR_APIC_BASE:
            return self.apic_base
        if msr in self.msr:
            return self.msr[msr]
        raise Fault(X86_EXC_GP, 0, reason=f"rdmsr of unknown MSR {msr:#x}")

    def write_msr(self, msr: int, value: int) -> None:
        if msr == MSR_EFER:
            if value & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE):
                raise Fault(X86_EXC_GP, 0, reason=f"reserved EFER bits in {value:#x}")
            lma = self.efer & EFER_LMA
            if bool(value & EFER_LME) != bool(self.efer & EFER_LME) and self.paging:
                raise Fault(X86_EXC_GP, 0, reason="EFER.LME changed while paging is on")
            self.efer = (value & ~EFER_LMA) | lma
            self.emit("msr", dir="write", msr=msr, value=value)
            self.flush_caches()
            return
        if msr == MSR_IA32_TSC:
            self.tsc_offset = (value - self.cycles) & M64
            return
        if msr == MSR_APIC_BASE:
            self.apic_base = value
            return
        if msr in self.msr:
            if msr in (MSR_LSTAR, MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE, MSR_CSTAR) and not is_canonical(value):
                raise Fault(X86_EXC_GP, 0, reason=f"non-canonical value {value:#x} for MSR {msr:#x}")
            self.msr[msr] = value
            self.emit("msr", dir="write", msr=msr, value=value)
            return
        raise Fault(X86_EXC_GP, 0, reason=f"wrmsr of unknown MSR {msr:#x}")

    def op_rdtsc(self, insn, nxt: int) -> None:
        if self._nonroot() and self.vmcs.rdtsc_exiting:
            raise VmExit("RDTSC")
        tsc = (self.cycles + self.tsc_offset) & M64
        self.regs[0] = tsc & 0xFFFFFFFF
        self.regs[2] = tsc >> 32

    def op_movtocr(self, insn, nxt: int) -> None:
        self._require_cpl0("mov to cr")
        crn = insn.a
        value = self.regs[insn.b]
        if self._nonroot() and crn == 3 and self.vmcs.cr3_load_exiting:
            raise VmExit("CR_ACCESS", 3 | (insn.b << 8), {"cr": 3, "value": value, "gpr": insn.b})
        self.write_cr(crn, value)
        self.rip = nxt

    def write_cr(self, crn: int, value: int) -> None:
        if crn == 0:
            if value >> 32:
                raise Fault(X86_EXC_GP, 0, reason="reserved CR0 bits")
            if value & X86_CR0_PG and not value & X86_CR0_PE:
                raise Fault(X86_EXC_GP, 0, reason="CR0.PG without CR0.PE")
            if value & X86_CR0_PG and not self.paging:
                if not (self.efer & EFER_LME and self.cr4 & X86_CR4_PAE):
                    raise Fault(X86_EXC_GP, 0, reason="the lab has only 4-level paging: set CR4.PAE and EFER.LME first")
                self.efer |= EFER_LMA
            if not value & X86_CR0_PG and self.paging:
                raise Fault(X86_EXC_GP, 0, reason="paging cannot be turned off in 64-bit mode")
            self.cr0 = value
            self.tlb.flush(include_global=True)
            self.flush_caches()
        elif crn == 2:
            self.cr2 = value
        elif crn == 3:
            self.cr3 = value & 0x000F_FFFF_FFFF_F000 | (value & 0x18)
            self.tlb.flush(include_global=False)
            self.flush_caches()
            self.emit("tlb", op="flush (mov cr3)", addr=value, entries=len(self.tlb.entries()))
        elif crn == 4:
            if value & ~0x3FFFFF:
                raise Fault(X86_EXC_GP, 0, reason="reserved CR4 bits")
            if self.efer & EFER_LMA and not value & X86_CR4_PAE:
                raise Fault(X86_EXC_GP, 0, reason="CR4.PAE cannot be cleared in 64-bit mode")
            changed = value ^ self.cr4
            self.cr4 = value
            if changed & (X86_CR4_PGE | X86_CR4_PAE):
                self.tlb.flush(include_global=True)
                self.flush_caches()
        else:
            raise Fault(X86_EXC_UD, reason=f"no cr{crn}")

    def op_movfromcr(self, insn, nxt: int) -> None:
        self._require_cpl0("mov from cr")
        crn = insn.b
        if self._nonroot() and crn == 3 and self.vmcs.cr3_store_exiting:
            raise VmExit("CR_ACCESS", 3 | (1 << 4) | (insn.a << 8), {"cr": 3, "gpr": insn.a})
        self.regs[insn.a] = {0: self.cr0, 2: self.cr2, 3: self.cr3, 4: self.cr4}[crn]

    def op_invlpg(self, insn, nxt: int) -> None:
        self._require_cpl0("invlpg")
        va = self.effective_address(insn, nxt)
        if self._nonroot() and self.vmcs.invlpg_exiting:
            raise VmExit("INVLPG", va, {"addr": va})
        self.tlb.invlpg(va)
        self.flush_caches()
        self.emit("tlb", op="invlpg", addr=va, entries=len(self.tlb.entries()))
        self.rip = nxt

    def effective_address(self, insn, nxt: int) -> int:
        m = insn.mem
        if m.base == RIP_BASE:
            return (nxt + m.disp) & M64
        v = m.disp
        if m.base is not None:
            v += self.regs[m.base]
        if m.index is not None:
            v += self.regs[m.index] * m.scale
        return v & M64

    def _table_operand(self, insn, nxt: int) -> tuple[int, int]:
        va = self.effective_address(insn, nxt)
        limit = self.load(va, 2)
        base = self.load(va + 2, 8)
        return base, limit

    def op_lidt(self, insn, nxt: int) -> None:
        self._require_cpl0("lidt")
        self.idtr = self._table_operand(insn, nxt)
        self.rip = nxt

    def op_lgdt(self, insn, nxt: int) -> None:
        self._require_cpl0("lgdt")
        self.gdtr = self._table_operand(insn, nxt)
        self.rip = nxt

    def op_ltr(self, insn, nxt: int) -> None:
        self._require_cpl0("ltr")
        sel = self.regs[insn.a] & 0xFFFF
        base, limit = self.gdtr
        off = sel & ~7
        if off + 15 > limit or off == 0:
            raise Fault(X86_EXC_GP, sel & ~3, reason=f"TSS selector {sel:#x} outside the GDT")
        lo = self._sys_load(base + off, 8)
        hi = self._sys_load(base + off + 8, 8)
        typ = (lo >> 40) & 0xF
        if typ != 9:
            raise Fault(X86_EXC_GP, sel & ~3, reason=f"descriptor {sel:#x} is not an available 64-bit TSS (type {typ})")
        self.tss_base = ((lo >> 16) & 0xFFFFFF) | ((lo >> 56) & 0xFF) << 24 | (hi & 0xFFFFFFFF) << 32
        self._sys_store(base + off, 8, lo | (2 << 40))   # mark busy, as the CPU does
        self.tr = sel
        self.rip = nxt

    def op_vmcall(self, insn, nxt: int) -> None:
        self._hypercall_insn("intel", nxt)

    def op_vmmcall(self, insn, nxt: int) -> None:
        self._hypercall_insn("amd", nxt)

    def _hypercall_insn(self, which: str, nxt: int) -> None:
        if not self._nonroot():
            raise Fault(X86_EXC_UD, reason=("vmcall" if which == "intel" else "vmmcall") + " outside a virtual machine")
        if which != self.vendor:
            raise Fault(X86_EXC_UD, reason=f"{'vmcall' if which == 'intel' else 'vmmcall'} on an {self.vendor} host")
        raise VmExit("VMCALL", 0, {})

    def op_ud2(self, insn, nxt: int) -> None:
        raise Fault(X86_EXC_UD, reason="ud2")

    def op_pause(self, insn, nxt: int) -> None:
        if self._nonroot() and self.vmcs.pause_exiting:
            raise VmExit("PAUSE")

    def op_swapgs(self, insn, nxt: int) -> None:
        self._require_cpl0("swapgs")
        m = self.msr
        m[MSR_GS_BASE], m[MSR_SHADOW_GS_BASE] = m[MSR_SHADOW_GS_BASE], m[MSR_GS_BASE]

    def op_pushfq(self, insn, nxt: int) -> None:  # pragma: no cover - generated inline
        raise AssertionError

    def _string(self, insn, store_only: bool) -> None:
        size = insn.size
        rep = insn.aux & 1
        count = self.regs[1] if rep else 1
        cost = self.costs.get("string_iteration", 1)
        regs = self.regs
        while count:
            if rep and count > 1:
                done = self._string_run(size, count, store_only)
                if done:
                    count -= done
                    regs[1] = count
                    self.cycles += cost * done
                    continue
            if store_only:
                self.store(regs[7], size, regs[0] & F.MASK[size])
            else:
                self.store(regs[7], size, self.load(regs[6], size))
                regs[6] = (regs[6] + size) & M64
            regs[7] = (regs[7] + size) & M64
            count -= 1
            if rep:
                regs[1] = count
                self.cycles += cost

    def _string_run(self, size: int, count: int, store_only: bool) -> int:
        """As many elements of a rep string instruction as lie in pages the fast caches
        already hold, at once: those stores reach no device, hook or code page, so
        doing them together is exactly doing them one by one. 0 when there are none."""
        regs = self.regs
        dst = regs[7]
        df = self.wc.get(dst >> 12)
        if df is None:
            return 0
        doff = dst & 0xFFF
        n = min(count, (4096 - doff) // size)
        if store_only:
            if n:
                df[doff:doff + n * size] = (regs[0] & F.MASK[size]).to_bytes(size, "little") * n
        else:
            src = regs[6]
            sf = self.rc.get(src >> 12)
            if sf is None:
                return 0
            soff = src & 0xFFF
            n = min(n, (4096 - soff) // size)
            if sf is df and soff < doff < soff + n * size:
                return 0      # forward overlap: each element reads what an earlier one wrote
            if n:
                df[doff:doff + n * size] = sf[soff:soff + n * size]
                regs[6] = (src + n * size) & M64
        regs[7] = (dst + n * size) & M64
        return n

    def op_movs(self, insn, nxt: int) -> None:
        self._string(insn, False)

    def op_stos(self, insn, nxt: int) -> None:
        self._string(insn, True)

    # -- snapshots ------------------------------------------------------------
    def snapshot(self) -> dict:
        return {**self._arch_state(), "tlb": self.tlb.snapshot()}

    def _arch_state(self) -> dict:
        return {
            "regs": list(self.regs), "rip": self.rip, "rflags": self.rflags, "cpl": self.cpl, "cs": self.cs,
            "ss": self.ss, "cr0": self.cr0, "cr2": self.cr2, "cr3": self.cr3, "cr4": self.cr4,
            "efer": self.efer, "msr": dict(self.msr), "apic_base": self.apic_base,
            "tsc_offset": self.tsc_offset, "idtr": self.idtr, "gdtr": self.gdtr, "tr": self.tr,
            "tss_base": self.tss_base, "root": self.root,
            "vmcs": self.vmcs.snapshot() if self.vmcs else None, "halted": self.halted,
            "stopped": self.stopped, "int_shadow": self.int_shadow, "icount": self.icount,
            "cycles": self.cycles,
            "shadow_cr3": self.shadow_cr3,
            "shadow_unpaged_cr3": self.shadow_unpaged_cr3,
        }

    def restore(self, s: dict) -> None:
        self.regs = list(s["regs"])
        self.rip = s["rip"]
        self.rflags = s["rflags"]
        self.cs, self.ss = s["cs"], s["ss"]
        self.cr0, self.cr2, self.cr3, self.cr4, self.efer = s["cr0"], s["cr2"], s["cr3"], s["cr4"], s["efer"]
        self.msr = dict(s["msr"])
        self.apic_base, self.tsc_offset = s["apic_base"], s["tsc_offset"]
        self.idtr, self.gdtr, self.tr, self.tss_base = tuple(s["idtr"]), tuple(s["gdtr"]), s["tr"], s["tss_base"]
        self.root = s["root"]
        self.vmcs = Vmcs.from_snapshot(s["vmcs"]) if s["vmcs"] else None
        self.halted, self.stopped, self.int_shadow = s["halted"], s["stopped"], s["int_shadow"]
        self.icount, self.cycles = s["icount"], s["cycles"]
        self.tlb.restore(s["tlb"])
        self.shadow_cr3 = s.get("shadow_cr3")
        self.shadow_unpaged_cr3 = s.get("shadow_unpaged_cr3")
        self.cpl = s["cpl"]
        self._new_caches()

    def save_state(self) -> dict[str, Any]:
        """Registers, control registers, MSRs, VMCS, TLB, run flags and counters.

        The page caches in front of the TLB are the simulator's, not the CPU's: a
        restored CPU starts with them empty, so its TLB hit and miss counts (which
        count the simulator's lookups) may run differently; nothing else does."""
        s = self._arch_state()
        s["tlb"] = self.tlb.save_state().value
        s["yield_now"], s["reschedule"] = self.yield_now, self.reschedule
        # What the CPU is wired to holds state of its own (an HVM vCPU's interrupt
        # controller, the bus's devices): naming them here puts them in the snapshot.
        return {"arch": Plain(s), "wired": (self.irq_source, self.bus, self.host, self.__dict__.get("vcpu"))}

    def load_state(self, state: dict) -> None:
        s = state["arch"]
        vmcs, tlb = self.vmcs, self.tlb
        self.restore({**s, "tlb": {"sets": [], "stats": {}}})
        self.tlb = tlb
        tlb.load_state(s["tlb"])
        if vmcs is not None and self.vmcs is not None:
            vmcs.__dict__.update(self.vmcs.__dict__)     # whoever holds the VMCS keeps it
            self.vmcs = vmcs
        self.yield_now, self.reschedule = s["yield_now"], s["reschedule"]

    def digest_into(self, h: "hashlib._Hash") -> None:
        s = self._arch_state()
        h.update(repr(sorted(s.items())).encode())


def native_cpuid(vendor: str, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """CPUID as the bare host answers it (no hypervisor bit, no Xen leaves)."""
    def s4(text: str) -> int:
        return int.from_bytes(text.encode(), "little")
    sig = "GenuineIntel" if vendor == "intel" else "AuthenticAMD"
    if leaf == 0:
        return 0xD, s4(sig[0:4]), s4(sig[8:12]), s4(sig[4:8])
    if leaf == 1:
        ecx = (1 << 5) if vendor == "intel" else 0        # VMX
        edx = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 9) | (1 << 11) | (1 << 13)
        return 0x000306C3, 0x00010800, ecx, edx
    if leaf == 0x80000000:
        return 0x80000008, 0, 0, 0
    if leaf == 0x80000001:
        ecx = (1 << 2) if vendor == "amd" else 0          # SVM
        edx = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 29)  # SYSCALL, NX, 1 GiB pages, LM
        return 0, 0, ecx, edx
    return 0, 0, 0, 0


class CodeCache:
    """Translated blocks shared by every CPU of a machine, dropped when their page is written."""

    def __init__(self, mem: MachineMemory, cost_of: Callable) -> None:
        self.mem = mem
        self.cost_of = cost_of
        self.blocks: dict[tuple, Block] = {}
        self.by_frame: dict[int, list[tuple]] = {}
        self.cpus: list[Cpu] = []
        self.translations = 0
        self.invalidations = 0
        mem.on_watched_write = self.invalidate_frame

    def get(self, cpu: Cpu, va: int, hpa: int, single: bool) -> Block:
        key = (va, hpa, cpu.cpl, single)
        blk = self.blocks.get(key)
        if blk is not None:
            return blk
        mfn = hpa >> PAGE_SHIFT
        frame = cpu._frame(hpa)
        insns, fault = fetch_run(frame, va, single)
        if fault is not None:
            raise fault
        off = va & 0xFFF
        blk = compile_block(insns, va, self.cost_of,
                            bytes(frame[off:off + len(insns) * INSN_SIZE]))
        self.translations += 1
        self.blocks[key] = blk
        self.by_frame.setdefault(mfn, []).append(key)
        if mfn not in self.mem.watched:
            self.mem.watched.add(mfn)
            for c in self.cpus:
                c.drop_write_caches()
        return blk

    def invalidate_frame(self, mfn: int) -> None:
        keys = self.by_frame.pop(mfn, [])
        for k in keys:
            self.blocks.pop(k, None)
        self.mem.watched.discard(mfn)
        self.invalidations += 1
        for c in self.cpus:
            c.drop_blocks()

    # Translated code is not machine state: blocks stay valid across a restore for
    # every page whose bytes did not change (memory's load_state drops the others).
    def save_state(self) -> Plain:
        return Plain(None)

    def load_state(self, state: None) -> None:
        for c in self.cpus:
            c.drop_blocks()

    def clear(self) -> None:
        self.blocks.clear()
        self.by_frame.clear()
        self.mem.watched.clear()
