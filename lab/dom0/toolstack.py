"""The xl toolstack in dom0: create, list, destroy, pause, console, info ...

Each command is dom0 work: it goes through Xen's hypercall path as dom0
(``domctl``, ``sysctl``, ``sched_op``), so the trace shows the toolstack's
hypercalls next to the guests', and only the control domain gets through.
Output follows xl's own formats (``lab.dom0.xlformat``).
"""

from __future__ import annotations

from collections.abc import Sequence

import struct

from pathlib import Path
from typing import Any

from .. import sources
from ..errors import UserError
from ..isa.errors import AsmError
from ..isa.cache import assemble_file_cached
from ..isa.image import Image
from ..paths import KERNELS, MACHINES, PROGRAMS, display
from ..xen import abi
from ..xen.builder import BuildError, build_hvm, build_pv, build_pvh
from ..xen.domain import Domain
from ..xen.host import XEN_VERSION, XenHost
from .xlcfg import ConfigError, DomainConfig, load_config

#: Bit 63 of the boot argument: the guest kernel runs its shell instead of the program.
SHELL_FLAG = 1 << 63

#: The lab's stock kernel for each guest mode.
STOCK_KERNELS = {"pv": "pv.s", "pv32": "pv32.s", "hvm": "hvm.s", "hvm-pvdrivers": "hvm_pvdrivers.s", "pvhvm": "pvhvm.s",
                 "pvh": "pvh.s"}
FIRMWARE = MACHINES / "firmware" / "hvmloader.s"
DEFAULT_PROGRAM = PROGRAMS / "workload.s"


def assemble(path: Path) -> Image:
    if not sources.exists(path):
        raise UserError(f"{display(path)}: no such file")
    try:
        return assemble_file_cached(path, include_dirs=[KERNELS, PROGRAMS])
    except AsmError as e:
        raise UserError(str(e)) from None


