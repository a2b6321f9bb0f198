"""PSCI SYSTEM_SUSPEND for guests, and the resume that follows (``xen/arch/arm/vpsci.c``).

``do_psci_1_0_system_suspend(entry point, context id)``: a Thumb entry point is
INVALID_ADDRESS for a 64-bit domain; the hardware domain may not (NOT_SUPPORTED:
it would suspend the host); every vCPU but the caller must be off (DENIED
otherwise). Then the context the caller will wake in is built as for CPU_ON
(``vpsci_build_guest_context()``: the entry point, x0 the context id, MMU off,
PSR_GUEST64_INIT), kept in the domain's resume context, and the domain shuts
down with reason *suspend*; the call returns PSCI_SUCCESS (0), which the guest
only sees if it is resumed without that context.

``xl resume`` (XEN_DOMCTL_resumedomain, ``domain_resume()``) brings the domain
back: ``arch_domain_resume()`` (``xen/arch/arm/domain.c``) applies the kept
context to the vCPU that suspended, which starts at the entry point, and frees
it. A domain that suspended by SCHEDOP_shutdown has no such context: its
vCPU 0 simply goes on after its hypercall (the lab's vCPUs other than the first
stay off, which is the usual case).
"""

from __future__ import annotations

from ..domain import RUNNING, RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, SHUTDOWN

PSCI_SUCCESS = 0
PSCI_NOT_SUPPORTED = -1
PSCI_DENIED = -3
PSCI_INVALID_ADDRESS = -9


def system_suspend(host, v, entry: int, context_id: int) -> int:
    dom = v.domain
    if entry & 1:
        return PSCI_INVALID_ADDRESS                  # THUMB set is not allowed with 64-bit domain
    if dom.privileged:
        return PSCI_NOT_SUPPORTED                    # not for the hardware domain
    if any(w is not v and w.runstate != RUNSTATE_OFFLINE for w in dom.vcpus):
        return PSCI_DENIED                           # every other vCPU must be off first
    dom.extra["resume_ctx"] = (v.id, entry, context_id)
    host.log(f"d{dom.domid}: SYSTEM_SUSPEND requested, epoint={entry:#x}, cid={context_id:#x}", v)
    host.shutdown(dom, "suspend")
    return PSCI_SUCCESS


def domain_resume(host, dom) -> bool:
    """XEN_DOMCTL_resumedomain: False when the domain is not suspended (nothing to do)."""
    if dom.state != SHUTDOWN or dom.shutdown_reason != "suspend":
        return False
    dom.state = RUNNING
    dom.shutdown_reason = None
    ctx = dom.extra.pop("resume_ctx", None)
    if ctx is not None:
        vid, entry, context_id = ctx
        waker = next(w for w in dom.vcpus if w.id == vid)
        host.start_vcpu(waker, entry, {0: context_id})   # arch_vcpu_apply_guest_context()
    else:
        waker = dom.vcpus[0]
    waker.runstate = RUNSTATE_BLOCKED                    # woken below, with its trace event
    host.log(f"d{dom.domid}: resumed" + (f" at {ctx[1]:#x} (PSCI SYSTEM_SUSPEND's entry point)" if ctx else ""))
    host.emit(None, "domain", op="resume", name=dom.name, state=RUNNING, reason="suspend")
    host.wake(waker, "domain resumed")
    return True
