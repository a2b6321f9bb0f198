"""Xen on Arm: the host, hvc hypercalls, stage 2, the vGIC's PPIs, the device tree and xl."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given, settings, strategies as st

from lab.dom0.arm.toolstack import boot_arm_host
from lab.errors import UserError
from lab.hw.arm import exceptions as X
from lab.paths import MACHINES
from lab.session.scenario import load_scenario, start_scenario
from lab.xen import abi
from lab.xen.arm import layout as L
from lab.xen.arm.devicetree import flatten, guest_tree, parse
from lab.xen.arm.host import ArmHostConfig
from lab.xen.version import guest_features
from test_machine import expected_checksum

ARM = MACHINES / "arm"
HVC_ESR = "0x5a000ea1"          # EC 0x16 (HVC64), IL, ISS = XEN_HYPERCALL_TAG


@pytest.fixture(scope="module")
def booted():
    """The shipped Arm scenario, run until its guest has powered off."""
    host, xl = start_scenario(load_scenario(ARM / "arm.toml"))
    host.run(3_000_000)
    return host, xl


def test_the_arm_guest_runs_the_workload_with_the_x86_checksum(booted):
    host, _ = booted
    dom = host.domain_by_name("arm-guest")
    out = dom.console_output
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff"
    assert f"workload: checksum {expected_checksum():#018x}" in out
    assert "program exited with code 0; syscalls 76" in out
    assert "xenstore: read name = arm-guest" in out
    assert 'compatible "xen,xen-4.23", grant table at 0x0000000038000000, event channel PPI 31' in out
    assert "psci: CPU_ON started vCPU 1 (MPIDR 0x0000000080000001, context id 0x00000000000005ec)" in out


def test_the_shipped_guest_s_second_vcpu_came_up_by_psci_and_went_down_again(booted):
    host, xl = booted
    dom = host.domain_by_name("arm-guest")
    assert len(dom.vcpus) == 2 and dom.vcpus[1].cpu is not None and dom.vcpus[1].cpu.icount > 0
    ops = [(e.data["op"], e.vcpu) for e in host.trace.iter_all() if e.kind == "sched" and e.data["op"] in ("up", "down")]
    assert ops == [("up", 1), ("down", 1)]
    rows = [line.split() for line in xl.vcpu_list().splitlines() if line.startswith("arm-guest")]
    assert [r[2] for r in rows] == ["0", "1"]


def test_hypercalls_are_hvc_0xea1_with_the_number_in_x16(booted):
    host, _ = booted
    guest = host.domain_by_name("arm-guest").domid          # (dom0's are its services' calls: no hvc)
    calls = [e for e in host.trace.iter_all() if e.kind == "hypercall" and e.dom == guest]
    names = {e.data["name"] for e in calls}
    assert {"xen_version", "memory_op", "hvm_op", "event_channel_op", "sched_op"} <= names
    for e in calls:
        assert e.data["detail"]["esr"] == HVC_ESR
        assert e.data["nr"] == abi.hypercall_nr(e.data["name"]) == e.data["detail"]["x16"]
    version = next(e for e in calls if e.data["name"] == "xen_version")
    assert version.data["ret"] == (4 << 16) | 23


def test_shared_info_and_the_grant_table_come_through_add_to_physmap(booted):
    host, _ = booted
    dom = host.domain_by_name("arm-guest")
    p2m = host.p2m(dom)
    shinfo_gfn = dom.images["kernel"].symbols["shared_info_page"] >> 12
    assert dom.shared_info_mfn and p2m.lookup(shinfo_gfn) == dom.shared_info_mfn
    assert p2m.lookup(L.GUEST_GNTTAB_BASE >> 12) == dom.extra["gnttab_frames"][0]
    maps = [e for e in host.trace.iter_all() if e.kind == "hypercall" and e.data["name"] == "memory_op"]
    assert [m.data["args"][0] for m in maps] == ["XENMEM_add_to_physmap"] * 2 and all(m.data["ret"] == 0 for m in maps)


def test_event_channel_upcalls_are_ppi_31_and_the_timer_ppi_27(booted):
    host, _ = booted
    irqs = [e for e in host.trace.iter_all() if e.kind == "interrupt" and e.dom == 1]
    assert any(e.data["vector"] == L.GUEST_EVTCHN_PPI and "event channel" in e.data["source"] for e in irqs)
    assert any(e.data["vector"] == 27 and "timer" in e.data["source"] for e in irqs)
    out = host.domain_by_name("arm-guest").console_output
    assert re.search(r"virtual timer interrupts \(PPI 27\) 1; event channel upcalls [1-9]", out)
    # the guest took them as IRQs at EL1 (vector offset 0x80), acknowledged at the virtual interface
    assert any(e.kind == "trap" and e.data["mnemonic"] == "IRQ" for e in host.trace.iter_all())


def test_the_device_tree_names_xen_as_the_guest_binding_says():
    tree = parse(flatten(guest_tree(xen_version=(4, 23), ram_base=L.GUEST_RAM0_BASE, ram_size=32 << 20)))
    hyp = tree.child("hypervisor")
    assert hyp.prop("compatible") == b"xen,xen-4.23\0xen,xen\0"
    assert struct.unpack(">4I", hyp.prop("reg")) == (0, 0x38000000, 0, 0x01000000)
    assert struct.unpack(">3I", hyp.prop("interrupts")) == (1, 31 - 16, 0xF08)     # PPI, all CPUs, level-low
    timer = tree.child("timer")
    assert struct.unpack(">9I", timer.prop("interrupts"))[6:] == (1, 27 - 16, 0xF08)
    assert tree.child("memory@40000000").prop("reg") == struct.pack(">4I", 0, 0x40000000, 0, 32 << 20)


def test_xl_on_the_arm_host(booted):
    _, xl = booted
    info = xl.info()
    assert "machine                : aarch64" in info
    assert "xen_caps               : xen-3.0-aarch64 xen-3.0-armv7l" in info
    assert re.search(r"virt_caps +: hvm hap gnttab-v1\n", info)        # no "pv": one guest type
    rows = xl.list().splitlines()
    assert rows[1].startswith("Domain-0") and rows[2].startswith("arm-guest") and "s" in rows[2].split()[4]
    dts = xl.device_tree("arm-guest")
    assert 'compatible = "xen,xen-4.23", "xen,xen";' in dts and "interrupts = <0x1 0xf 0xf08>;" in dts


def test_xl_create_refuses_an_x86_guest_type(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    cfg = tmp_path / "hvm.cfg"
    cfg.write_text('name = "g"\nmemory = 16\n\ntype = "hvm"\nkernel = "kernel.s"\n')
    with pytest.raises(UserError, match=r"hvm.cfg:4: .*one guest type"):
        xl.create(cfg)


def test_scenario_keys_for_an_arm_host(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[host]\narch = "sparc"\n')
    with pytest.raises(UserError, match="arch must be"):
        load_scenario(bad)
    bad.write_text('[host]\narch = "arm64"\nvendor = "intel"\n')
    with pytest.raises(UserError, match="x86 key"):
        load_scenario(bad)


# ---------------------------------------------------------------- small guests of our own
CRASH_VECTOR = """
.align 2048
vectors:
.org vectors + 0x200
    mrs x20, esr_el1
    mrs x21, far_el1
    mov x9, #3
    adr x1, arg
    str w9, [x1]
    mov x16, #29
    mov x0, #2
    hvc #0xea1
