"""One host core for both architectures: the run loop, the scheduler and domain control are the same code."""

from __future__ import annotations

from lab.dom0.arm.toolstack import boot_arm_host
from lab.xen.arm.host import ArmHostConfig, ArmXenHost
from lab.xen.host import XenHost
from lab.xen.host_core import HostCore
from test_arm_xen import small_guest


def test_both_hosts_run_on_one_core_and_a_paused_arm_guest_stops_at_once(tmp_path):
    for name in ("run", "run_until", "step", "pause", "shutdown", "crash", "destroy", "_pick", "emit", "charge"):
        assert getattr(XenHost, name) is getattr(ArmXenHost, name) is getattr(HostCore, name), name
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = small_guest(tmp_path, xl, "g", "1:  add x3, x3, #1\n    b 1b\n")
    host.run(500)
    cpu = dom.vcpus[0].cpu
    before = cpu.icount
    host.pause(dom)                       # domain_pause(): its vCPU leaves the pCPU now, not at its slice's end
    host.run(500)
    assert cpu.icount == before and host.current == [None] * len(host.current)
    host.unpause(dom)
    host.run(500)
    assert cpu.icount > before
