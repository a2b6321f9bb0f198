"""HVM and PVH guests: what Xen does with each VM exit.

The guest kernel runs unmodified in non-root ring 0. The VMCS decides which
of its instructions and events leave the guest; each exit lands here with
its Intel exit reason (reported with the SVM exit code on an AMD host), Xen
handles it, charges the cycles, and re-enters the guest.

Inside Xen, as in real Xen, live the platform devices Xen emulates itself
(:mod:`lab.xen.vdev`: local APIC, IO-APIC, HPET, PICs, PIT, RTC, PM timer
and the debug port 0xE9), found through the domain's intercept table before
anything goes to the device model, and the CPUID policy with Xen's leaves at
0x40000000. Port I/O that nothing claims completes as real hardware does:
reads return all ones.

Event channels reach an HVM or PVH vCPU as an interrupt (``xen/arch/x86/hvm/
irq.c``): the callback that HVM_PARAM_CALLBACK_IRQ names (a GSI or a PCI
INTx line raised on the emulated PIC, or a vector injected directly), or the
per-vCPU vector of HVMOP_set_evtchn_upcall_vector, raised in the vLAPIC.
:class:`HvmIntr` is each vCPU's interrupt source, Xen's
``hvm_vcpu_has_pending_irq``. XENMEM_add_to_physmap puts shared_info and the
grant-table frames into the guest's physical address space.
"""

from __future__ import annotations

from typing import Any

from ..hw import flags as F
from ..hw.cpu import native_cpuid
from ..hw.faults import VmExit
from ..hw.pagebuild import ept_map
from ..hw.vmx import EXIT_REASONS, exit_code
from ..isa.encoding import INSN_SIZE
from .paging_pool import PoolExhausted, pool_of
from . import events
from . import abi
from .abi.cpuid import XEN_HYPERCALL_MSR
from .hypercall_page import build as build_hypercall_page
from .hypercall_table import Preempted, dispatch
from .mmio import handle_mmio, is_mmio_dm
from .release import XEN_VERSION
from .vdev import intercept, vpic
from .vdev.irq import NR_GSIS, link_route
from .vdev.intercept import EMULATOR_DM, EMULATOR_XEN
from .vdev.vlapic import eoi as vlapic_eoi

XEN_CPUID_BASE = 0x40000000
#: A 4-level EPT maps 48-bit guest-physical addresses: gfns below 2^36.
EPT_GFN_BITS = 36


