"""Domain control: pausing, shutting down, crashing and destroying a domain (xen/common/domain.c).

A part of the host core (``lab/xen/host_core.py``): what ``domain_pause()``,
``domain_shutdown()``, ``domain_crash()`` and ``domain_kill()`` do to a
domain's vCPUs, its resources and dom0's services, which are told of it. How a
destroyed domain's memory goes back to Xen is the architecture's
(``_release_domain``).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable

from .domain import CRASHED, DYING, RUNSTATE_OFFLINE, SHUTDOWN, Domain, Vcpu
from .services import Dom0Services


class DomainControl:
    # What it uses of the host (declared here, defined there).
    domains: dict[int, Domain]
    current: list[Vcpu | None]
    services: Dom0Services
    evtchn: Any
    emit: Callable[..., Any]
    log: Callable[..., None]
    _deschedule: Callable[[int, str], None]
    _kick: Callable[[Vcpu], None]
    #: Whether dom0's services hear of a domain's shutdown or crash (``domain_shutdown``) before
    #: its destruction. The lab's Arm dom0 hears of it only at destroy; Xen tells dom0 on every
    #: architecture (VIRQ_DOM_EXC, xen/common/domain.c), a step the Arm services have still to take.
    services_see_shutdown = True

    def pause(self, dom: Domain) -> None:
        dom.pause_count += 1
        for v in dom.vcpus:
            self._kick(v)
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
        self._tell_services_of_shutdown(dom)
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
        self._tell_services_of_shutdown(dom)
        if getattr(dom.config, "on_crash", "preserve") == "destroy" and not dom.privileged:
            self.destroy(dom)

    def destroy(self, dom: Domain) -> None:
        """domain_kill(): the domain's vCPUs stop, its ports close, its memory goes back to Xen."""
        if dom.domid not in self.domains:
            return
        dom.state = DYING
        self._drop_from_pcpus(dom)
        self.evtchn.remove_domain(dom)
        self._release_domain(dom)
        self.log(f"d{dom.domid}: destroyed")
        self.emit(None, "domain", op="destroy", name=dom.name, state=DYING, reason=None)

    @abstractmethod
    def _release_domain(self, dom: Domain) -> None:
        """The architecture's part of domain_kill(): the domain's frames go back to Xen (or wait
        for the last domain that maps them), it leaves the host's domains, and dom0's services and
        the grant tables let go of it."""

    def _tell_services_of_shutdown(self, dom: Domain) -> None:
        if self.services_see_shutdown:
            for svc in self.services.in_start_order():
                svc.domain_shutdown(dom)

    def _drop_from_pcpus(self, dom: Domain) -> None:
        for v in dom.vcpus:
            self._kick(v)                       # leave the CPU loop at the next block boundary
        for p, v in enumerate(self.current):
            if v is not None and v.domain is dom:
                self._deschedule(p, "domain stopped")