.org vectors + 0x800
arg: .quad 0
"""


def small_guest(tmp_path, xl, name: str, body: str, vectors: bool = True):
    src = tmp_path / f"{name}.s"
    src.write_text(".arch arm64\n.org 0x40080000\n_start:\n"
                   + ("    adr x9, vectors\n    msr vbar_el1, x9\n" if vectors else "")
                   + body + "\n99: b 99b\n" + (CRASH_VECTOR if vectors else ""))
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(f'name = "{name}"\nmemory = 16\nkernel = "{src}"\non_crash = "preserve"\n')
    return xl.create(cfg)


def hypercall(nr: int, *args: int) -> str:
    return "".join(f"    mov x{i}, #{a}\n" for i, a in enumerate(args)) + f"    mov x16, #{nr}\n    hvc #0xea1\n"


def test_only_the_arm_column_of_the_hypercall_table_answers(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    small_guest(tmp_path, xl, "g", hypercall(1, 0, 0, 0) + "    mov x19, x0\n"       # mmu_update: x86 PV only
                + hypercall(36, 0) + "    mov x20, x0\n"                                 # domctl: control domain only
                + hypercall(17, 3, 0x10) + "    mov x21, x0\n")                          # a bad pointer
    host.run(200)
    cpu = host.domain_by_name("g").vcpus[0].cpu
    assert cpu.x[19] == (-abi.ERRNO["ENOSYS"]) & (2**64 - 1)
    assert cpu.x[20] == (-abi.ERRNO["EPERM"]) & (2**64 - 1)
    assert cpu.x[21] == (-abi.ERRNO["EFAULT"]) & (2**64 - 1)
    errnos = [e.data["errno"] for e in host.trace.iter_all() if e.kind == "hypercall"]
    assert errnos == ["ENOSYS", "EPERM", "EFAULT"]


def test_get_features_is_common_code_with_arms_own_bits(tmp_path):
    """XENVER_get_features as xen/common/kernel.c answers an Arm guest: sub-map 0 has
    memory_op_vnode_supported, runstate_phys_area, writable_page_tables and
    auto_translated_physmap (stage 2 translates every guest), ARM_SMCCC_supported (CONFIG_ARM)
    and not_direct_mapped; none of the CONFIG_X86 bits. Dom0, mapped 1:1 by create_dom0()
    (arch/arm/domain_build.c), is direct mapped and has XENFEAT_dom0. Sub-map 1 is -EINVAL."""
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    info = 0x40900000
    load = "    movz x1, #0x4090, lsl #16\n"
    call = "    mov x0, #6\n" + load + "    mov x16, #17\n    hvc #0xea1\n"
    g = small_guest(tmp_path, xl, "g", call + "    mov x19, x0\n" + "    mov x9, #1\n" + load
                    + "    str w9, [x1]\n" + call + "    mov x20, x0\n")
    host.write_guest(g, info, struct.pack("<II", 0, 0x7777))
    host.run(200)
    cpu = g.vcpus[0].cpu
    assert cpu.x[19] == 0
    assert cpu.x[20] == (-abi.ERRNO["EINVAL"]) & (2**64 - 1)
    submap = struct.unpack("<I", host.read_guest(g, info + 4, 4))[0]
    assert submap == (1 << 0) | (1 << 2) | (1 << 13) | (1 << 14) | (1 << 16) | (1 << 18)
    dom0 = host.domains[0]
    assert guest_features(host, dom0) == (1 << 0) | (1 << 2) | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 17) | (1 << 18)
    args = [e.data["args"] for e in host.trace.iter_all() if e.kind == "hypercall" and e.dom == g.domid]
    assert args == [["XENVER_get_features", "submap 0"], ["XENVER_get_features", "submap 1"]]


def test_sched_op_shutdowns_are_common_code_as_on_x86(tmp_path):
    """do_sched_op() (common/sched/core.c) on Arm: SCHEDOP_shutdown_code keeps the first code,
    a domU's SCHEDOP_remote_shutdown is -EPERM (XSM_DM_PRIV), and SCHEDOP_shutdown passes its
    reason on as a u8, refusing none: 0x107 is code 7, which Xen does not name."""
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    load = "    movz x1, #0x4090, lsl #16\n"
    def sched(cmd: int, save: int) -> str:
        return f"    mov x0, #{cmd}\n" + load + f"    mov x16, #29\n    hvc #0xea1\n    mov x{save}, x0\n"
    g = small_guest(tmp_path, xl, "g", sched(abi.SCHEDOP_shutdown_code, 19) + sched(abi.SCHEDOP_shutdown_code, 20)
                    + sched(abi.SCHEDOP_remote_shutdown, 21) + "    mov x9, #0x107\n" + load
                    + "    str w9, [x1]\n" + sched(abi.SCHEDOP_shutdown, 22))
    host.write_guest(g, 0x40900000, struct.pack("<I", abi.SHUTDOWN_reboot))
    host.run(300)
    cpu = g.vcpus[0].cpu
    assert (cpu.x[19], cpu.x[20]) == (0, 0) and g.extra["shutdown_code"] == abi.SHUTDOWN_reboot
    assert cpu.x[21] == (-abi.ERRNO["EPERM"]) & (2**64 - 1)
    assert g.state == "shutdown" and g.shutdown_reason == "code 7"
    args = [e.data["args"] for e in host.trace.iter_all() if e.kind == "hypercall" and e.dom == g.domid]
    assert args == [["SCHEDOP_shutdown_code", "reboot"]] * 2 + [["SCHEDOP_remote_shutdown"],
                                                               ["SCHEDOP_shutdown", "code 7"]]


def test_an_hvc_without_xens_tag_is_undefined_in_the_guest(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = small_guest(tmp_path, xl, "g", "    hvc #1\n")
    host.run(200)
    cpu = dom.vcpus[0].cpu
    assert dom.state == "crashed"                     # its own vector asked for SHUTDOWN_crash
    assert cpu.x[20] >> 26 == X.EC_UNKNOWN
    assert any("invalid HVC imm 0x1" in line for line in host.dmesg)


@pytest.mark.parametrize("ipa", [0x10000000, 0x3F000000, 0x48000000])
def test_a_guest_cannot_reach_outside_its_ipa_space(tmp_path, ipa):
    """Below its RAM, Xen's and the GIC's region, past its end: stage 2 has no descriptor, Xen injects
    the abort (ISS 0, FAR the address) and only that guest stops; the other one runs on."""
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    victim = small_guest(tmp_path, xl, "bad", f"    movz x0, #{ipa >> 16:#x}, lsl #16\n    ldr x1, [x0]\n")
    other = small_guest(tmp_path, xl, "good", "1:\n" + hypercall(17, 0, 0) + "    b 1b\n")
    host.run(2000)
    faults = [e for e in host.trace.iter_all() if e.kind == "pagetable" and e.data["op"] == "stage2 fault"]
    assert len(faults) == 1 and faults[0].data["addr"] == ipa and faults[0].dom == victim.domid
    assert faults[0].data["result"] == "abort injected into the guest"
    assert (faults[0].data["value"] >> 26) == X.EC_DABT_LOW
    assert victim.state == "crashed"
    cpu = victim.vcpus[0].cpu
    assert cpu.x[20] >> 26 == X.EC_DABT_CUR and cpu.x[21] == ipa and cpu.x[20] & 0x3F == 0
    assert cpu.sys["hpfar_el2"] == (ipa >> 12) << 4
    assert other.alive and other.vcpus[0].cpu.icount > 500


def test_a_stage2_permission_fault_crashes_only_that_guest(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = small_guest(tmp_path, xl, "ro", "    movz x0, #0x4010, lsl #16\n    str x0, [x0]\n")
    p2m = host.p2m(dom)
    gfn = 0x40100000 >> 12
    p2m.map(gfn, p2m.lookup(gfn), "r")               # as a read-only grant mapping would be
    other = small_guest(tmp_path, xl, "good", "1:\n" + hypercall(17, 0, 0) + "    b 1b\n")
    host.run(1000)
    assert dom.state == "crashed" and "stage-2 permission fault at IPA 0x40100000" in dom.crash_reason
    assert other.alive


def test_a_guest_whose_vectors_are_outside_its_memory_is_crashed_not_looped(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = small_guest(tmp_path, xl, "novec", "    movz x0, #0x1000, lsl #16\n    ldr x1, [x0]\n", vectors=False)
    host.run(1000)
    assert dom.state == "crashed" and "exception vector" in dom.crash_reason


def test_the_arm_host_is_deterministic(tmp_path):
    digests = []
    for _ in range(2):
        host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
        small_guest(tmp_path, xl, "g", "1:\n" + hypercall(17, 0, 0) + "    wfi\n    b 1b\n")
        host.run(500)
        digests.append((host.digest(), [e.to_json() for e in host.trace.iter_all()]))
    assert digests[0] == digests[1]


def test_the_session_speaks_arm_el_pc_and_the_two_stage_walk():
    from lab.session import live
    from lab.session.commands import execute
    session = live.open_session([str(ARM / "arm.toml")])
    assert session.focus.label.startswith("arm-guest")
    out = execute(session, "step 5")
    assert "EL1 (guest kernel), pc 0x40080014" in out
    regs = execute(session, "regs")
    assert "x19 0000000041e00000" in regs and "HCR_EL2: VM FMO IMO AMO TWI TSC RW" in regs
    walk = execute(session, "walk 0x40400000")
    assert "VMID 2" in walk and "output IPA 0x40400000 through stage 2" in walk and "S2AP RW AF" in walk
    assert execute(session, "disasm 0x40080000 2").splitlines() == [
        "0x0000000040080000  mov x19, x0", "0x0000000040080004  mov x27, x1"]
    assert "=> machines/arm/kernel.s" in execute(session, "source").replace("\\", "/")
    dts = execute(session, "devicetree")
    assert "hypervisor {" in dts and 'compatible = "xen,xen-4.23", "xen,xen";' in dts
    execute(session, "until interrupt:31")
    gic = execute(session, "regs")
    assert "ICH_LR0_EL2 0x50a000000000001f vINTID 31 pending, priority 0xa0" in gic
    assert "ICH_LR1_EL2 0x0000000000000000 free" in gic


def test_an_arm_session_records_replays_and_travels_back(tmp_path, capsys):
    from lab.cli import main
    rec = tmp_path / "arm.jsonl"
    assert main(["exec", str(ARM / "arm.toml"), "--record", str(rec), "-c", "run 140000; back 100"]) == 0
    assert "EL0 (user program)" in capsys.readouterr().out
    assert main(["replay", str(rec), "--verify"]) == 0
    assert "all match (complete)" in capsys.readouterr().out


def test_xl_info_on_the_command_line(capsys):
    from lab.cli import main
    assert main(["xl", "--scenario", str(ARM / "arm.toml"), "info", "xen_caps"]) == 0
    assert capsys.readouterr().out.strip() == "xen-3.0-aarch64 xen-3.0-armv7l"


def test_the_kernel_s_stage_1_over_xen_s_stage_2(booted):
    """The program's addresses take the 2-D walk: 2 stage-1 levels (a 2 MiB block), each table read
    and the output translated by a 4-level stage 2; the kernel's own block is closed to EL0."""
    from lab.hw.arm.mmu import FSC_PERMISSION, stage1_walk
    host, _ = booted
    cpu = host.domain_by_name("arm-guest").vcpus[0].cpu
    assert cpu.sys["sctlr_el1"] & 1
    res = stage1_walk(host.mem, cpu.regime(1), 0x40400000, "x", el=0)
    assert res.ok and res.level == 2 and res.el0 and res.mem_refs == 14
    assert res.pa == host.guest_phys_to_machine(1, 0x40400000)
    kernel = stage1_walk(host.mem, cpu.regime(1), 0x40080000, "r", el=0)
    assert kernel.fault is not None and kernel.fault.stage == 1 and kernel.fault.fsc == FSC_PERMISSION
    assert not stage1_walk(host.mem, cpu.regime(1), 0x40400000, "x", el=1).executable     # PXN


