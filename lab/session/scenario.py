"""Scenario files: a host and the domains to create on it (``machines/*.toml``).

    [host]
    pcpus = 2          # physical CPUs
    memory = 512       # MiB
    vendor = "intel"   # or "amd": VM exits are reported with SVM codes
    ept = true         # hardware-assisted paging present (false: shadow paging only)
    hvm = true         # VT-x / AMD-V present (false: a host for PV guests only)
    cpu_mhz = 2000
    timeslice_us = 1000

    [dom0]
    memory = 64
    vcpus = 1

    [[domain]]
    config = "pv-guest.cfg"      # an xl.cfg file, relative to the scenario

See docs/scenarios.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..dom0.blkback import Blkback
from ..dom0.bridge import Bridge
from ..dom0.netback import Netback
from ..dom0.qemu import DeviceModel
from ..dom0.xenconsoled import ConsoleDaemon
from ..dom0.xenstored import Xenstored
from ..dom0.xsclient import init_dom0
from ..dom0.toolstack import Toolstack
from .. import sources
from ..errors import UserError
from ..hw.costs import CostError, load_costs
from ..paths import MACHINES, display
from ..xen.host import HostConfig, XenHost

DEFAULT_SCENARIO = MACHINES / "default.toml"
_HOST_KEYS = {"pcpus": int, "memory": int, "vendor": str, "ept": bool, "hvm": bool, "cpu_mhz": int, "timeslice_us": int,
              "costs": str, "arch": str}


@dataclass
class Scenario:
    path: Path
    host: HostConfig | None
    dom0_memory: int = 64
    dom0_vcpus: int = 1
    domains: list[Path] = field(default_factory=list)
    #: A bare-metal scenario: {"kernel": path, "program": path, "memory": MiB, "arg": n}
    native: dict | None = None


def _fail(path: Path, msg: str) -> UserError:
    return UserError(f"{display(path)}: {msg}")


def load_scenario(path: Path | str) -> Scenario:
    p = Path(path)
    if not sources.exists(p):
        raise UserError(f"{display(p)}: no such file")
    try:
        data = tomllib.loads(sources.read_text(p))
    except tomllib.TOMLDecodeError as e:
        raise _fail(p, str(e)) from None
    unknown = sorted(set(data) - {"host", "dom0", "domain", "description", "native"})
    if unknown:
        raise _fail(p, f"unknown section '{unknown[0]}' (known: host, dom0, domain, native)")
    if "native" in data:
        nat = data["native"]
        extra = sorted(set(nat) - {"kernel", "program", "memory", "arg", "vendor", "shell"})
        if extra:
            raise _fail(p, f"[native] has no key '{extra[0]}' (known: kernel, program, memory, arg, vendor, shell)")
        if not isinstance(nat.get("shell", False), bool):
            raise _fail(p, f"[native] shell must be true or false, not {nat['shell']!r}")
        if "host" in data or "domain" in data:
            raise _fail(p, "a scenario is either [native] (bare metal) or a Xen host with [[domain]]s, not both")
        if "kernel" not in nat:
            raise _fail(p, "[native] needs kernel = \"kernels/....s\"")
        native = {"kernel": p.parent / nat["kernel"],
                  "program": p.parent / nat["program"] if "program" in nat else None,
                  "memory": nat.get("memory", 64), "vendor": nat.get("vendor", "intel"),
                  # bit 63 of the boot argument: the kernel's shell on COM1 instead of the program
                  "arg": nat.get("arg", 0) | (1 << 63 if nat.get("shell") else 0)}
        return Scenario(p, None, native=native)
    h = data.get("host", {})
    for k, v in h.items():
        if k not in _HOST_KEYS:
            raise _fail(p, f"[host] has no key '{k}' (known: {', '.join(sorted(_HOST_KEYS))})")
        if not isinstance(v, _HOST_KEYS[k]) or (isinstance(v, bool) and _HOST_KEYS[k] is int):
            raise _fail(p, f"[host] {k} must be a {_HOST_KEYS[k].__name__}, not {v!r}")
    arch = h.get("arch", "x86_64")
    if arch not in ("x86_64", "arm64"):
        raise _fail(p, f"[host] arch must be \"x86_64\" or \"arm64\", not {arch!r}")
    vendor = h.get("vendor", "intel")
    if arch == "arm64":
        return _arm_scenario(p, data, h)
    if vendor not in ("intel", "amd"):
        raise _fail(p, f"[host] vendor must be \"intel\" or \"amd\", not {vendor!r}")
    pcpus = h.get("pcpus", 2)
    if not 1 <= pcpus <= 8:
        raise _fail(p, "[host] pcpus must be between 1 and 8")
    memory = h.get("memory", 8192)
    if not 64 <= memory <= 65536:
        raise _fail(p, "[host] memory must be between 64 and 65536 MiB")
    try:
        costs = load_costs((p.parent / h["costs"]) if "costs" in h else None)
    except CostError as e:
        raise UserError(str(e)) from None
    hvm = h.get("hvm", True)
    if not hvm and h.get("ept") is True:
        raise _fail(p, "[host] ept = true needs hvm = true (EPT/NPT are part of VT-x/AMD-V)")
    cfg = HostConfig(pcpus=pcpus, mem_mib=memory, vendor=vendor, ept=h.get("ept", hvm), hvm=hvm,
                     cpu_mhz=h.get("cpu_mhz", 2000), timeslice_us=h.get("timeslice_us", 1000), costs=costs)
    d0 = data.get("dom0", {})
    doms = []
    for i, entry in enumerate(data.get("domain", [])):
        if not isinstance(entry, dict) or "config" not in entry:
            raise _fail(p, f"[[domain]] number {i + 1} needs config = \"FILE.cfg\"")
        doms.append(p.parent / entry["config"])
    return Scenario(p, cfg, d0.get("memory", 64), d0.get("vcpus", 1), doms)


def _arm_scenario(p: Path, data: dict, h: dict) -> Scenario:
    """An Arm host: Xen at EL2 (lab/xen/arm); x86-only keys make no sense there."""
    from ..xen.arm.host import ArmHostConfig
    for k in ("vendor", "ept", "hvm"):
        if k in h:
            raise _fail(p, f"[host] {k} is an x86 key; an arm64 host has stage 2 and no vendor choice")
    try:
        costs = load_costs((p.parent / h["costs"]) if "costs" in h else None)
    except CostError as e:
        raise UserError(str(e)) from None
    pcpus, memory = h.get("pcpus", 1), h.get("memory", 512)
    if not 1 <= pcpus <= 8 or not 128 <= memory <= 65536:
        raise _fail(p, "[host] an arm64 host has 1-8 pcpus and 128-65536 MiB of memory")
    cfg = ArmHostConfig(pcpus=pcpus, mem_mib=memory, cpu_mhz=h.get("cpu_mhz", 2000),
                        timeslice_us=h.get("timeslice_us", 1000), costs=costs)
    d0 = data.get("dom0", {})
    doms = []
    for i, entry in enumerate(data.get("domain", [])):
        if not isinstance(entry, dict) or "config" not in entry:
            raise _fail(p, f"[[domain]] number {i + 1} needs config = \"FILE.cfg\"")
        doms.append(p.parent / entry["config"])
    return Scenario(p, cfg, d0.get("memory", 64), 1, doms)


def boot_host(host_config: HostConfig | None = None, dom0_memory: int = 64, dom0_vcpus: int = 1,
              keep_trace: bool = True) -> tuple[XenHost, Toolstack]:
    """Xen with Domain-0 and its services running, and no guests yet."""
    if getattr(host_config, "arch", "x86_64") == "arm64":
        from ..dom0.arm.toolstack import boot_arm_host
        return boot_arm_host(host_config, dom0_memory, keep_trace)     # type: ignore[return-value]
    host = XenHost(host_config, keep_trace=keep_trace)
    dom0 = host.new_domain("Domain-0", "pv", dom0_memory << 8, dom0_vcpus, privileged=True, domid=0)
    for vid in range(dom0_vcpus):
        host.new_vcpu(dom0, vid, None)          # dom0's work is the lab's services, in Python
    host.services.add(ConsoleDaemon(host))
    DeviceModel.install(host)                   # QEMU for HVM guests' emulated devices
    xenstored = Xenstored.install(host)
    init_dom0(xenstored)
    Bridge.install(host)                        # xenbr0: vifs and emulated NICs
    Blkback.install(host)                       # PV backends: watch backend/vbd and backend/vif
    Netback.install(host)
    xl = Toolstack(host)
    host.toolstack = xl
    return host, xl


def start_scenario(scenario: Scenario, keep_trace: bool = True) -> tuple[XenHost, Toolstack]:
    host, xl = boot_host(scenario.host, scenario.dom0_memory, scenario.dom0_vcpus, keep_trace)
    for cfg in scenario.domains:
        xl.create(cfg)
    return host, xl
