"""The domain builder: what libxenguest and Xen do before a guest's first instruction.

PV (``xc_dom_*``): the kernel and its boot module are copied into the
domain's pseudo-physical memory; the builder writes the P2M list, the
start_info page and the initial page tables (the whole of the domain's
memory mapped in the kernel's direct map, the page tables themselves read-
only), pins the L4 so Xen validates it, writes the hypercall page at the
kernel's ``hypercall_page`` symbol (XEN_ELFNOTE_HYPERCALL_PAGE), and starts
the vCPU with paging on at the kernel's entry, ``rsi`` = start_info.

HVM: every guest frame is mapped in the EPT (or left to shadow paging); the
kernel and its module are put where a boot loader would put them; the vCPU
starts in the firmware (``machines/firmware/hvmloader.s``) at a reset-like
state: flat protected mode, ring 0, paging off, non-root.
"""

from __future__ import annotations

import struct

from ..hw import boot
from ..hw.ept import make_eptp
from ..hw.memory import PAGE_SHIFT, PAGE_SIZE
from ..hw.pagebuild import ept_map_pages
from ..hw.vmx import Vmcs
from ..isa.image import Image
from . import abi, timers, vdev
from ..hw.x86 import (EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, X86_CR0_PE, X86_CR0_PG, X86_CR0_WP,
                      X86_CR4_PAE, X86_CR4_PGE, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER)
from .hvm import HvmIntr
from .hypercall_page import build as build_hypercall_page
from .paging_pool import PoolExhausted, pool_of
from .shadow import ShadowPaging

DIRECT_MAP = boot.DIRECT_MAP
SIF_PRIVILEGED, SIF_INITDOMAIN = 1, 2
HVMLOADER_ENTRY = 0x8000


class BuildError(Exception):
    pass


def _write_phys(host, dom, pa: int, data: bytes) -> None:
    pos = 0
    while pos < len(data):
        pfn = (pa + pos) >> PAGE_SHIFT
        if pfn >= len(dom.p2m):
            raise BuildError(f"{dom.name}: address {pa + pos:#x} is beyond the domain's "
                             f"{dom.mem_mib} MiB")
        off = (pa + pos) & (PAGE_SIZE - 1)
        n = min(len(data) - pos, PAGE_SIZE - off)
        host.mem.write((dom.p2m[pfn] << PAGE_SHIFT) + off, data[pos:pos + n])
        pos += n


def _load(host, dom, kernel: Image, program: Image | None, arg: int) -> boot.BootLayout:
    try:
        layout = boot.boot_layout(kernel, program, arg, dom.mem_pages * PAGE_SIZE)
    except boot.BootError as e:
        raise BuildError(f"{dom.name}: {e}") from None
    for pa, data in layout.writes:
        _write_phys(host, dom, pa, data)
    dom.images["kernel"] = kernel
    if program is not None:
        dom.images["program"] = program
    return layout


def _connect_store(host, dom, pfn: int) -> int:
    """Introduce the domain to xenstored with its store ring page; the guest's port (0: none)."""
    xs = host.services.xenstored
    if xs is None or dom.privileged:
        return 0
    dom.store_pfn = pfn
    _pfn, port = xs.connect(dom, pfn)
    dom.store_evtchn = port
    return port


# ---------------------------------------------------------------- PV
#: How much of a PV domain's memory the builder maps for its kernel (see build_pv).
PV_INITIAL_MAP_PAGES = (64 << 20) >> PAGE_SHIFT


