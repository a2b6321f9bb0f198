"""Domain control: pausing, shutting down, crashing and destroying a domain (xen/common/domain.c).

A part of the host (``XenHost`` inherits it): what ``domain_pause()``,
``domain_shutdown()``, ``domain_crash()`` and ``domain_kill()`` do to a
domain's vCPUs, its resources and dom0's services, which are told of it.
"""

from __future__ import annotations

from typing import Any, Callable

from .domain import CRASHED, DYING, RUNSTATE_OFFLINE, SHUTDOWN, Domain, Vcpu
from .services import Dom0Services


class DomainControl:
    # What it uses of the host (declared here, defined there).
    domains: dict[int, Domain]
    current: list[Vcpu | None]
    services: Dom0Services
    evtchn: Any
    mm: Any
    grant_tables: Any
    emit: Callable[..., Any]
    log: Callable[..., None]
    free_frame: Callable[[int], None]
    _deschedule: Callable[[int, str], None]

    def pause(self, dom: Domain) -> None:
        dom.pause_count += 1
        for v in dom.vcpus:
            if v.cpu is not None:
                v.cpu.yield_now = True
        self.emit(None, "domain", op="pause", name=dom.name, state="paused", reason=None)
        for p, v in enumerate(self.current):
            if v is not None and v.domain is dom:
                self._deschedule(p, "paused")

    def unpause(self, dom: Domain) -> None:
        if dom.pause_count:
            dom.pause_count -= 1
        self.emit(None, "domain", op="unpause", name=dom.name, state=dom.state, reason=None)

    def shutdown(self, dom: Domain, reason: str) -> None:
        """SCHEDOP_shutdown: the guest asked to stop (poweroff, reboot, crash ...)."""
        if not dom.alive:
            return
        dom.state = SHUTDOWN
        dom.shutdown_reason = reason
        for v in dom.vcpus:
            v.runstate = RUNSTATE_OFFLINE
        self._drop_from_pcpus(dom)
        self.log(f"d{dom.domid}: shutdown: {reason}")
        self.emit(None, "domain", op="shutdown", name=dom.name, state=SHUTDOWN, reason=reason)
        for svc in self.services.in_start_order():
            svc.domain_shutdown(dom)
        action = getattr(dom.config, f"on_{'poweroff' if reason == 'poweroff' else reason}", None) \
            if reason in ("poweroff", "reboot", "crash") else None
        if action == "destroy" and not dom.privileged:
            self.destroy(dom)

    def crash(self, dom: Domain, why: str, vcpu: Vcpu | None = None) -> None:
        """domain_crash(): this domain alone stops; the host goes on."""
        if not dom.alive:
            return
        self.log(f"domain_crash called: {why}", vcpu)
        dom.state = CRASHED
        dom.crash_reason = why
        dom.shutdown_reason = "crash"
        for v in dom.vcpus:
            v.runstate = RUNSTATE_OFFLINE
        self._drop_from_pcpus(dom)
        self.emit(vcpu, "domain", op="crash", name=dom.name, state=CRASHED, reason=why)
        for svc in self.services.in_start_order():
            svc.domain_shutdown(dom)
        if getattr(dom.config, "on_crash", "preserve") == "destroy" and not dom.privileged:
            self.destroy(dom)

    def destroy(self, dom: Domain) -> None:
        if dom.domid not in self.domains:
            return
        dom.state = DYING
        self._drop_from_pcpus(dom)
        self.evtchn.remove_domain(dom)
        self.mm.destroy_domain(dom.domid)
        pool = dom.extra.get("paging_pool")
        if pool is not None:
            pool.release_all()                               # its EPT or shadow tables (paging_teardown)
        for mfn in sorted((set(dom.p2m) | set(dom.extra.get("frames", []))) - {None}):   # None: a hole
            if self.mm.pv.pages[mfn].owner is None:          # nothing holds it any more
                self.free_frame(mfn)
            else:
                self.mm.orphans.add(mfn)                     # freed when its last holder lets go
        del self.domains[dom.domid]
        for svc in self.services.in_start_order():
            svc.domain_gone(dom)
        self.grant_tables.domain_gone(dom)        # gnttab_release_mappings(), after dom0's services let go
        self.log(f"d{dom.domid}: destroyed")
        self.emit(None, "domain", op="destroy", name=dom.name, state=DYING, reason=None)

    def _drop_from_pcpus(self, dom: Domain) -> None:
        for v in dom.vcpus:
            if v.cpu is not None:
                v.cpu.yield_now = True          # leave the CPU loop at the next block boundary
        for p, v in enumerate(self.current):
            if v is not None and v.domain is dom:
                self._deschedule(p, "domain stopped")
