"""Shared helpers for the tests of the lab's Xen: small hosts, script guests, trace queries.

The reference numbers below are written out from Xen's headers (public/xen.h's
hypercall definitions, errno.h, the VMX exit reasons and SVM exit codes), not taken
from ``lab.xen.abi``, so a wrong value in the simulator shows up as a test failure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import struct
from pathlib import Path

from lab.hw.boot import physical_of
from lab.hw.memory import PAGE_SHIFT, PAGE_SIZE
from lab.paths import MACHINES
from lab.session.scenario import boot_host, load_scenario, start_scenario
from lab.xen import abi
from lab.xen.hypercall_table import Preempted, dispatch
from lab.xen.host import HostConfig
from test_machine import expected_checksum

GUESTS = Path(__file__).parent / "data" / "guests"
XLCFG = Path(__file__).parent / "data" / "xlcfg"
CHECKSUM_LINE = f"workload: checksum {expected_checksum():#018x}"
EXIT_LINE = "kernel: program exited with code 0"
M64 = (1 << 64) - 1

# ------------------------------------------------------------------ reference values
#: The hypercall numbers as xen/include/public/xen.h defines them (Xen 4.23-dev), and the x86
#: names of two architecture slots (public/arch-x86/xen-mca.h, xen/arch/x86/include/asm/hypercall.h).
XEN_H_HYPERCALLS = """
#define __HYPERVISOR_set_trap_table        0
#define __HYPERVISOR_mmu_update            1
#define __HYPERVISOR_set_gdt               2
#define __HYPERVISOR_stack_switch          3
#define __HYPERVISOR_set_callbacks         4
#define __HYPERVISOR_fpu_taskswitch        5
#define __HYPERVISOR_sched_op_compat       6
#define __HYPERVISOR_platform_op           7
#define __HYPERVISOR_set_debugreg          8
#define __HYPERVISOR_get_debugreg          9
#define __HYPERVISOR_update_descriptor    10
#define __HYPERVISOR_memory_op            12
#define __HYPERVISOR_multicall            13
#define __HYPERVISOR_update_va_mapping    14
#define __HYPERVISOR_set_timer_op         15
#define __HYPERVISOR_event_channel_op_compat 16
#define __HYPERVISOR_xen_version          17
#define __HYPERVISOR_console_io           18
#define __HYPERVISOR_physdev_op_compat    19
#define __HYPERVISOR_grant_table_op       20
#define __HYPERVISOR_vm_assist            21
#define __HYPERVISOR_update_va_mapping_otherdomain 22
#define __HYPERVISOR_iret                 23
#define __HYPERVISOR_vcpu_op              24
#define __HYPERVISOR_set_segment_base     25
#define __HYPERVISOR_mmuext_op            26
#define __HYPERVISOR_xsm_op               27
#define __HYPERVISOR_nmi_op               28
#define __HYPERVISOR_sched_op             29
#define __HYPERVISOR_callback_op          30
#define __HYPERVISOR_xenoprof_op          31
#define __HYPERVISOR_event_channel_op     32
#define __HYPERVISOR_physdev_op           33
#define __HYPERVISOR_hvm_op               34
#define __HYPERVISOR_sysctl               35
#define __HYPERVISOR_domctl               36
#define __HYPERVISOR_kexec_op             37
#define __HYPERVISOR_tmem_op              38
#define __HYPERVISOR_argo_op              39
#define __HYPERVISOR_xenpmu_op            40
#define __HYPERVISOR_dm_op                41
#define __HYPERVISOR_hypfs_op             42
#define __HYPERVISOR_arch_0               48
#define __HYPERVISOR_arch_1               49
#define __HYPERVISOR_arch_2               50
#define __HYPERVISOR_arch_3               51
#define __HYPERVISOR_arch_4               52
#define __HYPERVISOR_arch_5               53
#define __HYPERVISOR_arch_6               54
#define __HYPERVISOR_arch_7               55
#define __HYPERVISOR_mca __HYPERVISOR_arch_0
#define __HYPERVISOR_paging_domctl_cont __HYPERVISOR_arch_1
"""


def _defines(text: str, prefix: str) -> dict[str, int]:
    """``#define PREFIXname value`` lines, where a value may name an earlier definition."""
    out: dict[str, int] = {}
    for line in text.strip().splitlines():
        _, name, value = line.split()[:3]
        out[name.removeprefix(prefix)] = out[value.removeprefix(prefix)] if value.startswith(prefix) else int(value)
    return out


