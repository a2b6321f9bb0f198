"""The Arm host: Xen at EL2 on Armv8-A cores, dom0 and guests at EL1/EL0.

There is one guest type. Every guest uses the hardware for its CPU and memory
(EL1 is the guest kernel's own, stage 2 keeps it inside its memory) and
paravirtual interfaces for everything else: hypercalls by ``hvc #0xEA1``,
event channels raised as PPI 31, shared_info and the grant table placed with
XENMEM_add_to_physmap, the console and xenstore rings in "magic" pages, and a
device tree saying where Xen is. So there is no PV/HVM split, no device model
and no shadow paging: the toolstack calls the type PVH.

The domains, the run loop, time, domain control and dom0's services are the
host core's (``lab/xen/host_core.py``), shared with x86. What Arm supplies is
here: Xen is Python as on the x86 host, and the core calls :meth:`ArmXenHost.trap`
for every exception taken to EL2 (``xen/arch/arm/traps.c``,
``do_trap_guest_sync`` and ``do_trap_irq``), which does Xen's work and returns
to the guest with ``eret``. Each vCPU is an :class:`ArmCpu` whose GIC and
timer are that vCPU's view of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, cast

from ...hw.arm import exceptions as X
from ...hw.arm.cpu import ArmCpu
from ...hw.arm.gic import LR_PENDING, PPI_VIRT_TIMER, lr_value
from ...hw.arm.timer import ENABLE, IMASK
from ...hw.memory import PAGE_SHIFT
from ...trace import Event
from .. import abi
from ..domain import RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNING, Domain, Vcpu
from ..heap import FreeFrames
from ..host_core import FOREVER, HostCore, HostCoreConfig
from ..hypercall_table import ARM_HYPERCALLS
from ..release import XEN_VERSION
from ..console import guest_console_write
from .. import console, memory, version  # noqa: F401 (common code: their handlers register into Arm's table too)
from . import hypercalls, psci
from . import layout as L
from .evtchn import ArmEventChannels
from .frames import ArmFrames
from .grant import ArmContinuation, ArmGrantTables
from .p2m import P2m


def _cpu(v: Vcpu) -> ArmCpu:
    """The vCPU's processor: on an Arm host always an ArmCpu (Vcpu.cpu is typed for x86)."""
    return cast(ArmCpu, v.cpu)

__all__ = ["FOREVER", "ArmHostConfig", "ArmXenHost"]
MODE = "arm"
E = abi.ERRNO


@dataclass(kw_only=True, eq=False)
class ArmHostConfig(HostCoreConfig):
    """A scenario's ``[host]`` with ``arch = "arm64"``: only the keys every host has."""

    arch = "arm64"
    vendor = "arm"
    ept = True                  # stage 2 is always there: the lab's name for "HAP"


