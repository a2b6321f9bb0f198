"""The xentrace writer against public/trace.h's layout, read back with the tests' own reader."""

from __future__ import annotations

import io
import struct
from collections import Counter

import pytest

from lab.errors import UserError
from lab.paths import MACHINES
from lab.session import xentrace as X
from lab.session.headless import run_headless
from lab.session.targets import build_target
from lab.xen.hvm import cpuid as hvm_cpuid


def test_record_layout_is_t_rec():
    # public/trace.h: event:28, extra_u32:3, cycles_included:1, then cycles_lo, cycles_hi, extra words
    rec = X.record(0x00081102, 0x1_2345_6789, [30, 0xDEAD_BEEF, 0xFFFF_8000])
    h, lo, hi, a, b, c = struct.unpack("<6I", rec)
    assert h & 0x0FFF_FFFF == 0x00081102 and (h >> 28) & 7 == 3 and h >> 31 == 1
    assert (lo, hi) == (0x2345_6789, 1) and (a, b, c) == (30, 0xDEAD_BEEF, 0xFFFF_8000)
    with pytest.raises(ValueError):
        X.record(1, 0, [0] * 8)
    # the numbers the writer uses are the header's
    assert (X.TRC_HVM_VMX_EXIT64, X.TRC_HVM_SVM_EXIT64, X.TRC_HVM_VMENTRY) == (0x00081102, 0x00081103, 0x00081001)
    assert (X.TRC_SCHED_RUNSTATE_CHANGE, X.TRC_SCHED_SWITCH, X.TRC_PV_HYPERCALL_V2) == (0x00021001, 0x0002800A,
                                                                                          0x0020100D)
    assert (X.TRC_TRACE_CPU_CHANGE, X.TRC_PV_TRAP, X.TRC_HVM_IOPORT_WRITE) == (0x0001F003, 0x00201003, 0x00082216)


@pytest.fixture(scope="module")
def traced():
    _kind, host, _xl, _w = build_target([str(MACHINES / "default.toml")])
    buf = io.BytesIO()
    first = host.trace.seq
    writer = X.writer_for(host, buf)
    host.trace.listeners.append(writer)
    host.run(400_000)
    writer.close()
    return host, host.trace.since(first), X.read_xentrace(buf.getvalue())


def test_per_cpu_windows_behind_cpu_change_records(traced):
    host, events, recs = traced
    assert recs[0].event == X.TRC_TRACE_CPU_CHANGE and recs[0].tsc is None
    changes = [i for i, r in enumerate(recs) if r.event == X.TRC_TRACE_CPU_CHANGE]
    for n, i in enumerate(changes):
        end = changes[n + 1] if n + 1 < len(changes) else len(recs)
        body = recs[i + 1:end]
        size = sum(4 * (3 + len(r.extra)) for r in body)
        assert recs[i].extra[1] == size                        # the window's size in bytes
        assert all(r.cpu == recs[i].extra[0] for r in body)
        tscs = [r.tsc for r in body]
        assert tscs == sorted(tscs)                            # one pCPU's records in time order
    assert {r.cpu for r in recs} <= set(range(host.config.pcpus)) and len({r.cpu for r in recs}) == 2


def test_counts_match_the_labs_events(traced):
    host, events, recs = traced
    hvm = host.domain_by_name("hvm-guest").domid
    exits = Counter(r.extra[0] for r in recs if r.event == X.TRC_HVM_VMX_EXIT64)
    assert exits == Counter(e.data["nr"] for e in events if e.kind == "vmexit") and exits
    entries = sum(1 for r in recs if r.event == X.TRC_HVM_VMENTRY)
    assert entries == sum(1 for e in events if e.kind == "vmentry")
    pv_calls = Counter(r.extra[0] & 0xFFFFF for r in recs if r.event == X.TRC_PV_HYPERCALL_V2)
    lab_pv = Counter(e.data["nr"] for e in events if e.kind == "hypercall" and e.dom != hvm)
    assert pv_calls == lab_pv and pv_calls[1] > 0               # mmu_update among them
    vmmcalls = sum(1 for r in recs if r.event == X.TRC_HVM_VMMCALL)
    assert vmmcalls == sum(1 for e in events if e.kind == "hypercall" and e.dom == hvm)
    # every VM exit's rip is the lab event's, split in two words
    ex = next(e for e in events if e.kind == "vmexit")
    rec = next(r for r in recs if r.event == X.TRC_HVM_VMX_EXIT64)
    assert rec.tsc >= ex.cycle and rec.extra[1] | rec.extra[2] << 32 == ex.data["rip"]