#: name -> number, every name of the header (the arch_N slots and their x86 names alike)
HYPERCALL_NR = _defines(XEN_H_HYPERCALLS, "__HYPERVISOR_")
#: xen/include/public/errno.h
ERRNO = {"EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EFAULT": 14, "EBUSY": 16, "EEXIST": 17, "EINVAL": 22,
         "ENOSPC": 28, "ENOSYS": 38, "EOPNOTSUPP": 95}
#: VMX exit reasons (Intel SDM, xen/arch/x86/include/asm/hvm/vmx/vmx.h)
VMX_EXIT = {"EXCEPTION_NMI": 0, "EXTERNAL_INTERRUPT": 1, "TRIPLE_FAULT": 2, "CPUID": 10, "HLT": 12,
            "INVLPG": 14, "RDTSC": 16, "VMCALL": 18, "CR_ACCESS": 28, "IO_INSTRUCTION": 30,
            "MSR_READ": 31, "MSR_WRITE": 32, "EPT_VIOLATION": 48, "EPT_MISCONFIG": 49}
#: SVM exit codes (xen/arch/x86/hvm/svm/vmcb.h)
SVM_EXIT = {"CPUID": 0x72, "HLT": 0x78, "IOIO": 0x7B, "MSR": 0x7C, "SHUTDOWN": 0x7F, "VMMCALL": 0x81,
            "NPF": 0x400, "CR3_WRITE": 0x13, "INVLPG": 0x79}

DOMID_SELF, DOMID_XEN, DOMID_IO = 0x7FF0, 0x7FF2, 0x7FF1
PTE_P, PTE_RW, PTE_US, PTE_PWT, PTE_PCD, PTE_A, PTE_D, PTE_PSE, PTE_G = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100
PTE_NX = 1 << 63
ADDR = 0x000F_FFFF_FFFF_F000

# Script guests (tests/data/guests/*_script.s)
OP_END, OP_LOAD, OP_STORE, OP_UD2, OP_IN, OP_USER_CALL, OP_CPUID, OP_CALL = range(0x1000, 0x1008)
ENTRY = 128

#: Kernels assembled once for the whole test run (the toolstack caches per instance).
_IMAGES: dict = {}


