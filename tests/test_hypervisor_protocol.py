"""The CPU's one interface to the hypervisor that runs it: lab.hw.hypervisor.Hypervisor."""

from __future__ import annotations

import inspect

from lab.hw.cpu import CodeCache, Cpu
from lab.hw.hypervisor import Hypervisor
from lab.hw.memory import MachineMemory
from lab.xen.host import XenHost

ENTRIES = sorted(name for name in vars(Hypervisor) if name.startswith("on_"))


def test_the_protocol_names_every_root_mode_entry_the_cpu_makes():
    calls = {name for name in ENTRIES if f"self.host.{name}(" in inspect.getsource(Cpu)}
    assert calls == set(ENTRIES) == {"on_cpu_stop", "on_exception", "on_interrupt", "on_softint", "on_syscall",
                                     "on_vmexit"}


def test_xen_implements_the_protocol_with_its_signatures():
    for name in ENTRIES:
        want = list(inspect.signature(getattr(Hypervisor, name)).parameters)
        assert list(inspect.signature(getattr(XenHost, name)).parameters) == want, name


def test_attach_wires_host_vcpu_and_emitter_and_a_stop_reaches_the_host():
    stops = []

    class Recorder:
        def on_cpu_stop(self, cpu, reason):
            stops.append((cpu.vcpu, reason))

    mem = MachineMemory(1 << 20)
    cpu = Cpu(mem, None, CodeCache(mem, lambda insn: 1))
    assert cpu.host is None and cpu.shadow_cr3 is None
    events = []
    cpu.attach(Recorder(), "d1v0", lambda kind, **data: events.append(kind))   # type: ignore[arg-type]
    cpu.stop("triple fault")
    assert stops == [("d1v0", "triple fault")] and events == ["halt"]


def test_dom0s_services_are_found_by_role_and_told_of_domains_in_the_order_they_started():
    from lab.xen.services import Dom0Services
    told = []

    class Svc:
        def __init__(self, name):
            self.name = name

        def domain_shutdown(self, dom):
            told.append(("shutdown", self.name, dom))

        def domain_gone(self, dom):
            told.append(("gone", self.name, dom))

    services = Dom0Services()
    for name in ("xenconsoled", "blkback", "xenstored", "device_model"):
        services.add(Svc(name))
    assert services.xenconsoled.name == "xenconsoled" and services.device_model.name == "device_model"
    assert services.bridge is None and list(services.backends) == ["blkback"]
    assert [svc.name for svc in services.in_start_order()] == ["xenconsoled", "blkback", "xenstored", "device_model"]
    for svc in services.in_start_order():
        svc.domain_gone("d3")
    assert [name for _, name, _ in told] == ["xenconsoled", "blkback", "xenstored", "device_model"]


def test_x86_and_arm_share_one_scheduler_each_supplying_only_how_its_cpu_is_kicked():
    from lab.xen.arm.host import ArmXenHost
    from lab.xen.scheduler import Scheduler
    for name in ("block", "wake", "runnable", "queue_dom0_work"):
        assert getattr(XenHost, name) is getattr(ArmXenHost, name) is getattr(Scheduler, name), name
    assert "_kick" in vars(XenHost) and "_kick" in vars(ArmXenHost) and "_kick" not in vars(Scheduler)