def cpuid(host, v, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """Xen's CPUID policy for a guest: the host's, masked, plus Xen's own leaves."""

    def s4(text: str) -> int:
        return int.from_bytes(text.encode(), "little")
    if leaf == XEN_CPUID_BASE:
        return XEN_CPUID_BASE + 5, s4("XenV"), s4("MMXe"), s4("nVMM")
    if leaf == XEN_CPUID_BASE + 1:
        return (XEN_VERSION[0] << 16) | XEN_VERSION[1], 0, 0, 0
    if leaf == XEN_CPUID_BASE + 2:
        return 1, XEN_HYPERCALL_MSR, 0, 0
    if leaf == XEN_CPUID_BASE + 4 and subleaf == 0:
        # HVM-specific features: the vCPU id in EBX and the domain id in ECX, said present
        # by XEN_HVM_CPUID_VCPU_ID_PRESENT (bit 3) and XEN_HVM_CPUID_DOMID_PRESENT (bit 4)
        return (1 << 3) | (1 << 4), v.id, v.domain.domid, 0
    if XEN_CPUID_BASE < leaf <= XEN_CPUID_BASE + 5:
        return 0, 0, 0, 0
    a, b, c, d = native_cpuid(host.vendor, leaf, subleaf)
    if leaf == 1:
        c = (c & ~(1 << 5)) | (1 << 31)           # no VMX for the guest; the hypervisor bit
    if leaf == 0x80000001:
        c &= ~(1 << 2)                            # no SVM for the guest
    return a, b, c, d


def _exit_name(vendor: str, exc: VmExit) -> tuple[str, int]:
    """The exit's name and number as the trace shows them: Xen's EXIT_REASON_ names on an Intel
    host, its VMEXIT_ names on an AMD one (svm/vmcb.h: EXCEPTION_PF, not EXCP_14)."""
    found = _EXIT_NAMES.get((vendor, exc.reason))
    if found is not None:
        return found
    name, number = exit_code(vendor, exc.reason, exc.info.get("vector"), exc.qualification)
    return (abi.vmx_exit_name(number) if vendor == "intel" else abi.svm_exit_name(number)), number


def _fixed_exit_names() -> dict[tuple[str, str], tuple[str, int]]:
    """The names of the exits whose number depends only on the vendor and the reason (all
    but SVM's exception and CR exits), worked out once rather than at every exit."""
    out = {}
    for reason in EXIT_REASONS.values():
        for vendor, name_of in (("intel", abi.vmx_exit_name), ("amd", abi.svm_exit_name)):
            if vendor == "amd" and reason in ("EXCEPTION_NMI", "CR_ACCESS"):
                continue
            number = exit_code(vendor, reason)[1]
            out[(vendor, reason)] = (name_of(number), number)
    return out


_EXIT_NAMES = _fixed_exit_names()


def on_vmexit(host, v, exc: VmExit) -> None:
    cpu = v.cpu
    dom = v.domain
    name, number = _exit_name(host.vendor, exc)
    cost = host.charge(v, "vmexit")
    info = exc.info
    if "reason" in info:                     # the text of why a walk failed stays out of the event
        info = {k: val for k, val in info.items() if k != "reason"}
    host.emit(v, "vmexit", reason=name, nr=number, rip=cpu.rip, qualification=exc.qualification,
              info=info, cost=cost)
    reason = exc.reason
    handler = _HANDLERS.get(reason)
    if handler is None:
        host.crash(dom, f"unhandled VM exit {name} ({number}) at {cpu.rip:#x}", v)
        return
    if dom.callback_via_asserted:
        maybe_deassert_evtchn_irq(host, dom)
    handler(host, v, exc)
    if reason != "VMCALL":                   # a hypercall charges its handler itself
        host.charge(v, "xen_handler")
    if dom.alive and cpu.stopped is None:
        cpu.vmentry()
        host.emit(v, "vmentry", rip=cpu.rip)


def retire_emulated(cpu) -> None:
    """Xen carried the guest's instruction out: it retires as the guest's, so an
    instruction-bounded run counts it whichever way it went (the CPU took back its own
    count of it when it exited)."""
    cpu.icount += 1


def _advance(cpu) -> None:
    """The exit's instruction is done: past it, and counted."""
    cpu.rip += INSN_SIZE
    retire_emulated(cpu)


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
    # hvm_hlt(): an interrupt the vCPU can take now means no sleep at all.
    src = cpu.irq_source
    if src is not None and src.pending() is not None:
        return
    host.block(v, "hlt")


def _exit_io(host, v, exc) -> None:
    """hvmemul_do_pio(): Xen's own port handlers first (hvm_io_intercept()), then an ioreq to
    the device model if it registered the port, else Xen's null handler (reads all ones)."""
    cpu = v.cpu
    info = exc.info
    port, size, direction = info["port"], info["size"], info["dir"]
    mask = (1 << (8 * size)) - 1
    value = cpu.regs[0] & mask
    handled = intercept.port_io(host, v, port, size, direction, value)
    if handled is not None:
        result, device = handled
        emulator = EMULATOR_XEN
    else:
        # ioreq_server_select(): the server that registered the port, found once for the round trip
        dm = host.services.device_model
        target = dm.port_target(v.domain, port) if dm is not None else None
        if target is None:
            result, device, emulator = mask, "none", EMULATOR_XEN
        else:
            device, emulator = "device model (ioreq)", EMULATOR_DM
            result = dm.port_io(v, port, size, direction, value, target)
    if direction == "in":
        cpu.regs[0] = (cpu.regs[0] & ~mask) | (result & mask) if size < 4 else result & mask
        value = result & mask
    host.emit(v, "ioport", port=port, size=size, dir=direction, value=value, device=device, emulator=emulator)
    _advance(cpu)


def _exit_msr(host, v, exc) -> None:
    cpu = v.cpu
    msr = exc.info["msr"]
    if msr == abi.MSR_X2APIC_EOI:
        _x2apic_eoi(host, v, exc)
        return
    if exc.reason == "MSR_WRITE":
        value = exc.info["value"]
        if msr == XEN_HYPERCALL_MSR:
            # guest_wrmsr_xen(): get_page_from_gfn() and get_page_type(PGT_writable_page) on
            # the page, else the WRMSR raises #GP(0) (arch/x86/msr.c, cpuid.c).
            gpa = value & ~0xFFF
            held = host.frames.hold_gfn(v.domain, gpa >> 12, writable=True, holder="hypercall page")
            host.emit(v, "msr", dir="write", msr=msr, value=value)
            if isinstance(held, int):
                host.log(f"hypercall page at bad gpa {gpa:#x}: not a page of the domain", v)
                _inject_gp(host, v, f"hypercall page MSR: gpa {gpa:#x} is not the domain's RAM")
                return
            try:
                held.write(0, build_hypercall_page(host.vendor))
            finally:
                held.release()
            v.domain.hypercall_page_gpa = gpa
            host.log(f"hypercall page written at gpa {gpa:#x}", v)
        else:
            cpu.write_msr(msr, value)
    else:
        value = cpu.read_msr(msr) if msr != XEN_HYPERCALL_MSR else 0
        cpu.regs[0] = value & 0xFFFFFFFF
        cpu.regs[2] = value >> 32
        host.emit(v, "msr", dir="read", msr=msr, value=value)
    _advance(cpu)


def _exit_vmcall(host, v, exc) -> None:
    cpu = v.cpu
    r = cpu.regs
    cpu.rip += INSN_SIZE
    ret = dispatch(host, v, r[0], [r[7], r[6], r[2], r[10], r[8]])
    if isinstance(ret, Preempted):
        # A continuation: the RIP goes back onto the VMCALL, which runs again with the new
        # arguments (and retires only when the call is done).
        for reg, val in zip((7, 6, 2, 10, 8), ret.args):
            r[reg] = val
        cpu.rip -= INSN_SIZE
        cpu.yield_now = True
        return
    retire_emulated(cpu)
    if ret is not None:
        r[0] = ret & 0xFFFF_FFFF_FFFF_FFFF


def _exit_ept(host, v, exc) -> None:
    gpa = exc.info.get("gpa", 0)
    if exc.reason == "EPT_VIOLATION" and is_mmio_dm(v.domain, gpa >> 12):
        # hvm_hap_nested_page_fault() (arch/x86/hvm/hvm.c): a gfn with no RAM is p2m_mmio_dm,
        # and the access goes to handle_mmio_with_translation(): emulated, not a crash.
        host.emit(v, "pagetable", op="ept violation", addr=gpa, value=exc.qualification, level=None,
                  result="mmio", message=f"gfn {gpa >> 12:#x} has no RAM (p2m_mmio_dm): Xen emulates the access")
        handle_mmio(host, v)
        return
    host.emit(v, "pagetable", op="ept violation", addr=gpa, value=exc.qualification, level=None,
              result="crash", message=exc.info.get("reason", ""))
    # ept_handle_violation() (arch/x86/hvm/vmx/vmx.c): what hvm_hap_nested_page_fault() cannot
    # fix (a violation on RAM the lab never restricts, a misconfiguration) crashes the domain.
    host.crash(v.domain, f"EPT violation at gpa {gpa:#x} (qualification {exc.qualification:#x}) "
                         f"that Xen cannot resolve", v)


def _exit_triple(host, v, exc) -> None:
    host.crash(v.domain, f"triple fault: {exc.info.get('reason', '')}", v)


def _shadow_op(host, v, op, *args) -> bool:
    """A shadow-paging operation; a domain whose paging pool runs out is crashed (only it)."""
    try:
        op(*args)
    except PoolExhausted as e:
        host.crash(v.domain, f"shadow: {e}", v)
        return False
    return True


def _exit_exception(host, v, exc) -> None:
    shadow = v.domain.extra.get("shadow")
    if shadow is not None and exc.info.get("vector") == 14:
        _shadow_op(host, v, shadow.page_fault, v, exc)
        return
    host.crash(v.domain, f"unexpected exception exit, vector {exc.info.get('vector')}", v)


def _exit_cr(host, v, exc) -> None:
    shadow = v.domain.extra.get("shadow")
    if shadow is None:
        host.crash(v.domain, "CR access exit without shadow paging", v)
        return
    if _shadow_op(host, v, shadow.cr_access, v, exc):
        _advance(v.cpu)


def _exit_invlpg(host, v, exc) -> None:
    shadow = v.domain.extra.get("shadow")
    if shadow is not None and not _shadow_op(host, v, shadow.invlpg, v, exc.info.get("addr", exc.qualification)):
        return
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


def _inject_gp(host, v, reason: str) -> None:
    """Xen injects #GP(0) into the guest: delivered through its IDT on the way back in."""
    cpu = v.cpu
    cpu.root = False
    host.emit(v, "trap", vector=13, mnemonic="#GP", error_code=0, cr2=None, rip=cpu.rip, cpl=cpu.cpl,
              handler="idt", reason=reason)
    cpu.deliver(13, 0, software=False)


def _x2apic_eoi(host, v, exc) -> None:
    """The vLAPIC's EOI register as x2APIC MSR 0x80B: write 0 to end the highest in-service vector.

    Xen's guest_{rd,wr}msr_x2apic(): only in x2APIC mode (IA32_APIC_BASE.EXTD), write-only,
    and a non-zero write is refused; each refusal is #GP(0).
    """
    cpu = v.cpu
    value = exc.info.get("value", 0)
    if not cpu.apic_base & abi.APIC_BASE_EXTD:
        _inject_gp(host, v, "x2APIC MSR 0x80b while the local APIC is not in x2APIC mode")
        return
    if exc.reason != "MSR_WRITE" or value != 0:
        _inject_gp(host, v, "the x2APIC EOI register is write-only and takes 0")
        return
    host.emit(v, "msr", dir="write", msr=abi.MSR_X2APIC_EOI, value=value)
    vlapic_eoi(host, v)
    _advance(cpu)


_HANDLERS = {
    "CPUID": _exit_cpuid, "HLT": _exit_hlt, "IO_INSTRUCTION": _exit_io, "MSR_READ": _exit_msr,
    "MSR_WRITE": _exit_msr, "VMCALL": _exit_vmcall, "EPT_VIOLATION": _exit_ept, "EPT_MISCONFIG": _exit_ept,
    "TRIPLE_FAULT": _exit_triple, "EXCEPTION_NMI": _exit_exception, "CR_ACCESS": _exit_cr,
    "INVLPG": _exit_invlpg, "RDTSC": _exit_rdtsc, "PAUSE": _exit_pause, "EXTERNAL_INTERRUPT": _exit_external,
}


# ---------------------------------------------------------------- event-channel upcalls
#: ISA IRQs of the emulated PICs: the master's 0-7 and, cascaded into its IRQ 2, the slave's 8-15.
NR_VPIC_LINES = 16
IF = 1 << 9


def _upcall_pending(host, v) -> bool:
    return events.upcall_pending(host, v)


class HvmIntr:
    """The interrupt an HVM or PVH vCPU takes next: Xen's hvm_vcpu_has_pending_irq().

    In Xen's order: the event-channel callback vector while vcpu_info's
    evtchn_upcall_pending is set (HVM_PARAM_CALLBACK_IRQ type 2: no EOI, it
    comes back at each VM entry for as long as the flag stays set), then the
    emulated PIC, then the vLAPIC (where the lab raises only the per-vCPU
    upcall vector; the guest ends it with an EOI). The CPU asks ``pending()``
    when RFLAGS.IF is set and ``ack()`` when it takes the interrupt.
    """

    def __init__(self, host, v, pic=None) -> None:
        self.host = host
        self.v = v
        self.pic = pic
        self.name = "pic"
        self.hint = False          # a callback vector or vLAPIC interrupt may be pending

    @property
    def waiting(self) -> bool:
        """Cheap for the CPU to poll: is anything perhaps pending?"""
        return self.hint or (self.pic is not None and self.pic.waiting)

    def _callback_vector(self) -> int | None:
        dom = self.v.domain
        if dom.callback_via_type == "vector" and _upcall_pending(self.host, self.v):
            return dom.callback_via
        return None

    def _lapic(self) -> int | None:
        v = self.v
        if not v.lapic_irr:
            return None
        vec = v.lapic_irr.bit_length() - 1
        if v.lapic_isr and (v.lapic_isr.bit_length() - 1) & 0xF0 >= vec & 0xF0:
            return None                     # a vector of the same or a higher class is in service
        vlapic = v.domain.devices.get("vlapic")
        if vlapic is not None and vlapic.tpr(v) & 0xF0 >= vec & 0xF0:
            return None                     # hvm_interrupt_blocked(): hvm_intblk_tpr
        return vec

    def pending(self) -> int | None:
        cb = self._callback_vector()
        lap = self._lapic()
        self.hint = cb is not None or lap is not None
        if cb is not None:
            return cb
        if self.pic is not None:
            vec = vpic.pending_vector(self.v.domain, self.pic)
            if vec is not None:
                return vec
        return lap

    def ack(self) -> int | None:
        cb = self._callback_vector()
        if cb is not None:
            self.name = f"evtchn upcall: callback vector {cb:#x}"
            return cb
        if self.pic is not None and self.pic.pending() is not None:
            self.name = "pic"
            return vpic.ack(self.v.domain, self.pic)
        lap = self._lapic()
        if lap is not None:
            v = self.v
            v.lapic_irr &= ~(1 << lap)
            v.lapic_isr |= 1 << lap
            self.name = (f"evtchn upcall: per-vCPU vector {lap:#x} (vLAPIC)" if lap == v.upcall_vector
                         else "vlapic")
            self.pending()
            return lap
        self.hint = False
        return None


def local_events_need_delivery(host, v) -> bool:
    """hvm_local_events_need_delivery(): an interrupt is pending and RFLAGS.IF lets it in."""
    cpu = v.cpu
    src = cpu.irq_source if cpu is not None else None
    return bool(src is not None and cpu.rflags & IF and src.pending() is not None)


def _kick(host, v) -> None:
    """vcpu_kick(): wake the vCPU if it blocked; it takes the interrupt when IF allows."""
    src = v.cpu.irq_source if v.cpu is not None else None
    if isinstance(src, HvmIntr):
        src.hint = True
    host.wake(v, "event pending")


def assert_evtchn_irq(host, v) -> None:
    """hvm_assert_evtchn_irq(): evtchn_upcall_pending was just set for ``v``."""
    dom = v.domain
    if v.upcall_vector:
        vec = v.upcall_vector
        v.lapic_irr |= 1 << vec
        host.emit(v, "interrupt", vector=vec, source=f"evtchn upcall: per-vCPU vector {vec:#x} raised in the vLAPIC")
        _kick(host, v)
    elif dom.callback_via_type == "vector":
        if _upcall_pending(host, v):
            host.emit(v, "interrupt", vector=dom.callback_via,
                      source=f"evtchn upcall: callback vector {dom.callback_via:#x}")
        _kick(host, v)
    elif v.id == 0:
        set_callback_irq_level(host, v)


def _notify(host, v, was_pending: bool) -> None:
    """An HVM/PVH vCPU is told only when evtchn_upcall_pending goes from 0 to 1: while it
    stays set, further events raise nothing more (the guest clears it before it scans)."""
    if not was_pending:
        assert_evtchn_irq(host, v)


events.register_delivery("hvm", events.UpcallDelivery(notify=_notify, need_delivery=local_events_need_delivery))


def _callback_line(dom) -> tuple[int | None, str]:
    """The ISA IRQ (vPIC line) the GSI or PCI INTx callback raises, and how to name it."""
    if dom.callback_via_type == "gsi":
        gsi = dom.callback_via
        return gsi, f"GSI {gsi}"
    dev, intx = dom.callback_via
    link = (dev + intx) & 3                     # hvm_pci_intx_link()
    irq = link_route(dom, link)                 # hvm_irq->pci_link.route
    if not irq:
        return None, f"PCI INTx 00:{dev:02x}.0 INT{'ABCD'[intx]} (link {link}, routed to no ISA IRQ)"
    return irq, f"PCI INTx 00:{dev:02x}.0 INT{'ABCD'[intx]} (link {link}, ISA IRQ {irq})"


def set_callback_irq_level(host, v) -> None:
    """hvm_set_callback_irq_level(): vCPU 0's upcall_pending drives the GSI / INTx callback line.

    Xen's line is level-triggered: it stays asserted while the flag is set
    and drops at the first VM exit after the guest clears it. The lab's PIC is
    edge-triggered, so each rise of the flag raises a new edge on the line:
    an event that arrives after the guest cleared the flag, before any VM
    exit, still interrupts it (on Xen the line had stayed up).
    """
    dom = v.domain
    asserted = _upcall_pending(host, v)
    if not asserted:
        dom.callback_via_asserted = False       # negative edge: nothing to do on an edge-triggered line
        return
    dom.callback_via_asserted = True
    if dom.callback_via_type not in ("gsi", "pci_intx"):
        return
    line, what = _callback_line(dom)
    vector = None if line is None or not 0 <= line < NR_VPIC_LINES else vpic.raise_isa_irq(dom, line)
    if vector is None:
        why = "" if line is None else " (the lab's emulated PICs have ISA IRQs 0-15 only)"
        host.emit(v, "interrupt", vector=None, source=f"evtchn upcall: {what} not delivered{why}")
        return
    host.emit(v, "interrupt", vector=vector, source=f"evtchn upcall: {what} on the emulated PIC")
    # vpic_update_int_output(): the PIC's output kicks vCPU 0.
    _kick(host, v)


def maybe_deassert_evtchn_irq(host, dom) -> None:
    """hvm_maybe_deassert_evtchn_irq(), at every VM exit: the guest cleared vCPU 0's flag."""
    if dom.callback_via_asserted and dom.vcpus and not _upcall_pending(host, dom.vcpus[0]):
        set_callback_irq_level(host, dom.vcpus[0])


def set_callback_via(host, dom, via: int) -> None:
    """hvm_set_callback_via(): HVM_PARAM_CALLBACK_IRQ was written.

    val[63:56] is the type: 0 GSI (val 0 turns the callback off), 1 PCI INTx
    (device in bits 15:11, INTx pin in 1:0), 2 vector (bits 7:0). A domain
    without the emulated PIC (PVH) can only use the vector.
    """
    typ = (via >> abi.HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) & 0xFF
    kind = {abi.HVM_PARAM_CALLBACK_TYPE_GSI: "gsi", abi.HVM_PARAM_CALLBACK_TYPE_PCI_INTX: "pci_intx",
            abi.HVM_PARAM_CALLBACK_TYPE_VECTOR: "vector"}.get(typ, "none")
    if kind == "gsi" and via == 0:
        kind = "none"
    if kind != "vector" and "vpic" not in dom.devices:
        # No emulated PIC/IOAPIC (PVH): only a vector can be set, and it cannot be unset.
        host.log(f"d{dom.domid}: callback via {via:#x} ignored: no emulated PIC (only a vector works)")
        return
    if kind == "gsi":
        value: Any = via & 0xFF
        if value == 0 or value >= NR_GSIS:
            kind = "none"
    elif kind == "pci_intx":
        value = ((via >> 11) & 31, via & 3)
    elif kind == "vector":
        value = via & 0xFF
    else:
        value = 0
    dom.callback_via_type = kind
    dom.callback_via = value if kind != "none" else 0
    # The new line takes over the old one's state; raise it if vCPU 0 has an upcall pending.
    dom.callback_via_asserted = False
    for v in dom.vcpus:
        if v.runstate != "offline":
            assert_evtchn_irq(host, v)
    if kind == "gsi":
        text = f"GSI {value}"
    elif kind == "pci_intx":
        text = f"PCI INTx Dev {value[0]:#04x} Int{'ABCD'[value[1]]}"
    elif kind == "vector":
        text = f"Direct Vector {value:#04x}"
    else:
        text = "None"
    host.log(f"Dom{dom.domid} callback via changed to {text}")


def set_upcall_vector(host, dom, vcpu: int, vector: int) -> int:
    """HVMOP_set_evtchn_upcall_vector: vCPU ``vcpu`` takes its upcalls at ``vector`` through its vLAPIC."""
    if not dom.is_hvm:
        return -abi.ERRNO["EINVAL"]
    if vector < abi.HVM_UPCALL_VECTOR_MIN:
        return -abi.ERRNO["EINVAL"]
    if not 0 <= vcpu < len(dom.vcpus):
        return -abi.ERRNO["ENOENT"]
    v = dom.vcpus[vcpu]
    if vector != dom.vcpus[0].upcall_vector or (v.upcall_vector and vector != v.upcall_vector):
        host.log(f"upcall vector {vector:02x}", v)
    v.upcall_vector = vector
    assert_evtchn_irq(host, v)               # as Xen does: one upcall straight away
    return 0


# ---------------------------------------------------------------- XENMEM_add_to_physmap
def _special_frames(host, dom) -> set[int]:
    """Frames Xen owns for the domain and shares with it (is_special_page()): never freed here."""
    out = set(host.grant_tables.frames.get(dom.domid, []))
    if dom.shared_info_mfn:
        out.add(dom.shared_info_mfn)
    return out


def _clear_m2p(host, mfn: int) -> None:
    host.mm.pv.m2p.pop(mfn, None)
    page, idx = divmod(mfn * 8, 4096)
    host.mem.write_u64((host.mm.m2p_frames[page] << 12) + idx, abi.INVALID_M2P_ENTRY)


def _flush_domain(host, dom) -> None:
    for v in dom.vcpus:
        if v.cpu is not None:
            v.cpu.tlb.flush(include_global=True)
            v.cpu.flush_caches()


def _set_p2m(host, dom, gfn: int, mfn: int | None) -> None:
    """One p2m entry changes: the p2m itself, then the EPT (or the shadows) that follow it."""
    old = dom.gfn_to_mfn(gfn)
    shadow = dom.extra.get("shadow")
    if shadow is not None and old is not None:
        # sh_remove_all_mappings(): no shadow entry may keep mapping the old frame.
        for slot in list(shadow.rmap.get(gfn, {})):
            shadow._set(slot, 0, leaf=True)
        shadow.gfn_of.pop(old, None)
    if gfn < len(dom.p2m):
        dom.p2m[gfn] = mfn                      # None: a hole (XENMEM_decrease_reservation)
    elif mfn is None:
        dom.physmap_extra.pop(gfn, None)
    else:
        dom.physmap_extra[gfn] = mfn
    if shadow is not None:
        if mfn is not None:
            shadow.gfn_of[mfn] = gfn
        shadow._finish()
    if dom.ept_root:
        # p2m_set_entry(): intermediate tables come from the domain's own paging pool
        ept_map(host.mem, pool_of(host, dom).alloc, dom.ept_root << 12, gfn << 12,
                (mfn or 0) << 12, perms="rwx" if mfn is not None else "")
    if old is not None:
        host.code.invalidate_frame(old)
    _flush_domain(host, dom)


def _remove_ram_page(host, dom, gfn: int, mfn: int) -> None:
    """guest_remove_page(): the domain gives the frame back; free once nothing references it."""
    host.mm.release(mfn)
    dom.mem_pages -= 1
    frames = dom.extra.get("frames", [])
    if mfn in frames:
        frames.remove(mfn)
    if host.mm.pv.pages[mfn].owner is None:
        host.free_frame(mfn)
    else:
        host.mm.orphans.add(mfn)                # a mapping still holds it: freed when that goes


def add_to_physmap(host, dom, space: int, idx: int, gpfn: int, info: dict) -> int:
    """xenmem_add_to_physmap_one() for shared_info and grant-table frames."""
    E = abi.ERRNO
    if space == abi.XENMAPSPACE_shared_info:
        if idx != 0 or not dom.shared_info_mfn:
            return -E["EINVAL"]
        mfn = dom.shared_info_mfn
    elif space == abi.XENMAPSPACE_grant_table:
            # Grant tables are version 1 here: a status-frame index is simply out of range.
        found = host.grant_tables.frame_for_physmap(dom.domid, idx)
        if found is None:
            info["why"] = f"grant-table frame {idx:#x} is beyond the table's maximum"
            return -E["EINVAL"]
        mfn = found
    elif space in (abi.XENMAPSPACE_gmfn, abi.XENMAPSPACE_gmfn_range):
        info["why"] = "(lab) moving the domain's own RAM pages is not modelled"
        return -E["EOPNOTSUPP"]
    elif space == abi.XENMAPSPACE_dev_mmio:
        return -E["EACCES"]                     # the hardware domain only, for itself
    else:
        return -E["EINVAL"]
    if host.mm.pv.pages[mfn].owner != dom.domid:
        return -E["EINVAL"]                     # never hand a domain a frame that is not its own
    if gpfn >> EPT_GFN_BITS:
        # p2m-ept.c ept_set_entry(): a gfn beyond the guest's physical address width is -EINVAL
        info["why"] = f"gfn {gpfn:#x} is beyond the {EPT_GFN_BITS + 12}-bit guest physical address width"
        return -E["EINVAL"]
    pool = pool_of(host, dom)
    if dom.ept_root and pool.free < 3:
        # the up to three tables a new gfn may need must be there first: p2m_set_entry() fails,
        # -ENOMEM, with the p2m unchanged
        info["why"] = f"d{dom.domid}'s paging pool ({pool.pages} pages) is exhausted"
        return -E["ENOMEM"]
    prev = dom.gfn_to_mfn(gpfn)
    old_gfn = host.mm.pv.m2p.get(mfn)
    if prev == mfn and old_gfn == gpfn:
        return 0                                # already there
    if old_gfn is not None and old_gfn != gpfn and old_gfn < len(dom.p2m):
        info["why"] = f"(lab) the frame is at RAM gfn {old_gfn:#x}, which cannot become a hole"
        return -E["EBUSY"]
    special = _special_frames(host, dom)
    replaced = prev is not None and prev != mfn
    if replaced and prev in special:
        _clear_m2p(host, prev)                  # special pages are simply unhooked
    if old_gfn is not None and old_gfn != gpfn:
        _set_p2m(host, dom, old_gfn, None)      # unmap it from its old place
    _set_p2m(host, dom, gpfn, mfn)
    freed = replaced and prev not in special
    if freed:
        _remove_ram_page(host, dom, gpfn, prev)   # normal domain memory is freed, not leaked
    host.mm.set_m2p(mfn, gpfn)
    what = "shared_info" if space == abi.XENMAPSPACE_shared_info else f"grant-table frame {idx}"
    host.emit(dom.vcpus[0] if dom.vcpus else None, "pagetable", op="p2m update", addr=gpfn << 12, value=mfn,
              level=None, result="mapped",
              message=f"XENMEM_add_to_physmap: {what} (mfn {mfn:#x}) now at gfn {gpfn:#x}"
                      + (f"; the RAM page that was there (mfn {prev:#x}) is freed" if freed else ""))
    return 0


def xenmem_add_to_physmap(host, v, d: int, space: int, idx: int, gpfn: int, info: dict) -> int:
    """XENMEM_add_to_physmap on x86, its checks (xatp_permission_check()): only a translated
    (HVM/PVH) domain has a physmap, and another domain's only for a privileged caller."""
    dom = v.domain
    if space == abi.XENMAPSPACE_gmfn_foreign:
        return -abi.ERRNO["ENOSYS"]                   # foreign frames only through add_to_physmap_batch
    target = dom if d in (abi.DOMID_SELF, dom.domid) else host.domains.get(d)
    if target is None:
        return -abi.ERRNO["ESRCH"]
    if not target.is_hvm:
        info["why"] = "not a translated (HVM/PVH) domain"
        return -abi.ERRNO["EACCES"]                   # xatp_permission_check(): !paging_mode_translate
    if target is not dom and not dom.privileged:
        info["why"] = "another domain's physmap (XSM_TARGET)"
        return -abi.ERRNO["EPERM"]
    if gpfn == abi.INVALID_M2P_ENTRY:
        return -abi.ERRNO["EINVAL"]                   # INVALID_GFN
    return add_to_physmap(host, target, space, idx, gpfn, info)