class ArmXenHost(HostCore):
    arch = "arm64"
    #: Arm's hypercall table, filled by lab/xen/arm/hypercalls.py.
    hypercalls = ARM_HYPERCALLS
    xen_caps = L.XEN_CAPS
    #: Dom0's services on Arm hear of a domain's end only when it is destroyed (see DomainControl).
    services_see_shutdown = False
    shutdown_crash_crashes = True
    time_meets_at_switch = False

    def __init__(self, config: ArmHostConfig | None = None, keep_trace: bool = True) -> None:
        cfg = config or ArmHostConfig()
        super().__init__(cfg, keep_trace)
        self.vendor = "arm"
        self.next_vmid = 1
        self.yielded: set[tuple[int, int]] = set()
        # Xen keeps the first 16 MiB (its image, heap and the stage-2 tables it allocates from there).
        self.xen_reserved = (16 << 20) >> PAGE_SHIFT
        self.free_frames = FreeFrames(self.xen_reserved, self.mem.nr_frames)
        self.evtchn = ArmEventChannels(self)
        self.grant_tables = ArmGrantTables(self)
        self.frames = ArmFrames(self)            # how dom0's services hold frames (and map them)
        self.log(f"Xen version {XEN_VERSION[0]}.{XEN_VERSION[1]}{XEN_VERSION[2]} (lab), arm64")
        self.log(f"{cfg.pcpus} pCPUs (Cortex-A53), {cfg.mem_mib} MiB, GICv3, generic timer "
                 f"62.5 MHz; Xen at EL2, guests at EL1/EL0 behind stage 2")

    # -- logging and events ------------------------------------------------------------
    def console_write(self, dom: Domain, text: str) -> None:
        guest_console_write(self, dom, text)

    # -- frames and domains ------------------------------------------------------------
    def new_domain(self, name: str, mem_pages: int, vcpus: int, privileged: bool = False,
                   domid: int | None = None, config: Any = None, max_grant_frames: int = -1) -> Domain:
        """domain_create() and the toolstack's memory population: RAM at GUEST_RAM0_BASE and the
        magic pages, each a stage-2 mapping of a frame of Xen's heap. ``max_grant_frames`` -1
        takes Xen's default (gnttab_max_frames), as grant_table_init() does."""
        need = mem_pages + (0 if privileged else L.NR_MAGIC_PAGES)
        if need + 64 > self.free_pages:
            raise MemoryError(f"not enough free memory for {name}: {need} pages wanted, {self.free_pages} free")
        dom = self._create_domain(name, MODE, mem_pages, privileged, domid, config, max_grant_frames)
        domid = dom.domid
        if privileged:
            # dom0's work is the lab's services in Python: its memory is taken from the heap, unused.
            dom.extra.setdefault("frames", []).extend(self.free_frames.take(mem_pages))
        else:
            # A guest's memory is real frames behind stage 2.
            p2m = P2m(self.mem, lambda: self.alloc_frame(None) << PAGE_SHIFT, self.next_vmid)
            self.next_vmid += 1
            dom.extra["p2m"] = p2m
            base = L.GUEST_RAM0_BASE >> PAGE_SHIFT
            for i in range(mem_pages):
                p2m.map(base + i, self.alloc_frame(domid))
            magic = L.GUEST_MAGIC_BASE >> PAGE_SHIFT
            for i in range(L.NR_MAGIC_PAGES):
                p2m.map(magic + i, self.alloc_frame(domid), "rw")
            dom.console_pfn = magic + L.CONSOLE_PFN_OFFSET
            dom.store_pfn = magic + L.XENSTORE_PFN_OFFSET
            dom.hvm_params[abi.HVM_PARAM_CONSOLE_PFN] = dom.console_pfn
            dom.hvm_params[abi.HVM_PARAM_STORE_PFN] = dom.store_pfn
        self._domain_created(dom, MODE)
        self.log(f"d{domid}: created {name} ({mem_pages * 4096 >> 20} MiB, {vcpus} vCPU"
                 + (f", VMID {dom.extra['p2m'].vmid}" if "p2m" in dom.extra else "")
                 + "; type pvh, Arm's one guest type: no PV/HVM split)")
        return dom

    def p2m(self, dom: Domain) -> P2m | None:
        return dom.extra.get("p2m")

    def guest_phys_to_machine(self, dom: int | None, ipa: int) -> int | None:
        d = self.domains.get(dom) if dom is not None else None
        p2m = self.p2m(d) if d is not None else None
        mfn = p2m.lookup(ipa >> PAGE_SHIFT) if p2m is not None else None
        return None if mfn is None else (mfn << PAGE_SHIFT) | (ipa & 0xFFF)

    def write_guest(self, dom: Domain, ipa: int, data: bytes) -> None:
        """The toolstack's copy into a guest's memory (xc_dom_* through foreign mappings)."""
        pos = 0
        while pos < len(data):
            chunk = min(len(data) - pos, 4096 - ((ipa + pos) & 0xFFF))
            ma = self.guest_phys_to_machine(dom.domid, ipa + pos)
            if ma is None:
                raise ValueError(f"{ipa + pos:#x} is outside d{dom.domid}'s memory")
            self.mem.write(ma, data[pos:pos + chunk])
            pos += chunk

    def read_guest(self, dom: Domain, ipa: int, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = min(n - len(out), 4096 - ((ipa + len(out)) & 0xFFF))
            ma = self.guest_phys_to_machine(dom.domid, ipa + len(out))
            if ma is None:
                raise ValueError(f"{ipa + len(out):#x} is outside d{dom.domid}'s memory")
            out += self.mem.read(ma, chunk)
        return bytes(out)

    def new_vcpu(self, dom: Domain, vid: int, entry: int | None = None, regs: dict[int, int] | None = None) -> Vcpu:
        """A vCPU: at EL1 with PSR_GUEST64_INIT, HCR_EL2 as Xen sets it for a guest, its VTTBR.
        Without an entry point it has no context yet (a secondary waiting for PSCI CPU_ON)."""
        v = Vcpu(domain=dom, id=vid, cpu=None)
        dom.vcpus.append(v)
        if entry is not None:
            self.start_vcpu(v, entry, regs)
        return v

    def start_vcpu(self, v: Vcpu, entry: int, regs: dict[int, int] | None = None) -> None:
        """arch_vcpu_apply_guest_context(): a fresh core for ``v`` at ``entry``, MMU off."""
        dom, vid = v.domain, v.id
        cpu = ArmCpu(self.mem, cpu_id=vid, cpu_hz=self.cpu_hz)
        cpu.set_pstate(L.PSR_GUEST64_INIT)
        cpu.pc = entry
        for n, value in (regs or {}).items():
            cpu.x[n] = value
        p2m = self.p2m(dom)
        assert p2m is not None
        cpu.sys["hcr_el2"] = L.HCR_GUEST_FLAGS
        cpu.sys["vttbr_el2"] = p2m.vttbr
        cpu.sys["vtcr_el2"] = p2m.vtcr
        cpu.sys["vmpidr_el2"] = psci.MPIDR_SMP | psci.vcpuid_to_vaffinity(vid)
        cpu.sys["vbar_el2"] = 0x00200000 + 0x800 * (vid + 1)     # Xen's hyp_traps_vector (shown only)
        cpu.gic.ich_hcr = 1                  # ICH_HCR_EL2.En: the virtual CPU interface is on
        cpu.gic.grpen1, cpu.gic.pmr = 1, 0xFF   # Xen takes every physical interrupt
        cpu.hypervisor = self
        cpu.op_cycles = self.costs.a64
        v.cpu = cpu                                      # type: ignore[assignment]
        cpu.emit = self._cpu_emitter(v)

    def _cpu_emitter(self, v: Vcpu) -> Callable[..., Any]:
        def emit(event_kind: str, **d: Any) -> Event | None:
            if event_kind != "exception" or d.get("target_el") == 2:
                return None                        # Xen's own events say what an EL2 entry did
            cpu = _cpu(v)
            mnemonic = "IRQ" if d.get("esr") is None else X.EC_NAMES.get((d["esr"] >> 26) & 0x3F, "sync")
            return self.trace.emit(cpu.cycles, v.pcpu or 0, v.domain.domid, v.id, "trap",
                                   vector=d.get("kind"), mnemonic=mnemonic, error_code=d.get("esr"),
                                   cr2=cpu.sys.get("far_el1"), rip=d.get("elr"), cpl=d.get("from_el"),
                                   handler=cpu.pc, reason=d.get("why"))
        return emit

    # -- Xen at EL2 ----------------------------------------------------------------------
    def vcpu_of(self, cpu: ArmCpu) -> Vcpu:
        for d in self.domains.values():
            for v in d.vcpus:
                if _cpu(v) is cpu:
                    return v
        raise LookupError("a core that runs no vCPU")

    def trap(self, cpu: ArmCpu, syndrome: X.Syndrome | None, kind: int) -> None:
        """An exception taken to EL2 from the guest: Xen's entry, its work, and the return."""
        v = self.vcpu_of(cpu)
        if kind == X.VEC_IRQ or syndrome is None:
            self._physical_irq(v)
        elif syndrome.ec == X.EC_HVC64:
            self._hvc(v, syndrome)
        elif syndrome.ec in (X.EC_DABT_LOW, X.EC_IABT_LOW):
            self._stage2_abort(v, syndrome)
        elif syndrome.ec == X.EC_WFX:
            self._wfi(v, syndrome)
        elif syndrome.ec == X.EC_SMC64:
            # do_trap_smc(): SMCCC (PSCI) through smc, which HCR_EL2.TSC traps; ELR is the smc itself
            self.charge(v, "xen_handler")
            if psci.vsmccc_handle_call(self, v, syndrome):
                cpu.sys["elr_el2"] = (cpu.sys["elr_el2"] + 4) & ((1 << 64) - 1)
                self._resume(v)
            else:
                self._resume(v)
                self.inject_sync(v, X.Syndrome(X.EC_UNKNOWN))
        else:
            # anything else: Undefined in the guest,
            # as inject_undef_exception() does (traps.c).
            self._resume(v)
            self.inject_sync(v, X.Syndrome(X.EC_UNKNOWN))
        if cpu.el == 2 and v.domain.alive:          # never leave a guest's core at Xen's EL
            self._resume(v)

    def _resume(self, v: Vcpu) -> None:
        cpu = _cpu(v)
        if cpu is not None and cpu.el == 2:
            self._flush_lrs(v)
            cpu.eret()

    def _hvc(self, v: Vcpu, syn: X.Syndrome) -> None:
        cpu = _cpu(v)
        cost = self.charge(v, "xen_handler")
        if syn.iss == 0:
            # do_trap_hvc_smccc(): SMCCC through hvc #0, PSCI among it (xen/arch/arm/vsmc.c, vpsci.c)
            self._resume(v)
            psci.vsmccc_handle_call(self, v, syn)
            return
        if syn.iss != L.XEN_HYPERCALL_TAG:
            self.log(f"d{v.domain.domid}: invalid HVC imm {syn.iss:#x}", v)
            self._resume(v)
            self.inject_sync(v, X.Syndrome(X.EC_UNKNOWN))
            return
        nr = cpu.x[16]
        args = [cpu.x[i] for i in range(5)]
        ret, info = hypercalls.dispatch(self, v, nr, args)
        if isinstance(ret, ArmContinuation):
            # hypercall_create_continuation(): the rest of the batch in x0-x2, the PC back on the hvc
            for i, value in enumerate(ret.args):
                cpu.x[i] = value & ((1 << 64) - 1)
            cpu.sys["elr_el2"] = (cpu.sys["elr_el2"] - 4) & ((1 << 64) - 1)
            info["continuation"] = True
            ret = -E["ERESTART"]
        elif v.domain.alive:
            cpu.x[0] = ret & ((1 << 64) - 1)
        err = abi.errno_name(-ret) if ret < 0 else None
        name = abi.hypercall_name(nr) if 0 <= nr < 64 else f"unknown_{nr}"
        shown = info.pop("args", args)
        detail = {"esr": f"{syn.esr:#010x}", "ec": f"{X.EC_HVC64:#04x} {X.EC_NAMES[X.EC_HVC64]}",
                  "imm": f"{syn.iss:#x}", "x16": nr, **info}
        self.emit(v, "hypercall", name=name, nr=nr, args=shown, ret=ret, errno=err,
                  rip=(cpu.sys["elr_el2"] - 4) & ((1 << 64) - 1), caller=None, cost=cost, detail=detail)

    def _stage2_abort(self, v: Vcpu, syn: X.Syndrome) -> None:
        """do_trap_stage2_abort_guest(): nothing the lab emulates by MMIO, so a translation fault
        is handed back to the guest as an abort (inject_dabt/iabt_exception, ISS 0, FAR the VA);
        a permission fault, which Xen leaves to mem_access, crashes the domain here."""
        cpu = _cpu(v)
        self.charge(v, "xen_handler")
        ipa = (cpu.sys["hpfar_el2"] >> 4) << 12 | (syn.far or 0) & 0xFFF
        fsc = syn.iss & 0x3F
        kind = X.FSC_KINDS.get(fsc & ~3, f"FSC {fsc:#x}")
        data = syn.ec == X.EC_DABT_LOW
        elr = cpu.sys["elr_el2"]
        vector_fault = not data and (elr - cpu.sys["vbar_el1"]) & ((1 << 64) - 1) < 0x800
        if fsc & ~3 == X.FSC_PERMISSION or vector_fault:
            result = "domain crashed"
        else:
            result = "abort injected into the guest"
        self.emit(v, "pagetable", op="stage2 fault", addr=ipa, value=syn.esr, level=fsc & 3, result=result,
                  message=f"{syn.describe()}; VA {syn.far or 0:#x}, IPA {ipa:#x} (HPFAR_EL2 "
                          f"{cpu.sys['hpfar_el2']:#x}) at pc {elr:#x}")
        if result == "domain crashed":
            why = (f"stage-2 {kind} at IPA {ipa:#x}" if not vector_fault
                   else f"exception vector at {elr:#x} is outside the guest's memory")
            self.crash(v.domain, why, v)
            return
        self._resume(v)
        from_el0 = cpu.el == 0
        ec = (X.EC_DABT_LOW if from_el0 else X.EC_DABT_CUR) if data else \
            (X.EC_IABT_LOW if from_el0 else X.EC_IABT_CUR)
        self.inject_sync(v, X.Syndrome(ec, 0, far=syn.far))

    def inject_sync(self, v: Vcpu, syn: X.Syndrome) -> None:
        """Make the guest take a synchronous exception at EL1, at its current PC (the faulting one)."""
        cpu = _cpu(v)
        cpu.take_exception(1, syn, X.VEC_SYNC, cpu.pc)

    def _wfi(self, v: Vcpu, syn: X.Syndrome) -> None:
        """HCR_EL2.TWI: an idle guest gives the pCPU back (vcpu_block_unless_event_pending)."""
        cpu = _cpu(v)
        cpu.sys["elr_el2"] = (cpu.sys["elr_el2"] + 4) & ((1 << 64) - 1)      # advance_pc
        self._resume(v)
        if syn.iss & 1:
            self.yield_vcpu(v)
        else:
            self.block_unless_pending(v, "wfi")

    def _physical_irq(self, v: Vcpu) -> None:
        """do_trap_irq(): acknowledge at the physical CPU interface; the virtual timer is the
        guest's, so it goes back in as a virtual interrupt with the HW bit (vtimer.c)."""
        cpu = _cpu(v)
        intid = cpu.gic.read("icc_iar1_el1", virtual=False)
        if intid == PPI_VIRT_TIMER:
            self.inject_virq(v, PPI_VIRT_TIMER, hw=True)
        elif intid != 1023:
            cpu.gic.active.discard(intid)

    # -- the vGIC --------------------------------------------------------------------------
    def inject_virq(self, v: Vcpu, intid: int, hw: bool = False) -> None:
        """vgic_inject_irq(): queue ``intid`` for ``v``; it reaches a list register on the next entry."""
        q = v.domain.extra.setdefault("lr_pending", {}).setdefault(v.id, [])
        if any(value & 0xFFFFFFFF == intid and value >> 62 & LR_PENDING for value in _cpu(v).gic.lr) or \
                any(i == intid for i, _ in q):
            return
        q.append((intid, hw))
        self.emit(v, "interrupt", vector=intid, source="vGIC: " + ("event channel (GUEST_EVTCHN_PPI)"
                                                                   if intid == L.GUEST_EVTCHN_PPI else
                                                                   "virtual timer" if intid == PPI_VIRT_TIMER
                                                                   else "virtual interrupt"))
        if _cpu(v).el < 2:
            self._flush_lrs(v)
        self.wake(v, f"virtual interrupt {intid}")

    def inject_evtchn_ppi(self, v: Vcpu) -> None:
        self.inject_virq(v, L.GUEST_EVTCHN_PPI)

    def _flush_lrs(self, v: Vcpu) -> None:
        """gic_restore_pending_irqs(): queued virtual interrupts into free list registers."""
        q = v.domain.extra.get("lr_pending", {}).get(v.id)
        gic = _cpu(v).gic
        while q:
            free = next((n for n, value in enumerate(gic.lr) if value >> 62 == 0), None)
            if free is None:
                return
            intid, hw = q.pop(0)
            gic.lr[free] = lr_value(intid, hw=hw, pintid=intid if hw else 0)

    def virq_pending(self, v: Vcpu) -> bool:
        q = v.domain.extra.get("lr_pending", {}).get(v.id)
        return bool(q) or any(value >> 62 == LR_PENDING for value in _cpu(v).gic.lr)

    # -- XENMEM_add_to_physmap ------------------------------------------------------------------
    def xenmem_add_to_physmap(self, v: Vcpu, d: int, space: int, idx: int, gpfn: int, info: dict) -> int:
        """memory_op's (lab/xen/memory.py) Arm part: a domain's own physmap only."""
        if d not in (abi.DOMID_SELF, v.domain.domid):
            info["why"] = "another domain's physmap"
            return -E["EPERM"]
        return self.add_to_physmap(v.domain, space, idx, gpfn, info)

    def add_to_physmap(self, dom: Domain, space: int, idx: int, gpfn: int, info: dict) -> int:
        """xenmem_add_to_physmap_one() (xen/arch/arm/mm.c): shared_info or a grant-table frame
        at ``gpfn``; whatever RAM frame was there leaves the guest's p2m (and goes back to Xen)."""
        p2m = self.p2m(dom)
        if p2m is None:
            return -E["EINVAL"]
        if gpfn >= 1 << 36:
            return -E["EINVAL"]
        if space == abi.XENMAPSPACE_shared_info:
            if idx != 0:
                return -E["EINVAL"]
            if not dom.shared_info_mfn:
                dom.shared_info_mfn = self.alloc_frame(None)
            mfn = dom.shared_info_mfn
        elif space == abi.XENMAPSPACE_grant_table:
            if idx >= dom.max_grant_frames:
                info["why"] = f"grant frame {idx} beyond max_grant_frames {dom.max_grant_frames}"
                return -E["EINVAL"]
            frames = dom.extra.setdefault("gnttab_frames", {})
            if idx not in frames:
                if not self.free_frames:
                    info["why"] = "no free frame for the grant table (gnttab_grow_table failed)"
                    return -E["ENOMEM"]
                frames[idx] = self.alloc_frame(None)
            mfn = frames[idx]
        else:
            return -E["ENOSYS"]
        old_gfn = dom.extra.setdefault("physmap_of", {}).get(mfn)
        if old_gfn is not None and old_gfn != gpfn:
            p2m.unmap(old_gfn)                       # a frame is at one place in the guest at a time
        if self.grant_tables.mapped_at(dom, gpfn):
            info["why"] = f"gfn {gpfn:#x} holds a grant mapping (unmap it first)"
            return -E["EBUSY"]
        replaced = p2m.unmap(gpfn)
        own = dom.extra.get("frames", [])
        if replaced is not None and replaced in own:
            own.remove(replaced)                     # guest_physmap_remove_page(): the RAM frame goes,
            dom.mem_pages -= 1                       # when no grant mapping or copy holds it any more
            if self.grant_tables.free_or_keep(replaced):
                self.free_frames.append(replaced)
        p2m.map(gpfn, mfn, "rw")
        dom.extra["physmap_of"][mfn] = gpfn
        v = dom.vcpus[0] if dom.vcpus else None
        if v is not None and _cpu(v) is not None:
            _cpu(v).tlb.invalidate(vmid=p2m.vmid)      # p2m_flush_tlb(): the VMID's entries go
        return 0

    # -- vCPU states (blocking, waking and dom0's work: the scheduler's, shared with x86) ----------
    # -- the architecture's part of XENVER_get_features (lab/xen/version.py) ----------
    def paging_mode_translate(self, dom: Domain) -> bool:
        """Every Arm guest is behind stage 2."""
        return True

    def is_domain_direct_mapped(self, dom: Domain) -> bool:
        """Dom0 is mapped 1:1: create_dom0() gives it CDF_directmap unless LLC colouring is on,
        which the lab does not model (xen/arch/arm/domain_build.c)."""
        return dom.privileged

    def arch_guest_features(self, dom: Domain) -> int:
        """The one bit xen/common/kernel.c sets under CONFIG_ARM: SMCCC calls are supported."""
        return 1 << abi.XENFEAT_ARM_SMCCC_supported

    def _kick(self, v: Vcpu) -> None:
        """Nothing to ask of the Arm CPU: it returns to the host at every trap and slice end."""

    def block_unless_pending(self, v: Vcpu, why: str) -> None:
        if self.virq_pending(v) or self._timer_due(v, _cpu(v).cycles if _cpu(v) else 0):
            return
        self.block(v, why)

    def yield_vcpu(self, v: Vcpu) -> None:
        """SCHEDOP_yield or wfe: give the pCPU up at once (the rest of the slice goes)."""
        self.yielded.add((v.domain.domid, v.id))

    def _release_domain(self, dom: Domain) -> None:
        """Its vCPUs go offline, the grant tables and dom0's services let go of it, and its frames
        (RAM, stage-2 tables, grant frames, shared_info) go back to Xen's heap, wiped, unless
        another domain still maps one (freed at that unmap)."""
        for v in dom.vcpus:
            v.runstate = RUNSTATE_OFFLINE
        self.grant_tables.domain_gone(dom)
        for svc in self.services.in_start_order():
            if hasattr(svc, "domain_gone"):
                svc.domain_gone(dom)
        frames = list(dom.extra.get("frames", []))
        p2m = self.p2m(dom)
        if p2m is not None:
            frames += [t >> PAGE_SHIFT for t in p2m.tables.tables]
        frames += list(dom.extra.get("gnttab_frames", {}).values())
        if dom.shared_info_mfn:
            frames.append(dom.shared_info_mfn)
        for mfn in sorted(set(frames)):
            if not self.grant_tables.free_or_keep(mfn):
                continue                             # another domain maps it: freed at its unmap
            self.mem.zero_frame(mfn)
            self.free_frames.append(mfn)
        del self.domains[dom.domid]

    # -- time and scheduling ------------------------------------------------------------------
    def _timer_due(self, v: Vcpu, now: int) -> bool:
        cpu = _cpu(v)
        return cpu is not None and bool(cpu.timer.ctl & ENABLE) and not cpu.timer.ctl & IMASK and \
            cpu.timer.firing(now)

    def _timer_deadline(self, v: Vcpu) -> int | None:
        """When a blocked vCPU's virtual timer fires, in cycles (Xen arms a timer for it: vtimer.c)."""
        t = _cpu(v).timer if _cpu(v) is not None else None
        if t is None or not t.ctl & ENABLE or t.ctl & IMASK:
            return None
        count = (t.cval + t.voff) & ((1 << 64) - 1)
        return -(-count * t.cpu_hz // t.counter_hz)

    def _fire_timers(self, now: int) -> None:
        """A blocked vCPU whose virtual timer is due takes it as a virtual interrupt (vtimer.c)."""
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            for v in d.vcpus:
                if v.runstate == RUNSTATE_BLOCKED and _cpu(v) is not None:
                    dl = self._timer_deadline(v)
                    if dl is not None and dl <= now:
                        _cpu(v).cycles = max(_cpu(v).cycles, dl)
                        self.inject_virq(v, PPI_VIRT_TIMER, hw=False)
                        _cpu(v).timer.ctl |= IMASK          # Xen masks the timer until the guest handles it
                        _cpu(v).gic.active.discard(PPI_VIRT_TIMER)

    def _idle(self, p: int) -> bool:
        """Nothing to run on ``p``: on to the next virtual timer of a blocked vCPU, or the time
        of a busy pCPU; False when there is neither."""
        targets = [dl for d in self.domains.values() for w in d.vcpus
                   if w.runstate == RUNSTATE_BLOCKED and (dl := self._timer_deadline(w)) is not None]
        busy = [self.clock[i] for i in range(len(self.clock)) if self.current[i] is not None]
        targets = [t for t in targets + busy if t > self.clock[p]]
        if not targets:
            return False
        self.clock[p] = min(targets)
        return True

    def _run_guest(self, p: int, v: Vcpu, budget: int) -> None:
        """Enter the guest (its pending virtual interrupts into list registers) and step its core
        until the slice ends, it blocks or yields, or its domain stops."""
        cpu = _cpu(v)
        cpu.cycles = max(cpu.cycles, self.clock[p])
        before = cpu.cycles
        self._flush_lrs(v)
        until = self.slice_end[p]
        others = [self.clock[i] for i in range(len(self.clock)) if i != p]
        if others:
            until = min(until, min(others) + 20_000)
        n = 0
        key = (v.domain.domid, v.id)
        self.yielded.discard(key)
        while (n < budget and cpu.cycles < until and cpu.cycles < self.slice_end[p] and v.runstate == RUNSTATE_RUNNING
               and not cpu.stopped and v.domain.alive and not self.yield_now and key not in self.yielded):
            cpu.step()
            n += 1
        v.run_cycles += cpu.cycles - before
        self.clock[p] = max(self.clock[p] + (0 if cpu.cycles > before else 1), cpu.cycles)
        if key in self.yielded:
            self.yielded.discard(key)
            self.slice_end[p] = 0
        if v.runstate != RUNSTATE_RUNNING or not v.domain.alive:
            if self.current[p] is v:
                self.current[p] = None

    def digest(self) -> str:
        h = hashlib.sha256()
        self.mem.digest_into(h)
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            h.update(repr((d.domid, d.name, d.state, d.console_log.digest_form())).encode())
            for v in d.vcpus:
                if _cpu(v) is not None:
                    h.update(repr((v.runstate, _cpu(v).save_state())).encode())
        h.update(repr((self.clock, self.trace.seq)).encode())
        return h.hexdigest()[:32]
