"""Which HVM params a guest may set or read, and the checks on their values.

A guest's HVMOP_set_param / HVMOP_get_param on itself pass the default XSM
policy (XSM_TARGET), so Xen filters them by index (``hvm_allow_set_param()``,
``hvm_allow_get_param()`` and ``hvm_set_param()`` in
``xen/arch/x86/hvm/hvm.c``): a guest may set only the few params that are
its own business (its callback, its xenstore and console event channels,
...); the rest are the toolstack's or the device model's and answer -EPERM
to the domain itself; deprecated ones are -EINVAL for everybody; some may be
set only once (-EEXIST). The control domain, acting on a guest, passes the
index filter.
"""

from __future__ import annotations

from . import abi

E = abi.ERRNO

GUEST_SETTABLE = frozenset((
    abi.HVM_PARAM_CALLBACK_IRQ, abi.HVM_PARAM_VM86_TSS, abi.HVM_PARAM_VM86_TSS_SIZED,
    abi.HVM_PARAM_ACPI_IOPORTS_LOCATION, abi.HVM_PARAM_VM_GENERATION_ID_ADDR, abi.HVM_PARAM_STORE_EVTCHN,
    abi.HVM_PARAM_CONSOLE_EVTCHN, abi.HVM_PARAM_X87_FIP_WIDTH,
))
GUEST_READABLE = GUEST_SETTABLE | frozenset((
    abi.HVM_PARAM_STORE_PFN, abi.HVM_PARAM_CONSOLE_PFN, abi.HVM_PARAM_ALTP2M,
))
DEPRECATED = frozenset((
    abi.HVM_PARAM_PAE_ENABLED, abi.HVM_PARAM_DM_DOMAIN, abi.HVM_PARAM_MEMORY_EVENT_CR0,
    abi.HVM_PARAM_MEMORY_EVENT_CR3, abi.HVM_PARAM_MEMORY_EVENT_CR4, abi.HVM_PARAM_MEMORY_EVENT_INT3,
    abi.HVM_PARAM_NESTEDHVM, abi.HVM_PARAM_MEMORY_EVENT_SINGLE_STEP, abi.HVM_PARAM_BUFIOREQ_EVTCHN,
    abi.HVM_PARAM_MEMORY_EVENT_MSR,
))
#: Params that may be changed once only (from 0 to their value).
SET_ONCE = frozenset((
    abi.HVM_PARAM_VIRIDIAN, abi.HVM_PARAM_IOREQ_PFN, abi.HVM_PARAM_BUFIOREQ_PFN, abi.HVM_PARAM_IOREQ_SERVER_PFN,
    abi.HVM_PARAM_NR_IOREQ_SERVER_PAGES, abi.HVM_PARAM_MCA_CAP,
))


def allow_set(caller, target, index: int, value: int) -> int:
    """hvm_allow_set_param(): 0, or Xen's errno as a negative number."""
    if index == abi.HVM_PARAM_ALTP2M:
        return -E["EEXIST"]                  # read-only
    if index in DEPRECATED:
        return -E["EINVAL"]
    if index not in GUEST_SETTABLE and target is caller:
        return -E["EPERM"]
    old = target.hvm_params.get(index, 0)
    if index in SET_ONCE and old != 0 and value != old:
        return -E["EEXIST"]
    return 0


def check_value(caller, target, index: int, value: int) -> tuple[int, bool]:
    """hvm_set_param()'s checks of the value: (errno or 0, whether a guest setting it on itself
    is crashed for it, as for a VM86 TSS that does not fit)."""
    if index == abi.HVM_PARAM_TIMER_MODE and value > abi.HVMPTM_one_missed_tick_pending:
        return -E["EINVAL"], False
    if index == abi.HVM_PARAM_TRIPLE_FAULT_REASON and value > abi.SHUTDOWN_MAX:
        return -E["EINVAL"], False
    if index == abi.HVM_PARAM_X87_FIP_WIDTH and value not in (0, 4, 8):
        return -E["EINVAL"], False
    if index == abi.HVM_PARAM_NR_IOREQ_SERVER_PAGES and not 0 < value <= 64:
        return -E["EINVAL"], False
    if index == abi.HVM_PARAM_VM86_TSS and value != value & 0xFFFF_FFFF:
        return -E["EINVAL"], target is caller
    if index == abi.HVM_PARAM_VM86_TSS_SIZED and (value >> 32) < 104:     # sizeof(struct tss32)
        return -E["EINVAL"], target is caller
    if index == abi.HVM_PARAM_ACPI_IOPORTS_LOCATION:
        old = target.hvm_params.get(index, 0)
        if value != old and value ^ old != 1:
            return -E["EINVAL"], False          # pmtimer_change_ioport(): between versions 0 and 1 only
    if index == abi.HVM_PARAM_ACPI_S_STATE and value not in (0, 3):
        return -E["EINVAL"], False
    return 0, False


def allow_get(caller, target, index: int) -> int:
    """hvm_allow_get_param(): 0, or Xen's errno as a negative number."""
    if index in DEPRECATED:
        return -E["EINVAL"]
    if index not in GUEST_READABLE and target is caller:
        return -E["EPERM"]
    return 0