def test_the_program_s_heap_is_mapped_on_demand_by_the_kernel(booted):
    """The heap's level-3 tables start empty: each of the 32 pages the workload touches first
    faults at EL0 (a data abort, translation fault at level 3, taken to the guest's EL1, never to
    Xen), and the kernel maps it; past brk nothing is mapped."""
    from lab.hw.arm.mmu import FSC_TRANSLATION, stage1_walk
    host, _ = booted
    dom = host.domain_by_name("arm-guest")
    assert "heap pages mapped on demand 32" in dom.console_output
    aborts = [e for e in host.trace.iter_all() if e.kind == "trap" and e.dom == dom.domid
              and e.data["mnemonic"] == "Data abort from a lower EL"]
    assert len(aborts) == 32 and {e.data["error_code"] >> 26 for e in aborts} == {X.EC_DABT_LOW}
    assert {e.data["error_code"] & 0x3F for e in aborts} == {FSC_TRANSLATION | 3}
    cpu = dom.vcpus[0].cpu
    heap = stage1_walk(host.mem, cpu.regime(1), 0x40800000, "w", el=0)
    assert heap.ok and heap.level == 3 and heap.el0 and not heap.executable      # a 4 KiB page, UXN
    assert heap.pa == host.guest_phys_to_machine(dom.domid, 0x40800000)
    past = stage1_walk(host.mem, cpu.regime(1), 0x40800000 + 32 * 4096, "r", el=0)
    assert past.fault is not None and past.fault.fsc == FSC_TRANSLATION and past.fault.level == 3


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=8, max_size=40), st.integers(0, 63))
def test_any_words_a_guest_runs_stop_at_most_that_guest(tmp_path_factory, words, nr):
    """Random A64 words (and a random hypercall with random pointers in front): the host never
    raises, and a well-behaved guest beside it runs on."""
    tmp = tmp_path_factory.mktemp("fuzz")
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = (f"    movz x16, #{nr}\n    movz x0, #{words[0] & 0xFFFF}\n    movz x1, #{words[1] & 0xFFFF}, lsl #16\n"
            "    hvc #0xea1\n" + "".join(f"    .dword {w:#x}\n" for w in words))
    bad = small_guest(tmp, xl, "bad", body)
    good = small_guest(tmp, xl, "good", "1:\n" + hypercall(17, 0, 0) + "    b 1b\n")
    host.run(3000)
    assert good.alive and good.vcpus[0].cpu.icount > 300
    assert bad.state in ("running", "crashed", "shutdown")