def test_runstate_changes_name_domain_and_vcpu(traced):
    host, events, recs = traced
    # TRC_SCHED_RUNSTATE_CHANGE | old state << 8 | new state << 4 (common/sched/core.c)
    to_running = [r for r in recs if r.event & ~0xFF0 == X.TRC_SCHED_RUNSTATE_CHANGE
                  and (r.event >> 8) & 3 == 1 and (r.event >> 4) & 3 == 0]     # runnable -> running
    switches = [e for e in events if e.kind == "sched" and e.data["op"] == "switch"]
    # a pCPU left with nothing to run switches to its idle vCPU (DOMID_IDLE, vCPU = the pCPU)
    idle = [r for r in to_running if r.extra[0] >> 16 == X.DOMID_IDLE]
    assert idle and all(r.extra[0] & 0xFFFF == r.cpu for r in idle)
    to_running = [r for r in to_running if r not in idle]
    assert len(to_running) == len(switches) > 0
    for cpu in range(host.config.pcpus):                            # per pCPU, in the same order
        assert [(r.extra[0] >> 16, r.extra[0] & 0xFFFF) for r in to_running if r.cpu == cpu] == \
            [(e.data["to_dom"], e.data["to_vcpu"]) for e in switches if e.pcpu == cpu]
    # and the first record of each pCPU is a vCPU leaving it, as on a host xentrace attaches to
    for cpu in range(host.config.pcpus):
        first = next(r for r in recs if r.cpu == cpu and r.event & ~0xFF0 == X.TRC_SCHED_RUNSTATE_CHANGE)
        assert (first.event >> 8) & 3 == 0 and first.extra[0] == X.DOMID_IDLE << 16 | cpu


def test_cli_writes_the_file_and_refuses_the_bare_machine(tmp_path):
    out = tmp_path / "lab.xentrace"
    run_headless(str(MACHINES / "default.toml"), steps=2_000, xentrace_path=str(out))
    recs = X.read_xentrace(out.read_bytes())
    assert recs and recs[0].event == X.TRC_TRACE_CPU_CHANGE
    with pytest.raises(UserError, match="needs a Xen target"):
        run_headless(str(MACHINES / "kernels" / "native.s"), steps=10, xentrace_path=str(tmp_path / "n"))


def test_shadow_and_msr_records_have_xens_layouts():
    """mm/shadow/multi.c trace_shadow_fixup() / trace_shadow_emulate(): the event carries the
    guest's paging levels less 2 in bits 8-11 and a packed record (l1e, [value,] va, flags);
    vmx.c HVMTRACE_3D(MSR_WRITE, msr, low, high)."""
    from lab.trace import Event
    w = X.XentraceWriter(io.BytesIO(), "intel", lambda d: d == 1)
    va = 0x7F12_3456_7000

    def one(kind, **data):
        (rec,) = X.read_xentrace(b"".join(w.records_for(Event(1, 100, 0, 1, 0, kind, data), 100)))
        return rec
    fix = one("pagetable", op="shadow fault", addr=va, result="fixed")
    emu = one("pagetable", op="shadow fault", addr=va, result="emulated")
    assert fix.event == X.TRC_SHADOW_FIXUP | 0x200 and len(fix.extra) == 5 and fix.extra[2] | fix.extra[3] << 32 == va
    assert emu.event == X.TRC_SHADOW_EMULATE | 0x200 and len(emu.extra) == 7 and emu.extra[4] | emu.extra[5] << 32 == va
    msr = one("msr", dir="write", msr=0x40000000, value=0x1_0000_2000)
    assert (msr.event, msr.extra) == (0x0008200D, (0x40000000, 0x2000, 1))


def _runstate_records(recs) -> list[tuple[int, int, int, int]]:
    """(tsc, pcpu, domain, vcpu) of each runstate change, in the order xenalyze merges the pCPUs:
    by TSC, and within a pCPU as written."""
    out = [(r.tsc, r.cpu, r.extra[0] >> 16, r.extra[0] & 0xFFFF, i) for i, r in enumerate(recs)
           if r.event & ~0xFF0 == X.TRC_SCHED_RUNSTATE_CHANGE]
    return [t[:4] for t in sorted(out, key=lambda t: (t[0], t[4]))]