def signed(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


# ------------------------------------------------------------------ hosts and domains
def small_host(*, vendor: str = "intel", ept: bool = True, mem_mib: int = 160, dom0_memory: int = 16,
               pcpus: int = 2):
    """Xen and Domain-0 on a small host (quick to boot and to check), no guests yet."""
    host, xl = boot_host(HostConfig(pcpus=pcpus, mem_mib=mem_mib, vendor=vendor, ept=ept), dom0_memory=dom0_memory)
    xl._images = _IMAGES
    return host, xl


def two_pv_guests():
    """The stock PV guest twice (pv-a, pv-b) without disks or network cards, their kernels up.
    Returns (host, a, b): nothing of theirs uses a grant, so a test's grants are its own."""
    from lab.dom0.xlcfg import load_config
    host, xl = boot_host()
    guests = []
    for name in ("pv-a", "pv-b"):
        conf = load_config(MACHINES / "pv-guest.cfg")
        conf.name = name
        conf.disks, conf.vifs = [], []
        guests.append(xl.create(conf))
    host.run(150_000)          # both kernels are up, with their page tables
    return host, *guests


def write_cfg(directory: Path, name: str, type_: str = "pv", kernel: str | Path | None = None, memory: int = 32,
              **keys) -> Path:
    """An xl.cfg file in Xen's syntax."""
    lines = [f'name = "{name}"', f'type = "{type_}"', f"memory = {memory}", "vcpus = 1",
             'on_poweroff = "preserve"', 'on_crash = "preserve"']
    if kernel is not None:
        lines.append(f'kernel = "{kernel}"')
    else:
        lines.append("lab_stock_kernel = 1")
    for k, v in keys.items():
        lines.append(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {int(v) if isinstance(v, bool) else v}")
    path = Path(directory) / f"{name}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def create(xl, directory: Path, name: str, type_: str = "pv", kernel: str | Path | None = None, memory: int = 32,
           **keys):
    return xl.create(write_cfg(directory, name, type_, kernel, memory, **keys))


def stock_guests(xl, directory: Path):
    """The default scenario's PV and HVM guests (the stock kernels and the workload)."""
    return create(xl, directory, "pv-guest", "pv"), create(xl, directory, "hvm-guest", "hvm", hap=1)


def script_guest(xl, directory: Path, name: str, type_: str = "pv", **keys) -> "ScriptGuest":
    kernel = GUESTS / ("pv_script.s" if type_ == "pv" else "hvm_script.s")
    dom = create(xl, directory, name, type_, kernel=kernel, **keys)
    return ScriptGuest(xl.host, dom)


def domid(host, name: str) -> int:
    return host.domain_by_name(name).domid


@functools.cache
def default_run():
    """machines/default.toml run to the end, once per test session. Read it, never change it."""
    host, xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    host.run()
    return host, xl


def vendor_run(vendor: str, ept: bool = True):
    """dom0 plus the stock PV and HVM guests on a small host of the given vendor, run to the end."""
    return _vendor_run(vendor, ept)


@functools.cache
def _vendor_run(vendor: str, ept: bool):
    import tempfile
    host, xl = small_host(vendor=vendor, ept=ept)
    with tempfile.TemporaryDirectory() as d:
        stock_guests(xl, Path(d))
    host.run()
    return host, xl


# ------------------------------------------------------------------ disks
@contextlib.contextmanager
def reading_host_images():
    """The learner's opt-in: existing disk targets are read as the disks' starting content."""
    saved = os.environ.get("XENLAB_READ_HOST_IMAGES")
    os.environ["XENLAB_READ_HOST_IMAGES"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["XENLAB_READ_HOST_IMAGES"]
        else:
            os.environ["XENLAB_READ_HOST_IMAGES"] = saved


def private_image_bytes(host, target: Path) -> bytes:
    """What a guest's disk holds: the lab's private image of ``target`` (never the file itself)."""
    from lab.hw.diskimage import shared_images
    img = shared_images(host)[os.path.normpath(os.path.abspath(target))]
    return img.read(0, img.sectors)


# ------------------------------------------------------------------ guest memory
def poke(host, dom, va: int, data: bytes) -> None:
    """Write into a domain's memory at a kernel address (direct map or guest-physical)."""
    pa = physical_of(va)
    pos = 0
    while pos < len(data):
        off = (pa + pos) & (PAGE_SIZE - 1)
        n = min(len(data) - pos, PAGE_SIZE - off)
        host.mem.write((dom.p2m[(pa + pos) >> PAGE_SHIFT] << PAGE_SHIFT) + off, data[pos:pos + n])
        pos += n


def peek(host, dom, va: int, n: int) -> bytes:
    pa = physical_of(va)
    out = bytearray()
    while len(out) < n:
        off = (pa + len(out)) & (PAGE_SIZE - 1)
        k = min(n - len(out), PAGE_SIZE - off)
        out += host.mem.read((dom.p2m[(pa + len(out)) >> PAGE_SHIFT] << PAGE_SHIFT) + off, k)
    return bytes(out)


class GuestPage:
    """One page of a guest's memory as the guest itself reads and writes it (its side of a ring)."""

    def __init__(self, host, mfn: int) -> None:
        self.host = host
        self.maddr = mfn << PAGE_SHIFT

    def read(self, off: int, n: int) -> bytes:
        return self.host.mem.read(self.maddr + off, n)

    def write(self, off: int, data: bytes) -> None:
        self.host.mem.write(self.maddr + off, data)


class ScriptGuest:
    """A domain running tests/data/guests/{pv,hvm}_script.s and the script it will run."""

    def __init__(self, host, dom) -> None:
        self.host = host
        self.dom = dom
        self.sym = dom.images["kernel"].symbols
        self.entries: list[tuple[int, ...]] = []

    @property
    def vcpu(self):
        return self.dom.vcpus[0]

    def addr(self, name: str, offset: int = 0) -> int:
        return self.sym[name] + offset

    def buf(self, offset: int = 0) -> int:
        """A kernel address inside the guest's 16 KiB argument buffer."""
        return self.sym["buf"] + offset

    def write(self, va: int, data: bytes) -> None:
        poke(self.host, self.dom, va, data)

    def read(self, va: int, n: int) -> bytes:
        return peek(self.host, self.dom, va, n)

    def u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def add(self, op: int | str, *args: int) -> int:
        """Append one step (a hypercall by name or number, or an OP_*); its index."""
        nr = HYPERCALL_NR[op] if isinstance(op, str) else op
        self.entries.append((nr, *[a & M64 for a in args]))
        return len(self.entries) - 1

    def install(self) -> None:
        blob = bytearray()
        for e in self.entries + [(OP_END,)]:
            words = list(e) + [0] * (6 - len(e))
            blob += struct.pack("<6Q", *words).ljust(ENTRY, b"\0")
        assert len(blob) <= 8192
        self.write(self.sym["script"], bytes(blob))

    def result(self, i: int, word: int = 0) -> int:
        return self.u64(self.sym["script"] + i * ENTRY + 48 + 8 * word)

    @property
    def steps_done(self) -> int:
        return self.u64(self.sym["steps_done"])


# ------------------------------------------------------------------ hypercalls and the trace
def hypercall(host, v, nr: int | str, *args: int) -> int:
    """Make a hypercall as guest code would (dispatch), returning the signed result; a
    continuation is re-entered with its new arguments, as the guest re-executes the call."""
    if isinstance(nr, str):
        nr = HYPERCALL_NR[nr]
    ret = dispatch(host, v, nr, [a & M64 for a in args] + [0] * (5 - len(args)))
    while isinstance(ret, Preempted):
        ret = dispatch(host, v, nr, ret.args)
    return signed(ret) if ret is not None else 0


def last_event(host, kind: str = "hypercall"):
    for ev in reversed(host.trace.recent()):
        if ev.kind == kind:
            return ev
    return None


def events(host, kind: str, dom: int | None = None, **match) -> list:
    out = []
    for ev in host.trace.iter_all():
        if ev.kind != kind or (dom is not None and ev.dom != dom):
            continue
        if all(ev.data.get(k) == v for k, v in match.items()):
            out.append(ev)
    return out


def dmesg_since(host, mark: int) -> str:
    """Xen's console lines logged since ``host.dmesg.logged`` was ``mark``."""
    return "\n".join(host.dmesg.since(mark))


def entry_maddr(host, l4: int, va: int, level: int = 1) -> int:
    """Machine address of the level-``level`` entry that maps ``va`` under the L4 ``l4``."""
    table = l4
    for lv, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
        slot = (va >> shift) & 511
        if lv == level:
            return (table << 12) + slot * 8
        table = (host.mem.read_u64((table << 12) + slot * 8) & ADDR) >> 12
    raise AssertionError(level)


# ------------------------------------------------------------------ isolation checks
def frames_of(dom) -> set[int]:
    return (set(dom.p2m) | set(dom.extra.get("frames", []))) - {None}


def pv_mapping_violations(host, dom) -> list[str]:
    """Walk every L4 a PV domain has (loaded, pinned or validated) and report any mapping of
    a frame that is not the domain's, any writable mapping of one of its page tables, and
    any superpage. Xen's slots 256-271 must hold exactly Xen's entries."""
    mem = host.mem
    own = frames_of(dom) | set(host.mm.frames_of(dom.domid))     # given back but still referenced too
    pages = host.mm.pv.pages
    roots = set()
    for v in dom.vcpus:
        for mfn in (v.guest_table, v.guest_table_user):
            if mfn:
                roots.add(mfn)
        if v.cpu is not None and v.cpu.cr3:
            roots.add(v.cpu.cr3 >> 12)
    for mfn in sorted(own):
        if pages[mfn].type == abi.PGT_l4_page_table and pages[mfn].type_count:
            roots.add(mfn)
    out: list[str] = []
    tables: set[int] = set()
    rw_leaves: dict[int, str] = {}
    seen: set[tuple[int, int, bool]] = set()
    xen_slots = host.mm._xen_l4_slots(0, dom.domid)
    grant_ok = host.mm.pv.grant_ok              # a granted frame of another domain, in its one slot

    def walk(mfn: int, level: int, rw: bool, where: str) -> None:
        if (mfn, level, rw) in seen:
            return
        seen.add((mfn, level, rw))
        if mfn not in own:
            out.append(f"{where}: table mfn {mfn:#x} is not d{dom.domid}'s")
            return
        tables.add(mfn)
        raw = mem.read(mfn << PAGE_SHIFT, PAGE_SIZE)
        is_l4 = pages[mfn].type == abi.PGT_l4_page_table
        for i, e in enumerate(struct.unpack("<512Q", raw)):
            if (level == 4 or is_l4) and 256 <= i <= 271:
                # Xen's slots (also when an L4 is reached through a linear entry).
                if e != xen_slots.get(i, 0):
                    out.append(f"{where} L4 {mfn:#x} slot {i}: {e:#x} in Xen's range")
                continue
            if not e & PTE_P:
                continue
            t = (e & ADDR) >> PAGE_SHIFT
            w = rw and bool(e & PTE_RW)
            here = f"{where}/{level}:{i}"
            if level > 1 and e & PTE_PSE:
                out.append(f"{here}: superpage entry {e:#x}")
                continue
            if level == 1:
                at = (mfn << PAGE_SHIFT) | (i << 3)
                if t not in own and not (grant_ok is not None and grant_ok(dom.domid, t, bool(e & PTE_RW), at)):
                    owner = pages[t].owner if t < len(pages) else None
                    out.append(f"{here}: maps mfn {t:#x} of {owner!r} ({'rw' if w else 'ro'})")
                elif w:
                    rw_leaves[t] = here
                continue
            walk(t, level - 1, w, here)

    for root in sorted(roots):
        walk(root, 4, True, f"d{dom.domid} L4 {root:#x}")
    for t in sorted(set(rw_leaves) & tables):
        out.append(f"{rw_leaves[t]}: page table mfn {t:#x} mapped writable")
    return out


def ept_violations(host, dom) -> list[str]:
    """Walk an HVM domain's EPT: every page it maps must be the domain's own."""
    if not dom.ept_root:
        return []
    mem = host.mem
    own = frames_of(dom) | set(host.mm.frames_of(dom.domid))     # given back but still referenced too
    pages = host.mm.pv.pages
    out: list[str] = []

    def walk(mfn: int, level: int, gpa: int) -> None:
        if host.mm.pv.pages[mfn].owner != DOMID_XEN:
            out.append(f"EPT table {mfn:#x} is not Xen's")
        raw = mem.read(mfn << PAGE_SHIFT, PAGE_SIZE)
        for i, e in enumerate(struct.unpack("<512Q", raw)):
            if not e & 7:
                continue
            t = (e & ADDR) >> PAGE_SHIFT
            g = gpa | (i << (12 + 9 * (level - 1)))
            if level == 1 or e & PTE_PSE:
                n = 1 << (9 * (level - 1))
                bad = [f for f in range(t, t + n) if f not in own]
                if bad:
                    out.append(f"EPT maps gpa {g:#x} to mfn {bad[0]:#x}, not d{dom.domid}'s")
                typed = [f for f in range(t, t + n) if f < len(pages) and (pages[f].type in (1, 2, 3, 4)
                                                                             or pages[f].pinned)]
                if typed and e & 2:
                    out.append(f"EPT maps gpa {g:#x} writable to mfn {typed[0]:#x}, a PV page table")
                continue
            walk(t, level - 1, g)

    walk(dom.ept_root, 4, 0)
    return out


def alive_and_runnable(dom) -> bool:
    return dom.alive and dom.pause_count == 0 and any(v.runstate != "offline" for v in dom.vcpus)


def frames_digest(host, frames) -> str:
    """A hash of the contents of machine frames: a victim's memory before and after an attack."""
    h = hashlib.sha256()
    for mfn in sorted(frames):
        h.update(host.mem.read(mfn << 12, 4096))
    return h.hexdigest()


def m2p_of(host, frames) -> list[int]:
    """The machine-to-phys entries of machine frames, read from Xen's M2P table."""
    mm = host.mm
    return [host.mem.read_u64((mm.m2p_frames[(mfn * 8) // 4096] << 12) + (mfn * 8) % 4096) for mfn in sorted(frames)]