def test_xenlab_run_on_the_arm_scenario(capsys):
    from lab.cli import main
    assert main(["run", str(ARM / "arm.toml"), "--steps", "20000"]) == 0
    out = capsys.readouterr().out
    assert "--- arm-guest (d1, arm) ---" in out and "d1| xenstore: read name = arm-guest" in out
    assert "[still running after 20,000 instructions" in out


def test_xl_destroy_gives_every_frame_back(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    free = host.free_pages
    dom0_tables = host.p2m(host.domains[0]).tables.tables
    before = len(dom0_tables)
    dom = small_guest(tmp_path, xl, "g", hypercall(17, 0, 0))
    host.run(100)
    assert host.free_pages < free - (16 << 8)
    xl.destroy("g")
    # all but the tables dom0's stage 2 grew for its services' foreign mappings, which it keeps
    grown = len(dom0_tables) - before
    assert 0 < grown <= 3 and host.free_pages == free - grown and host.domain_by_name("g") is None
    assert "g" not in xl.list()
    small_guest(tmp_path, xl, "g", hypercall(17, 0, 0))
    xl.destroy("g")
    assert host.free_pages == free - grown                    # and reuses them: nothing more is kept
    with pytest.raises(UserError, match="cannot destroy Domain-0"):
        xl.destroy("Domain-0")
    del dom


def test_a_kernel_outside_the_guest_s_ram_is_a_clear_error(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    free = host.free_pages
    src = tmp_path / "low.s"
    src.write_text(".arch arm64\n.org 0x10000000\n_start: b _start\n")
    cfg = tmp_path / "low.cfg"
    cfg.write_text(f'name = "low"\nmemory = 16\nkernel = "{src}"\n')
    with pytest.raises(UserError, match=r"low.s: the kernel at 0x10000000 is outside the guest's RAM"):
        xl.create(cfg)
    assert host.domain_by_name("low") is None and host.free_pages == free
