"""The comparison table: one program, several modes, every figure explainable by the trace."""

from __future__ import annotations

import json

import pytest

from lab.cli import main
from lab.errors import UserError
from lab.session.compare import compare
from test_machine import expected_checksum


@pytest.fixture(scope="module")
def results():
    return {r.mode: r for r in compare(modes=["native", "pv", "pv32", "hvm", "pvh"])}


def test_every_mode_prints_the_same_checksum(results):
    want = f"{expected_checksum():#018x}"
    assert {r.checksum for r in results.values()} == {want}
    assert all(r.stopped == "poweroff" for r in results.values() if r.mode != "native")


def test_the_counts_tell_pv_from_hvm(results):
    native, pv, pv32, hvm = results["native"], results["pv"], results["pv32"], results["hvm"]
    assert native.hypercalls == {} and native.vmexits == {}, "bare metal makes no hypercalls"
    assert pv.vmexits == {} and pv.io_exits == 0, "a PV guest makes no port I/O and has no VM exits"
    # every PV system call and page fault is bounced through Xen
    assert pv.traps["syscall"] == pv.syscalls == native.syscalls
    assert pv.traps["#PF"] == native.traps["#PF"] == 32
    assert pv.hypercalls["iret"] == pv.syscalls + pv.traps["#PF"]
    assert pv.hypercalls["mmu_update"] > 0 and pv32.hypercalls["mmu_update"] > 0
    # the HVM guest's system calls and page faults never leave the guest
    assert hvm.traps == native.traps and "syscall" not in hvm.traps
    assert hvm.io_exits == hvm.vmexits["IO_INSTRUCTION"] > 0
    assert hvm.vmexits["VMCALL"] == sum(hvm.hypercalls.values()) == 1
    assert pv32.vmexits == {}
    # PVH: no device model, so no port I/O at all; its console is a ring and an event channel
    pvh = results["pvh"]
    assert pvh.io_exits == 0 and pvh.evtchn_notifications > 0 and pvh.vmexits["VMCALL"] > 0
    assert pvh.traps == native.traps
    assert pv.cycles > native.cycles and hvm.cycles > native.cycles
    assert native.ratio == 1.0


def test_json_output_has_the_documented_keys(capsys):
    assert main(["compare", "--modes", "native,pv", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["mode"] for d in data] == ["native", "pv"]
    for key in ("instructions", "cycles", "ratio_to_native", "checksum", "traps", "hypercalls", "vmexits",
                "io_exits", "ioreqs", "ring_requests", "evtchn_notifications", "shadow_syncs", "syscalls"):
        assert key in data[1]


def test_unknown_and_future_modes_are_clear_errors():
    with pytest.raises(UserError, match="unknown mode 'vmware'"):
        compare(modes=["vmware"])
    with pytest.raises(UserError, match="needs the PV drivers"):
        compare(modes=["pvhvm"])
