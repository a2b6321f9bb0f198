"""``xl`` on an Arm host: the same commands, Xen on Arm's answers.

``xl create`` reads the same xl.cfg. There is no ``type`` to choose (Arm has
one guest type, which xl calls "pvh"; any other type is refused), a
``kernel`` and, in a real setup, a device tree; here the toolstack builds the
device tree itself, as libxl does (``libxl_arm.c``), loads the kernel at
GUEST_RAM0_BASE + 0x80000 and starts vCPU 0 at EL1 with x0 pointing at the
tree (Linux's arm64 boot protocol). The lab also passes its user program's
entry in x1 and the workload's rounds in x2, which Linux keeps zero (bit 63 of x2:
"shell" on the command line, the kernel's shell instead of the program).
"""

from __future__ import annotations

from collections.abc import Sequence

from pathlib import Path

from ... import sources
from ...errors import UserError
from ...isa.errors import AsmError
from ...isa.cache import assemble_file_cached
from ...isa.image import Image
from ...paths import MACHINES, display
from ...xen import abi
from ...xen.arm import layout as L
from ...xen.arm.devicetree import flatten, guest_tree
from ...xen.arm.host import ArmXenHost
from ...xen.domain import Domain
from ...xen.host import XEN_VERSION
from ...xen.arm.frames import attach_dom0_stage2
from ..blkback import Blkback
from ..bridge import Bridge
from ..netback import Netback
from ..toolstack import SHELL_FLAG, refuse_domain_create
from ..xsclient import add_disk, add_nic, init_dom0, write_domain_home
from ..xlcfg import ConfigError, DomainConfig, load_config, parse_settings
from ..xlformat import (DomainRow, HostInfo, VcpuRow, format_dmesg, format_info, format_list, format_vcpu_list,
                        state_string)
from .services import ArmConsoleBackend, ArmXenstored

ARM_MACHINES = MACHINES / "arm"
DEFAULT_KERNEL = ARM_MACHINES / "kernel.s"
DEFAULT_PROGRAM = ARM_MACHINES / "workload.s"
#: Where the tree goes: 2 MiB below the top of RAM (libxl places it high in the first bank).
DTB_FROM_TOP = 2 << 20


def assemble(path: Path) -> Image:
    if not sources.exists(path):
        raise UserError(f"{display(path)}: no such file")
    try:
        return assemble_file_cached(path, include_dirs=[ARM_MACHINES])
    except AsmError as e:
        raise UserError(str(e)) from None


def boot_arm_host(config, dom0_memory: int = 64, keep_trace: bool = True) -> tuple[ArmXenHost, "ArmToolstack"]:
    """Xen on Arm with Domain-0 (its services in Python) and no guests yet."""
    host = ArmXenHost(config, keep_trace=keep_trace)
    dom0 = host.new_domain("Domain-0", dom0_memory << 8, 1, privileged=True, domid=0)
    attach_dom0_stage2(host, dom0)
    host.new_vcpu(dom0, 0)
    host.services.add(ArmConsoleBackend(host))
    xenstored = ArmXenstored.install(host)
    init_dom0(xenstored)
    Bridge.install(host)                            # xenbr0, and the same PV backends as on x86
    Blkback.install(host)
    Netback.install(host)
    xl = ArmToolstack(host)
    host.toolstack = xl                             # type: ignore[attr-defined]
    return host, xl