def test_a_vcpus_runstate_records_never_go_back_in_time_across_pcpus():
    # pCPU 1's clock lags pCPU 0's: d1v0 runs on pCPU 0 at cycle 1000, is picked on pCPU 1 at
    # cycle 600 (its departure from pCPU 0 is written then), blocks there, and pCPU 0 wakes it
    # at cycle 1200, before its block at pCPU 1's cycle 1500.
    from lab.trace import Event
    buf = io.BytesIO()
    w = X.XentraceWriter(buf)
    switch = {"op": "switch", "from_dom": None, "from_vcpu": None, "to_dom": 1, "to_vcpu": 0}
    for seq, (cycle, pcpu, data) in enumerate([
            (1000, 0, switch),
            (600, 1, switch),
            (1500, 1, {"op": "block", "from_dom": 1, "from_vcpu": 0}),
            (1200, 0, {"op": "wake", "to_dom": 1, "to_vcpu": 0})]):
        w.event(Event(seq, cycle, pcpu, 1, 0, "sched", data))
    w.close()
    recs = X.read_xentrace(buf.getvalue())
    mine = [(tsc, cpu) for tsc, cpu, dom, vcpu in _runstate_records(recs) if (dom, vcpu) == (1, 0)]
    # arrival on 0; departure from 0 at pCPU 0's time and arrival on 1 a cycle after it (the later
    # clock); block on 1; wake on 0 a cycle after the block
    assert mine == [(1000, 0), (1000, 0), (1001, 1), (1500, 1), (1501, 0)]
    for (t0, c0), (t1, c1) in zip(mine, mine[1:]):
        assert t1 > t0 if c0 != c1 else t1 >= t0      # a move between pCPUs is strictly later
    # and each pCPU's own records stay in time order
    for cpu in (0, 1):
        own = [r.tsc for r in recs if r.cpu == cpu and r.tsc is not None]
        assert own == sorted(own)
    assert X.runstate_tsc(None, 0) == 0 and X.runstate_tsc((7, 0), 0) == 7 and X.runstate_tsc((7, 0), 1) == 8


def test_cpuid_exits_carry_their_handler_record(traced):
    # hvm_vmexit_cpuid() (arch/x86/hvm/hvm.c): TRC_HVM_CPUID, leaf, subleaf, eax, ebx, ecx, edx,
    # right behind the exit on the same pCPU
    host, events, recs = traced
    assert X.TRC_HVM_CPUID == 0x0008200E
    exits = [e for e in events if e.kind == "vmexit" and e.data["reason"] == "CPUID"]
    cpuid_recs = [(i, r) for i, r in enumerate(recs) if r.event == X.TRC_HVM_CPUID]
    assert len(cpuid_recs) == len(exits) > 0
    for e, (i, r) in zip(exits, cpuid_recs):
        assert recs[i - 1].event == X.TRC_HVM_VMX_EXIT64 and recs[i - 1].extra[0] == e.data["nr"]
        leaf, subleaf = e.data["info"]["leaf"], e.data["info"]["subleaf"]
        v = next(v for v in host.domains[e.dom].vcpus if v.id == e.vcpu)
        assert r.extra == (leaf, subleaf, *hvm_cpuid(host, v, leaf, subleaf))
    # Xen's own leaf: the signature "XenVMMXenVMM" in ebx, ecx, edx
    sig = next(r for _, r in cpuid_recs if r.extra[0] == 0x4000_0000)
    assert struct.pack("<3I", *sig.extra[3:6]) == b"XenVMMXenVMM"
    # with the events alone (no CPUID policy to ask), the exit is written without it
    w = X.XentraceWriter(io.BytesIO(), host.vendor, lambda d: True)
    assert [r.event for r in X.read_xentrace(b"".join(w.records_for(exits[0], 100)))] == [X.TRC_HVM_VMX_EXIT64]


