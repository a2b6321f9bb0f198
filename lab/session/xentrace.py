"""Xen's binary trace format (``public/trace.h``), written from the lab's trace events.

``xentrace`` on a real host copies each pCPU's trace buffer to a file: a
``TRC_TRACE_CPU_CHANGE`` record naming the pCPU and the size of the window of
records that follows, then that pCPU's ``t_rec`` records. A record is one
32-bit header (the event number in bits 0-27, the count of extra 32-bit
words in bits 28-30, bit 31 when a 64-bit TSC follows), the TSC (low word,
high word), then the extra words. ``xenalyze`` reads such a file and merges
the pCPUs by TSC.

:class:`XentraceWriter` listens to the lab's event stream (it is a
``Trace`` listener, or is fed events one by one, as a replay does) and writes
the records Xen itself would have written for the same moments; the mapping
is in ``docs/trace-format.md``. The TSC of a record is the event's cycle
count: the lab's CPUs run at the host's ``cpu_mhz`` and their TSC counts
those cycles, so ``xenalyze --cpu-hz=<cpu_mhz>000000`` turns it into time.
:func:`read_xentrace` reads such a file back (the tests' own reader).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from ..trace import Event
from ..xen import abi
from ..xen.hvm import cpuid as guest_cpuid
from ..xen.abi.xen import DOMID_IDLE  # the idle domain: its vCPU n is pCPU n's idle loop
from ..xen.abi.trace import (TRACE_EXTRA_MAX, TRACE_EXTRA_SHIFT, TRC_64_FLAG, TRC_HVM_CPUID, TRC_HVM_HLT,
                             TRC_HVM_IOPORT_READ, TRC_HVM_MSR_READ, TRC_HVM_MSR_WRITE,
                             TRC_HVM_IOPORT_WRITE, TRC_HVM_SVM_EXIT64, TRC_HVM_VMENTRY,
                             TRC_HVM_VMMCALL, TRC_HVM_VMX_EXIT64, TRC_MEM_PAGE_GRANT_MAP,
                             TRC_MEM_PAGE_GRANT_UNMAP, TRC_PV_HYPERCALL_V2, TRC_PV_TRAP,
                             TRC_SCHED_BLOCK, TRC_SCHED_RUNSTATE_CHANGE, TRC_SCHED_SWITCH,
                             TRC_SCHED_WAKE, TRC_SHADOW_EMULATE, TRC_SHADOW_FIXUP,
                             TRC_TRACE_CPU_CHANGE)


#: vcpu_runstate_info states (public/vcpu.h)
RUNSTATE = {"running": 0, "runnable": 1, "blocked": 2, "offline": 3}

#: Which arguments __trace_hypercall() (common/trace.c) records for a hypercall:
#: 32-bit values of the given argument indexes.
HYPERCALL_ARGS = {
    "mmu_update": (1,), "multicall": (1,), "grant_table_op": (0, 2), "vcpu_op": (0, 1),
    "mmuext_op": (1,), "sched_op": (0,),
}

#: xentrace writes a pCPU's records in windows; the lab writes one per pCPU every so many records.
WINDOW_RECORDS = 4096


def header(event: int, extra: int, with_tsc: bool = True) -> int:
    return (event & 0x0FFF_FFFF) | ((extra & TRACE_EXTRA_MAX) << TRACE_EXTRA_SHIFT) | ((1 << 31) if with_tsc else 0)


def record(event: int, tsc: int, words: list[int]) -> bytes:
    """One t_rec with a TSC: header, TSC low and high words, the extra words."""
    if len(words) > TRACE_EXTRA_MAX:
        raise ValueError(f"a t_rec carries at most {TRACE_EXTRA_MAX} extra words")
    return struct.pack(f"<3I{len(words)}I", header(event, len(words)), tsc & 0xFFFF_FFFF, (tsc >> 32) & 0xFFFF_FFFF,
                       *[w & 0xFFFF_FFFF for w in words])


def runstate_tsc(last: tuple[int, int] | None, pcpu: int) -> int:
    """The earliest TSC a vCPU's next runstate record on ``pcpu`` may carry, given its latest
    one (TSC, pCPU): no earlier on the same pCPU, a cycle later on another, since xenalyze
    merges the pCPUs by TSC and, between equal TSCs, goes on with the pCPU it is reading."""
    if last is None:
        return 0
    tsc, where = last
    return tsc if where == pcpu else tsc + 1


def runstate(who: tuple[int, int], old: int, new: int, tsc: int) -> bytes:
    """trace_runstate_change() (common/sched/core.c): the states in the event, the vCPU in the word."""
    return record(TRC_SCHED_RUNSTATE_CHANGE | (old << 8) | (new << 4), tsc, [_dv(*who)])


def switch(prev: tuple[int, int], nxt: tuple[int, int], prev_to: int, tsc: int) -> list[bytes]:
    """sched_switch_units() (common/sched/core.c): TRC_SCHED_SWITCH, then the runstate changes of
    the vCPU leaving (running -> ``prev_to``) and of the one arriving (runnable -> running)."""
    return [record(TRC_SCHED_SWITCH, tsc, [prev[0], prev[1], nxt[0], nxt[1]]),
            runstate(prev, RUNSTATE["running"], prev_to, tsc),
            runstate(nxt, RUNSTATE["runnable"], RUNSTATE["running"], tsc)]


def _dv(dom: int | None, vcpu: int) -> int:
    """struct { uint16_t vcpu, domain; } as one little-endian word."""
    return ((dom if dom is not None else 0x7FFF) & 0xFFFF) << 16 | (vcpu & 0xFFFF)


class XentraceWriter:
    """Turns lab trace events into Xen trace records, kept per pCPU and written in windows."""

    def __init__(self, fp: BinaryIO, vendor: str = "intel",
                 is_hvm: Callable[[int], bool] | None = None,
                 cpuid: Callable[[int, int, int, int], tuple[int, int, int, int] | None] | None = None) -> None:
        self.fp = fp
        self.vendor = vendor
        #: Xen on Arm traces only what common code traces (the scheduler, grant map and unmap):
        #: its traps.c has no hypercall, trap or I/O trace points.
        self.arm = vendor == "arm"
        #: Is this domain HVM or PVH (its hypercalls are VMCALL exits, its port I/O emulated)?
        self.is_hvm = is_hvm or (lambda domid: False)
        #: (domain, vCPU, leaf, subleaf) -> the guest's CPUID result (eax, ebx, ecx, edx), or None:
        #: the lab's exit event names the leaf, the policy gives the result. Without it (events
        #: alone) a CPUID exit is written without its handler record.
        self.cpuid = cpuid
        self.pending: dict[int, list[bytes]] = {}
        self.count = 0
        self.records = 0
        self.running: dict[int, tuple[int, int]] = {}        # pcpu -> (dom, vcpu) on it
        self.state: dict[tuple[int, int], int] = {}          # (dom, vcpu) -> its runstate
        self.idle_pending: dict[int, tuple[int, int]] = {}   # pcpu -> the vCPU that just blocked there
        self.last_tsc: dict[int, int] = {}
        self.last_exit: dict[tuple[int, int], str] = {}     # (dom, vcpu) -> its latest VM exit's reason
        self.block_written: set[tuple[int, int]] = set()     # blocked HVM vCPUs whose switch is still held back
        #: (dom, vcpu) -> (TSC, pCPU) of its latest runstate record: a vCPU's timeline never goes back
        self.vcpu_tsc: dict[tuple[int, int], tuple[int, int]] = {}

    @staticmethod
    def _idle(pcpu: int) -> tuple[int, int]:
        """A pCPU's idle vCPU: DOMID_IDLE, vCPU id = the pCPU's number. A trace starts with each
        pCPU in it, as xentrace finds a host (its first record on a pCPU is a vCPU leaving it)."""
        return DOMID_IDLE, pcpu

    # -- the listener ----------------------------------------------------------------
    def __call__(self, ev: Event) -> None:
        self.event(ev)

    def event(self, ev: Event) -> None:
        # A pCPU's buffer is in time order; the lab stamps a few events (dom0's work, the
        # scheduler's) with the pCPU clock, which can lag a vCPU's cycles by a little: such
        # a record takes the pCPU's latest TSC instead of going back in time.
        # xenalyze takes a TSC of 0 for "none yet" (a real host's never is): cycle 0 is stamped 1.
        tsc = max(ev.cycle, self.last_tsc.get(ev.pcpu, 1))
        self.last_tsc[ev.pcpu] = tsc
        who = (ev.dom, ev.vcpu) if ev.dom is not None else None
        pv_record = who is not None and self._is_pv_record(ev)
        blocked_here = self.idle_pending.pop(ev.pcpu, None)
        # The lab records the VM entry that follows a blocking HLT exit at the same cycle as the
        # block; it is written, as the blocking hypercall is, before schedule() switches away.
        goes_first = pv_record or ev.kind == "vmentry"
        if blocked_here is not None and not (goes_first and who == blocked_here):
            self._put(ev.pcpu, self._to_idle(ev.pcpu, blocked_here, tsc))
            blocked_here = None
        if pv_record and who != blocked_here and self.running.get(ev.pcpu) != who:
            self._on_behalf(ev, who, tsc)
        else:
            self._put(ev.pcpu, self.records_for(ev, tsc))
        if blocked_here is not None:
            # the hypercall that blocked the vCPU is traced on entry, before schedule() runs
            self._put(ev.pcpu, self._to_idle(ev.pcpu, blocked_here, tsc))
        if self.count >= WINDOW_RECORDS:
            self.flush()

    def _put(self, pcpu: int, recs) -> None:
        for rec in recs:
            self.pending.setdefault(pcpu, []).append(rec)
            self.count += 1
            self.records += 1

    def _is_pv_record(self, ev: Event) -> bool:
        """A record xenalyze gives to the vCPU current on its pCPU: a PV hypercall or trap."""
        if self.arm or ev.dom is None or self.is_hvm(ev.dom):
            return False
        d = ev.data
        return ev.kind == "hypercall" and d.get("nr") is not None and 0 <= d["nr"] < 64 or \
            ev.kind == "trap" and d.get("handler") == "bounce" and d.get("vector") is not None

    def _where(self, who: tuple[int, int]) -> int | None:
        """The pCPU ``who`` runs on, as the trace has it so far."""
        for pcpu in sorted(self.running):
            if self.running[pcpu] == who:
                return pcpu
        return None

    def _tsc_on(self, pcpu: int, tsc: int, *vcpus: tuple[int, int]) -> int:
        """The TSC of a record on ``pcpu`` at the lab's ``tsc`` that changes the runstate of
        ``vcpus``: no earlier than the pCPU's latest record nor than any of those vCPUs'
        latest scheduling record. The lab's pCPU clocks run apart by up to a quantum, so a
        vCPU's arrival on one pCPU can be stamped before its departure from another; where
        the clocks disagree the record takes the later of the two (the lab's simplification:
        on a host the TSCs are synchronised and the departure comes first)."""
        t = max(tsc, self.last_tsc.get(pcpu, 1))
        for v in vcpus:
            t = max(t, runstate_tsc(self.vcpu_tsc.get(v), pcpu))
        self.last_tsc[pcpu] = t
        for v in vcpus:
            self.vcpu_tsc[v] = (t, pcpu)
        return t

    def _leave_elsewhere(self, who: tuple[int, int], pcpu: int, tsc: int) -> None:
        """``who`` is picked on ``pcpu`` but the trace still has it on another pCPU: the lab
        took it off there without a record of its own (a time slice ended), which Xen traces
        where it happens, as a switch to that pCPU's idle vCPU until it picks another."""
        q = self._where(who)
        if q is None or q == pcpu:
            return
        if self.idle_pending.get(q) == who:
            del self.idle_pending[q]
            self._put(q, self._to_idle(q, who, tsc))
            return
        idle = self._idle(q)
        t = self._tsc_on(q, tsc, who, idle)
        self._put(q, switch(who, idle, RUNSTATE["runnable"], t))
        self.state[who] = RUNSTATE["runnable"]
        self.running[q] = idle

    def _block(self, pcpu: int, who: tuple[int, int], tsc: int) -> Iterator[bytes]:
        """vcpu_block() of a vCPU the trace has on no pCPU: its block and its runstate change."""
        tsc = self._tsc_on(pcpu, tsc, who)
        yield record(TRC_SCHED_BLOCK, tsc, [who[0], who[1]])
        yield runstate(who, RUNSTATE["running"], RUNSTATE["blocked"], tsc)

    def _to_idle(self, pcpu: int, who: tuple[int, int], tsc: int) -> Iterator[bytes]:
        """``who`` blocked and the pCPU has nothing else to run: schedule() switches to its idle vCPU."""
        idle = self._idle(pcpu)
        tsc = self._tsc_on(pcpu, tsc, who, idle)
        if who in self.block_written:
            self.block_written.discard(who)
        else:
            yield record(TRC_SCHED_BLOCK, tsc, [who[0], who[1]])  # vcpu_block(), then schedule()
        yield from switch(who, idle, RUNSTATE["blocked"], tsc)
        self.running[pcpu] = idle

    def _on_behalf(self, ev: Event, who: tuple[int, int], tsc: int) -> None:
        """A PV record of a vCPU that is not the one on the event's pCPU: dom0's services, which
        the lab runs at once inside another vCPU's time. On a host that vCPU would be scheduled
        to do the work: where it runs, its record goes to its pCPU; else it is switched in on
        this pCPU for the moment of the record and out again."""
        where = self._where(who)
        if where is not None:
            self._put(where, self.records_for(ev, tsc, where))
            return
        pcpu = ev.pcpu
        prev = self.running.get(pcpu, self._idle(pcpu))
        state = self.state.get(who, RUNSTATE["runnable"])
        tsc = self._tsc_on(pcpu, tsc, who, prev)
        out: list[bytes] = []
        if state == RUNSTATE["blocked"]:
            out.append(runstate(who, RUNSTATE["blocked"], RUNSTATE["runnable"], tsc))
        out.extend(switch(prev, who, RUNSTATE["runnable"], tsc))
        out.extend(self.records_for(ev, tsc))
        back = RUNSTATE["blocked"] if state == RUNSTATE["blocked"] else RUNSTATE["runnable"]
        out.extend(switch(who, prev, back, tsc))
        self._put(pcpu, out)

    def records_for(self, ev: Event, tsc: int | None = None, pcpu: int | None = None) -> Iterator[bytes]:
        """The records of ``ev``, for the buffer of ``pcpu`` (the event's own by default)."""
        d = ev.data
        kind = ev.kind
        # records written just before (a held-back block) may have moved this pCPU's clock on
        tsc = self._tsc_on(ev.pcpu if pcpu is None else pcpu, ev.cycle if tsc is None else tsc)
        if kind == "sched":
            op = d.get("op")
            if op == "switch":
                nxt = (d.get("to_dom") or 0, d.get("to_vcpu") or 0)
                self._leave_elsewhere(nxt, ev.pcpu, tsc)
                prev = self.running.get(ev.pcpu, self._idle(ev.pcpu))
                if prev == nxt:
                    return                      # picked again where it ran: it just goes on
                tsc = self._tsc_on(ev.pcpu, tsc, prev, nxt)
                yield from switch(prev, nxt, RUNSTATE["runnable"], tsc)
                self.state[prev] = RUNSTATE["runnable"]
                self.state[nxt] = RUNSTATE["running"]
                self.running[ev.pcpu] = nxt
            elif op == "block":
                who = (d.get("from_dom") or 0, d.get("from_vcpu") or 0)
                self.state[who] = RUNSTATE["blocked"]
                where = self._where(who)
                if where == ev.pcpu and self.is_hvm(who[0]) and self.last_exit.get(who) == "HLT":
                    # hvm_hlt() (arch/x86/hvm/hvm.c): vcpu_block() traces the block, then
                    # TRC_HVM_HLT with the vCPU not runnable (pending = 0), before the exit
                    # returns and schedule() switches away (held back, as below)
                    yield record(TRC_SCHED_BLOCK, tsc, [who[0], who[1]])
                    yield record(TRC_HVM_HLT, tsc, [0])
                    self.block_written.add(who)
                    self.idle_pending[ev.pcpu] = who
                elif where == ev.pcpu:
                    # Written with the next record of this pCPU (see event()): the hypercall
                    # that blocked the vCPU, if that is what follows, is traced first, on entry.
                    self.idle_pending[ev.pcpu] = who
                elif where is not None:
                    self._put(where, self._to_idle(where, who, tsc))
                else:
                    yield from self._block(ev.pcpu, who, tsc)
            elif op == "wake":
                who = (d.get("to_dom") or 0, d.get("to_vcpu") or 0)
                for q, blocked in sorted(self.idle_pending.items()):
                    if blocked == who:          # its block, still held back, comes first
                        del self.idle_pending[q]
                        self._put(q, self._to_idle(q, who, tsc))
                tsc = self._tsc_on(ev.pcpu, tsc, who)
                yield record(TRC_SCHED_WAKE, tsc, [who[0], who[1]])
                yield runstate(who, RUNSTATE["blocked"], RUNSTATE["runnable"], tsc)
                self.state[who] = RUNSTATE["runnable"]
        elif self.arm and kind not in ("grant",):
            return
        elif kind == "vmexit":
            rip = d.get("rip") or 0
            event = TRC_HVM_SVM_EXIT64 if self.vendor == "amd" else TRC_HVM_VMX_EXIT64
            yield record(event, tsc, [d.get("nr") or 0, rip & 0xFFFF_FFFF, rip >> 32])
            if ev.dom is not None:
                self.last_exit[ev.dom, ev.vcpu] = d.get("reason") or ""
            if d.get("reason") == "CPUID":
                yield from self._cpuid(ev, tsc)
        elif kind == "vmentry":
            yield record(TRC_HVM_VMENTRY, tsc, [])
        elif kind == "hypercall":
            yield from self._hypercall(ev, tsc)
        elif kind == "trap" and d.get("handler") == "bounce" and d.get("vector") is not None:
            # __trace_pv_trap(): 64-bit rip, then trapnr:15 use_error_code:1 error_code:16
            rip = d.get("rip") or 0
            ec = d.get("error_code")
            packed = (d["vector"] & 0x7FFF) | ((1 if ec is not None else 0) << 15) | (((ec or 0) & 0xFFFF) << 16)
            yield record(TRC_PV_TRAP | TRC_64_FLAG, tsc, [rip & 0xFFFF_FFFF, rip >> 32, packed])
        elif kind == "ioport" and ev.dom is not None and self.is_hvm(ev.dom) and d.get("dir") in ("in", "out"):
            # hvmemul / hvm_io: the port and the value read or written
            event = TRC_HVM_IOPORT_READ if d["dir"] == "in" else TRC_HVM_IOPORT_WRITE
            yield record(event, tsc, [d.get("port") or 0, d.get("value") or 0])
        elif kind == "msr" and ev.dom is not None and self.is_hvm(ev.dom) and d.get("dir") in ("read", "write"):
            # vmx.c: HVMTRACE_3D(MSR_READ / MSR_WRITE, msr, value low, value high)
            event = TRC_HVM_MSR_READ if d["dir"] == "read" else TRC_HVM_MSR_WRITE
            value = d.get("value") or 0
            yield record(event, tsc, [d.get("msr") or 0, value & 0xFFFF_FFFF, (value >> 32) & 0xFFFF_FFFF])
        elif kind == "grant" and d.get("op") in ("map_grant_ref", "unmap_grant_ref") and d.get("status") == "GNTST_okay":
            # map_grant_ref()/unmap_common(): TRACE_TIME(TRC_MEM_PAGE_GRANT_MAP/UNMAP, the granter's domid),
            # once the operation succeeded
            event = TRC_MEM_PAGE_GRANT_MAP if d["op"] == "map_grant_ref" else TRC_MEM_PAGE_GRANT_UNMAP
            yield record(event, tsc, [d.get("granter") or 0])
        elif kind == "pagetable" and str(d.get("op", "")).startswith("shadow"):
            # mm/shadow/multi.c trace_shadow_fixup() / trace_shadow_emulate(): the event carries the
            # guest's paging levels less 2 in bits 8-11 (4-level guests: 2); the record is the
            # guest l1e, (for an emulation the value written,) the va, and the flags word. The
            # lab's event keeps the va alone: the l1e, value and flags are written as 0.
            addr = d.get("addr") or 0
            va = [addr & 0xFFFF_FFFF, (addr >> 32) & 0xFFFF_FFFF]
            if d.get("result") == "emulated":
                yield record(TRC_SHADOW_EMULATE | (2 << 8), tsc, [0, 0, 0, 0] + va + [0])
            else:
                yield record(TRC_SHADOW_FIXUP | (2 << 8), tsc, [0, 0] + va + [0])

    def _cpuid(self, ev: Event, tsc: int) -> Iterator[bytes]:
        """hvm_vmexit_cpuid() (arch/x86/hvm/hvm.c): TRC_HVM_CPUID with the leaf, the subleaf
        and the four result registers, once guest_cpuid() has answered."""
        info = ev.data.get("info") or {}
        leaf, subleaf = info.get("leaf"), info.get("subleaf")
        if self.cpuid is None or ev.dom is None or not isinstance(leaf, int) or not isinstance(subleaf, int):
            return
        res = self.cpuid(ev.dom, ev.vcpu, leaf, subleaf)
        if res is not None:
            yield record(TRC_HVM_CPUID, tsc, [leaf, subleaf, *res])

    def _hypercall(self, ev: Event, tsc: int) -> Iterator[bytes]:
        d = ev.data
        nr = d.get("nr")
        if nr is None or not 0 <= nr < 64:
            return
        if ev.dom is not None and self.is_hvm(ev.dom):
            yield record(TRC_HVM_VMMCALL, tsc, [nr])        # hvm_hypercall(): HVMTRACE_1D(VMMCALL, eax)
            return
        # __trace_hypercall(): the op, then the 32-bit arguments it records for that op,
        # each announced in the op word (TRC_PV_HYPERCALL_V2_ARG_32(i)). The lab's event
        # keeps the decoded arguments; the numbers it still has are recorded.
        op = nr
        words: list[int] = []
        args = d.get("args") or []
        for i in HYPERCALL_ARGS.get(d.get("name", ""), ()):
            if i < len(args) and isinstance(args[i], int) and not isinstance(args[i], bool):
                words.append(args[i] & 0xFFFF_FFFF)
                op |= 0x1 << (20 + 2 * i)
        yield record(TRC_PV_HYPERCALL_V2, tsc, [op] + words)

    def flush(self) -> None:
        """Write each pCPU's pending records behind a TRC_TRACE_CPU_CHANGE (cpu, window size)."""
        for pcpu, who in sorted(self.idle_pending.items()):
            self._put(pcpu, self._to_idle(pcpu, who, self.last_tsc.get(pcpu, 1)))
        self.idle_pending.clear()
        for cpu in sorted(self.pending):
            recs = self.pending[cpu]
            if not recs:
                continue
            body = b"".join(recs)
            self.fp.write(struct.pack("<3I", header(TRC_TRACE_CPU_CHANGE, 2, with_tsc=False), cpu, len(body)))
            self.fp.write(body)
        self.pending.clear()
        self.count = 0

    def close(self) -> None:
        self.flush()
        self.fp.flush()