def build_pv(host, dom, kernel: Image, program: Image | None, arg: int = 0) -> None:
    layout = _load(host, dom, kernel, program, arg)
    if "hypercall_page" not in kernel.symbols:
        raise BuildError(f"{dom.name}: the PV kernel has no 'hypercall_page' symbol")
    pv32 = dom.mode == "pv32"
    mem = host.mem
    # Bootstrap area, pseudo-physical, after everything loaded: the boot info,
    # start_info, the P2M list, the console ring, the page tables.
    next_pfn = layout.free >> PAGE_SHIFT

    def take(n: int = 1) -> int:
        nonlocal next_pfn
        first = next_pfn
        next_pfn += n
        if next_pfn > dom.mem_pages:
            raise BuildError(f"{dom.name}: {dom.mem_mib} MiB is too small for the kernel's start-up tables")
        return first

    info_pfn = take()
    _write_phys(host, dom, info_pfn << PAGE_SHIFT, layout.info)
    start_pfn = take()
    p2m_pages = (dom.mem_pages * 8 + PAGE_SIZE - 1) // PAGE_SIZE
    p2m_pfn = take(p2m_pages)
    _write_phys(host, dom, p2m_pfn << PAGE_SHIFT, struct.pack(f"<{len(dom.p2m)}Q", *dom.p2m))
    cons_pfn = take()
    store_pfn = take()
    # The initial mapping covers the boot area, not all of memory (libxc maps the kernel,
    # the boot structures and the page tables plus some slack; Linux maps the rest itself).
    # The lab maps the first PV_INITIAL_MAP_PAGES (64 MiB) or the whole domain if smaller,
    # and tells the kernel that is its memory: its allocator never goes past the mapping.
    mapped = min(dom.mem_pages, max(PV_INITIAL_MAP_PAGES, next_pfn + 1024))   # room for the tables
    n_l1 = (mapped + 511) // 512
    n_l2 = (n_l1 + 511) // 512
    l4_pfn = take()
    l3_pfn = take()
    l2_pfn = take(n_l2)
    l1_pfn = take(n_l1)
    pt_end = l1_pfn + n_l1               # the tables are pfns l4_pfn .. pt_end - 1
    # The boot stack: a page of its own after the page tables, rsp at its top
    # (xg_dom_x86.c: bootstack_pfn, rsp = virt_base + (bootstack_pfn + 1) * PAGE_SIZE).
    stack_pfn = take()
    first_free = take(0)
    if first_free + 128 > mapped:
        raise BuildError(f"{dom.name}: the start-up tables do not fit the initial mapping")
    # The boot info the kernel reads says where free memory starts, and where the memory it
    # may use ends: the end of the initial mapping.
    _write_phys(host, dom, (info_pfn << PAGE_SHIFT) + 0x28, (first_free << PAGE_SHIFT).to_bytes(8, "little"))
    _write_phys(host, dom, (info_pfn << PAGE_SHIFT) + 0x08, (mapped << PAGE_SHIFT).to_bytes(8, "little"))

    p2m = dom.p2m
    # Initial page tables: pfn p at DIRECT_MAP + p*4096, page tables read-only.
    # A 64-bit PV kernel runs in ring 3, so its pages need US; a ring-1 kernel
    # (32-bit profile) keeps them supervisor-only, out of user code's reach.
    kernel_us = 0 if pv32 else _PAGE_USER
    rw = _PAGE_PRESENT | kernel_us | _PAGE_RW
    entries = [(mfn << PAGE_SHIFT) | rw for mfn in p2m[:mapped]]
    for pfn in range(l4_pfn, pt_end):
        entries[pfn] &= ~_PAGE_RW
    for first in range(0, mapped, 512):
        chunk = entries[first:first + 512]
        mem.write(p2m[l1_pfn + first // 512] << PAGE_SHIFT, struct.pack(f"<{len(chunk)}Q", *chunk))
    for i in range(n_l1):
        l2 = l2_pfn + i // 512
        mem.write_u64((p2m[l2] << PAGE_SHIFT) + (i % 512) * 8, (p2m[l1_pfn + i] << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER)
    for i in range(n_l2):
        mem.write_u64((p2m[l3_pfn] << PAGE_SHIFT) + i * 8, (p2m[l2_pfn + i] << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER)
    slot = (DIRECT_MAP >> 39) & 511
    mem.write_u64((p2m[l4_pfn] << PAGE_SHIFT) + slot * 8, (p2m[l3_pfn] << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER)
    rc = host.mm.pv.pin_table(dom.domid, p2m[l4_pfn], 4)
    if rc < 0:
        raise BuildError(f"{dom.name}: Xen refused the initial page tables ({abi.errno_name(-rc)}); see xl dmesg")

    # shared_info: a Xen page shared with the domain; events start masked.
    shared = host.alloc_frame(dom.domid)
    dom.shared_info_mfn = shared
    for v in range(32):
        mem.write((shared << PAGE_SHIFT) + v * 64 + 1, b"\x01")
    dom.console_pfn = cons_pfn
    dom.start_info_pfn = start_pfn
    console_port = 0
    if not dom.privileged and host.services.xenconsoled is not None:
        console_port = host.services.xenconsoled.connect(dom)
    dom.console_evtchn = console_port

    store_port = _connect_store(host, dom, store_pfn)

    si = bytearray(PAGE_SIZE)
    magic = b"xen-3.0-x86_32p" if pv32 else b"xen-3.0-x86_64"
    si[0:len(magic)] = magic
    flags = (SIF_PRIVILEGED | SIF_INITDOMAIN) if dom.privileged else 0
    struct.pack_into("<QQI", si, 32, dom.mem_pages, shared << PAGE_SHIFT, flags)
    struct.pack_into("<QI", si, 56, p2m[store_pfn] if store_port else 0, store_port)  # store_mfn, store_evtchn
    struct.pack_into("<QI", si, 72, p2m[cons_pfn], console_port)             # console.domU
    struct.pack_into("<QQQQQ", si, 88, DIRECT_MAP + (l4_pfn << PAGE_SHIFT), 2 + n_l2 + n_l1,
                     DIRECT_MAP + (p2m_pfn << PAGE_SHIFT), DIRECT_MAP + (info_pfn << PAGE_SHIFT), len(layout.info))
    cmdline = (getattr(dom.config, "cmdline", None) or "").encode()[:1023]
    si[128:128 + len(cmdline)] = cmdline
    _write_phys(host, dom, start_pfn << PAGE_SHIFT, bytes(si))

    # The hypercall page at the kernel's hypercall_page symbol.
    hp_pa = boot.physical_of(kernel.symbols["hypercall_page"])
    _write_phys(host, dom, hp_pa, build_hypercall_page("pv32" if pv32 else "pv64"))

    for vid, v in enumerate(dom.vcpus):
        cpu = v.cpu
        cpu.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP
        cpu.cr4 = X86_CR4_PAE | X86_CR4_PGE
        cpu.efer = EFER_LME | EFER_LMA | EFER_NXE | EFER_SCE
        cpu.write_cr(3, p2m[l4_pfn] << PAGE_SHIFT)
        host.mm.pv.set_baseptr(dom.domid, vid, p2m[l4_pfn])
        v.guest_table = p2m[l4_pfn]
        v.kernel_mode = True
        cpu.cs = 0xE019 if pv32 else 0xE030
        cpu.ss = 0xE021 if pv32 else 0xE02B
        cpu.set_cpl(1 if pv32 else 3, "PV kernel start")
        cpu.rflags = 1 << 9
        cpu.rip = kernel.entry
        cpu.regs[6] = DIRECT_MAP + (start_pfn << PAGE_SHIFT)      # rsi = start_info
        # pv_vcpu_initialise(): "PV guests by default have a 100Hz ticker" (armed when it first runs)
        v.periodic_period = timers.ns_to_cycles(host, timers.PV_DEFAULT_PERIOD_NS)
        cpu.regs[4] = DIRECT_MAP + ((stack_pfn + 1) << PAGE_SHIFT)  # the boot stack, until the kernel sets its own
        cpu.root = True
    host.emit(dom.vcpus[0], "boot", mode=dom.mode, entry=kernel.entry,
              message=f"PV: start_info at {DIRECT_MAP + (start_pfn << PAGE_SHIFT):#x}, page tables at pfn "
                      f"{l4_pfn:#x} (L4 mfn {p2m[l4_pfn]:#x}), P2M list at pfn {p2m_pfn:#x}")
    host.log(f"d{dom.domid}: PV kernel entry {kernel.entry:#x}, L4 mfn {p2m[l4_pfn]:#x} pinned, "
             f"{n_l1} L1 tables")


# ---------------------------------------------------------------- HVM
def _new_shared_info(host, dom) -> None:
    """Xen's shared_info page for an HVM/PVH domain: mapped nowhere until the guest asks
    (XENMEM_add_to_physmap, XENMAPSPACE_shared_info). Upcalls are not masked: HVM ignores the mask."""
    if not dom.shared_info_mfn:
        dom.shared_info_mfn = host.alloc_frame(dom.domid)


def build_hvm(host, dom, firmware: Image, kernel: Image, program: Image | None, arg: int = 0) -> None:
    layout = _load(host, dom, kernel, program, arg)
    store_pfn = layout.free >> PAGE_SHIFT
    # The PV console ring, as libxl gives every HVM guest one (its special pages,
    # tools/libs/guest/xg_dom_x86.c): a PVHVM kernel finds it in HVM_PARAM_CONSOLE_PFN /
    # _EVTCHN and writes hvc0 there; an unmodified kernel never looks.
    cons_pfn = store_pfn + 1
    info = bytearray(layout.info)
    struct.pack_into("<Q", info, 0x28, (cons_pfn + 1) << PAGE_SHIFT)      # the ring pages are not free memory
    _write_phys(host, dom, boot.BOOT_INFO, bytes(info))
    port = _connect_store(host, dom, store_pfn)
    if port:
        dom.hvm_params[abi.HVM_PARAM_STORE_PFN] = store_pfn
        dom.hvm_params[abi.HVM_PARAM_STORE_EVTCHN] = port
    if host.services.xenconsoled is not None and not dom.privileged:
        dom.console_pfn = cons_pfn
        dom.console_evtchn = host.services.xenconsoled.connect(dom)
        dom.hvm_params[abi.HVM_PARAM_CONSOLE_PFN] = cons_pfn
        dom.hvm_params[abi.HVM_PARAM_CONSOLE_EVTCHN] = dom.console_evtchn
    # hvmloader moves the ACPI blocks to the V1 layout (0xb000) for qemu-xen, the lab's device
    # model (tools/firmware/hvmloader: HVM_PARAM_ACPI_IOPORTS_LOCATION = 1); the lab's small
    # firmware does not make that call, so the builder records its result.
    dom.hvm_params[abi.HVM_PARAM_ACPI_IOPORTS_LOCATION] = 1
    # libxl's hvm_set_conf_params(): xl.cfg's vpt_align, true unless set (libxl_create.c), so
    # periodic platform timers tick on multiples of their period (hvm/vpt.c align_timer())
    dom.hvm_params[abi.HVM_PARAM_VPT_ALIGN] = 1
    for sec in firmware.sections:
        if sec.data:
            _write_phys(host, dom, sec.base, bytes(sec.data))
    _write_phys(host, dom, firmware.symbols["kernel_entry"], boot.physical_of(kernel.entry).to_bytes(8, "little"))
    dom.images["firmware"] = firmware
    use_ept = dom.hap and host.config.ept
    if not use_ept:
        dom.extra["shadow"] = ShadowPaging(host, dom)
    else:
        dom.ept_root = _ept_for(host, dom)
    vdev.install_hvm(host, dom)
    # libxl's hvm_set_conf_params() after the domain is created: xl.cfg's hpet, true unless
    # set (libxl_create.c); hpet.c answers every access with ~0 while it is clear
    dom.hvm_params[abi.HVM_PARAM_HPET_ENABLED] = int(getattr(dom.config, "hpet", True))
    v0 = dom.vcpus[0]
    _new_shared_info(host, dom)
    for v in dom.vcpus:
        cpu = v.cpu
        cpu.vmcs = Vmcs(vendor=host.vendor, ept=use_ept, eptp=make_eptp(dom.ept_root << PAGE_SHIFT) if use_ept else 0,
                        msr_exit={abi.XEN_HYPERCALL_MSR, abi.MSR_X2APIC_EOI}, external_interrupt_exiting=False,
                        cr3_load_exiting=not use_ept, cr3_store_exiting=not use_ept, invlpg_exiting=not use_ept,
                        exception_bitmap=(1 << 14) if not use_ept else 0)
        cpu.irq_source = HvmIntr(host, v, dom.devices["vpic"])
        cpu.cr0 = X86_CR0_PE
        cpu.rip = HVMLOADER_ENTRY
        cpu.regs[4] = 0x7FF0
        if not use_ept:
            dom.extra["shadow"].attach(v)
        cpu.vmentry()
    host.emit(v0, "boot", mode=dom.mode, entry=HVMLOADER_ENTRY,
              message=f"HVM: firmware at {HVMLOADER_ENTRY:#x}, kernel entry {boot.physical_of(kernel.entry):#x}, "
                      f"{'EPT' if use_ept else 'shadow paging'}")
    host.log(f"d{dom.domid}: HVM guest, {'HAP (EPT root mfn %#x)' % dom.ept_root if use_ept else 'shadow paging'}")


def _ept_for(host, dom) -> int:
    """The domain's EPT, every RAM gfn mapped, its tables from the domain's paging pool."""
    pool = pool_of(host, dom)
    try:
        root = pool.alloc()
        ept_map_pages(host.mem, pool.alloc, root << PAGE_SHIFT, dom.p2m, perms="rwx")
    except PoolExhausted as e:
        raise BuildError(f"{dom.name}: {e} (shadow_memory in the config sizes it)") from None
    return root


# ---------------------------------------------------------------- PVH
HVM_START_INFO = 0x6000
XEN_HVM_START_MAGIC = 0x336EC578


def build_pvh(host, dom, kernel: Image, program: Image | None, arg: int = 0) -> None:
    """PVH: no firmware and no device model; start at the kernel's 32-bit entry.

    rbx points at struct hvm_start_info (public/arch-x86/hvm/start_info.h),
    whose first module is the lab's boot information; the console ring and its
    event channel are HVM params (HVM_PARAM_CONSOLE_PFN / _EVTCHN).
    """
    layout = _load(host, dom, kernel, program, arg)
    cons_pfn = layout.free >> PAGE_SHIFT
    store_pfn = cons_pfn + 1
    info = bytearray(layout.info)
    struct.pack_into("<Q", info, 0x28, (store_pfn + 1) << PAGE_SHIFT)    # free memory starts after the rings
    _write_phys(host, dom, boot.BOOT_INFO, bytes(info))
    modlist = HVM_START_INFO + 0x100
    start = struct.pack("<IIIIQQQQII", XEN_HVM_START_MAGIC, 1, 0, 1, modlist, 0, 0, 0, 0, 0)
    _write_phys(host, dom, HVM_START_INFO, start)
    _write_phys(host, dom, modlist, struct.pack("<QQQQ", boot.BOOT_INFO, len(info), 0, 0))
    dom.console_pfn = cons_pfn
    cons = host.services.xenconsoled
    port = cons.connect(dom) if cons is not None else 0
    dom.console_evtchn = port
    dom.hvm_params[abi.HVM_PARAM_CONSOLE_PFN] = cons_pfn
    dom.hvm_params[abi.HVM_PARAM_CONSOLE_EVTCHN] = port
    store_port = _connect_store(host, dom, store_pfn)
    if store_port:
        dom.hvm_params[abi.HVM_PARAM_STORE_PFN] = store_pfn
        dom.hvm_params[abi.HVM_PARAM_STORE_EVTCHN] = store_port
    _new_shared_info(host, dom)
    if not (dom.hap and host.config.ept):
        raise BuildError(f"{dom.name}: a PVH guest needs hardware-assisted paging (hap=1 on a host with EPT/NPT)")
    dom.ept_root = root = _ept_for(host, dom)
    vdev.install_pvh(host, dom)
    entry = boot.physical_of(kernel.entry)
    for v in dom.vcpus:
        cpu = v.cpu
        cpu.vmcs = Vmcs(vendor=host.vendor, ept=True, eptp=make_eptp(root << PAGE_SHIFT),
                        msr_exit={abi.XEN_HYPERCALL_MSR, abi.MSR_X2APIC_EOI}, external_interrupt_exiting=False)
        cpu.irq_source = HvmIntr(host, v)      # no PIC: only the callback vector and the vLAPIC
        cpu.cr0 = X86_CR0_PE
        cpu.rip = entry
        cpu.regs[3] = HVM_START_INFO
        cpu.vmentry()
    host.emit(dom.vcpus[0], "boot", mode=dom.mode, entry=entry,
              message=f"PVH: 32-bit entry {entry:#x} with paging off, rbx = hvm_start_info at "
                      f"{HVM_START_INFO:#x}; no firmware, no device model")
    host.log(f"d{dom.domid}: PVH guest, entry {entry:#x}, HAP (EPT root mfn {root:#x}), console ring pfn "
             f"{cons_pfn:#x} port {port}")
