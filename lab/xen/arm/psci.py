"""PSCI for guests: Xen's virtual power controller (``xen/arch/arm/vpsci.c``, ``vsmc.c``).

A guest turns its vCPUs on and off as it would on bare metal, by calling the
Power State Coordination Interface through SMCCC: ``hvc #0`` (the conduit the
device tree's ``/psci`` node names, ``method = "hvc"``) or ``smc #0`` (trapped to
Xen by HCR_EL2.TSC), the function ID in w0 and the arguments in x1-x3, the
result in x0. Xen answers PSCI 1.1 (``do_psci_0_2_version()``):

* ``CPU_ON`` (target MPIDR, entry point, context id) starts a vCPU that is down
  at the entry point with its MMU off (SCTLR_GUEST_INIT), PSTATE
  PSR_GUEST64_INIT and x0 the context id (``vpsci_build_guest_context()``);
  a target that is no vCPU of the domain is INVALID_PARAMETERS, one that is up
  ALREADY_ON, an odd (Thumb) entry point INVALID_ADDRESS. Xen does not check
  the entry point further: one outside the guest's memory faults at stage 2 in
  the new vCPU, which only that guest suffers.
* ``CPU_OFF`` takes the calling vCPU down; ``AFFINITY_INFO`` says whether any vCPU
  whose MPIDR matches is on; ``CPU_SUSPEND`` is a standby (blocks unless an
  interrupt is pending); ``SYSTEM_OFF``/``SYSTEM_RESET`` shut the domain down;
  ``SYSTEM_SUSPEND`` suspends it to RAM until ``xl resume`` (``suspend.py``).
* ``PSCI_FEATURES`` answers 0 for each function above and SMCCC_VERSION
  (SYSTEM_SUSPEND: not for the hardware domain), NOT_SUPPORTED for anything else
  (``do_psci_1_0_features()``).
* SMCCC's own queries, by the function ID's owner: the Arm Architecture service,
  the Hypervisor service's UID, and the Standard service's count, UID and
  revision (``smccc.py``).
* The PSCI 0.1 IDs libxl writes into ``/psci`` (``cpu_on = <2>``, ``cpu_off = <1>``,
  ``public/arch-arm.h``) work too, answering INVALID_PARAMETERS where 0.1 has
  no better code.

Anything else SMCCC-shaped answers ARM_SMCCC_ERR_UNKNOWN_FUNCTION (-1); an
``hvc``/``smc`` with a non-zero immediate is not SMCCC and is Undefined in the
guest (``do_trap_hvc_smccc()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ...hw.arm import exceptions as X
from ...hw.arm.cpu import ArmCpu
from ...isa.bits import M64
from ..domain import RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE
from . import smccc, suspend

if TYPE_CHECKING:
    from ..domain import Vcpu

#: PSCI return codes (xen/arch/arm/include/asm/psci.h; Arm DEN 0022).
PSCI_SUCCESS = 0
PSCI_NOT_SUPPORTED = -1
PSCI_INVALID_PARAMETERS = -2
PSCI_DENIED = -3
PSCI_ALREADY_ON = -4
PSCI_INTERNAL_FAILURE = -6
PSCI_INVALID_ADDRESS = -9
PSCI_0_2_AFFINITY_LEVEL_ON = 0
PSCI_0_2_AFFINITY_LEVEL_OFF = 1
PSCI_0_2_TOS_MP_OR_NOT_PRESENT = 2

#: SMCCC (xen/arch/arm/include/asm/smccc.h).
ARM_SMCCC_ERR_UNKNOWN_FUNCTION = -1
ARM_SMCCC_VERSION_FID = 0x80000000
ARM_SMCCC_VERSION_1_2 = 0x10002
ARM_SMCCC_RESERVED_RANGE_END = 0x0100FFFF
ARM_SMCCC_OWNER_STANDARD = 4
PSCI_FNUM_MAX_VALUE = 0x1F


def psci_0_2_fn32(nr: int) -> int:
    """PSCI_0_2_FN32(nr): a fast call, SMC32 convention, owner Standard Secure Service."""
    return 0x80000000 | (ARM_SMCCC_OWNER_STANDARD << 24) | nr


def psci_0_2_fn64(nr: int) -> int:
    return psci_0_2_fn32(nr) | (1 << 30)


PSCI_0_2_FN32_PSCI_VERSION = psci_0_2_fn32(0)
PSCI_0_2_FN32_CPU_SUSPEND = psci_0_2_fn32(1)
PSCI_0_2_FN32_CPU_OFF = psci_0_2_fn32(2)
PSCI_0_2_FN32_CPU_ON = psci_0_2_fn32(3)
PSCI_0_2_FN32_AFFINITY_INFO = psci_0_2_fn32(4)
PSCI_0_2_FN32_MIGRATE_INFO_TYPE = psci_0_2_fn32(6)
PSCI_0_2_FN32_SYSTEM_OFF = psci_0_2_fn32(8)
PSCI_0_2_FN32_SYSTEM_RESET = psci_0_2_fn32(9)
PSCI_1_0_FN32_PSCI_FEATURES = psci_0_2_fn32(10)
PSCI_0_2_FN64_CPU_SUSPEND = psci_0_2_fn64(1)
PSCI_0_2_FN64_CPU_ON = psci_0_2_fn64(3)
PSCI_0_2_FN64_AFFINITY_INFO = psci_0_2_fn64(4)
PSCI_1_0_FN32_SYSTEM_SUSPEND = psci_0_2_fn32(14)
PSCI_1_0_FN64_SYSTEM_SUSPEND = psci_0_2_fn64(14)
#: PSCI 0.1, as Xen numbers it for guests (public/arch-arm.h) and libxl puts in /psci.
PSCI_cpu_off = 1
PSCI_cpu_on = 2

FUNCTION_NAMES = {
    PSCI_0_2_FN32_PSCI_VERSION: "PSCI_VERSION", PSCI_0_2_FN32_CPU_SUSPEND: "CPU_SUSPEND",
    PSCI_0_2_FN64_CPU_SUSPEND: "CPU_SUSPEND", PSCI_0_2_FN32_CPU_OFF: "CPU_OFF", PSCI_0_2_FN32_CPU_ON: "CPU_ON",
    PSCI_0_2_FN64_CPU_ON: "CPU_ON", PSCI_0_2_FN32_AFFINITY_INFO: "AFFINITY_INFO",
    PSCI_0_2_FN64_AFFINITY_INFO: "AFFINITY_INFO", PSCI_0_2_FN32_MIGRATE_INFO_TYPE: "MIGRATE_INFO_TYPE",
    PSCI_0_2_FN32_SYSTEM_OFF: "SYSTEM_OFF", PSCI_0_2_FN32_SYSTEM_RESET: "SYSTEM_RESET",
    PSCI_1_0_FN32_PSCI_FEATURES: "PSCI_FEATURES", PSCI_cpu_off: "PSCI 0.1 cpu_off", PSCI_cpu_on: "PSCI 0.1 cpu_on",
    ARM_SMCCC_VERSION_FID: "SMCCC_VERSION", PSCI_1_0_FN32_SYSTEM_SUSPEND: "SYSTEM_SUSPEND",
    PSCI_1_0_FN64_SYSTEM_SUSPEND: "SYSTEM_SUSPEND",
}
#: do_psci_1_0_features(): what PSCI_FEATURES answers 0 for (SYSTEM_SUSPEND apart: see SUSPEND_FIDS).
FEATURES = frozenset({PSCI_0_2_FN32_PSCI_VERSION, PSCI_0_2_FN32_CPU_SUSPEND, PSCI_0_2_FN64_CPU_SUSPEND,
                      PSCI_0_2_FN32_CPU_OFF, PSCI_0_2_FN32_CPU_ON, PSCI_0_2_FN64_CPU_ON,
                      PSCI_0_2_FN32_AFFINITY_INFO, PSCI_0_2_FN64_AFFINITY_INFO, PSCI_0_2_FN32_MIGRATE_INFO_TYPE,
                      PSCI_0_2_FN32_SYSTEM_OFF, PSCI_0_2_FN32_SYSTEM_RESET, PSCI_1_0_FN32_PSCI_FEATURES,
                      ARM_SMCCC_VERSION_FID})
SUSPEND_FIDS = frozenset({PSCI_1_0_FN32_SYSTEM_SUSPEND, PSCI_1_0_FN64_SYSTEM_SUSPEND})
#: MPIDR_HWID_MASK & AFFINITY_MASK(level) for levels 0-3 (vpsci.c's target_affinity_mask).
TARGET_AFFINITY_MASK = (0xFF00FFFFFF, 0xFF00FFFF00, 0xFF00FF0000, 0xFF00000000)
MPIDR_SMP = 1 << 31


def _cpu(v: Vcpu) -> ArmCpu:
    return cast(ArmCpu, v.cpu)


def vcpuid_to_vaffinity(vcpuid: int) -> int:
    """Aff0 holds 4 bits of the vCPU id (GICv3), Aff1 the next 8 (asm/domain.h)."""
    return (vcpuid & 0x0F) | (((vcpuid >> 4) & 0xFF) << 8)


def vaffinity_to_vcpuid(vaff: int) -> int:
    vaff &= TARGET_AFFINITY_MASK[0]
    return (vaff & 0xFF) | (((vaff >> 8) & 0xFF) << 4)


def vsmccc_handle_call(host, v: Vcpu, syn: X.Syndrome) -> bool:
    """vsmccc_handle_call(): False when the call is not SMCCC (a non-zero immediate): the caller
    injects Undefined. Otherwise the answer is in x0 (and the vCPU may be down or the domain off)."""
    if syn.iss & 0xFFFF:
        return False
    cpu = _cpu(v)
    fid = cpu.x[0] & 0xFFFFFFFF
    conv64 = bool(fid & (1 << 30))

    def arg(n: int) -> int:
        return cpu.x[n] if conv64 else cpu.x[n] & 0xFFFFFFFF

    name = FUNCTION_NAMES.get(fid)
    owner = (fid >> 24) & 0x3F                                   # smccc_get_owner()
    result: int | None = None
    handled = True
    if fid <= ARM_SMCCC_RESERVED_RANGE_END:                     # handle_existing_apis(): PSCI 0.1
        if fid == PSCI_cpu_on:
            result = cpu_on(host, v, cpu.x[1] & 0xFFFFFFFF, cpu.x[2], 0)
            if result in (PSCI_ALREADY_ON, PSCI_INVALID_ADDRESS):
                result = PSCI_INVALID_PARAMETERS
        elif fid == PSCI_cpu_off:
            result = cpu_off(host, v)
        else:
            handled = False
    elif owner == smccc.ARM_SMCCC_OWNER_ARCH:
        handled = smccc.handle_arch(cpu.x, fid)
    elif owner == smccc.ARM_SMCCC_OWNER_HYPERVISOR:
        handled = smccc.handle_generic(cpu.x, fid, owner)
    elif owner == ARM_SMCCC_OWNER_STANDARD and fid & 0xFFFF <= PSCI_FNUM_MAX_VALUE:   # is_psci_fid()
        handled = name is not None
        if handled:
            result = _psci_0_2(host, v, fid, arg)
    elif owner == ARM_SMCCC_OWNER_STANDARD:
        handled = smccc.handle_generic(cpu.x, fid, owner)
    else:
        handled = False
    if not handled:
        host.log(f"d{v.domain.domid}: Unhandled SMC/HVC: {fid:#x}", v)
        result = ARM_SMCCC_ERR_UNKNOWN_FUNCTION
    if result is not None:
        cpu.x[0] = result & M64
    return True


def _psci_0_2(host, v: Vcpu, fid: int, arg) -> int:
    if fid == PSCI_0_2_FN32_PSCI_VERSION:
        return 0x10001                                           # PSCI_VERSION(1, 1)
    if fid == PSCI_0_2_FN32_CPU_OFF:
        return cpu_off(host, v)
    if fid in (PSCI_0_2_FN32_CPU_ON, PSCI_0_2_FN64_CPU_ON):
        return cpu_on(host, v, arg(1), arg(2), arg(3))
    if fid in (PSCI_0_2_FN32_AFFINITY_INFO, PSCI_0_2_FN64_AFFINITY_INFO):
        return affinity_info(v, arg(1), _cpu(v).x[2] & 0xFFFFFFFF)
    if fid in (PSCI_0_2_FN32_CPU_SUSPEND, PSCI_0_2_FN64_CPU_SUSPEND):
        host.block_unless_pending(v, "PSCI CPU_SUSPEND")         # power-down treated as standby
        return PSCI_SUCCESS
    if fid == PSCI_0_2_FN32_MIGRATE_INFO_TYPE:
        return PSCI_0_2_TOS_MP_OR_NOT_PRESENT
    if fid in (PSCI_0_2_FN32_SYSTEM_OFF, PSCI_0_2_FN32_SYSTEM_RESET):
        off = fid == PSCI_0_2_FN32_SYSTEM_OFF
        host.log(f"d{v.domain.domid}: PSCI {'SYSTEM_OFF' if off else 'SYSTEM_RESET'}", v)
        host.shutdown(v.domain, "poweroff" if off else "reboot")
        return PSCI_INTERNAL_FAILURE                             # what x0 holds should it ever run again
    if fid == PSCI_1_0_FN32_PSCI_FEATURES:
        asked = _cpu(v).x[1] & 0xFFFFFFFF
        if asked in SUSPEND_FIDS:
            return PSCI_NOT_SUPPORTED if v.domain.privileged else 0
        return 0 if asked in FEATURES else PSCI_NOT_SUPPORTED
    if fid in SUSPEND_FIDS:
        return suspend.system_suspend(host, v, arg(1), arg(2))
    return ARM_SMCCC_ERR_UNKNOWN_FUNCTION


def cpu_on(host, v: Vcpu, target_cpu: int, entry: int, context_id: int) -> int:
    """do_common_cpu_on(): start a vCPU of the caller's domain that is down."""
    dom = v.domain
    vid = vaffinity_to_vcpuid(target_cpu)
    target = next((w for w in dom.vcpus if w.id == vid), None)
    if target is None:
        return PSCI_INVALID_PARAMETERS
    if entry & 1:
        return PSCI_INVALID_ADDRESS                              # Thumb is not for a 64-bit domain
    if target.runstate != RUNSTATE_OFFLINE:
        return PSCI_ALREADY_ON
    dom.extra.get("lr_pending", {}).pop(vid, None)               # vgic_clear_pending_irqs()
    host.start_vcpu(target, entry & M64, {0: context_id & M64})
    target.runstate = RUNSTATE_RUNNABLE
    host.log(f"d{dom.domid}: PSCI CPU_ON d{dom.domid}v{vid} at {entry:#x}, context {context_id:#x}", v)
    host.emit(target, "sched", op="up", from_dom=dom.domid, from_vcpu=v.id, to_dom=dom.domid, to_vcpu=vid,
              reason=f"PSCI CPU_ON at {entry:#x}")
    host.wake(target, "PSCI CPU_ON")
    return PSCI_SUCCESS


