"""The hypercall tables: handlers by number, one table per architecture, and x86's entry path.

Each architecture has its own table, as Xen generates one per architecture
from the columns of ``xen/include/hypercall-defs.c``: :data:`X86_HYPERCALLS`,
which the x86 host owns, and :data:`ARM_HYPERCALLS`, which the Arm host owns
(it has no mmu_update, set_trap_table, iret...). A number outside a table's
column is -ENOSYS on that architecture, a deprecated one (``dep``) too, as
``do_deprecated_hypercall()`` answers it (xen/arch/arm/traps.c).

A leaf of lab/xen: each subsystem registers its handlers into a table with
``@X86_HYPERCALLS.handler`` (``hypercalls``, ``grant``, ``physdev``...; the Arm
ones in ``lab/xen/arm/hypercalls.py``), and each host imports them all once,
so nothing here imports a subsystem. A handler Xen shares between
architectures (xen/common/) registers into both tables.

``dispatch`` does what Xen's hypercall entry does before any handler runs:
unknown numbers get -ENOSYS, HVM callers at CPL > 0 get -EPERM, hypercalls
the guest type may not make get -ENOSYS, and the control-domain-only ones
(domctl, sysctl, platform_op) get -EPERM from anyone but dom0 (the default
XSM policy). Every hypercall becomes one ``hypercall`` trace event with its
decoded arguments, its result and the errno name when it failed.
"""

from __future__ import annotations

from typing import Any, Callable

from . import abi
from .abi.hypercalls import HVM_NO, Hypercall
from ..isa.bits import M64
from ..errors import UserError
from .guestmem import GuestFault, copy_from_guest, copy_to_guest, read_u64

E = abi.ERRNO


class HypercallTable:
    """One architecture's hypercall table: which numbers it has (its column of hypercall-defs.c),
    and the lab's handler of each, with how many argument registers it takes."""

    def __init__(self, arch: str, column: Callable[[Hypercall], bool],
                 guest_access: tuple[Callable, Callable] | None = None) -> None:
        self.arch = arch
        #: How a handler reads and writes the caller's memory through its pointers, on this
        #: architecture: (copy_from_guest, copy_to_guest), each (host, v, va, ...).
        self.copy_from_guest, self.copy_to_guest = guest_access or (None, None)
        #: The numbers the architecture's column gives a handler to (the rest are -ENOSYS).
        self.numbers = frozenset(h.nr for h in abi.HYPERCALLS if column(h))
        self.handlers: dict[int, Callable] = {}
        #: How many argument registers each registered hypercall takes (the rest are not shown).
        self.nargs: dict[int, int] = {}

    def handler(self, name: str, nargs: int = 5):
        """Register the decorated function as this architecture's handler of hypercall ``name``.

        ``nargs`` is how many of the five argument registers the call takes: the ones
        its trace event shows (and a continuation's rewritten arguments)."""
        def deco(fn):
            nr = abi.hypercall_nr(name)
            if nr not in self.numbers:
                raise ValueError(f"hypercall {name} is not in {self.arch}'s table (hypercall-defs.c)")
            if nr in self.handlers:
                raise ValueError(f"hypercall {name} has a handler already: {self.handlers[nr].__module__}")
            self.handlers[nr] = fn
            self.nargs[nr] = nargs
            return fn
        return deco

    def set_guest_access(self, copy_from: Callable, copy_to: Callable) -> None:
        self.copy_from_guest, self.copy_to_guest = copy_from, copy_to

    def get(self, nr: int) -> Callable | None:
        return self.handlers.get(nr)

    def names(self) -> list[str]:
        """The names of the hypercalls the lab handles on this architecture, by number."""
        return [abi.hypercall_name(nr) for nr in sorted(self.handlers)]


#: x86: every call a PV (64- or 32-bit) or HVM/PVH guest may make (the pv and hvm columns).
X86_HYPERCALLS = HypercallTable("x86", lambda h: h.pv or h.hvm != HVM_NO, (copy_from_guest, copy_to_guest))
#: Arm: the arm column's "do" entries ("dep" ones are deprecated: -ENOSYS); its guest access
#: (through stage 1 and stage 2) is set by lab/xen/arm/hypercalls.py.
ARM_HYPERCALLS = HypercallTable("arm", lambda h: h.arm in ("y", "subset"))
#: public/xen.h: set in a batch's count when it is a continuation of a preempted call.
MMU_UPDATE_PREEMPTED = 1 << 31
#: Entries of one batch done before Xen looks for pending work again, at most.
PREEMPT_BATCH = 4096


class Preempted:
    """A handler's answer when it stopped a batch to let other work run (-ERESTART).

    ``args`` are the hypercall's arguments for the rest of the batch: the
    caller re-enters the hypercall with them, as the guest does after
    ``hypercall_create_continuation()`` rewound its instruction pointer onto
    the hypercall instruction (xen/arch/x86/hypercall.c).
    """

    __slots__ = ("args",)

    def __init__(self, args: list[int]) -> None:
        self.args = [a & M64 for a in args]


def preempt_check(host, v) -> bool:
    """hypercall_preempt_check(): has the vCPU used up its time slice (or been asked to yield)?

    Xen asks whether a softirq (the scheduler's timer) is pending; the lab, whose
    time is the vCPU's cycles, asks whether the slice has ended, and stops a batch
    after PREEMPT_BATCH entries in any case, so no single call runs unbounded.
    """
    v.batch_entries += 1
    if v.batch_entries % PREEMPT_BATCH == 0:
        return True
    cpu = v.cpu
    if cpu is None or v.pcpu is None:
        return False
    return cpu.yield_now or (host.current[v.pcpu] is v and cpu.cycles >= host.slice_end[v.pcpu])