class Toolstack:
    #: Assembled images are a cache of their sources, not machine state: a restored host
    #: keeps them (every ``xenlab compare`` mode starts from the same restored host).
    NOT_STATE = frozenset({"_images"})

    def __init__(self, host: XenHost) -> None:
        self.host = host
        self.warnings: list[str] = []
        self._images: dict[str, Image] = {}

    # -- dom0's hypercalls -----------------------------------------------------
    def _call(self, name: str, args: list[Any], fn) -> Any:
        from ..xen.hypercall_table import dispatch_python
        dom0 = self.host.domains[0]
        return dispatch_python(self.host, dom0.vcpus[0], abi.hypercall_nr(name), args, fn)

    def _image(self, path: Path) -> Image:
        key = str(path.resolve())
        if key not in self._images:
            self._images[key] = assemble(path)
        return self._images[key]

    # -- xl create ---------------------------------------------------------------
    def load(self, cfg: str | Path | DomainConfig, base: Path | None = None) -> DomainConfig:
        if isinstance(cfg, DomainConfig):
            return cfg
        path = Path(cfg)
        if not sources.exists(path) and base is not None and sources.exists(base / path):
            path = base / path
        if not sources.exists(path):
            raise UserError(f"{display(path)}: no such file")
        try:
            conf = load_config(path)
        except ConfigError as e:
            raise UserError(str(e)) from None
        self.warnings += conf.warnings
        if conf.boots_nothing:
            # xl_parse.c refuses it before anything is built
            raise UserError(f"{display(path)}: Neither kernel nor bootloader specified "
                            "(set lab_stock_kernel = 1 to boot the lab's stock kernel for this type)")
        return conf

    def kernel_for(self, conf: DomainConfig, mode: str) -> Path:
        stock = KERNELS / STOCK_KERNELS[mode]
        if not conf.kernel:
            return stock
        k = Path(conf.kernel)
        for candidate in (k, KERNELS / k.name, Path(conf.filename).parent / k):
            if candidate.suffix == ".s" and sources.exists(candidate):
                return candidate
        self.warnings.append(f"{conf.filename}: kernel '{conf.kernel}' is not a lab kernel; "
                             f"using the lab's {display(stock)} for a {mode} guest")
        return stock

    def create(self, cfg: str | Path | DomainConfig, base: Path | None = None, paused: bool = False) -> Domain:
        conf = self.load(cfg, base)
        host = self.host
        if host.domain_by_name(conf.name) is not None:
            raise UserError(f"a domain named '{conf.name}' already exists")
        mode = "pv32" if conf.lab_pv32 else conf.kernel_mode
        if conf.type in ("hvm", "pvh") and not getattr(host.config, "hvm", True):
            refuse_without_hvm(host)
        if 0 <= conf.max_grant_frames < abi.INITIAL_NR_GRANT_FRAMES:
            # grant_table_init() (common/grant_table.c) refuses a table smaller than its first frame
            host.log(f"common/grant_table.c:2016: Bad grant table size: {conf.max_grant_frames} frames")
            refuse_domain_create()
        kernel = self._image(self.kernel_for(conf, mode))
        program_path = Path(conf.lab_program) if conf.lab_program else DEFAULT_PROGRAM
        if conf.lab_program and not sources.exists(program_path):
            program_path = Path(conf.filename).parent / conf.lab_program
        program = self._image(program_path)
        arg = 0
        for word in (conf.cmdline or "").split():
            if word.startswith("rounds=") and word[7:].isdigit():
                arg |= int(word[7:]) & ((1 << 63) - 1)   # the workload's rounds, passed to the program in rdi
            elif word == "shell":
                arg |= SHELL_FLAG            # the kernel starts its shell on the console
        pages = conf.memory << 8
        if pages > host.free_pages:
            raise UserError(f"{conf.filename}: not enough free memory for {conf.name}: "
                            f"{conf.memory} MiB wanted, {host.free_pages >> 8} MiB free")

        def build() -> int:
            dom = host.new_domain(conf.name, mode, pages, conf.vcpus, config=conf,
                                  max_grant_frames=conf.max_grant_frames)
            dom.hap = conf.hap
            for vid in range(conf.vcpus):
                host.new_vcpu(dom, vid, host.make_cpu())
            for v in dom.vcpus[1:]:
                v.runstate = "offline"          # secondary vCPUs wait for VCPUOP_up
            if dom.is_pv:
                build_pv(host, dom, kernel, program, arg)
            elif dom.type == "pvh":
                build_pvh(host, dom, kernel, program, arg)
            else:
                build_hvm(host, dom, self._image(FIRMWARE), kernel, program, arg)
            xs = host.services.xenstored
            if xs is not None:
                # As libxl does: the domain's home, then a frontend/backend pair per device.
                from .xsclient import add_disk, add_nic, write_domain_home
                write_domain_home(xs, dom)
                for disk in conf.disks:
                    add_disk(xs, dom, disk)
                for vif in conf.vifs:
                    add_nic(xs, dom, vif)
            if paused:
                host.pause(dom)
            return dom.domid
        try:
            domid = self._call("domctl", ["createdomain", conf.name], build)
        except BuildError as e:
            raise UserError(str(e)) from None
        return host.domains[domid]

    # -- lifecycle -----------------------------------------------------------------
    def find(self, name: str) -> Domain:
        dom = self.host.domain_by_name(name)
        if dom is None:
            raise UserError(f"invalid domain identifier '{name}'")
        return dom

    def destroy(self, name: str) -> None:
        dom = self.find(name)
        if dom.privileged:
            raise UserError("cannot destroy Domain-0")
        self._call("domctl", ["destroydomain", f"d{dom.domid}"], lambda: self.host.destroy(dom) or 0)

    def pause(self, name: str) -> None:
        dom = self.find(name)
        self._call("domctl", ["pausedomain", f"d{dom.domid}"], lambda: self.host.pause(dom) or 0)

    def unpause(self, name: str) -> None:
        dom = self.find(name)
        self._call("domctl", ["unpausedomain", f"d{dom.domid}"], lambda: self.host.unpause(dom) or 0)

    def shutdown(self, name: str) -> None:
        dom = self.find(name)
        if dom.privileged:
            raise UserError("shutting down Domain-0 would stop the host; not in the lab")
        self._call("sched_op", ["SCHEDOP_remote_shutdown", f"d{dom.domid}", "poweroff"],
                   lambda: self.host.shutdown(dom, "poweroff") or 0)

    # -- reports ---------------------------------------------------------------------
    def list(self) -> str:
        host = self.host
        from ..xen.hypercalls import getdomaininfo
        from .xlformat import DomainRow, format_list, state_string
        rows = []
        for d in sorted(host.domains.values(), key=lambda d: d.domid):
            # xl list reads each domain's getdomaininfo: XEN_DOMINF_* flags, online vCPUs, cpu_time
            raw = getdomaininfo(host, d)
            flags, = struct.unpack_from("<I", raw, 4)
            online, = struct.unpack_from("<I", raw, 64)
            shut = bool(flags & abi.XEN_DOMINF_shutdown)
            reason = (flags >> abi.XEN_DOMINF_shutdownshift) & abi.XEN_DOMINF_shutdownmask if shut else None
            rows.append(DomainRow(d.name, d.domid, d.mem_mib, online,
                                  state_string(bool(flags & abi.XEN_DOMINF_running),
                                               bool(flags & abi.XEN_DOMINF_blocked),
                                               bool(flags & abi.XEN_DOMINF_paused), shut, reason,
                                               bool(flags & abi.XEN_DOMINF_dying)),
                                  sum(v.run_cycles for v in d.vcpus) / host.cpu_hz))
        return format_list(rows)

    def vcpu_list(self) -> str:
        from .xlformat import VcpuRow, format_vcpu_list
        host = self.host
        rows = []
        for d in sorted(host.domains.values(), key=lambda d: d.domid):
            for v in d.vcpus:
                rows.append(VcpuRow(d.name, d.domid, v.id, v.pcpu or 0, online=v.runstate != "offline",
                                    running=v.runstate == "running", blocked=v.runstate == "blocked",
                                    time_s=v.run_cycles / host.cpu_hz))
        return format_vcpu_list(rows, host.config.pcpus)

    def info(self, key: str | None = None) -> str:
        from .xlformat import HostInfo, format_info
        host = self.host
        cfg = host.config
        hvm = getattr(cfg, "hvm", True)
        caps = ("pv",) + (("hvm", "hvm_directio") if hvm else ()) + ("pv_directio",) + \
            (("hap",) if cfg.ept else ()) + ("shadow", "gnttab-v1")
        extra = {} if hvm else {"xen_caps": _xen_caps_without_hvm()}
        info = HostInfo(**extra,
            nr_cpus=cfg.pcpus, max_cpu_id=cfg.pcpus - 1, cores_per_socket=cfg.pcpus, cpu_khz=cfg.cpu_mhz * 1000,
            virt_caps=caps, total_memory=host.mem.nr_frames >> 8, free_memory=host.free_pages >> 8,
            xen_major=XEN_VERSION[0], xen_minor=XEN_VERSION[1], xen_extra=XEN_VERSION[2],
            xen_changeset="xenlab", xen_commandline=f"console=com1 dom0_mem={host.domains[0].mem_mib}M",
            cc_compiler="xenlab (the lab's Xen is Python)", cc_compile_by="xenlab", cc_compile_domain="lab",
            cc_compile_date="-", build_id="-")
        return format_info(info, key)

    def console(self, name: str, kind: str | None = None) -> str:
        """What xl console shows: the domain's console output; with ``kind`` "serial" only what
        its emulated serial port printed (an HVM guest's; others have none: "Unable to attach
        console", as xl says), with "pv" only what it wrote to its PV console (hvc0)."""
        dom = self.find(name)
        if kind == "serial" and not dom.privileged:
            dm = self.host.services.device_model
            if dm is None or not dm.wants(dom):
                raise UserError("Unable to attach console")
            return dm.serial_output(dom)
        if kind == "pv" and not dom.privileged:
            cons = self.host.services.xenconsoled
            if cons is None or not dom.console_pfn:
                raise UserError("Unable to attach console")         # no PV console ring
            return cons.output(dom)
        return dom.console_output

    def dmesg(self, clear: bool = False) -> str:
        """xl dmesg [-c] (main_dmesg, tools/xl/xl_info.c): Xen's console ring as
        XEN_SYSCTL_readconsole reads it; ``clear`` empties the ring after reading it."""
        from .xlformat import format_dmesg
        return format_dmesg(self.host.dmesg.read(clear))

    def block_list(self, names: Sequence[str]) -> str:
        """xl block-list: each domain's vbds, as their frontends stand in xenstore."""
        from .xldevices import block_list, qualify
        return block_list(self.host.services.xenstored, qualify(self.host, names))

    def network_list(self, names: Sequence[str]) -> str:
        """xl network-list: each domain's vifs."""
        from .xldevices import network_list, qualify
        return network_list(self.host.services.xenstored, qualify(self.host, names))


def _xen_caps_without_hvm() -> str:
    """xen_caps of a host without VT-x/AMD-V: init_xen_cap_info() (xen/arch/x86/setup.c) adds
    the hvm-3.0-* tokens only when hvm_enabled."""
    from .xlformat import HostInfo
    return " ".join(t for t in HostInfo().xen_caps.split() if not t.startswith("hvm-"))


def refuse_without_hvm(host) -> None:
    """An HVM or PVH guest on a host without VT-x/AMD-V, as Xen and libxl refuse it: Xen's
    arch_sanitise_domain_config() (xen/arch/x86/domain.c) says so in a debug build and returns
    -EINVAL, which libxl__domain_make() and initiate_domain_create() (libxl_create.c) report."""
    host.log("arch/x86/domain.c:604: HVM support not available")
    refuse_domain_create()


def refuse_domain_create() -> None:
    """Xen's domain_create() returned -EINVAL: what libxl__domain_make() and
    initiate_domain_create() (libxl_create.c) report."""
    raise UserError("libxl: error: libxl_create.c:700:libxl__domain_make: domain creation fail: Invalid argument\n"
                    "libxl: error: libxl_create.c:1309:initiate_domain_create: cannot make domain: -3")