def test_a_switch_is_written_as_sched_switch_units_writes_it(traced):
    # common/sched/core.c: TRC_SCHED_SWITCH (prev domain, vCPU, next domain, vCPU), then the
    # runstate change of the vCPU leaving (running -> runnable or blocked) and of the one arriving
    _host, _events, recs = traced
    switches = [i for i, r in enumerate(recs) if r.event == X.TRC_SCHED_SWITCH]
    assert switches
    for i in switches:
        prev_dom, prev_vcpu, next_dom, next_vcpu = recs[i].extra
        leave, arrive = recs[i + 1], recs[i + 2]
        assert leave.event & ~0xFF0 == arrive.event & ~0xFF0 == X.TRC_SCHED_RUNSTATE_CHANGE
        assert leave.extra[0] == prev_dom << 16 | prev_vcpu and (leave.event >> 8) & 0xF == X.RUNSTATE["running"]
        assert arrive.extra[0] == next_dom << 16 | next_vcpu and arrive.event & 0xFF0 == 0x100   # runnable -> running
        assert leave.tsc == recs[i].tsc == arrive.tsc
    # a vCPU that blocks with nothing else to run: vcpu_block()'s record, then the switch to idle
    blocks = [i for i, r in enumerate(recs) if r.event == X.TRC_SCHED_BLOCK and recs[i + 1].event == X.TRC_SCHED_SWITCH]
    assert blocks
    for i in blocks:
        assert recs[i + 1].extra[:2] == recs[i].extra and recs[i + 1].extra[2] == X.DOMID_IDLE
        assert (recs[i + 2].event >> 4) & 0xF == X.RUNSTATE["blocked"]


def test_a_blocking_hlt_exit_carries_its_handler_record():
    # hvm_hlt() (arch/x86/hvm/hvm.c): vcpu_block()'s TRC_SCHED_BLOCK, then TRC_HVM_HLT with the
    # vCPU not runnable (pending = 0), both before schedule() switches away; the VM entry the
    # lab records at the block goes before the switch
    from lab.trace import Event
    assert X.TRC_HVM_HLT == 0x00082013
    buf = io.BytesIO()
    w = X.XentraceWriter(buf, "intel", lambda d: d == 2)
    for seq, (kind, data) in enumerate([
            ("sched", {"op": "switch", "from_dom": None, "from_vcpu": None, "to_dom": 2, "to_vcpu": 0}),
            ("vmexit", {"reason": "HLT", "nr": 12, "rip": 0x1000}),
            ("sched", {"op": "block", "from_dom": 2, "from_vcpu": 0}),
            ("vmentry", {"rip": 0x1001})]):
        w.event(Event(seq, 100 + seq, 0, 2, 0, kind, data))
    w.close()
    recs = X.read_xentrace(buf.getvalue())
    i = next(i for i, r in enumerate(recs) if r.event == X.TRC_HVM_VMX_EXIT64)
    assert [r.event & ~0xFF0 if r.event & ~0xFF0 == X.TRC_SCHED_RUNSTATE_CHANGE else r.event
            for r in recs[i:]] == [X.TRC_HVM_VMX_EXIT64, X.TRC_SCHED_BLOCK, X.TRC_HVM_HLT, X.TRC_HVM_VMENTRY,
                                   X.TRC_SCHED_SWITCH, X.TRC_SCHED_RUNSTATE_CHANGE, X.TRC_SCHED_RUNSTATE_CHANGE]
    assert recs[i + 2].extra == (0,) and recs[i + 1].extra == (2, 0)
    assert recs[i + 4].extra == (2, 0, X.DOMID_IDLE, 0) and (recs[i + 5].event >> 4) & 0xF == X.RUNSTATE["blocked"]
    # a PV vCPU's block has no HLT record, and one block record only
    pv = X.XentraceWriter(io.BytesIO(), "intel", lambda d: False)
    pv.last_exit[1, 0] = "HLT"
    pv.event(Event(0, 5, 0, 1, 0, "sched", {"op": "switch", "from_dom": None, "from_vcpu": None,
                                             "to_dom": 1, "to_vcpu": 0}))
    pv.event(Event(1, 6, 0, 1, 0, "sched", {"op": "block", "from_dom": 1, "from_vcpu": 0}))
    pv.close()
    events = [r.event for r in X.read_xentrace(pv.fp.getvalue())]
    assert X.TRC_HVM_HLT not in events and events.count(X.TRC_SCHED_BLOCK) == 1
