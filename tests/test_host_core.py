"""One host core for both architectures: the run loop, the scheduler and domain control are the same code."""

from __future__ import annotations

from lab.dom0.arm.toolstack import boot_arm_host
from lab.xen.arm.host import ArmHostConfig, ArmXenHost
import dataclasses

from lab.xen.host import HostConfig, XenHost
from lab.xen.host_core import HostCore, HostCoreConfig
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


def test_both_configs_share_the_common_keys_and_add_their_own():
    common = {"pcpus", "mem_mib", "cpu_mhz", "timeslice_us", "costs", "conring_size"}
    assert {f.name for f in dataclasses.fields(HostCoreConfig)} == common
    assert {f.name for f in dataclasses.fields(ArmHostConfig)} == common
    assert {f.name for f in dataclasses.fields(HostConfig)} == common | {"vendor", "hvm", "ept"}
    x86, arm = HostConfig(), ArmHostConfig()
    assert (x86.pcpus, arm.pcpus, x86.mem_mib, arm.mem_mib) == (2, 1, 512, 512)
    assert x86.costs is not None and HostConfig(costs=None).costs is not None
    assert HostConfig(hvm=False, ept=True).ept is False          # no VT-x/AMD-V, no HAP
    assert (arm.arch, arm.vendor, arm.ept) == ("arm64", "arm", True)
    assert x86 != HostConfig() and arm == arm                    # by identity: snapshots keep a config as it is
