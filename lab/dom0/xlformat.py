"""What ``xl`` prints, byte for byte: ``xl list``, ``xl vcpu-list``, ``xl info``.

The formats are those of ``tools/xl/xl_info.c`` (list_domains, print_info and
its output_* helpers), ``tools/xl/xl_vcpu.c`` (vcpulist, print_vcpuinfo) and
``tools/xl/xl_utils.c`` (print_bitmap). Every function here is pure: it takes
small records and returns the text, newline-terminated lines included.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = [
    "DomainRow", "VcpuRow", "HostInfo", "LIST_HEADER", "VCPU_LIST_HEADER",
    "SHUTDOWN_REASON_LETTERS", "state_string", "cpu_seconds_from_ns", "format_list",
    "format_list_row",
    "format_vcpu_list", "format_bitmap", "format_info", "info_lines", "format_dmesg",
]

#: xl_info.c list_domains(): indexed by SHUTDOWN_* (poweroff, reboot, suspend,
#: crash, watchdog, soft_reset).
SHUTDOWN_REASON_LETTERS = "-rscwS"

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"


def state_string(running: bool = False, blocked: bool = False, paused: bool = False,
                 shutdown: bool = False, shutdown_reason: int | None = None,
                 dying: bool = False) -> str:
    """The six-character State column: ``r b p s <reason> d``, ``-`` for clear.

    The reason letter is printed only for a domain that has shut down (xl uses
    reason 0, ``-``, otherwise); an out-of-range reason prints ``?``.
    """
    reason = (shutdown_reason or 0) if shutdown else 0
    if 0 <= reason < len(SHUTDOWN_REASON_LETTERS):
        letter = SHUTDOWN_REASON_LETTERS[reason]
    else:
        letter = "?"
    return ("r" if running else "-") + ("b" if blocked else "-") + \
        ("p" if paused else "-") + ("s" if shutdown else "-") + letter + \
        ("d" if dying else "-")


@dataclass(frozen=True)
class DomainRow:
    """One line of ``xl list``."""
    name: str
    domid: int
    mem_mib: int            # (current_memkb + outstanding_memkb) / 1024
    vcpus: int              # online vCPUs
    state_flags: str        # six characters, see state_string()
    cpu_time_s: float       # CPU time in seconds


def cpu_seconds_from_ns(ns: int) -> float:
    """``(float)cpu_time / 1e9`` as xl computes it: the nanosecond count goes
    through a C float (single precision) first, which shows in large times."""
    as_float = struct.unpack("<f", struct.pack("<f", float(ns)))[0]
    return as_float / 1e9


def format_list_row(row: DomainRow) -> str:
    """``"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f\\n"``."""
    flags = (row.state_flags + "------")[:6]
    return (f"{row.name:<40} {row.domid:5d} {row.mem_mib:5d} {row.vcpus:5d}     "
            f"{flags}  {row.cpu_time_s:8.1f}\n")


def format_list(rows: Iterable[DomainRow]) -> str:
    """``xl list``: the header line, then one line per domain in the given order."""
    return LIST_HEADER + "\n" + "".join(format_list_row(r) for r in rows)


# ---------------------------------------------------------------------------
# xl vcpu-list
# ---------------------------------------------------------------------------

#: vcpulist(): printf("%-32s %5s %5s %5s %5s %9s %s\n", "Name", "ID", "VCPU",
#: "CPU", "State", "Time(s)", "Affinity (Hard / Soft)").
VCPU_LIST_HEADER = (f"{'Name':<32} {'ID':>5} {'VCPU':>5} {'CPU':>5} {'State':>5} "
                    f"{'Time(s)':>9} Affinity (Hard / Soft)")


@dataclass(frozen=True)
class VcpuRow:
    """One line of ``xl vcpu-list``. Affinities are sets of pCPU numbers;
    None means every pCPU."""
    name: str
    domid: int
    vcpu: int
    cpu: int                          # the pCPU it runs on, or last ran on
    online: bool = True
    running: bool = False
    blocked: bool = False
    time_s: float = 0.0
    hard_affinity: frozenset[int] | None = None
    soft_affinity: frozenset[int] | None = None


def format_bitmap(cpus: Iterable[int] | None, nr_cpus: int) -> str:
    """print_bitmap(): ``all`` when every one of nr_cpus bits is set, ``none``
    when none is, else ranges such as ``0-3,6``."""
    if cpus is None:
        bits = [True] * nr_cpus
    else:
        chosen = set(cpus)
        bits = [i in chosen for i in range(nr_cpus)]
    runs: list[tuple[int, int]] = []
    i = 0
    while i < nr_cpus:
        if bits[i]:
            j = i
            while j + 1 < nr_cpus and bits[j + 1]:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    if not runs:
        return "none"
    if len(runs) == 1 and runs[0] == (0, nr_cpus - 1):
        return "all"
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _vcpu_line(row: VcpuRow, nr_cpus: int) -> str:
    head = f"{row.name:<32} {row.domid:5d} {row.vcpu:5d}"
    if not row.online:
        state = f"{'-':>5} {'-':>3}-p "
    else:
        state = (f"{row.cpu:5d} {('r' if row.running else '-'):>3}"
                 f"{'b' if row.blocked else '-'}- ")
    time = f"{row.time_s:9.1f}  "
    aff = (format_bitmap(row.hard_affinity, nr_cpus) + " / "
           + format_bitmap(row.soft_affinity, nr_cpus))
    return head + state + time + aff + "\n"


def format_vcpu_list(rows: Iterable[VcpuRow], nr_cpus: int = 1) -> str:
    """``xl vcpu-list``: header, then one line per vCPU in the given order."""
    return VCPU_LIST_HEADER + "\n" + "".join(_vcpu_line(r, nr_cpus) for r in rows)


# ---------------------------------------------------------------------------
# xl info
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HostInfo:
    """What ``xl info`` reports (output_nodeinfo, output_physinfo,
    output_xeninfo in xl_info.c)."""
    host: str = "xenlab"
    release: str = "6.1.0-xenlab"
    version: str = "#1 SMP"
    machine: str = "x86_64"
    nr_cpus: int = 1
    max_cpu_id: int = 0
    nr_nodes: int = 1
    cores_per_socket: int = 1
    threads_per_core: int = 1
    cpu_khz: int = 3000000
    hw_caps: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 0, 0)
    #: Tokens in xl's order: pv hvm hvm_directio pv_directio hap shadow
    #: iommu_hap_pt_share vmtrace vpmu gnttab-v1 gnttab-v2.
    virt_caps: tuple[str, ...] = ("pv", "hvm", "hap", "shadow", "gnttab-v1", "gnttab-v2")
    total_memory: int = 0            # MiB
    free_memory: int = 0             # MiB
    sharing_freed_memory: int = 0
    sharing_used_memory: int = 0
    outstanding_claims: int = 0
    free_cpus: int = 0
    xen_major: int = 4
    xen_minor: int = 23
    xen_extra: str = "-unstable"
    xen_caps: str = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
    xen_scheduler: str = "credit2"
    xen_pagesize: int = 4096
    virt_start: int = 0xFFFF800000000000
    xen_changeset: str = ""
    xen_commandline: str = ""
    cc_compiler: str = ""
    cc_compile_by: str = ""
    cc_compile_domain: str = ""
    cc_compile_date: str = ""
    build_id: str = ""
    #: Printed only by ``xl info -x``; None leaves the line out.
    xenstore_features: int | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())


#: The order xl info prints its keys in (without -n; xenstore_features only with -x).
INFO_KEYS = (
    "host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes",
    "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps",
    "total_memory", "free_memory", "sharing_freed_memory", "sharing_used_memory",
    "outstanding_claims", "free_cpus", "xen_major", "xen_minor", "xen_extra",
    "xen_version", "xen_caps", "xen_scheduler", "xen_pagesize", "platform_params",
    "xen_changeset", "xen_commandline", "cc_compiler", "cc_compile_by",
    "cc_compile_domain", "cc_compile_date", "build_id", "xenstore_features",
    "xend_config_format",
)

_VIRT_CAPS_ORDER = ("pv", "hvm", "hvm_directio", "pv_directio", "hap", "shadow",
                    "iommu_hap_pt_share", "vmtrace", "vpmu", "gnttab-v1", "gnttab-v2")


def _kv(key: str, value: str) -> str:
    # Every xl info line is "%-23s: %s": the key padded to 23 columns.
    return f"{key:<23}: {value}\n"


def info_lines(info: HostInfo) -> list[str]:
    """The lines of ``xl info``, each ending in a newline."""
    out = [
        _kv("host", info.host), _kv("release", info.release),
        _kv("version", info.version), _kv("machine", info.machine),
        _kv("nr_cpus", str(info.nr_cpus)), _kv("max_cpu_id", str(info.max_cpu_id)),
        _kv("nr_nodes", str(info.nr_nodes)),
        _kv("cores_per_socket", str(info.cores_per_socket)),
        _kv("threads_per_core", str(info.threads_per_core)),
        _kv("cpu_mhz", f"{info.cpu_khz // 1000}.{info.cpu_khz % 1000:03d}"),
        _kv("hw_caps", ":".join(f"{w & 0xFFFFFFFF:08x}"
                                for w in (tuple(info.hw_caps) + (0,) * 8)[:8])),
    ]
    caps = [c for c in _VIRT_CAPS_ORDER if c in info.virt_caps]
    # "virt_caps              :%s%s..." with each token carrying its own space.
    out.append(f"{'virt_caps':<23}:" + "".join(" " + c for c in caps) + "\n")
    out += [
        _kv("total_memory", str(info.total_memory)),
        _kv("free_memory", str(info.free_memory)),
        _kv("sharing_freed_memory", str(info.sharing_freed_memory)),
        _kv("sharing_used_memory", str(info.sharing_used_memory)),
        _kv("outstanding_claims", str(info.outstanding_claims)),
        _kv("free_cpus", str(info.free_cpus)),
        _kv("xen_major", str(info.xen_major)), _kv("xen_minor", str(info.xen_minor)),
        _kv("xen_extra", info.xen_extra),
        _kv("xen_version", f"{info.xen_major}.{info.xen_minor}{info.xen_extra}"),
        _kv("xen_caps", info.xen_caps), _kv("xen_scheduler", info.xen_scheduler),
        _kv("xen_pagesize", str(info.xen_pagesize)),
        _kv("platform_params", f"virt_start=0x{info.virt_start:x}"),
        _kv("xen_changeset", info.xen_changeset),
        _kv("xen_commandline", info.xen_commandline),
        _kv("cc_compiler", info.cc_compiler), _kv("cc_compile_by", info.cc_compile_by),
        _kv("cc_compile_domain", info.cc_compile_domain),
        _kv("cc_compile_date", info.cc_compile_date), _kv("build_id", info.build_id),
    ]
    if info.xenstore_features is not None:
        out.append(_kv("xenstore_features", f"0x{info.xenstore_features:08x}"))
    out += [_kv(k, v) for k, v in info.extra]
    out.append(_kv("xend_config_format", "4"))
    return out


def format_info(info: HostInfo, name: str | None = None) -> str:
    """``xl info``; with ``name``, ``xl info NAME``: the values of the lines
    whose text starts with NAME (xl's maybe_printf matches a prefix)."""
    lines = info_lines(info)
    if name is None:
        return "".join(lines)
    out = []
    for line in lines:
        if line.startswith(name):
            colon = line.find(":")
            if colon >= 0 and line[colon + 1:colon + 2] == " ":
                out.append(line[colon + 2:])
    return "".join(out)


def format_dmesg(lines: Sequence[str] | Iterable[str]) -> str:
    """``xl dmesg``: the console ring's lines, each newline-terminated."""
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
