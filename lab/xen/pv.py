"""PV guests: Xen owns the IDT, so every trap, system call and interrupt comes here first.

A 64-bit PV guest runs its kernel and its user programs both in ring 3, with
separate kernel and user page tables. Xen tells them apart by the vCPU's
kernel-mode flag (``TF_kernel_mode``) and switches the tables whenever
control crosses between them (``toggle_guest_mode``):

* a ``syscall`` from guest user mode enters Xen, which switches to the
  guest kernel's tables and stack and *bounces* it to the kernel's syscall
  callback;
* a ``syscall`` from guest kernel mode is a hypercall (through the hypercall
  page);
* an exception is bounced to the handler the kernel registered with
  ``set_trap_table``, with CR2 placed in ``vcpu_info.arch.cr2``;
* ``HYPERVISOR_iret`` returns to the guest, to user mode when the saved CS
  has RPL 3.

Bounce frames are laid out as Xen lays them out for 64-bit PV guests
(``public/arch-x86/xen-x86_64.h``): ``rcx, r11, [error code,] rip, cs,
rflags, rsp, ss`` from the new stack pointer up.

The 32-bit profile (``lab_pv32``) runs the guest kernel in ring 1 and makes
hypercalls with ``int 0x82``; the lab keeps 4-level page tables for it.
"""

from __future__ import annotations

import struct

from ..hw import flags as F
from ..hw.faults import Fault, mnemonic
from ..isa.encoding import INSN_SIZE
from . import abi
from ..isa.bits import M64
from . import events
from .guestmem import GuestFault, copy_from_guest, write_u64
from .hypercall_table import Preempted, dispatch, X86_HYPERCALLS
from .vcpu_info import maddr

from .abi.arch_x86_64 import FLAT_RING1_CS, FLAT_RING3_CS64, FLAT_RING3_SS64

#: struct iret_context (public/arch-x86/xen-x86_64.h): rax r11 rcx flags rip cs rflags rsp ss.
_IRET_CONTEXT = struct.Struct("<9Q")
VGCF_in_syscall = 1 << 8
VCPU_INFO_CR2 = 16          # offsetof(vcpu_info, arch.cr2)


def kernel_cs(dom) -> int:
    return FLAT_RING1_CS if dom.mode == "pv32" else FLAT_RING3_CS64 & ~3


def guest_cpl(dom) -> int:
    return 1 if dom.mode == "pv32" else 3


# ---------------------------------------------------------------- mode switches
def toggle_guest_mode(host, v, to_kernel: bool, why: str) -> None:
    """Switch between the guest kernel's and guest user's page tables."""
    if v.kernel_mode == to_kernel:
        return
    v.kernel_mode = to_kernel
    cpu = v.cpu
    old_cpl = cpu.cpl
    table = v.guest_table if to_kernel else (v.guest_table_user or v.guest_table)
    if cpu.cr3 != table << 12:
        cpu.write_cr(3, table << 12)
    new_cpl = (1 if v.domain.mode == "pv32" else 3) if to_kernel else 3
    cpu.set_cpl(new_cpl, why)
    host.emit(v, "ring", from_cpl=old_cpl, to_cpl=new_cpl, root=True,
              why=f"{why}: guest {'user -> kernel' if to_kernel else 'kernel -> user'} "
                  f"(cr3 {table << 12:#x})")


def _push(host, v, sp: int, values: list[int]) -> int:
    for val in values:
        sp = (sp - 8) & M64
        write_u64(host, v, sp, val)
    return sp


def bounce(host, v, handler: int, *, error_code: int | None, rip: int, what: str,
           disable_events: bool = False) -> None:
    """create_bounce_frame(): deliver to the guest kernel at ``handler``."""
    cpu = v.cpu
    dom = v.domain
    from_user = not v.kernel_mode
    saved_cs = FLAT_RING3_CS64 if from_user else kernel_cs(dom)
    saved_ss = FLAT_RING3_SS64
    rsp, rflags = cpu.regs[4], cpu.rflags
    if from_user:
        toggle_guest_mode(host, v, True, what)
        sp = v.kernel_sp
        if sp == 0:
            host.crash(dom, f"no kernel stack (stack_switch) for a bounce from user mode ({what})", v)
            return
    else:
        sp = rsp
    sp &= ~0xF
    # create_bounce_frame (x86_64/entry.S): the CS slot carries the upcall mask as it was
    # (bits 32-39; bits 16-23 in the compat frame), RFLAGS.IF is its inverse (the real IF
    # is always on) and IOPL is cleared; a TBF_INTERRUPT bounce then masks events.
    saved_mask = _event_mask(host, v)
    saved_cs |= saved_mask << (16 if dom.mode == "pv32" else 32)
    rflags = (rflags & ~(F.IF | F.IOPL_MASK)) | (0 if saved_mask else F.IF)
    frame = [saved_ss, rsp, rflags, saved_cs, rip]
    if error_code is not None:
        frame.append(error_code)
    frame += [cpu.regs[11], cpu.regs[1]]
    try:
        sp = _push(host, v, sp, frame)
    except GuestFault as e:
        host.crash(dom, f"cannot write the bounce frame for {what}: {e}", v)
        return
    cpu.regs[4] = sp
    cpu.rip = handler
    if disable_events:
        _set_event_mask(host, v, True)