class SubOps:
    """The sub-op table of a multiplexing hypercall (event_channel_op, grant_table_op).

    Sub-op number -> handler, each registered with ``@table.op(number)``, and
    the wire layout of its argument structure: ``layouts`` from lab/xen/abi,
    which every registered sub-op must have (tests hold them against Xen's headers).
    """

    def __init__(self, hypercall: str, layouts: dict[int, Any]) -> None:
        self.hypercall = hypercall
        self.layouts = layouts
        self.handlers: dict[int, Callable] = {}

    def op(self, *cmds: int):
        def deco(fn):
            for cmd in cmds:
                if cmd not in self.layouts:
                    raise ValueError(f"{self.hypercall} sub-op {cmd} has no wire layout in lab/xen/abi")
                if cmd in self.handlers:
                    raise ValueError(f"{self.hypercall} sub-op {cmd} has a handler already")
                self.handlers[cmd] = fn
            return fn
        return deco

    def get(self, cmd: int) -> Callable | None:
        return self.handlers.get(cmd)

    def call(self, host, v, cmd: int, va: int, info: dict, names: dict[int, str]) -> Any:
        """Sub-op ``cmd`` with its argument structure at guest address ``va`` (named first in the
        trace event's arguments); -ENOSYS for one the table lacks."""
        info["args"] = [names.get(cmd, str(cmd))]
        op = self.handlers.get(cmd)
        if op is None:
            return -E["ENOSYS"]
        return op(host, v, va, info, self.layouts[cmd])

    def layout(self, cmd: int):
        return self.layouts[cmd]


def _s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def refusal(v, nr: int, info: dict) -> int | None:
    """The checks Xen makes before any handler runs; the errno, or None to go on."""
    dom = v.domain
    if dom.is_hvm and v.cpu is not None and v.cpu.cpl > 0:
        # hvm_hypercall() checks the CPL before it even looks at the number.
        info["why"] = f"HVM hypercall from CPL {v.cpu.cpl}"
        return -E["EPERM"]
    if nr not in abi.HYPERCALL_BY_NR or nr >= 64:
        return -E["ENOSYS"]
    if dom.is_hvm and not abi.hvm_may_call(nr):
        return -E["ENOSYS"]
    if dom.is_pv and not abi.pv_may_call(nr):
        return -E["ENOSYS"]
    if abi.HYPERCALL_BY_NR[nr].control_domain_only and not dom.privileged:
        info["why"] = "control domain only (XSM default policy)"
        return -E["EPERM"]
    return None


def _record(host, v, nr: int, args: list, ret: int | None, info: dict) -> None:
    dom = v.domain
    # A PV hypercall is a syscall-like entry into Xen; an HVM one was already
    # charged as its VMCALL exit. Both pay for Xen's handler.
    cost = (host.charge(v, "hypercall_pv") if dom.is_pv else 0) + host.charge(v, "xen_handler")
    shown = ret if ret is not None else 0
    err = abi.errno_name(-_s64(shown)) if ret is not None and _s64(shown) < 0 else None
    name = abi.hypercall_name(nr) if 0 <= nr < 64 else f"unknown_{nr}"
    rip, caller = _where(host, v)
    host.emit(v, "hypercall", name=name, nr=nr, args=info.pop("args", args),
              ret=_s64(shown), errno=err, rip=rip, caller=caller, cost=cost, **({"detail": info} if info else {}))


def _where(host, v) -> tuple[int | None, int | None]:
    """The trapping instruction, and the call into the hypercall page that led to it.

    The CPU has already moved past the trap instruction. When that sits in the
    hypercall page (the tail every stub jumps to), the return address on the
    stack names the kernel's own call site, which is the line a learner wants.
    """
    if v.cpu is None:
        return None, None
    rip = (v.cpu.rip - 16) & M64
    kernel = v.domain.images.get("kernel")
    page = kernel.symbols.get("hypercall_page") if kernel is not None else None
    if page is None or not page <= rip < page + 4096:
        return rip, None
    try:
        ret = read_u64(host, v, v.cpu.regs[4])
    except GuestFault:
        return rip, None
    return rip, (ret - 16) & M64


def dispatch(host, v, nr: int, args: list[int]) -> int | Preempted | None:
    """An x86 hypercall from guest code, through the host's table: arguments are registers,
    pointers are guest-virtual.

    Returns the result, None when the handler set the guest's state itself
    (iret), or :class:`Preempted` when the caller must re-enter the hypercall
    with new arguments (a continuation)."""
    info: dict[str, Any] = {}
    ret = refusal(v, nr, info)
    if ret is None:
        fn = host.hypercalls.handlers.get(nr)
        if fn is None:
            ret = -E["ENOSYS"]
            info["why"] = "not implemented in the lab"
        else:
            try:
                ret = fn(host, v, args, info)
            except GuestFault as e:
                ret = -E["EFAULT"]
                info["why"] = str(e)
    n = host.hypercalls.nargs.get(nr, 5)
    if isinstance(ret, Preempted):
        info["continuation"] = [f"{a:#x}" for a in ret.args[:n]]
        _record(host, v, nr, [a & M64 for a in args[:n]], None, info)
        return ret
    _record(host, v, nr, [a & M64 for a in args[:n]], ret, info)
    return ret


def dispatch_python(host, v, nr: int, args: list, fn: Callable[[], Any]) -> Any:
    """A hypercall made by one of dom0's services (written in Python): same checks, same event."""
    info: dict[str, Any] = {}
    ret = refusal(v, nr, info)
    if ret is not None:
        _record(host, v, nr, list(args), ret, info)
        raise UserError(f"{abi.hypercall_name(nr)} refused: {abi.errno_name(-ret)}")
    result = fn()
    _record(host, v, nr, list(args), 0, info)
    return result