class ArmToolstack:
    def __init__(self, host: ArmXenHost) -> None:
        self.host = host
        self.warnings: list[str] = []
        self._images: dict[str, Image] = {}
        self.device_trees: dict[int, bytes] = {}

    def _image(self, path: Path) -> Image:
        key = str(path.resolve())
        if key not in self._images:
            self._images[key] = assemble(path)
        return self._images[key]

    def load(self, cfg: str | Path, base: Path | None = None) -> DomainConfig:
        path = Path(cfg)
        if not sources.exists(path) and base is not None and sources.exists(base / path):
            path = base / path
        if not sources.exists(path):
            raise UserError(f"{display(path)}: no such file")
        text = sources.read_text(path)
        try:
            settings = parse_settings(text, display(path))
            typ = settings.get("type")
            if typ is not None and str(typ.value.python()) != "pvh":
                raise UserError(f"{display(path)}:{typ.line}: type = {typ.value.python()!r}: Xen on Arm has one "
                                "guest type, \"pvh\" (leave type out, or write type = \"pvh\")")
            conf = load_config(text if typ is not None else text + '\ntype = "pvh"\n', display(path))
        except ConfigError as e:
            raise UserError(str(e)) from None
        conf.filename = str(path)
        self.warnings += conf.warnings
        return conf

    def _find_file(self, conf: DomainConfig, name: str | None, default: Path) -> Path:
        if not name:
            return default
        for candidate in (Path(name), Path(conf.filename).parent / name, ARM_MACHINES / Path(name).name):
            if candidate.suffix == ".s" and sources.exists(candidate):
                return candidate
        raise UserError(f"{display(Path(conf.filename))}: '{name}' is not an Arm kernel source (.s) of the lab")

    def create(self, cfg: str | Path, base: Path | None = None) -> Domain:
        conf = self.load(cfg, base)
        host = self.host
        if host.domain_by_name(conf.name) is not None:
            raise UserError(f"a domain named '{conf.name}' already exists")
        kernel_path = self._find_file(conf, conf.kernel, DEFAULT_KERNEL)
        program_path = self._find_file(conf, conf.lab_program, DEFAULT_PROGRAM)
        kernel, program = self._image(kernel_path), self._image(program_path)
        rounds = 0
        for word in (conf.cmdline or "").split():
            if word.startswith("rounds=") and word[7:].isdigit():
                rounds |= int(word[7:]) & ((1 << 63) - 1)
            elif word == "shell":
                rounds |= SHELL_FLAG              # the kernel starts its shell on the console
        pages = conf.memory << 8
        if pages + L.NR_MAGIC_PAGES + 64 > host.free_pages:
            raise UserError(f"{conf.filename}: not enough free memory for {conf.name}: {conf.memory} MiB wanted, "
                            f"{host.free_pages >> 8} MiB free")
        if conf.memory < 8:
            raise UserError(f"{conf.filename}: memory = {conf.memory}: an Arm guest of the lab needs at least 8 MiB")
        if 0 <= conf.max_grant_frames < abi.INITIAL_NR_GRANT_FRAMES:
            host.log(f"common/grant_table.c:2016: Bad grant table size: {conf.max_grant_frames} frames")
            refuse_domain_create()
        dom = host.new_domain(conf.name, pages, conf.vcpus, config=conf, max_grant_frames=conf.max_grant_frames)
        ram_end = L.GUEST_RAM0_BASE + (pages << 12)
        for image, path, what in ((kernel, kernel_path, "kernel"), (program, program_path, "program")):
            for sec in image.sections:
                if not sec.data:
                    continue
                if not (L.GUEST_RAM0_BASE <= sec.base and sec.base + len(sec.data) <= ram_end - DTB_FROM_TOP):
                    host.destroy(dom)
                    raise UserError(f"{display(path)}: the {what} at {sec.base:#x} is outside the guest's RAM "
                                    f"({L.GUEST_RAM0_BASE:#x}-{ram_end - DTB_FROM_TOP:#x}, below its device tree)")
                host.write_guest(dom, sec.base, bytes(sec.data))
        dom.images["kernel"] = kernel
        dom.images["program"] = program
        tree = flatten(guest_tree(xen_version=(XEN_VERSION[0], XEN_VERSION[1]), ram_base=L.GUEST_RAM0_BASE,
                                  ram_size=pages << 12, bootargs=conf.cmdline or "", nr_cpus=conf.vcpus))
        dtb = ram_end - DTB_FROM_TOP
        host.write_guest(dom, dtb, tree)
        self.device_trees[dom.domid] = tree
        host.services.xenconsoled.connect(dom)
        xs = host.services.xenstored
        xs.connect(dom, dom.store_pfn)
        # As libxl does: the domain's home, its console, then a frontend/backend pair per device.
        home = write_domain_home(xs, dom)
        for key, value in (("console/ring-ref", dom.console_pfn), ("console/port", dom.console_evtchn)):
            xs.dom0_request("WRITE", f"{home}/{key}", str(value))
        for disk in conf.disks:
            add_disk(xs, dom, disk)
        for vif in conf.vifs:
            add_nic(xs, dom, vif)
        entry = kernel.entry or kernel.symbols.get("_start", L.GUEST_RAM0_BASE + L.KERNEL_TEXT_OFFSET)
        host.new_vcpu(dom, 0, entry=entry, regs={0: dtb, 1: program.entry or program.symbols.get("_start", 0),
                                               2: rounds})
        for vid in range(1, conf.vcpus):
            v = host.new_vcpu(dom, vid)
            v.runstate = "offline"          # secondary vCPUs wait for PSCI CPU_ON (vpsci.c)
        host.emit(dom.vcpus[0], "boot", mode="arm", entry=entry,
                  message=f"EL1 at {entry:#x}, device tree at {dtb:#x}")
        return dom

    # -- the other xl commands --------------------------------------------------
    def find(self, name: str) -> Domain:
        d = self.host.domain_by_name(name)
        if d is None:
            raise UserError(f"xl: no domain named '{name}'")
        return d

    def list(self) -> str:
        host = self.host
        rows = []
        for d in sorted(host.domains.values(), key=lambda d: d.domid):
            f = d.state_flags()
            reason = {"poweroff": 0, "reboot": 1, "suspend": 2, "crash": 3}.get(d.shutdown_reason or "", None)
            online = sum(1 for v in d.vcpus if v.runstate != "offline") or len(d.vcpus)
            rows.append(DomainRow(d.name, d.domid, d.mem_mib, online,
                                  state_string(f["running"], f["blocked"], f["paused"], f["shutdown"], reason,
                                               f["dying"]),
                                  sum(v.run_cycles for v in d.vcpus) / host.cpu_hz))
        return format_list(rows)

    def vcpu_list(self) -> str:
        host = self.host
        rows = [VcpuRow(d.name, d.domid, v.id, v.pcpu or 0, online=v.runstate != "offline",
                        running=v.runstate == "running", blocked=v.runstate == "blocked",
                        time_s=v.run_cycles / host.cpu_hz)
                for d in sorted(host.domains.values(), key=lambda d: d.domid) for v in d.vcpus]
        return format_vcpu_list(rows, host.config.pcpus)

    def info(self, key: str | None = None) -> str:
        host = self.host
        cfg = host.config
        info = HostInfo(
            machine="aarch64", nr_cpus=cfg.pcpus, max_cpu_id=cfg.pcpus - 1, cores_per_socket=cfg.pcpus,
            cpu_khz=cfg.cpu_mhz * 1000, virt_caps=("hvm", "hap", "gnttab-v1"),
            total_memory=host.mem.nr_frames >> 8, free_memory=host.free_pages >> 8,
            xen_major=XEN_VERSION[0], xen_minor=XEN_VERSION[1], xen_extra=XEN_VERSION[2], xen_caps=L.XEN_CAPS,
            virt_start=L.ARM64_HYPERVISOR_VIRT_START, xen_changeset="xenlab",
            xen_commandline=f"console=dtuart dom0_mem={host.domains[0].mem_mib}M",
            cc_compiler="xenlab (the lab's Xen is Python)", cc_compile_by="xenlab", cc_compile_domain="lab",
            cc_compile_date="-", build_id="-")
        return format_info(info, key)

    def console(self, name: str, kind: str | None = None) -> str:
        """xl console [-t pv|serial]: the PV console; an Arm guest of the lab has no vpl011 serial."""
        d = self.find(name)
        if kind == "serial" and not d.privileged:
            raise UserError("Unable to attach console")
        return d.console_output

    def dmesg(self, clear: bool = False) -> str:
        """xl dmesg [-c] (main_dmesg, tools/xl/xl_info.c): Xen's console ring as
        XEN_SYSCTL_readconsole reads it; ``clear`` empties the ring after reading it."""
        return format_dmesg(self.host.dmesg.read(clear))

    def block_list(self, names: Sequence[str]) -> str:
        """xl block-list: each domain's vbds, as their frontends stand in xenstore."""
        from ..xldevices import block_list, qualify
        return block_list(self.host.services.xenstored, qualify(self.host, names))

    def network_list(self, names: Sequence[str]) -> str:
        """xl network-list: each domain's vifs."""
        from ..xldevices import network_list, qualify
        return network_list(self.host.services.xenstored, qualify(self.host, names))

    def destroy(self, name: str) -> None:
        d = self.find(name)
        if d.privileged:
            raise UserError("xl: cannot destroy Domain-0")
        self.host.destroy(d)

    def pause(self, name: str) -> None:
        self.host.pause(self.find(name))

    def unpause(self, name: str) -> None:
        self.host.unpause(self.find(name))

    def resume(self, name: str) -> None:
        """xl resume: XEN_DOMCTL_resumedomain for a domain suspended to RAM (PSCI SYSTEM_SUSPEND)."""
        from ...xen.arm.suspend import domain_resume
        d = self.find(name)
        if not domain_resume(self.host, d):
            raise UserError(f"xl: {d.name} is not suspended")

    def shutdown(self, name: str) -> None:
        d = self.find(name)
        if d.privileged:
            raise UserError("xl: cannot shut down Domain-0 from here")
        self.host.shutdown(d, "poweroff")

    def device_tree(self, name: str) -> str:
        """The tree a guest was given, as DTS (``xenlab xl devicetree DOMAIN`` shows it)."""
        from ...xen.arm.devicetree import parse, to_dts
        d = self.find(name)
        blob = self.device_trees.get(d.domid)
        if blob is None:
            raise UserError(f"xl: {d.name} was given no device tree (Domain-0's comes from the firmware)")
        return to_dts(_decoded(parse(blob)))


def _decoded(node):
    """A parsed tree's values shown as dtc shows them: strings where they are strings, else cells."""
    from ...xen.arm.devicetree import Node
    props = []
    for name, raw in node.props:
        if raw and raw.endswith(b"\0") and all(32 <= b < 127 or b == 0 for b in raw) and b"\0\0" not in raw:
            parts = raw[:-1].split(b"\0")
            props.append((name, parts[0].decode() if len(parts) == 1 else [p.decode() for p in parts]))
        elif raw and len(raw) % 4 == 0:
            props.append((name, [int.from_bytes(raw[i:i + 4], "big") for i in range(0, len(raw), 4)]))
        else:
            props.append((name, raw))
    return Node(node.name, props, [_decoded(c) for c in node.children])
