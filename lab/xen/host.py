"""The x86 Xen host: the machine Xen owns, and what x86 adds to the host core.

Xen itself is Python code running "in root mode at ring 0": the CPUs call
into it (``on_syscall``, ``on_exception``, ``on_vmexit`` ...) whenever a guest
does something only the hypervisor may do, and Xen charges the cycles its
work costs to the pCPU that did it. Guests are programs executed instruction
by instruction on :class:`~lab.hw.cpu.Cpu` objects, one per vCPU.

The domains, the scheduler's run loop, time, domain control and dom0's
services are the host core's (``lab/xen/host_core.py``), shared with Arm. x86
supplies the CPU's calls into Xen (PV traps, VM exits), running a vCPU (the
PV upcall on entry, ``hlt``), its timers (set_timer_op, the emulated PIT), and
the M2P and page types a destroyed domain's memory leaves.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Callable

from ..hw.cpu import CodeCache, Cpu
from ..hw.faults import Fault, VmExit
from ..hw.memory import PAGE_SHIFT
from ..hw.snapshot import Snapshot, keeper_of
from ..trace import Event
from . import abi
from .host_core import FOREVER, HostCore, HostCoreConfig
from .domain import RUNSTATE_RUNNING, Domain, Vcpu
from .evtchn import EventChannels
from .frames import FrameAccess
from .heap import FreeFrames
from .mm_glue import XenMM
from . import events, hvm, pv, timers
# The hypercall table is filled by the subsystems' modules as they are imported: here, once.
from . import console, descriptors, dm_op, grant, hvm_op, hypercalls, memory, physdev, vcpu_op, version  # noqa: F401
from .hypercall_table import X86_HYPERCALLS
from .release import XEN_VERSION
from .guestmem import copy_to_guest
from .hypercall_table import Preempted
from .reservation import reservation_op

__all__ = ["FOREVER", "HostConfig", "XenHost", "XEN_VERSION"]
#: How far one pCPU may run ahead of the others before the host switches to them.
QUANTUM = 20_000


@dataclass(kw_only=True, eq=False)
class HostConfig(HostCoreConfig):
    """What a scenario says about an x86 host (see docs/scenarios.md)."""

    pcpus: int = 2
    vendor: str = "intel"
    #: VT-x (Intel) or AMD-V (AMD) present: without it Xen has no HVM (hvm_enabled stays 0,
    #: xen/arch/x86/hvm/hvm.c hvm_enable()), so no HVM or PVH guests and no HAP.
    hvm: bool = True
    ept: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ept = self.ept and self.hvm


class XenHost(HostCore):
    #: The snapshot keeper is how state is saved, not state.
    NOT_STATE = ("_keeper",)
    #: x86's hypercall table, filled by the subsystems' modules imported above.
    hypercalls = X86_HYPERCALLS
    #: XENVER_capabilities (and xl info's xen_caps): what this x86-64 Xen runs (arch_get_xen_caps()).
    xen_caps = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"

    def __init__(self, config: HostConfig | None = None, keep_trace: bool = True) -> None:
        cfg = config or HostConfig()
        super().__init__(cfg, keep_trace)
        self.vendor = cfg.vendor
        table = {code: self.costs.of_mnemonic(info.name) for code, info in
                 __import__("lab.isa.opcodes", fromlist=["BY_CODE"]).BY_CODE.items()}
        self.code = CodeCache(self.mem, lambda insn: table[insn.op])
        self.timers = timers.TimerHeap()          # every armed timer, earliest first
        # Machine frames: Xen keeps the first 16 MiB for itself, more on a large host (its
        # M2P, 8 bytes per frame, and room for the p2m/EPT tables of all memory, one table
        # per 512 frames); the rest is its heap.
        nr = self.mem.nr_frames
        self.xen_reserved = max((16 << 20) >> PAGE_SHIFT, 0x100 + 1024 + (nr * 8 + 4095) // 4096 + nr // 256)
        self.free_frames = FreeFrames(self.xen_reserved, self.mem.nr_frames)   # pop() hands out ascending frames
        self.evtchn = EventChannels(self, events.mark_pending)
        self.mm = XenMM(self)
        self.frames = FrameAccess(self)
        #: Xen's grant tables (every domain's); mm asks them whether a mapping is granted.
        self.grant_tables = grant.GrantTables(self)
        self.mm.pv.grant_ok = self.grant_tables.grant_ok
        self.log(f"Xen version {XEN_VERSION[0]}.{XEN_VERSION[1]}{XEN_VERSION[2]} (lab)")
        self.log(f"{cfg.pcpus} pCPUs, {cfg.mem_mib} MiB, vendor {cfg.vendor}, "
                 f"{'HAP (EPT)' if cfg.ept and cfg.vendor == 'intel' else 'HAP (NPT)' if cfg.ept else 'no HAP: shadow paging only'}"
                 f"{'' if cfg.hvm else '; no VT-x/AMD-V: PV guests only'}")

    # -- logging and events -------------------------------------------------
    def _console_ring_written(self) -> None:
        # Bytes written to Xen's console ring: VIRQ_CON_RING to dom0, if it bound it.
        if getattr(self, "evtchn", None) is not None and 0 in self.evtchn.ports:
            self.evtchn.send_global_virq(abi.VIRQ_CON_RING)

    # -- frames -------------------------------------------------------------
    def _assign_frame(self, mfn: int, owner: int | None) -> None:
        self.mm.assign(mfn, owner)              # its page_info's owner, for the type checks

    def free_frame(self, mfn: int) -> None:
        """A frame nobody references any more goes back to Xen's heap, wiped."""
        self.code.invalidate_frame(mfn)
        self.mem.zero_frame(mfn)
        self.free_frames.append(mfn)

    # -- domains ------------------------------------------------------------
    def new_domain(self, name: str, mode: str, mem_pages: int, vcpus: int, privileged: bool = False,
                   domid: int | None = None, config: Any = None, max_grant_frames: int = -1) -> Domain:
        """domain_create(): ``max_grant_frames`` -1 takes Xen's default (gnttab_max_frames), as
        grant_table_init() does; the toolstack has refused a value below one already."""
        if mem_pages > self.free_pages:
            raise MemoryError(f"not enough free memory for {name}: {mem_pages} pages wanted, "
                              f"{self.free_pages} free")
        dom = self._create_domain(name, mode, mem_pages, privileged, domid, config, max_grant_frames)
        domid = dom.domid
        # The domain's memory at once: the frames alloc_frame would pop one by one.
        mfns = self.free_frames.take(mem_pages)
        mem = self.mem
        touched = mem.frames.keys() | mem.watched
        for mfn in sorted(touched & set(mfns)) if touched else ():
            mem.zero_frame(mfn)                  # frames never written already read as zeros
        self.mm.assign_many(mfns, domid)
        self.mm.set_m2p_many(mfns)
        dom.p2m.extend(mfns)
        dom.extra.setdefault("frames", []).extend(mfns)
        self._domain_created(dom, mode)
        self.log(f"d{domid}: created {name} ({mode}, {mem_pages * 4096 >> 20} MiB, {vcpus} vCPU)")
        return dom

    def new_vcpu(self, dom: Domain, vid: int, cpu: Cpu | None) -> Vcpu:
        v = Vcpu(domain=dom, id=vid, cpu=cpu)
        if cpu is not None:
            cpu.attach(self, v, self._cpu_emitter(v))
        dom.vcpus.append(v)
        return v

    def make_cpu(self) -> Cpu:
        return Cpu(self.mem, None, self.code, vendor=self.vendor, costs=self.costs.instruction)

    def _cpu_emitter(self, v: Vcpu) -> Callable[..., Event]:
        def emit(kind: str, **data: Any) -> Event:
            return self.trace.record(v.cpu.cycles, v.pcpu if v.pcpu is not None else 0, v.domain.domid, v.id,
                                     kind, data)
        return emit

    def _release_domain(self, dom: Domain) -> None:
        """Its frames leave the M2P and page types, its EPT or shadow tables go (paging_teardown),
        then dom0's services and the grant tables let go of it (gnttab_release_mappings())."""
        self.mm.destroy_domain(dom.domid)
        pool = dom.extra.get("paging_pool")
        if pool is not None:
            pool.release_all()
        # Its CPUs leave the code cache's list, which would otherwise keep every destroyed
        # domain alive through them (a lab that creates and destroys guests all day).
        gone = {id(v.cpu) for v in dom.vcpus if v.cpu is not None}
        self.code.cpus[:] = [c for c in self.code.cpus if id(c) not in gone]
        for mfn in sorted((set(dom.p2m) | set(dom.extra.get("frames", []))) - {None}):   # None: a hole
            if self.mm.pv.pages[mfn].owner is None:          # nothing holds it any more
                self.free_frame(mfn)
            else:
                self.mm.orphans.add(mfn)                     # freed when its last holder lets go
        del self.domains[dom.domid]
        for svc in self.services.in_start_order():
            svc.domain_gone(dom)
        self.grant_tables.domain_gone(dom)        # after dom0's services let go

    # -- x86's part of memory_op (lab/xen/memory.py) ----------------------------------
    def xenmem_add_to_physmap(self, v: Vcpu, d: int, space: int, idx: int, gpfn: int, info: dict) -> int:
        return hvm.xenmem_add_to_physmap(self, v, d, space, idx, gpfn, info)

    def reservation_op(self, v: Vcpu, cmd_word: int, va: int, info: dict) -> int | Preempted:
        return reservation_op(self, v, cmd_word, va, info)

    def arch_memory_op(self, v: Vcpu, cmd: int, va: int, info: dict) -> int:
        """arch_memory_op() (xen/arch/x86/mm.c, x86_64/mm.c)."""
        dom = v.domain
        if cmd == abi.XENMEM_machphys_mapping:
            if dom.is_hvm:
                return -abi.ERRNO["ENOSYS"]
            # a domU is told the whole M2P area's size; the hardware domain (with memory
            # hot-plug off) the host's highest frame (x86_64/mm.c)
            max_mfn = self.mem.nr_frames - 1 if dom.privileged else abi.MACH2PHYS_NR_ENTRIES - 1
            copy_to_guest(self, v, va, struct.pack("<QQQ", abi.MACH2PHYS_VIRT_START, abi.MACH2PHYS_VIRT_END,
                                                   max_mfn))
            return 0
        return -abi.ERRNO["ENOSYS"]

    # -- the architecture's part of XENVER_get_features (lab/xen/version.py) ----------
    def paging_mode_translate(self, dom: Domain) -> bool:
        """HVM and PVH guests are translated; a PV guest's frames are machine frames."""
        return not dom.is_pv

    def is_domain_direct_mapped(self, dom: Domain) -> bool:
        """Never on x86 (arch/x86/include/asm/domain.h)."""
        return False

    def arch_guest_features(self, dom: Domain) -> int:
        """The bits xen/common/kernel.c sets under CONFIG_X86.

        ``hvm_pirqs`` needs XEN_X86_EMU_USE_PIRQ, which libxl leaves off unless the config
        asks for it, and the lab has no such option.
        """
        feats = (1 << abi.XENFEAT_vcpu_time_phys_area) | (1 << abi.XENFEAT_dm_msix_all_writes)
        if dom.is_pv:
            feats |= ((1 << abi.XENFEAT_mmu_pt_update_preserve_ad) | (1 << abi.XENFEAT_highmem_assist)
                      | (1 << abi.XENFEAT_gnttab_map_avail_bits))
        else:
            feats |= (1 << abi.XENFEAT_hvm_safe_pvclock) | (1 << abi.XENFEAT_hvm_callback_vector)
        return feats

    def _kick(self, v: Vcpu) -> None:
        """The CPU leaves its run loop at the next block boundary."""
        if v.cpu is not None:
            v.cpu.yield_now = True

    # -- the CPU's calls into Xen ---------------------------------------------------
    def on_syscall(self, cpu: Cpu, nxt: int) -> None:
        pv.on_syscall(self, cpu.vcpu, nxt)

    def on_softint(self, cpu: Cpu, vector: int, nxt: int) -> None:
        pv.on_softint(self, cpu.vcpu, vector, nxt)

    def on_exception(self, cpu: Cpu, fault: Fault) -> None:
        pv.on_exception(self, cpu.vcpu, fault)

    def on_interrupt(self, cpu: Cpu, vector: int) -> None:
        self.emit(cpu.vcpu, "interrupt", vector=vector, source="host")

    def on_vmexit(self, cpu: Cpu, exc: VmExit) -> None:
        hvm.on_vmexit(self, cpu.vcpu, exc)

    def on_cpu_stop(self, cpu: Cpu, reason: str) -> None:
        v = cpu.vcpu
        self.crash(v.domain, reason, v)

    def _vcpu_scheduled(self, v: Vcpu) -> None:
        timers.vcpu_scheduled(self, v)        # sched_context_switch(): periodic timer, vcpu_info time

    def _vcpu_descheduled(self, v: Vcpu) -> None:
        timers.vcpu_descheduled(v)            # stop_timer(&vprev->periodic_timer)

    def next_deadline(self) -> int | None:
        """The earliest timer of any vCPU or emulated device (the top of the timer heap)."""
        return timers.next_deadline(self)

    def _fire_timers(self, now: int) -> None:
        timers.fire(self, now)

    def _idle(self, p: int) -> bool:
        """pCPU ``p`` has nothing to run: move its clock on, or report that the host is idle."""
        busy = [self.clock[i] for i in range(len(self.clock)) if self.current[i] is not None and i != p]
        targets = [c + QUANTUM for c in busy]
        dl = self.next_deadline()
        if dl is not None and dl > self.clock[p]:
            targets.append(dl)
        if self.dom0_work:
            targets.append(self._dom0_work_wait(p))
        if not targets:
            return False
        self.clock[p] = max(self.clock[p] + 1, min(targets))
        return True

    def _dom0_work_wait(self, p: int) -> int:
        """Until when idle pCPU ``p`` waits for dom0's queued work to be picked up.

        Dom0's vCPU may become runnable at any cycle, so ``p`` looks again one cycle
        on. But while each of dom0's vCPUs is running on another pCPU, nothing can
        change for ``p`` until that pCPU's turn comes: no vCPU can wake (deadlines
        are targets of their own, and no emulated interrupt is waiting), so one
        step to the cycle where ``p`` stops being the earliest pCPU is exactly the
        cycle-by-cycle steps it replaces.
        """
        now = self.clock[p]
        dom0 = self.domains.get(0)
        if dom0 is None or not dom0.vcpus or any(v.runstate != RUNSTATE_RUNNING or v.pcpu == p
                                                 for v in dom0.vcpus):
            return now + 1
        for d in self.domains.values():
            pic = d.devices.get("vpic")
            if pic is not None and pic.waiting:
                return now + 1
        others = [(self.clock[i], i) for i in range(len(self.clock)) if i != p]
        if not others:
            return now + 1
        clock, first = min(others)
        return max(now + 1, clock + (1 if p < first else 0))

    def _run_guest(self, p: int, v: Vcpu, budget: int) -> None:
        cpu = v.cpu
        cpu.cycles = max(cpu.cycles, self.clock[p])
        if v.domain.is_pv:
            pv.deliver_upcall(self, v)
        until = min(self.slice_end[p], min((self.clock[i] for i in range(len(self.clock)) if i != p),
                                          default=FOREVER) + QUANTUM)
        dl = self.next_deadline()
        if dl is not None and dl > cpu.cycles:
            until = min(until, dl)
        until = max(until, cpu.cycles + 1)
        before_c, before_i = cpu.cycles, cpu.icount
        cpu.yield_now = False
        if cpu.halted and not cpu._interrupt_ready():
            # An HVM vCPU in hlt: blocked until an interrupt arrives.
            self.block(v, "hlt")
        else:
            cpu.run(budget, until)
        v.run_cycles += cpu.cycles - before_c
        self.clock[p] = max(self.clock[p], cpu.cycles)
        if cpu.cycles == before_c and cpu.icount == before_i and v.runstate == RUNSTATE_RUNNING:
            self.clock[p] += 1      # guarantee progress of time
        if v.runstate != RUNSTATE_RUNNING or cpu.stopped:
            self._deschedule(p, v.runstate)
        if cpu.stopped and v.domain.alive:
            self.crash(v.domain, cpu.stopped, v)
        timers.tick_devices(self, v.domain, cpu.cycles)

    def guest_phys_to_machine(self, dom: int | None, gpa: int) -> int | None:
        """An HVM guest's physical address as a machine address (through its p2m)."""
        d = self.domains.get(dom) if dom is not None else None
        mfn = d.gfn_to_mfn(gpa >> 12) if d is not None else None
        return None if mfn is None else (mfn << 12) | (gpa & 0xFFF)

    # -- state ------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The whole host: memory, Xen's bookkeeping, every domain and vCPU, dom0's services."""
        return keeper_of(self).save(self, self.instructions, max(self.clock), self.trace.seq)

    def restore(self, snap: Snapshot) -> None:
        """Back to ``snap`` (across ``xl create`` and ``xl destroy`` too): the same objects,
        holding what they held then, so the host runs on exactly as it did from there."""
        keeper_of(self).load(snap)
        # A domain back across its destroy has its CPUs back in the code cache's list; they
        # missed its invalidations meanwhile, so they start with empty fast caches.
        listed = {id(c) for c in self.code.cpus}
        for d in self.domains.values():
            for v in d.vcpus:
                if v.cpu is not None and id(v.cpu) not in listed:
                    self.code.cpus.append(v.cpu)
                    v.cpu.drop_blocks()
                    v.cpu.drop_write_caches()

    def digest(self) -> str:
        h = hashlib.sha256()
        self.mem.digest_into(h)
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            h.update(repr((d.domid, d.name, d.state, d.pause_count, d.console_log.digest_form(),
                           [(v.runstate, v.kernel_mode, v.guest_table, v.guest_table_user, v.timer_deadline)
                            for v in d.vcpus])).encode())
            for v in d.vcpus:
                if v.cpu is not None:
                    v.cpu.digest_into(h)
        h.update(repr((self.clock, self.trace.seq, self.dmesg.logged)).encode())
        return h.hexdigest()[:32]