def cpu_off(host, v: Vcpu) -> int:
    """do_psci_cpu_off(): the calling vCPU goes down (_VPF_down) until a CPU_ON."""
    if v.runstate != RUNSTATE_OFFLINE:
        v.runstate = RUNSTATE_OFFLINE
        host.emit(v, "sched", op="down", from_dom=v.domain.domid, from_vcpu=v.id, to_dom=None, to_vcpu=None,
                  reason="PSCI CPU_OFF")
    return PSCI_SUCCESS


def affinity_info(v: Vcpu, target_affinity: int, lowest_level: int) -> int:
    if lowest_level >= len(TARGET_AFFINITY_MASK):
        return PSCI_INVALID_PARAMETERS
    mask = TARGET_AFFINITY_MASK[lowest_level]
    target_affinity &= mask
    for w in v.domain.vcpus:
        if (MPIDR_SMP | vcpuid_to_vaffinity(w.id)) & mask == target_affinity and w.runstate != RUNSTATE_OFFLINE:
            return PSCI_0_2_AFFINITY_LEVEL_ON
    return PSCI_0_2_AFFINITY_LEVEL_OFF


#: The guest's /psci node (libxl_arm.c make_psci_node()).
PSCI_COMPATIBLE = ("arm,psci-1.0", "arm,psci-0.2", "arm,psci")