def _event_mask(host, v) -> int:
    """vcpu_info's evtchn_upcall_mask (0 while the domain has no shared_info page)."""
    vi = maddr(host, v.domain, v.id)
    return 0 if vi is None else host.mem.read(vi + 1, 1)[0]


def _set_event_mask(host, v, masked: bool) -> None:
    vi = maddr(host, v.domain, v.id)
    if vi is not None:
        host.mem.write(vi + 1, b"\x01" if masked else b"\x00")


# ---------------------------------------------------------------- entry points
def on_syscall(host, v, nxt: int) -> None:
    cpu = v.cpu
    if v.kernel_mode and v.domain.mode != "pv32":
        hypercall_from_guest(host, v, nxt)
        return
    # A system call from guest user mode: bounce to the kernel's syscall callback.
    target = v.domain.callbacks.get("syscall")
    host.emit(v, "syscall", nr=cpu.regs[0], rip=nxt - 16, via="syscall -> Xen -> bounce to guest kernel")
    host.charge(v, "hypercall_pv")
    if not target:
        host.crash(v.domain, "syscall from user mode with no syscall callback registered", v)
        return
    host.emit(v, "trap", vector=None, mnemonic="syscall", error_code=None, cr2=None, rip=nxt - 16, cpl=cpu.cpl,
              handler="bounce", reason=f"Xen bounces the system call to the guest kernel at {target:#x}")
    # Xen's syscall bounce leaves rcx/r11 on the frame, as a syscall would have.
    cpu.regs[1] = nxt
    cpu.regs[11] = cpu.rflags
    # VGCF_syscall_disables_events: registered with CALLBACKF_mask_events (pv/callback.c)
    bounce(host, v, target, error_code=None, rip=nxt, what="syscall bounce",
           disable_events=bool(v.domain.callback_flags.get("syscall", 0) & abi.CALLBACKF_mask_events))


def on_softint(host, v, vector: int, nxt: int) -> None:
    cpu = v.cpu
    dom = v.domain
    if vector == abi.HYPERCALL_VECTOR and dom.mode == "pv32" and v.kernel_mode:
        hypercall_from_guest(host, v, nxt, compat=True)
        return
    entry = dom.trap_table.get(vector)
    dpl = (entry[0] & 3) if entry else 0
    # permit_softint() (pv/traps.c): the gate's DPL must be at least 1 from the guest
    # kernel (which runs in ring 3 on 64-bit PV, ring 1 on 32-bit) and 3 from guest user.
    if entry is None or dpl < (1 if v.kernel_mode else 3):
        # Like hardware: an int n the gate does not allow is a #GP(vector*8+2).
        on_exception(host, v, Fault(13, vector * 8 + 2, reason=f"int {vector:#x} not allowed from ring {cpu.cpl}"),
                     rip=nxt - 16)
        return
    host.emit(v, "trap", vector=vector, mnemonic=f"int {vector:#x}", error_code=None, cr2=None, rip=nxt - 16,
              cpl=cpu.cpl, handler="bounce", reason="software interrupt bounced to the guest kernel")
    bounce(host, v, entry[2], error_code=None, rip=nxt, what=f"int {vector:#x}",
           disable_events=bool(entry[0] & 4))