@dataclass(frozen=True)
class TraceRecord:
    cpu: int
    event: int
    tsc: int | None
    extra: tuple[int, ...]


def read_xentrace(data: bytes) -> list[TraceRecord]:
    """Every record of a trace file, with the pCPU the last CPU_CHANGE named; CPU_CHANGE
    records themselves are kept too (their ``cpu`` is the one they name)."""
    out: list[TraceRecord] = []
    pos, cpu = 0, 0
    while pos + 4 <= len(data):
        (h,) = struct.unpack_from("<I", data, pos)
        pos += 4
        event, n, with_tsc = h & 0x0FFF_FFFF, (h >> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX, h >> 31
        tsc = None
        if with_tsc:
            lo, hi = struct.unpack_from("<II", data, pos)
            tsc = lo | hi << 32
            pos += 8
        if pos + 4 * n > len(data):
            raise ValueError(f"record at byte {pos} runs past the end of the file")
        extra = struct.unpack_from(f"<{n}I", data, pos)
        pos += 4 * n
        if event == TRC_TRACE_CPU_CHANGE:
            cpu = extra[0]
        out.append(TraceRecord(cpu, event, tsc, extra))
    return out


def hypercall_name(op_word: int) -> str:
    return abi.hypercall_name(op_word & 0xFFFFF)


def attach_xentrace(machine, path: str) -> XentraceWriter:
    """Write ``machine``'s events from now on to the xentrace file ``path`` (a Xen host only).
    Call ``close()`` on the writer when the run is over."""
    from ..errors import UserError
    if not hasattr(machine, "domains"):
        raise UserError(f"{path}: --xentrace needs a Xen target (a scenario or xl.cfg files), "
                        "not the bare machine")
    try:
        fp = open(path, "wb")
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror}") from None
    writer = writer_for(machine, fp)
    machine.trace.listeners.append(writer)
    return writer


def writer_for(host, fp: BinaryIO) -> XentraceWriter:
    """A writer for ``host``'s events: it asks the host which domains are HVM and what
    Xen's CPUID policy answers a vCPU."""
    domains = host.domains

    def cpuid_of(dom: int, vcpu: int, leaf: int, subleaf: int) -> tuple[int, int, int, int] | None:
        v = next((v for v in domains[dom].vcpus if v.id == vcpu), None) if dom in domains else None
        return None if v is None else guest_cpuid(host, v, leaf, subleaf)
    return XentraceWriter(fp, host.vendor, lambda d: d in domains and domains[d].is_hvm, cpuid_of)
