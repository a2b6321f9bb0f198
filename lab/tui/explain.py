"""What an event means, in words, and how the log panes write it on one line.

The explanations are a table keyed by kind and name (a trap's mnemonic, a
hypercall's name, a VM exit's reason); a kind with no entry for the name falls
back to the kind's own description. Nothing here imports Textual.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

from ..paths import display as _display
from ..session.eventspec import NAME_FIELD
from ..session.sourcemap import HYPERCALL_PAGE_LABEL, SourceMap
from ..trace import KINDS

TRAPS = {
    "#DE": "divide error: div or idiv by zero, or a quotient too large for the register",
    "#DB": "debug exception: a hardware breakpoint or single-step (TF) fired",
    "NMI": "non-maskable interrupt: delivered even with IF clear",
    "#BP": "breakpoint: the int3 instruction, used by debuggers",
    "#OF": "overflow: into with OF set",
    "#BR": "bound range exceeded",
    "#UD": "invalid opcode: the CPU cannot run this instruction here (unknown, ud2, or e.g. "
           "vmcall outside VMX non-root operation)",
    "#NM": "device not available: an FPU instruction with CR0.TS set (lazy FPU switching)",
    "#DF": "double fault: a second fault while delivering the first; a third fault is a "
           "triple fault, which resets the machine (or, in a guest, makes Xen crash the domain)",
    "#TS": "invalid TSS", "#NP": "segment not present", "#SS": "stack-segment fault",
    "#GP": "general protection: a privilege or segment rule was broken, e.g. a privileged "
           "instruction outside ring 0, an I/O port above the IOPL, or a non-canonical address",
    "#PF": "page fault: the MMU found no valid translation, or the access broke the page's "
           "permissions; CR2 holds the address and the error code says why "
           "(P present, W write, U user, RSVD reserved bit, I instruction fetch)",
    "#MF": "x87 floating-point error", "#AC": "alignment check", "#MC": "machine check",
    "#XM": "SIMD floating-point exception", "#VE": "virtualization exception (EPT)",
    "#CP": "control-protection exception (CET)",
}

HYPERCALL_EXPLANATIONS = {
    "set_trap_table": "a PV kernel gives Xen its virtual IDT: Xen owns the real one and bounces "
                      "traps to these handlers",
    "mmu_update": "a PV kernel asks Xen to write page-table entries for it; Xen checks each one "
                  "(direct paging: the guest can read its tables but never write them)",
    "mmuext_op": "extended MMU operations: pin a page as a page table, load a new CR3 "
                 "(NEW_BASEPTR), flush the TLB or one entry",
    "update_va_mapping": "change the one PTE that maps a virtual address, optionally flushing "
                         "the TLB entry",
    "stack_switch": "tell Xen which kernel stack to use when entering the guest kernel",
    "set_callbacks": "register the guest's event (upcall) and failsafe callbacks",
    "fpu_taskswitch": "set or clear CR0.TS for the guest (it may not write CR0)",
    "set_gdt": "install a GDT, after Xen has checked the descriptors",
    "update_descriptor": "change one GDT or LDT descriptor, checked by Xen",
    "memory_op": "give memory back to Xen or ask for more (ballooning), query the memory map",
    "multicall": "a batch of hypercalls in one trip into Xen",
    "set_timer_op": "arm the vCPU's one-shot timer",
    "xen_version": "ask which Xen version this is and what it supports",
    "console_io": "write to (or read from) Xen's own console",
    "grant_table_op": "grant tables: map, unmap or copy pages another domain has granted",
    "vm_assist": "turn on optional help from Xen, such as writable page tables",
    "iret": "return from an exception or system call: a 64-bit PV kernel runs in ring 3, so it "
            "cannot use iretq and asks Xen to do it",
    "vcpu_op": "bring vCPUs up and down, register runstate and time areas",
    "set_segment_base": "set the FS or GS base (wrmsr is privileged)",
    "sched_op": "yield, block until an event arrives, or shut the domain down",
    "sched_op_compat": "old form of sched_op",
    "event_channel_op": "event channels: allocate, bind, send (notify) and close ports",
    "physdev_op": "physical device operations: IRQs, I/O privilege",
    "hvm_op": "HVM operations: set and get HVM parameters (xenstore ring, callback vector)",
    "domctl": "control another domain (toolstack only): create, pause, set memory",
    "sysctl": "whole-host operations (toolstack only): physinfo, scheduler",
    "platform_op": "platform operations (control domain only): time, microcode, power",
    "dm_op": "device-model operations: QEMU in dom0 completes the guest's I/O",
}

VMEXITS = {
    "EXCEPTION_NMI": "an exception or NMI in the guest that the VMCS says to intercept",
    "EXTERNAL_INTERRUPT": "a physical interrupt arrived while the guest ran: Xen handles it",
    "TRIPLE_FAULT": "the guest triple-faulted: Xen crashes (or reboots) the domain",
    "PENDING_VIRT_INTR": "the guest can now take the interrupt Xen wants to inject "
                         "(interrupt window)",
    "CPUID": "cpuid always exits: Xen decides which features the guest sees",
    "HLT": "the guest is idle: Xen deschedules the vCPU until an interrupt is due",
    "INVLPG": "invlpg exits under shadow paging, so Xen can drop the shadow entry",
    "RDTSC": "rdtsc exits when the TSC is virtualised",
    "VMCALL": "a hypercall from an HVM or PVH guest (Intel): the guest runs vmcall",
    "VMMCALL": "a hypercall from an HVM or PVH guest (AMD): the guest runs vmmcall",
    "CR_ACCESS": "a move to or from a control register that Xen intercepts (e.g. CR3 under "
                 "shadow paging, CR0 paging bits)",
    "IO_INSTRUCTION": "in or out to an emulated port: Xen emulates it or sends an ioreq to "
                      "QEMU in dom0",
    "IOIO": "in or out to an emulated port (AMD): emulated by Xen or QEMU",
    "MSR_READ": "rdmsr of an MSR Xen emulates", "MSR_WRITE": "wrmsr of an MSR Xen emulates",
    "EPT_VIOLATION": "the second-stage (EPT) tables do not allow the access: Xen populates the "
                     "page, emulates MMIO, or crashes the guest",
    "EPT_MISCONFIG": "an EPT entry holds an invalid combination of bits: Xen uses this on "
                     "purpose to trap MMIO",
    "NPF": "nested page fault (AMD's EPT violation)",
    "PAUSE": "the guest spins (pause-loop exiting): Xen may run another vCPU",
    "INVALID_GUEST_STATE": "VM entry failed: the guest state in the VMCS is invalid",
}

KIND_TEXT = {
    "syscall": "syscall: ring 3 -> ring 0 through LSTAR. The CPU saves rip in rcx and rflags "
               "in r11, masks rflags with FMASK and jumps to the kernel entry in LSTAR. Under "
               "64-bit PV the syscall lands in Xen, which bounces it to the guest kernel",
    "sysret": "sysretq: ring 0 -> ring 3, back to rcx with rflags from r11 (a 64-bit PV kernel "
              "returns through Xen with the iret hypercall instead)",
    "hypercall": "a hypercall: the guest asks Xen for a service, as a program makes a system "
                 "call to its kernel; the number is in rax, arguments in rdi, rsi, rdx, r10, r8",
    "hypercall-arm": "a hypercall: the guest asks Xen for a service with hvc #0xEA1, as a program "
                     "makes a system call to its kernel with svc; the number is in x16, arguments "
                     "in x0-x4, the result comes back in x0",
    "vmexit": "a VM exit: the CPU leaves the guest (non-root) for Xen (root), saving the "
              "guest's state in the VMCS with a reason",
    "vmentry": "Xen resumes the guest (VM entry to non-root operation)",
    "trap": "an exception or interrupt delivered through the IDT",
    "trap-arm": "an exception or interrupt taken to the guest kernel's vector table (VBAR_EL1), "
                "with its syndrome in ESR_EL1 and the return address in ELR_EL1",
    "interrupt": "a device or timer raised an interrupt; the CPU takes it when IF is set",
    "ioport": "an in or out instruction reached a device on the I/O bus",
    "mmio": "a load or store to a device's memory-mapped registers",
    "ioreq": "Xen forwards the guest's I/O to the device model (QEMU in dom0) and waits "
             "for the answer",
    "evtchn": "an event channel: Xen's virtual interrupt line between domains",
    "grant": "a grant-table operation: one domain lets another map or copy one of its pages",
    "xenstore": "a xenstore request: the shared configuration tree drivers use to find each "
                "other",
    "ring_io": "a request or response on a PV shared ring (blkfront/netfront and backend)",
    "domain": "a domain's life changed: Xen created, paused, unpaused, shut down, crashed or destroyed it "
              "(through the toolstack's domctl, or the guest's own SCHEDOP_shutdown)",
}

@lru_cache(maxsize=256)
def display(path: str) -> str:
    """A source path as the learner sees it (cached: resolving paths costs system calls)."""
    return _display(path)


ADDRESS_FIELDS = frozenset(("rip", "cr2", "addr", "value", "entry", "frame", "qualification", "error_code"))


#: How events with no domain are labelled: on a Xen host they are Xen's own.
XEN_LABEL = "Xen"


def dom_label(dom: int | None, xen: bool = False) -> str:
    """``d1`` for a domain; an event with no domain is Xen's on a Xen host, the bare machine's otherwise."""
    if dom is None:
        return XEN_LABEL if xen else "bare"
    return f"d{dom}"


def event_name(ev: Any) -> str:
    """The name a pattern matches for this event (trap mnemonic, hypercall name...)."""
    field = NAME_FIELD.get(ev.kind, "name")
    value = ev.data.get(field)
    if value is None:
        return ""
    if isinstance(value, int) and field in ("port", "addr", "msr"):
        return f"{value:#x}"
    return str(value)


def _fmt(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"{name}={value}"
    if isinstance(value, int) and (name in ADDRESS_FIELDS or value > 0xFFFF):
        return f"{name}={value:#x}"
    if isinstance(value, (list, tuple)):
        return f"{name}=(" + ", ".join(f"{v:#x}" if isinstance(v, int) and v > 9 else str(v)
                                       for v in value) + ")"
    return f"{name}={value}"


#: Who carried an emulated access out (the ``emulator`` field of ioport and mmio events).
EMULATOR_WORDS = {"xen": " in Xen", "device model": " in QEMU"}
EMULATOR_EXPLANATIONS = {
    "xen": "Xen emulated it itself: a device in its intercept table (local APIC, IO-APIC, HPET, PIC, PIT, "
           "RTC, PM timer, debug port), or its null handler when nothing claims the address",
    "device model": "the device model (QEMU in dom0) emulated it: Xen sent it an ioreq and waited for the answer",
}


def event_details(ev: Any) -> str:
    """The kind-specific fields other than the name, compactly."""
    d = ev.data
    k = ev.kind
    if k == "hypercall":
        args = d.get("args")
        argtext = ""
        if isinstance(args, (list, tuple)):
            argtext = "(" + ", ".join(f"{a:#x}" if isinstance(a, int) else str(a) for a in args) + ")"
        elif args:
            argtext = f"({args})"
        err = f" {d['errno']}" if d.get("errno") else ""
        nr = f"nr={d['nr']} " if d.get("nr") is not None else ""
        return f"{nr}{argtext} -> {d.get('ret')}{err}".strip()
    if k in ("ioport", "mmio", "ioreq") and "dir" in d:
        value = d.get("value")
        val = f"{value:#x}" if isinstance(value, int) else str(value)
        arrow = "<-" if d["dir"] == "in" else "->"
        extra = f" ({d['device']})" if d.get("device") else (f" [{d['state']}]" if d.get("state") else "")
        by = EMULATOR_WORDS.get(d.get("emulator", ""), "")
        return f"{d['dir']:<3} {arrow} {val} size {d.get('size')}{by}{extra}"
    if k in ("trap", "vmexit", "syscall", "sysret") and isinstance(d.get("rip"), int):
        at = ("to " if k == "sysret" else "at ") + f"{d['rip']:#x}"
        rest = " ".join(_fmt(n, d[n]) for n in KINDS[k].fields
                        if n in d and n not in ("rip", NAME_FIELD.get(k, "name"), "vector", "mnemonic")
                        and d[n] is not None)
        return f"{at} {rest}".rstrip()
    name_field = NAME_FIELD.get(k, "name")
    skip = {name_field, "cost"}
    fields = KINDS[k].fields if k in KINDS else tuple(d)
    return " ".join(_fmt(n, d[n]) for n in fields if n in d and n not in skip and d[n] is not None)


def event_row(ev: Any, xen: bool = False) -> str:
    """One log line: sequence, cycle, domain/vCPU (or Xen), kind, name, details."""
    who = XEN_LABEL if ev.dom is None and xen else f"{dom_label(ev.dom)}.v{ev.vcpu}"
    return f"#{ev.seq:<6}{ev.cycle:>11,} {who:<7} {ev.kind:<8} {event_name(ev):<9} {event_details(ev)}"


def explanation(ev: Any) -> str:
    """What the event means, in words."""
    name = event_name(ev)
    k = ev.kind
    text = ""
    if k == "trap":
        text = TRAPS.get(name, "")
        if not text and name.lower().startswith("int"):
            text = (f"software interrupt {name}: the program asked for the handler at that IDT "
                    "vector (on 32-bit PV, int 0x82 is how the kernel makes a hypercall)")
    elif k == "hypercall":
        text = HYPERCALL_EXPLANATIONS.get(name, "")
        note = _abi_note(name)
        if note:
            text = f"{text} ({note})" if text else note
        # Xen on Arm: hvc with the number in x16 (xen/arch/arm/traps.c), told by the ESR it carries
        detail = ev.get("detail")
        how = KIND_TEXT["hypercall-arm" if isinstance(detail, dict) and "x16" in detail else "hypercall"]
        text = f"{how}. {name}: {text}" if text else how
    elif k == "vmexit":
        text = VMEXITS.get(name.upper(), "")
        text = f"{KIND_TEXT['vmexit']}. {name}: {text}" if text else KIND_TEXT["vmexit"]
    if k == "trap" and not text and _arm_trap(ev):
        text = KIND_TEXT["trap-arm"]
    if not text:
        text = KIND_TEXT.get(k) or (KINDS[k].doc if k in KINDS else k)
    if k in ("ioport", "mmio") and ev.get("emulator") in EMULATOR_EXPLANATIONS:
        text = f"{text}; {EMULATOR_EXPLANATIONS[ev.get('emulator')]}"
    if k == "trap" and name in TRAPS:
        text = f"{name}: {text}"
    return text


def _arm_trap(ev: Any) -> bool:
    """An Arm core's exception: its reason is the syndrome (ESR) or the kind of interrupt."""
    reason = ev.get("reason")
    return isinstance(reason, str) and (reason.startswith("ESR ") or reason in ("IRQ", "FIQ", "SError"))