def on_exception(host, v, fault: Fault, rip: int | None = None) -> None:
    cpu = v.cpu
    dom = v.domain
    rip = cpu.rip if rip is None else rip
    host.charge(v, "exception_delivery")
    entry = dom.trap_table.get(fault.vector)
    host.emit(v, "trap", vector=fault.vector, mnemonic=fault.mnemonic, error_code=fault.error_code, cr2=fault.cr2,
              rip=rip, cpl=cpu.cpl, handler="xen" if entry is None else "bounce",
              reason=fault.reason or mnemonic(fault.vector))
    vi = maddr(host, dom, v.id)
    if fault.vector == 14 and fault.cr2 is not None and vi is not None:
        host.mem.write_u64(vi + VCPU_INFO_CR2, fault.cr2)
    if entry is None:
        host.crash(dom, f"unhandled {fault.mnemonic} at {rip:#x} ({fault.reason}): no handler in the trap table", v)
        return
    bounce(host, v, entry[2], error_code=fault.error_code, rip=rip, what=fault.mnemonic,
           disable_events=bool(entry[0] & 4))


# ---------------------------------------------------------------- hypercalls
def hypercall_from_guest(host, v, nxt: int, compat: bool = False) -> None:
    cpu = v.cpu
    r = cpu.regs
    # The lab's 32-bit profile keeps the 64-bit argument registers (its code is
    # the lab's 64-bit instruction set); what it changes is the ring and int 0x82.
    nr = r[0] & 0xFFFFFFFF if compat else r[0]
    args = [r[7], r[6], r[2], r[10], r[8]]
    cpu.rip = nxt
    ret = dispatch(host, v, nr, args)
    if isinstance(ret, Preempted):
        # hypercall_create_continuation(): the new arguments in the argument registers and
        # the instruction pointer back on the hypercall instruction, so the guest re-enters.
        for reg, val in zip((7, 6, 2, 10, 8), ret.args):
            r[reg] = val
        cpu.rip = (nxt - INSN_SIZE) & M64
        cpu.yield_now = True
    elif ret is not None:             # iret and a few others set the state themselves
        r[0] = ret & M64
    deliver_upcall(host, v)


def deliver_upcall(host, v) -> bool:
    """On the way back to a PV guest: if an event is pending and events are not
    masked, bounce to the kernel's event callback with events masked (as Xen's
    test_guest_events / create_bounce_frame do). True if it delivered."""
    dom = v.domain
    target = dom.callbacks.get("event")
    vi = maddr(host, dom, v.id)
    if not dom.is_pv or not target or vi is None or v.cpu is None:
        return False
    pending, masked = host.mem.read(vi, 2)
    if pending != 1 or masked:
        return False
    cpu = v.cpu
    host.emit(v, "trap", vector=None, mnemonic="event upcall", error_code=None, cr2=None, rip=cpu.rip,
              cpl=cpu.cpl, handler="bounce", reason=f"an event is pending: Xen bounces to the event callback at {target:#x}")
    bounce(host, v, target, error_code=None, rip=cpu.rip, what="event upcall", disable_events=True)
    return True


def _notify(host, v, was_pending: bool) -> None:
    """A PV vCPU is kicked at every event, so the callback is bounced to soon."""
    events.kick(host, v)


events.register_delivery("pv", events.UpcallDelivery(notify=_notify, need_delivery=events.upcall_pending))


@X86_HYPERCALLS.handler("iret", nargs=0)
def iret(host, v, args, info) -> None:
    do_iret(host, v)
    info["args"] = []
    return None


def do_iret(host, v) -> int | None:
    """HYPERVISOR_iret: pop struct iret_context from the guest kernel stack."""
    cpu = v.cpu
    sp = cpu.regs[4]
    try:
        raw = copy_from_guest(host, v, sp, 9 * 8)
    except GuestFault as e:
        host.crash(v.domain, f"iret with a bad stack: {e}", v)
        return None
    rax, r11, rcx, flags, rip, cs, rflags, rsp, ss = _IRET_CONTEXT.unpack(raw)
    cpu.regs[0] = rax
    if not flags & VGCF_in_syscall:
        cpu.regs[11] = r11
        cpu.regs[1] = rcx
    cpu.regs[4] = rsp
    cpu.rip = rip
    # The guest's IF is virtual: it becomes the event mask; the real IF stays on.
    _set_event_mask(host, v, not rflags & F.IF)
    cpu.rflags = (rflags & ~(F.IOPL_MASK | F.IF)) | F.IF
    to_user = (cs & 3) == 3
    if to_user and v.domain.mode == "pv" and not v.guest_table_user:
        # pv/iret.c do_iret(): a 64-bit guest has no user address space to return to
        host.crash(v.domain, "Guest switching to user mode with no user page tables", v)
        return None
    if to_user:
        toggle_guest_mode(host, v, False, "HYPERVISOR_iret")
    else:
        v.kernel_mode = True
    return None
