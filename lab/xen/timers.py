"""Timers: vCPU single-shot and periodic timers, and HVM guests' emulated PIT."""

from __future__ import annotations

from . import abi


def fire(host, now: int) -> None:
    """Fire every vCPU timer due by ``now`` (VIRQ_TIMER, or a plain wake-up)."""
    # Called on every scheduling round, and almost always nothing is due: one pass
    # that changes nothing decides that, and only a round with something due pays
    # for the ordered pass below (which may then change state as it goes).
    for dom in host.domains.values():
        if not dom.alive:
            continue
        for v in dom.vcpus:
            deadline = v.timer_deadline
            if deadline is not None and deadline <= now:
                break
        else:
            devices = dom.devices
            pit = devices.get("vpit")
            if pit is None:
                continue
            pic = devices.get("vpic")
            if pic is None or not (pic.waiting or (pit.running and pit.next_fire() <= now)):
                continue
        break
    else:
        return
    for dom in sorted(host.domains.values(), key=lambda d: d.domid):
        if not dom.alive:
            continue
        for v in dom.vcpus:
            if v.timer_deadline is not None and v.timer_deadline <= now:
                if v.periodic_period:
                    v.timer_deadline += v.periodic_period
                else:
                    v.timer_deadline = None
                if not host.evtchn.send_virq(dom.domid, abi.VIRQ_TIMER, v.id):
                    host.wake(v, "timer")
        tick_devices(host, dom, now)


def tick_devices(host, dom, now: int) -> None:
    """The emulated PIT of an HVM guest raises IRQ 0 on its emulated PIC."""
    pit = dom.devices.get("vpit")
    pic = dom.devices.get("vpic")
    if pit is None or pic is None:
        return
    if pit.tick(now, pic.raise_irq):
        host.emit(dom.vcpus[0], "interrupt", vector=pic.vector_base, source="vpit")
    if pic.waiting:
        for v in dom.vcpus:
            if v.cpu is not None and v.blocked and v.cpu.rflags & (1 << 9):
                v.cpu.halted = False
                host.wake(v, "interrupt")
