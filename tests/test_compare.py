"""The comparison table: one program, several modes, every figure explainable by the trace."""

from __future__ import annotations

import json

import pytest

from lab.cli import main
from lab.errors import UserError
from lab.session.compare import compare, disagreement
from test_machine import expected_checksum


@pytest.fixture(scope="module")
def results():
    return {r.mode: r for r in compare()}


@pytest.mark.machine
def test_every_mode_prints_the_same_checksum(results):
    want = f"{expected_checksum():#018x}"
    assert {r.checksum for r in results.values()} == {want}
    assert all(r.stopped == "poweroff" for r in results.values() if r.mode != "native")


@pytest.mark.machine
def test_every_mode_including_arm_reports_the_same_exit_code(results):
    # `xenlab compare` fails when the modes disagree: the Arm column must read its kernel's exit line too
    assert {r.exit_code for r in results.values()} == {0}
    assert disagreement(list(results.values())) is None


@pytest.mark.machine
def test_the_counts_tell_pv_from_hvm(results):
    native, pv, pv32, hvm = results["native"], results["pv"], results["pv32"], results["hvm"]
    assert native.hypercalls == {} and native.vmexits == {}, "bare metal makes no hypercalls"
    assert pv.vmexits == {} and pv.io_exits == 0 and pv.ioreqs == 0, "a PV guest makes no port I/O"
    # every PV system call and page fault is bounced through Xen, and each bounce ends in iret
    assert pv.traps["syscall"] == pv.syscalls == native.syscalls
    assert pv.traps["#PF"] == native.traps["#PF"] == 32
    assert pv.hypercalls["iret"] == sum(pv.traps.values())
    assert pv.hypercalls["mmu_update"] > 0 and pv32.hypercalls["mmu_update"] > 0
    # the HVM guest's system calls and page faults never leave the guest
    assert hvm.traps == native.traps and "syscall" not in hvm.traps
    assert hvm.io_exits == hvm.vmexits["IO_INSTRUCTION"] > 0
    assert hvm.vmexits["VMCALL"] == sum(hvm.hypercalls.values()) == 1
    assert pv32.vmexits == {}
    assert native.ratio == 1.0


@pytest.mark.machine
def test_the_two_io_worlds(results):
    pv, hvm, pvh = results["pv"], results["hvm"], results["pvh"]
    pvd, pvhvm, native = results["hvm-pvdrivers"], results["pvhvm"], results["native"]
    # emulated: every IDE and NE2000 register access is an exit and an ioreq to QEMU in dom0
    assert hvm.ring_requests == 0 and hvm.ioreqs > 1000 and hvm.io_exits > hvm.ioreqs
    # split drivers: the disk's two requests and the ping's frames go on rings, with no ioreq
    assert pv.ring_requests >= 4 and pv.evtchn_notifications > 0
    assert pvh.ring_requests == pvd.ring_requests == pvhvm.ring_requests == pv.ring_requests
    # PVH: no device model, so no port I/O at all; its console is a ring and an event channel
    assert pvh.io_exits == 0 and pvh.ioreqs == 0 and pvh.vmexits["VMCALL"] > 0
    assert pvh.traps == native.traps
    # HVM with PV drivers: ioreqs only for finding the platform device and the unplug
    assert 0 < pvd.ioreqs < hvm.ioreqs // 10 and 0 < pvhvm.ioreqs < hvm.ioreqs // 10
    assert pvd.hypercalls["hvm_op"] >= 1 and pvhvm.hypercalls["vcpu_op"] >= 1     # PVHVM: the PV timer
    # dom0 works for every guest with a device: its backends, or QEMU
    assert native.dom0_cycles == 0 and pv.dom0_cycles > 0 and hvm.dom0_cycles > pvd.dom0_cycles
    assert hvm.total_cycles > pvd.total_cycles > pv.total_cycles


@pytest.mark.machine
def test_json_output_has_the_documented_keys(capsys):
    assert main(["compare", "--modes", "native,pv", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["mode"] for d in data] == ["native", "pv"]
    for key in ("instructions", "cycles", "dom0_cycles", "total_cycles", "ratio_to_native", "checksum", "traps", "hypercalls", "vmexits",
                "io_exits", "ioreqs", "ring_requests", "evtchn_notifications", "shadow_syncs", "syscalls"):
        assert key in data[1]


def test_unknown_modes_are_clear_errors():
    with pytest.raises(UserError, match="unknown mode 'vmware'"):
        compare(modes=["vmware"])


@pytest.mark.machine
def test_the_compare_command_runs_fresh_machines_and_leaves_the_session_alone():
    from lab.session.build import native_machine
    from lab.session.commands import execute
    from lab.session.session import Session
    s = Session(native_machine())
    before = s.machine.digest()
    out = execute(s, "compare --modes native,pvh")
    lines = out.splitlines()
    assert lines[0].split() == ["native", "pvh"] and not any(l.startswith("description") for l in lines)
    assert any(l.startswith("ring requests") and l.split()[-2:] == ["0", "4"] for l in lines)
    assert s.machine.digest() == before
    with pytest.raises(UserError, match="unknown mode 'vmware'"):
        execute(s, "compare --modes vmware")
    with pytest.raises(UserError, match="usage: compare"):
        execute(s, "compare --modes")


@pytest.mark.machine
def test_the_arm_column(results):
    arm, native = results["arm"], results["native"]
    # one guest type: the kernel's system calls never leave the guest, and nothing traps for I/O
    assert arm.syscalls == native.syscalls and arm.vmexits == {} and arm.io_exits == 0 and arm.ioreqs == 0
    assert arm.hypercalls["memory_op"] == 2 and arm.hypercalls["hvm_op"] == 4
    # every event_channel_op is a notification but the two EVTCHNOP_alloc_unbound of blkfront and netfront
    assert arm.evtchn_notifications == arm.hypercalls["event_channel_op"] - 2 > 0


@pytest.mark.machine
def test_a_mode_on_the_restored_host_counts_what_it_counts_on_a_freshly_booted_one(results):
    # compare boots Xen once and restores that host for each mode; the last mode
    # (after six restores) must see exactly the host a fresh boot gives.
    from dataclasses import replace

    from lab.session.build import DEFAULT_PROGRAM
    from lab.session.compare import run_mode
    fresh = run_mode("pvh", DEFAULT_PROGRAM)
    assert replace(results["pvh"], ratio=fresh.ratio) == fresh
