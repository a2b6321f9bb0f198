"""Domains and vCPUs: what Xen keeps about each guest (struct domain, struct vcpu)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..hw.consolelog import ConsoleLog
from ..hw.cpu import Cpu
from . import abi

# Domain states as `xl list` shows them (r b p s c d).
RUNNING, BLOCKED, PAUSED, SHUTDOWN, CRASHED, DYING = "running", "blocked", "paused", "shutdown", "crashed", "dying"

# vCPU runstates (public/vcpu.h): running 0, runnable 1, blocked 2, offline 3.
RUNSTATE_RUNNING, RUNSTATE_RUNNABLE, RUNSTATE_BLOCKED, RUNSTATE_OFFLINE = "running", "runnable", "blocked", "offline"

#: Guest modes the lab runs, and what Xen calls their domain type.
MODES = {"pv": "pv", "pv32": "pv", "hvm": "hvm", "hvm-pvdrivers": "hvm", "pvhvm": "hvm", "pvh": "pvh",
         "arm": "pvh"}     # Xen on Arm has one guest type; the toolstack calls it PVH


@dataclass
class Vcpu:
    domain: "Domain"
    id: int
    cpu: Cpu | None                 # None for a vCPU that runs the lab's dom0 services
    runstate: str = RUNSTATE_RUNNABLE
    pcpu: int | None = None         # where it runs (or last ran)
    run_cycles: int = 0             # cycles spent running (xl vcpu-list "Time(s)")
    last_scheduled: int = 0
    boost: bool = False             # woken by an event: most credit, so ahead of the others (credit2)
    batch_entries: int = 0          # batched-hypercall entries done (preemption every PREEMPT_BATCH)
    # -- PV state (struct pv_vcpu) ------------------------------------------
    kernel_mode: bool = True        # TF_kernel_mode: guest kernel vs guest user
    guest_table: int = 0            # kernel L4 mfn
    guest_table_user: int = 0       # user L4 mfn
    kernel_ss: int = 0
    kernel_sp: int = 0
    # -- timers (struct vcpu's singleshot_timer and periodic_timer; lab/xen/timers.py) --
    singleshot_timer: tuple[int, int] | None = None   # (deadline in cycles, heap sequence) while armed
    periodic_timer: tuple[int, int] | None = None     # likewise; stopped while the vCPU is off its pCPU
    periodic_period: int = 0                          # cycles; 0: no periodic timer
    periodic_last_event: int = 0
    vlapic_timer: tuple[int, int] | None = None       # the vLAPIC timer's next expiry (HVM/PVH; vdev/vlapic.py)
    # -- HVM/PVH event delivery (struct hvm_vcpu) -------------------------------
    upcall_vector: int = 0          # HVMOP_set_evtchn_upcall_vector (0: none)
    lapic_irr: int = 0              # the vLAPIC's IRR and ISR, one bit per vector (the upcall
    lapic_isr: int = 0              # vector and the vLAPIC timer's vector are raised there)

    @property
    def label(self) -> str:
        return f"d{self.domain.domid}v{self.id}"

    @property
    def timer_deadline(self) -> int | None:
        """When this vCPU's next timer event is due (cycles), None with no timer armed."""
        armed = [t[0] for t in (self.singleshot_timer, self.periodic_timer) if t is not None]
        return min(armed) if armed else None

    @property
    def blocked(self) -> bool:
        return self.runstate == RUNSTATE_BLOCKED


@dataclass
class Domain:
    domid: int
    name: str
    mode: str                       # pv, pv32, hvm, hvm-pvdrivers, pvhvm, pvh
    mem_pages: int
    max_pages: int
    privileged: bool = False        # the control domain (dom0)
    max_grant_frames: int = abi.DEFAULT_MAX_GRANT_FRAMES  # gt->max_grant_frames (createdomain domctl)
    state: str = RUNNING
    shutdown_reason: str | None = None
    crash_reason: str | None = None
    pause_count: int = 0
    p2m: list[int | None] = field(default_factory=list)  # pfn -> mfn (None: given back, a hole)
    vcpus: list[Vcpu] = field(default_factory=list)
    config: Any = None
    images: dict[str, Any] = field(default_factory=dict)
    # what the domain printed, on any of its consoles, as a bounded ring (lab/hw/consolelog.py)
    console_log: ConsoleLog = field(default_factory=ConsoleLog)
    # -- shared pages -----------------------------------------------------------
    shared_info_mfn: int = 0
    start_info_pfn: int = 0
    console_pfn: int = 0
    console_evtchn: int = 0
    store_pfn: int = 0
    store_evtchn: int = 0
    # -- PV: the guest's virtual IDT and callbacks ------------------------------
    trap_table: dict[int, tuple[int, int, int]] = field(default_factory=dict)   # vector -> (flags, cs, address)
    callbacks: dict[str, int] = field(default_factory=dict)                     # event, failsafe, syscall
    callback_flags: dict[str, int] = field(default_factory=dict)                # name -> CALLBACKF_* bits
    vm_assist: int = 0
    # -- HVM ------------------------------------------------------------------
    hvm_params: dict[int, int] = field(default_factory=dict)
    hypercall_page_gpa: int | None = None
    ept_root: int = 0
    hap: bool = True
    devices: dict[str, Any] = field(default_factory=dict)     # Xen-internal emulated devices (vPIC, vPIT)
    pit_timer: tuple[int, int] | None = None                   # the vPIT's next interrupt (lab/xen/timers.py)
    # HVM_PARAM_CALLBACK_IRQ as Xen keeps it (struct hvm_irq): "none", "gsi", "pci_intx" or
    # "vector"; the GSI, the (device, INTx) pair or the vector; and whether the line is asserted.
    callback_via_type: str = "none"
    callback_via: Any = 0
    callback_via_asserted: bool = False
    # p2m entries that XENMEM_add_to_physmap put beyond the domain's RAM (gfn -> mfn).
    physmap_extra: dict[int, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def console_output(self) -> str:
        """The console text kept: all of it while under the bound, then the newest part."""
        return self.console_log.text

    @property
    def type(self) -> str:
        return MODES[self.mode]

    @property
    def is_pv(self) -> bool:
        return self.type == "pv"

    @property
    def is_hvm(self) -> bool:
        return self.type in ("hvm", "pvh")

    @property
    def alive(self) -> bool:
        return self.state not in (SHUTDOWN, CRASHED, DYING)

    @property
    def mem_mib(self) -> int:
        return self.mem_pages * 4096 >> 20

    def state_flags(self) -> dict[str, bool]:
        """The six letters of `xl list`'s State column."""
        running = any(v.runstate == RUNSTATE_RUNNING for v in self.vcpus)
        blocked = self.alive and not running and all(v.runstate in (RUNSTATE_BLOCKED, RUNSTATE_OFFLINE)
                                                     for v in self.vcpus)
        return {"running": running and self.alive, "blocked": blocked and self.pause_count == 0,
                "paused": self.pause_count > 0, "shutdown": self.state in (SHUTDOWN, CRASHED),
                "crashed": self.state == CRASHED, "dying": self.state == DYING}

    def gfn_to_mfn(self, gfn: int) -> int | None:
        if 0 <= gfn < len(self.p2m):
            return self.p2m[gfn]
        return self.physmap_extra.get(gfn)
