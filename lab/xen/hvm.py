"""HVM and PVH guests: what Xen does with each VM exit.

The guest kernel runs unmodified in non-root ring 0. The VMCS decides which
of its instructions and events leave the guest; each exit lands here with
its Intel exit reason (reported with the SVM exit code on an AMD host), Xen
handles it, charges the cycles, and re-enters the guest.

Inside Xen, as in real Xen, live the emulated PIC and PIT (``vpic``,
``vpit``), the HVM debug port 0xE9 (``hvm_print_line``) and the CPUID
policy with Xen's leaves at 0x40000000. Port I/O that nothing claims
completes as real hardware does: reads return all ones.
"""

from __future__ import annotations

from ..hw import flags as F
from ..hw.cpu import native_cpuid
from ..hw.faults import VmExit
from ..hw.vmx import exit_code
from ..isa.encoding import INSN_SIZE
from . import abi
from .guestmem import GuestFault, gfn_to_maddr
from .hypercall_page import build as build_hypercall_page

XEN_CPUID_BASE = 0x40000000
XEN_HYPERCALL_MSR = 0x40000000
ACPI_PM1A_CNT = 0x604


def cpuid(host, v, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """Xen's CPUID policy for a guest: the host's, masked, plus Xen's own leaves."""
    from .host import XEN_VERSION

    def s4(text: str) -> int:
        return int.from_bytes(text.encode(), "little")
    if leaf == XEN_CPUID_BASE:
        return XEN_CPUID_BASE + 5, s4("XenV"), s4("MMXe"), s4("nVMM")
    if leaf == XEN_CPUID_BASE + 1:
        return (XEN_VERSION[0] << 16) | XEN_VERSION[1], 0, 0, 0
    if leaf == XEN_CPUID_BASE + 2:
        return 1, XEN_HYPERCALL_MSR, 0, 0
    if XEN_CPUID_BASE < leaf <= XEN_CPUID_BASE + 5:
        return 0, 0, 0, 0
    a, b, c, d = native_cpuid(host.vendor, leaf, subleaf)
    if leaf == 1:
        c = (c & ~(1 << 5)) | (1 << 31)           # no VMX for the guest; the hypervisor bit
    if leaf == 0x80000001:
        c &= ~(1 << 2)                            # no SVM for the guest
    return a, b, c, d


def on_vmexit(host, v, exc: VmExit) -> None:
    cpu = v.cpu
    dom = v.domain
    name, number = exit_code(host.vendor, exc.reason, exc.info.get("vector"))
    if host.vendor == "intel":
        name = abi.vmx_exit_name(number) if hasattr(abi, "vmx_exit_name") else name
    cost = host.charge(v, "vmexit")
    host.emit(v, "vmexit", reason=name, nr=number, rip=cpu.rip, qualification=exc.qualification,
              info={k: val for k, val in exc.info.items() if k != "reason"}, cost=cost)
    handler = _HANDLERS.get(exc.reason)
    if handler is None:
        host.crash(dom, f"unhandled VM exit {name} ({number}) at {cpu.rip:#x}", v)
        return
    handler(host, v, exc)
    if exc.reason != "VMCALL":               # a hypercall charges its handler itself
        host.charge(v, "xen_handler")
    if dom.alive and cpu.stopped is None:
        cpu.vmentry()
        host.emit(v, "vmentry", rip=cpu.rip)


def _advance(cpu) -> None:
    cpu.rip += INSN_SIZE


def _exit_cpuid(host, v, exc) -> None:
    cpu = v.cpu
    a, b, c, d = cpuid(host, v, cpu.regs[0] & 0xFFFFFFFF, cpu.regs[1] & 0xFFFFFFFF)
    cpu.regs[0], cpu.regs[3], cpu.regs[1], cpu.regs[2] = a, b, c, d
    _advance(cpu)


def _exit_hlt(host, v, exc) -> None:
    cpu = v.cpu
    _advance(cpu)
    if not cpu.rf & F.IF:
        # hlt with interrupts off: this vCPU can never run again (hvm_hlt -> vcpu down).
        v.runstate = "offline"
        host.log("hlt with interrupts disabled: vCPU down", v)
        if all(x.runstate == "offline" for x in v.domain.vcpus):
            host.shutdown(v.domain, "poweroff")
        return
    pic = v.domain.devices.get("vpic")
    if pic is not None and pic.waiting:
        return
    host.block(v, "hlt")


def _exit_io(host, v, exc) -> None:
    cpu = v.cpu
    dom = v.domain
    port, size, direction = exc.info["port"], exc.info["size"], exc.info["dir"]
    mask = (1 << (8 * size)) - 1
    value = cpu.regs[0] & mask
    device = "none"
    result = mask
    devices = dom.devices
    if port in (0x20, 0x21) and "vpic" in devices:
        device = "vpic (in Xen)"
        if direction == "in":
            result = devices["vpic"].port_in(port)
        else:
            devices["vpic"].port_out(port, value)
    elif 0x40 <= port <= 0x43 and "vpit" in devices:
        device = "vpit (in Xen)"
        if direction == "in":
            result = devices["vpit"].port_in(port)
        else:
            devices["vpit"].port_out(port, value)
    elif port == 0xE9:
        device = "debug port (hvm_print_line)"
        if direction == "out":
            from .console import guest_console_write
            guest_console_write(host, dom, chr(value & 0xFF))
        else:
            result = 0xE9
    elif port == ACPI_PM1A_CNT:
        device = "acpi pm1a (in Xen)"
        if direction == "out" and value & 0x2000:
            host.emit(v, "ioport", port=port, size=size, dir=direction, value=value, device=device)
            host.shutdown(dom, "poweroff")
            return
        result = 0
    else:
        dm = host.services.get("device_model")
        if dm is not None and dm.claims(dom, port):
            device = "device model (ioreq)"
            result = dm.port_io(v, port, size, direction, value)
    if direction == "in":
        cpu.regs[0] = (cpu.regs[0] & ~mask) | (result & mask) if size < 4 else result & mask
        value = result & mask
    host.emit(v, "ioport", port=port, size=size, dir=direction, value=value, device=device)
    _advance(cpu)


def _exit_msr(host, v, exc) -> None:
    cpu = v.cpu
    msr = exc.info["msr"]
    if exc.reason == "MSR_WRITE":
        value = exc.info["value"]
        if msr == XEN_HYPERCALL_MSR:
            gpa = value & ~0xFFF
            try:
                page = build_hypercall_page(host.vendor)
                host.mem.write(gfn_to_maddr(v.domain, gpa), page)
            except GuestFault as e:
                host.log(f"hypercall page at bad gpa {gpa:#x}: {e}", v)
            else:
                v.domain.hypercall_page_gpa = gpa
                host.log(f"hypercall page written at gpa {gpa:#x}", v)
            host.emit(v, "msr", dir="write", msr=msr, value=value)
        else:
            cpu.write_msr(msr, value)
    else:
        value = cpu.read_msr(msr) if msr != XEN_HYPERCALL_MSR else 0
        cpu.regs[0] = value & 0xFFFFFFFF
        cpu.regs[2] = value >> 32
        host.emit(v, "msr", dir="read", msr=msr, value=value)
    _advance(cpu)


def _exit_vmcall(host, v, exc) -> None:
    from .hypercalls import dispatch
    cpu = v.cpu
    r = cpu.regs
    _advance(cpu)
    ret = dispatch(host, v, r[0], [r[7], r[6], r[2], r[10], r[8]])
    if ret is not None:
        r[0] = ret & 0xFFFF_FFFF_FFFF_FFFF


def _exit_ept(host, v, exc) -> None:
    gpa = exc.info.get("gpa", 0)
    dm = host.services.get("device_model")
    if dm is not None and dm.claims_mmio(v.domain, gpa):
        dm.mmio(v, exc)
        return
    host.emit(v, "pagetable", op="ept violation", addr=gpa, value=exc.qualification, level=None,
              result="crash", message=exc.info.get("reason", ""))
    host.crash(v.domain, f"EPT violation at gpa {gpa:#x} (qualification {exc.qualification:#x}) "
                         f"with no device behind it", v)


def _exit_triple(host, v, exc) -> None:
    host.crash(v.domain, f"triple fault: {exc.info.get('reason', '')}", v)


def _exit_exception(host, v, exc) -> None:
    shadow = v.domain.extra.get("shadow")
    if shadow is not None and exc.info.get("vector") == 14:
        shadow.page_fault(v, exc)
        return
    host.crash(v.domain, f"unexpected exception exit, vector {exc.info.get('vector')}", v)


def _exit_cr(host, v, exc) -> None:
    shadow = v.domain.extra.get("shadow")
    if shadow is None:
        host.crash(v.domain, "CR access exit without shadow paging", v)
        return
    shadow.cr_access(v, exc)
    _advance(v.cpu)


def _exit_invlpg(host, v, exc) -> None:
    shadow = v.domain.extra.get("shadow")
    if shadow is not None:
        shadow.invlpg(v, exc.info.get("addr", exc.qualification))
    _advance(v.cpu)


def _exit_rdtsc(host, v, exc) -> None:
    cpu = v.cpu
    tsc = cpu.cycles + cpu.tsc_offset
    cpu.regs[0], cpu.regs[2] = tsc & 0xFFFFFFFF, (tsc >> 32) & 0xFFFFFFFF
    _advance(cpu)


def _exit_pause(host, v, exc) -> None:
    _advance(v.cpu)
    v.cpu.yield_now = True


def _exit_external(host, v, exc) -> None:
    pass


_HANDLERS = {
    "CPUID": _exit_cpuid, "HLT": _exit_hlt, "IO_INSTRUCTION": _exit_io, "MSR_READ": _exit_msr,
    "MSR_WRITE": _exit_msr, "VMCALL": _exit_vmcall, "EPT_VIOLATION": _exit_ept, "EPT_MISCONFIG": _exit_ept,
    "TRIPLE_FAULT": _exit_triple, "EXCEPTION_NMI": _exit_exception, "CR_ACCESS": _exit_cr,
    "INVLPG": _exit_invlpg, "RDTSC": _exit_rdtsc, "PAUSE": _exit_pause, "EXTERNAL_INTERRUPT": _exit_external,
}