def _abi_note(name: str) -> str:
    try:
        from ..xen import abi
    except Exception:       # the hypervisor layer is optional for a bare machine
        return ""
    h = getattr(abi, "HYPERCALL_BY_NAME", {}).get(name)
    return getattr(h, "note", "") if h is not None else ""


def source_of(images: Iterable[Any], addr: int | None) -> str | None:
    """``file:line  text`` of the instruction at ``addr`` in any of the images given.

    An address in a kernel's ``hypercall_page`` is named as a place in that page:
    Xen writes the page, so the ``.zero 4096`` it covers in the source says nothing.
    """
    if addr is None:
        return None
    place = SourceMap(images).place(addr)
    if place is None:
        return None
    if place.in_hypercall_page:
        return f"{HYPERCALL_PAGE_LABEL} at hypercall_page+{place.offset:#x}"
    return f"{display(place.file)}:{place.line}  {' '.join(place.text.split())}"


def describe_event(ev: Any, images: Iterable[Any], xen: bool = False, names: dict | None = None) -> list[str]:
    """The detail lines the log panes show for a selected event.

    In order: what happened, which source line caused it, what it means, and
    every field the event carries. ``images`` are the loaded images of the
    event's own domain (another domain's addresses mean nothing here). A
    hypercall made through the hypercall page names its ``caller``, the
    kernel's call into the page, as the line that caused it; the trapping
    instruction (``rip``) is then a line of the page.
    """
    images = tuple(images)
    who = dom_label(ev.dom, xen)
    if ev.dom is not None and names and ev.dom in names:
        who = f"{who} {names[ev.dom]}"
    where = who if ev.dom is None and xen else f"{who} vcpu {ev.vcpu}"
    lines = [f"{ev.summary()}   (#{ev.seq}, cycle {ev.cycle:,}, {where})"]
    rip = ev.data.get("rip")
    caller = ev.data.get("caller")
    if isinstance(caller, int):
        src = source_of(images, caller)
        lines.append(f"called from {src}" if src else f"called from {caller:#x} (no source line for it)")
        trap = source_of(images, rip) if isinstance(rip, int) else None
        if trap:
            lines.append(f"trapped into Xen in the {trap}")
    else:
        src = source_of(images, rip) if isinstance(rip, int) else None
        if src:
            lines.append(f"caused by {src}")
        elif isinstance(rip, int):
            lines.append(f"at rip {rip:#x} (no source line for it)")
        elif ev.dom is None and xen:
            lines.append("Xen's own work: no guest instruction caused it")
        else:
            lines.append("this event records no rip")
    lines.append(explanation(ev))
    fields = " ".join(_fmt(n, v) for n, v in ev.data.items() if v is not None)
    if fields:
        lines.append("fields: " + fields)
    return lines
