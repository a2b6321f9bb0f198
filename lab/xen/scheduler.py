"""The scheduler: which vCPU runs on a pCPU next, and vCPUs blocking and waking (credit2, simplified).

A part of the host core (``lab/xen/host_core.py``); the run loop asks it for
the next vCPU of a pCPU (``_pick``) and tells it when one leaves (``_deschedule``).
"""

from __future__ import annotations

from typing import Any, Callable

from .domain import RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING, Domain, Vcpu


class Scheduler:
    # What it uses of the host (declared here, defined there).
    domains: dict[int, Domain]
    current: list[Vcpu | None]
    clock: list[int]
    slice_end: list[int]
    timeslice: int
    running_pcpu: int | None
    dom0_work: list[tuple[str, Callable[[], int]]]
    emit: Callable[..., Any]
    #: The architecture's part: make ``v``'s CPU leave its run loop soon, so the scheduler runs.
    _kick: Callable[[Vcpu], None]
    #: Whether a vCPU's processor time and its pCPU's meet when it is switched in and out
    #: (x86); on Arm they meet where the guest is entered and left (its ``_run_guest``).
    time_meets_at_switch = True

    # -- vCPU state changes -----------------------------------------------------
    def block(self, v: Vcpu, why: str) -> None:
        v.runstate = RUNSTATE_BLOCKED
        self.emit(v, "sched", op="block", from_dom=v.domain.domid, from_vcpu=v.id, to_dom=None, to_vcpu=None,
                  reason=why)
        self._kick(v)

    def wake(self, v: Vcpu, why: str) -> None:
        """Make a blocked vCPU runnable, as credit2's wake-up does (csched2_unit_wake).

        A vCPU that was blocked burned no credit, so it goes ahead of the ones
        that used up their time (``boost``), and, as ``runq_tickle()`` does when
        no pCPU is idle, the pCPU doing the waking is preempted: an I/O-bound
        vCPU (dom0's backends) runs soon after its event.
        """
        if v.runstate == RUNSTATE_BLOCKED and v.domain.alive:
            v.runstate = RUNSTATE_RUNNABLE
            v.boost = True
            self.emit(v, "sched", op="wake", from_dom=None, from_vcpu=None, to_dom=v.domain.domid, to_vcpu=v.id,
                      reason=why)
            if all(cur is not None for cur in self.current) and self.running_pcpu is not None:
                p = self.running_pcpu
                self.slice_end[p] = 0
                cur = self.current[p]
                if cur is not None:
                    self._kick(cur)

    def queue_dom0_work(self, label: str, fn: Callable[[], int]) -> None:
        """Work for a dom0 service, run on dom0's vCPU when the scheduler gets to it."""
        self.dom0_work.append((label, fn))
        dom0 = self.domains.get(0)
        if dom0 is not None:
            for v in dom0.vcpus:
                self.wake(v, f"work: {label}")
                break

    # -- scheduling ---------------------------------------------------------------
    def runnable(self) -> list[Vcpu]:
        out = []
        for d in sorted(self.domains.values(), key=lambda d: d.domid):
            if not d.alive or d.pause_count:
                continue
            for v in d.vcpus:
                if v.runstate == RUNSTATE_RUNNABLE:
                    out.append(v)
        return out

    def _vcpu_scheduled(self, v: Vcpu) -> None:
        """The architecture's work when a vCPU goes onto a pCPU (its timers, its time record)."""

    def _vcpu_descheduled(self, v: Vcpu) -> None:
        """The architecture's work when a vCPU leaves its pCPU."""

    def _deschedule(self, p: int, why: str) -> None:
        v = self.current[p]
        if v is None:
            return
        if self.time_meets_at_switch and v.cpu is not None:
            self.clock[p] = max(self.clock[p], v.cpu.cycles)
        if v.runstate == RUNSTATE_RUNNING:
            v.runstate = RUNSTATE_RUNNABLE
        self.current[p] = None
        self._vcpu_descheduled(v)

    def _pick(self, p: int) -> Vcpu | None:
        cands = self.runnable()
        if not cands:
            return None
        # credit2 order, approximated: just woken first, then least recently run (most credit); ties by domain
        # then vCPU id, so the choice is deterministic.
        cands.sort(key=lambda v: (not v.boost, v.last_scheduled, v.domain.domid, v.id))
        v = cands[0]
        v.boost = False
        prev = self.current[p]
        v.runstate = RUNSTATE_RUNNING
        v.pcpu = p
        v.last_scheduled = self.clock[p] + 1
        self.current[p] = v
        self.slice_end[p] = self.clock[p] + self.timeslice
        if self.time_meets_at_switch and v.cpu is not None:
            v.cpu.cycles = max(v.cpu.cycles, self.clock[p])     # it starts no earlier than the pCPU's time
        self.emit(v, "sched", op="switch", from_dom=prev.domain.domid if prev else None,
                  from_vcpu=prev.id if prev else None, to_dom=v.domain.domid, to_vcpu=v.id, reason="timeslice")
        self._vcpu_scheduled(v)
        return v
