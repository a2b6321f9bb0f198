"""HVM accesses to guest-physical addresses with no RAM behind them: Xen's handle_mmio().

In Xen a gfn the p2m holds no RAM for is ``p2m_mmio_dm`` (``ept_get_entry()``
in arch/x86/mm/p2m-ept.c starts every lookup with that type, gfns above
``max_mapped_pfn`` included). An EPT violation there, or under shadow
paging a guest mapping of such a gfn (``sh_page_fault()``), goes to
``handle_mmio_with_translation()`` (arch/x86/hvm/io.c): Xen's instruction
emulator carries the instruction out, and each memory operand that lands
outside RAM becomes an MMIO access (``hvmemul_do_mmio``, arch/x86/hvm/
emulate.c). ``hvmemul_do_io()`` offers the access to the devices Xen
emulates itself first (``hvm_io_intercept()``, arch/x86/hvm/intercept.c: the
local APIC, IO-APIC and HPET, :mod:`lab.xen.vdev`), then to the ioreq servers
(``ioreq_server_select()``, common/ioreq.c): a device model that registered
the range gets an ioreq and answers it; when none did, Xen's own
``null_handler`` answers ("If there is no suitable backing DM, just ignore
accesses"): reads are all ones, writes are dropped.

The emulator walks the guest's page tables itself (``hvmemul_linear_to_phys``
-> ``paging_gva_to_gfn``): a guest table at a gfn with no RAM stops that walk
(``map_domain_gfn()`` finds no page) and the guest gets a #PF; an instruction
fetched from such a gfn reads the device's answer as its bytes, which decode
to no instruction, so the guest gets #UD. What the emulator cannot carry out
(X86EMUL_UNHANDLEABLE) gives the guest #GP(0) (``hvm_hap_nested_page_fault``).

The lab carries the instruction out with the CPU's own semantics, as Xen's
emulator would: for that one instruction the CPU's memory accesses that meet
such a gfn are answered here instead of faulting.
"""

from __future__ import annotations

from typing import Any

from ..hw.ept import EPTQ_GLA_FINAL, EPTQ_GLA_VALID
from ..hw.faults import CpuStop, Fault, VmExit
from ..hw.x86 import EFER_NXE, PFEC_insn_fetch, PFEC_user_mode, PFEC_write_access, X86_EXC_GP, X86_EXC_PF, X86_EXC_UD
from ..isa.encoding import INSN_SIZE, DecodeError, decode
from .paging_pool import PoolExhausted
from .vdev import intercept
from .vdev.intercept import EMULATOR_XEN, register_name

#: hvmemul_linear_to_phys() clips a rep string instruction to 4096 repetitions per emulation
#: ("Clip repetitions to a sensible maximum"); the guest re-executes it for the rest.
MAX_REPS = 4096


class _Unhandleable(Exception):
    """X86EMUL_UNHANDLEABLE: the emulator cannot carry the instruction out."""


class _DomainCrashed(Exception):
    """Xen crashed the domain in the middle of the emulation (domain_crash())."""


class _Clipped(Exception):
    """A rep string instruction has done MAX_REPS MMIO accesses: the rest is a new emulation."""


def _ones(size: int) -> int:
    return (1 << (8 * size)) - 1


def is_mmio_dm(dom, gfn: int) -> bool:
    """No RAM behind ``gfn``: the p2m type is p2m_mmio_dm (ept_get_entry()'s default)."""
    return dom.gfn_to_mfn(gfn) is None


def _walk_pf(access: str, cpl: int, nxe: bool, va: int, gpa: int) -> Fault:
    # guest_walk_tables(): the walk's error code keeps the access's U and W bits (and I with
    # NX); map_domain_gfn() found no page, so P stays clear.
    code = (PFEC_write_access if access == "w" else 0) | (PFEC_user_mode if cpl == 3 else 0) | \
        (PFEC_insn_fetch if access == "x" and nxe else 0)
    return Fault(X86_EXC_PF, code, cr2=va,
                 reason=f"the guest's page table at gpa {gpa & ~0xFFF:#x} has no RAM behind it (map_domain_gfn)")


class MmioEmulation:
    """One instruction carried out by Xen's emulator for an access outside the domain's RAM."""

    def __init__(self, host, v) -> None:
        self.host = host
        self.v = v
        self.dom = v.domain
        self.shadow = self.dom.extra.get("shadow")
        self.count = 0                              # MMIO accesses made by this emulation
        self.charged = 0                            # cycles the device model's ioreqs cost
        #: linear page -> guest-physical page of the MMIO pages this instruction reached: one
        #: instruction's translations do not change under it (the TLB holds them too)
        self._pages: dict[tuple[int, str], int] = {}
        self._pending: list[Any] | None = None      # a run of null-handler accesses not yet reported

    # -- where an access that faulted really goes ------------------------------------
    def _mmio_gpa(self, exc: Exception, va: int, access: str, supervisor: bool) -> int | None:
        """The gpa of an access that belongs to MMIO, else None (the exception stands).

        Raises the #PF the emulator's own walk of the guest's tables gives when a table
        lies outside RAM.
        """
        cpu = self.v.cpu
        cpl = 0 if supervisor else cpu.cpl
        nxe = bool(cpu.efer & EFER_NXE)
        if isinstance(exc, VmExit):
            if exc.reason != "EPT_VIOLATION":
                return None
            gpa = exc.info.get("gpa", 0)
            if not is_mmio_dm(self.dom, gpa >> 12):
                return None
            q = exc.qualification
            if q & EPTQ_GLA_VALID and not q & EPTQ_GLA_FINAL:
                raise _walk_pf(access, cpl, nxe, va, gpa)
            return gpa
        if self.shadow is not None and isinstance(exc, Fault) and exc.vector == X86_EXC_PF:
            if not cpu.paging:
                gpa = va & 0x000F_FFFF_FFFF_FFFF
                if is_mmio_dm(self.dom, gpa >> 12):
                    return gpa
                raise _Unhandleable(f"gpa {gpa:#x} is RAM the unpaged shadow does not map yet")
            res, bad = self.shadow._guest_walk(self.v, va, access, cpl)
            if bad is not None:
                if bad.is_table:
                    raise _walk_pf(access, cpl, nxe, va, bad.gpa)
                return bad.gpa
            if res is None or res.fault is not None:
                return None                         # the guest's own tables refuse it: that #PF stands
            # RAM the shadow lacks: Xen's emulator reaches it through the guest's tables; the lab
            # fills the shadow from them (as a shadow fault would) and the access goes again.
            self.shadow._propagate(self.v, va, res)
            self.shadow._finish()
            cpu.tlb.flush(include_global=True)
            cpu.flush_caches()
            return -1
        return None

    # -- the access itself: Xen's own device, an ioreq server's, or Xen's null handler ------
    def access(self, gpa: int, size: int, direction: str, value: int = 0) -> int:
        host, v = self.host, self.v
        if self.count >= MAX_REPS:
            raise _Clipped()
        self.count += 1
        # hvmemul_do_io(): hvm_io_intercept() first, the devices Xen emulates itself
        device = intercept.mmio_handler(host, v, gpa, size)
        if not self.dom.alive:
            raise _DomainCrashed()              # hvm_mmio_accept() crashed it
        if device is not None:
            if direction == "in":
                result = device.read(host, v, gpa, size) & _ones(size)
            else:
                result = value & _ones(size)
                device.write(host, v, gpa, size, result)
            self._note(gpa, size, direction, result, f"{device.name}: {register_name(device, gpa)}", EMULATOR_XEN)
            return result
        dm = host.services.device_model
        answer = None
        if dm is not None and dm.claims_mmio(v.domain, gpa):
            self._flush()
            before = v.cpu.cycles
            answer = dm.mmio_io(v, gpa, size, direction, value)
            self.charged += v.cpu.cycles - before       # the ioreq's round trip
        if answer is None:
            # null_handler: no ioreq server registered the range (hvmemul_do_io()).
            result = _ones(size) if direction == "in" else value & _ones(size)
            what = "reads all ones" if direction == "in" else "drops the write"
            self._note(gpa, size, direction, result, f"none: no ioreq server claims it; Xen's null handler {what}",
                       EMULATOR_XEN)
        else:
            result = answer if direction == "in" else value & _ones(size)
        return result & _ones(size)

    def _note(self, gpa: int, size: int, direction: str, value: int, device: str, emulator: str) -> None:
        # Xen emulates a rep string access as one hvmemul_do_io() with a repeat count: the
        # elements of one run share one event.
        p = self._pending
        if p is not None and p[1] == size and p[2] == direction and gpa == p[0] + p[4] * size and p[5] == device:
            p[3] = value
            p[4] += 1
            return
        self._flush()
        self._pending = [gpa, size, direction, value, 1, device, emulator]

    def _flush(self) -> None:
        p, self._pending = self._pending, None
        if p is None:
            return
        gpa, size, direction, value, count, device, emulator = p
        extra: dict[str, Any] = {"count": count} if count > 1 else {}
        self.host.emit(self.v, "mmio", addr=gpa, size=size, dir=direction, value=value, device=device,
                       emulator=emulator, **extra)

    # -- the CPU's memory accesses, for this one instruction ---------------------------
    def _cached(self, va: int, size: int, access: str) -> int | None:
        page = self._pages.get((va >> 12, access))
        if page is None or (va & 0xFFF) + size > 4096:
            return None
        return page | (va & 0xFFF)

    def _load(self, orig, va: int, size: int, supervisor: bool = False) -> int:
        gpa = self._cached(va, size, "r")
        if gpa is not None:
            return self.access(gpa, size, "in")
        for attempt in (0, 1):
            try:
                return orig(va, size, supervisor)
            except (VmExit, Fault) as exc:
                gpa = self._mmio_gpa(exc, va, "r", supervisor)
                if gpa is None:
                    raise
                if gpa >= 0:
                    self._pages[(va >> 12, "r")] = gpa & ~0xFFF
                    return self.access(gpa, size, "in")
        raise _Unhandleable(f"read of {va:#x} still faults after its shadow was filled")

    def _store(self, orig, va: int, size: int, value: int, supervisor: bool = False) -> None:
        gpa = self._cached(va, size, "w")
        if gpa is not None:
            self.access(gpa, size, "out", value)
            return
        for attempt in (0, 1):
            try:
                orig(va, size, value, supervisor)
                return
            except (VmExit, Fault) as exc:
                gpa = self._mmio_gpa(exc, va, "w", supervisor)
                if gpa is None:
                    raise
                if gpa >= 0:
                    self._pages[(va >> 12, "w")] = gpa & ~0xFFF
                    self.access(gpa, size, "out", value)
                    return
        # a write to one of the guest's own page tables from MMIO data: not emulated here
        raise _Unhandleable(f"write of {va:#x} still faults after its shadow was filled")

    def run(self) -> None:
        """handle_mmio(): emulate the instruction at RIP and resume the guest."""
        host, v = self.host, self.v
        cpu = v.cpu
        rip = cpu.rip
        regs, rflags = list(cpu.regs), cpu.rflags
        cpu.root = False
        cpu.tlb.flush(include_global=True)
        cpu.flush_caches()
        orig_load, orig_store = cpu._load_slow, cpu._store_slow
        cpu._load_slow = lambda va, size, supervisor=False: self._load(orig_load, va, size, supervisor)
        cpu._store_slow = lambda va, size, value, supervisor=False: self._store(orig_store, va, size, value,
                                                                                 supervisor)
        outcome: Any = None
        cycles = cpu.cycles
        try:
            try:
                hpa = cpu.translate(rip, "x")
            except (VmExit, Fault) as exc:
                gpa = self._mmio_gpa(exc, rip, "x", False)
                if gpa is None:
                    raise
                self._fetch_from_mmio(gpa)
                return
            blk = cpu.code.get(cpu, rip, hpa, True)
            blk.fn(cpu)
            outcome = True
        except _Unhandleable as exc:
            outcome = exc
        except PoolExhausted as exc:
            outcome = "pool"
            host.crash(self.dom, f"shadow: {exc}", v)
        except _DomainCrashed:
            outcome = "pool"
        except _Clipped:
            outcome = "clipped"
        except (Fault, VmExit, CpuStop) as exc:
            outcome = exc
        finally:
            del cpu._load_slow, cpu._store_slow
            self._flush()
            # Xen carries the instruction out: the exit and the handler are charged with the
            # exit, each access the emulator made is charged here (mmio_access), and so is
            # every ioreq's round trip; what the CPU counted for the instruction is not (it
            # is counted once below, as a retired guest instruction, when it completes).
            cpu.cycles = cycles + self.charged + self.count * host.costs.ev("mmio_access")
            cpu.tlb.flush(include_global=True)
            cpu.flush_caches()
        if outcome is True:
            self.v.cpu.icount += 1                  # the instruction retires, as the guest's
            return
        if outcome == "clipped":
            # The elements done stay done (rcx, rsi, rdi moved on), as x86 allows a rep string
            # to stop between elements; the guest runs the instruction again for the rest.
            cpu.rip = rip
            return
        # Nothing architectural happened (the CPU reads every operand and translates
        # every page before it writes): put the instruction back as it was.
        cpu.rip, cpu.regs[:], cpu.rflags = rip, regs, rflags
        if outcome == "pool":
            return
        if isinstance(outcome, Fault):
            # X86EMUL_EXCEPTION: hvm_inject_event() of what the emulator met.
            self._inject(outcome.vector, outcome.error_code, outcome.cr2, outcome.reason)
            return
        # X86EMUL_UNHANDLEABLE: handle_mmio() fails and the guest gets #GP(0).
        why = getattr(outcome, "reason", None) or str(outcome)
        self._inject(X86_EXC_GP, 0, None, f"the MMIO emulator could not complete the instruction ({why})")

    def _fetch_from_mmio(self, gpa: int) -> None:
        # hvmemul_insn_fetch() reads the bytes through the same MMIO path.
        raw = b"".join(self.access(gpa + k, 8, "in").to_bytes(8, "little") for k in range(0, INSN_SIZE, 8))
        try:
            decode(raw, 0)
            why = "(lab) executing from MMIO is not emulated"
        except DecodeError as e:
            why = f"the bytes read from MMIO are no instruction ({e})"
        self._inject(X86_EXC_UD, None, None, f"instruction fetch from gpa {gpa:#x}: {why}")

    def _inject(self, vector: int, error_code: int | None, cr2: int | None, reason: str) -> None:
        cpu = self.v.cpu
        fault = Fault(vector, error_code, cr2=cr2, reason=reason)
        if self.shadow is not None and vector == X86_EXC_PF:
            self.shadow._inject(self.v, cr2 or 0, fault.error_code or 0, reason)
            return
        if vector == X86_EXC_PF and cr2 is not None:
            cpu.cr2 = cr2
        cpu.root = False                            # delivered as on VM entry, through the guest's IDT
        self.host.emit(self.v, "trap", vector=vector, mnemonic=fault.mnemonic, error_code=fault.error_code,
                       cr2=cr2, rip=cpu.rip, cpl=cpu.cpl, handler="idt", reason=reason)
        cpu.deliver(vector, fault.error_code, software=False)


def handle_mmio(host, v) -> None:
    """hvm_hap_nested_page_fault() / sh_page_fault() -> handle_mmio_with_translation()."""
    MmioEmulation(host, v).run()
