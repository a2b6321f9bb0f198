"""PSCI on the Arm host: vpsci.c's CPU_ON, CPU_OFF, AFFINITY_INFO, VERSION, FEATURES, SYSTEM_OFF,
through hvc #0 (the device tree's /psci method) and smc #0, and a guest's hostile calls."""

from __future__ import annotations

from lab.dom0.arm.toolstack import boot_arm_host
from lab.hw.arm import exceptions as X
from lab.xen.arm import psci as P
from lab.xen.arm.devicetree import parse
from lab.xen.arm.host import ArmHostConfig
from test_arm_xen import CRASH_VECTOR, hypercall

M64 = (1 << 64) - 1
DATA = 0x40A00000            # where the guests below leave what they saw


def load(reg: int, value: int) -> str:
    value &= M64
    out = f"    movz x{reg}, #{value & 0xFFFF:#x}\n"
    for shift in (16, 32, 48):
        if value >> shift & 0xFFFF:
            out += f"    movk x{reg}, #{value >> shift & 0xFFFF:#x}, lsl #{shift}\n"
    return out


def smccc(fid: int, *args: int, conduit: str = "hvc") -> str:
    return load(0, fid) + "".join(load(i + 1, a) for i, a in enumerate(args)) + f"    {conduit} #0\n"


def guest(tmp_path, xl, name: str, body: str, secondary: str = "1: wfi\n    b 1b\n", vcpus: int = 2):
    """A guest whose vCPU 0 runs ``body`` (results in x19..x28) and whose ``secondary`` is the CPU_ON entry."""
    src = tmp_path / f"{name}.s"
    src.write_text(".arch arm64\n.org 0x40080000\n_start:\n    adr x9, vectors\n    msr vbar_el1, x9\n"
                   + body + "\n99: wfi\n    b 99b\nsecondary:\n" + secondary + "\n98: b 98b\n" + CRASH_VECTOR)
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(f'name = "{name}"\nmemory = 16\nvcpus = {vcpus}\nkernel = "{src}"\non_crash = "preserve"\non_poweroff = "preserve"\n')
    return xl.create(cfg)


def entry_of(dom) -> int:
    return dom.images["kernel"].symbols["secondary"]


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def cpu_on(target: int, context_id: int = 0, fid: int = P.PSCI_0_2_FN64_CPU_ON, label: str = "secondary",
           conduit: str = "hvc") -> str:
    return (load(0, fid) + load(1, target) + f"    adr x2, {label}\n" + load(3, context_id)
            + f"    {conduit} #0\n")


YIELD = hypercall(29, 0) * 2            # SCHEDOP_yield: let the other vCPU run on the one pCPU


def test_cpu_on_starts_the_second_vcpu_with_the_context_id_in_x0(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = (cpu_on(1, 0x1234) + "    mov x19, x0\n" + YIELD
            + cpu_on(1) + "    mov x20, x0\n"
            + smccc(P.PSCI_0_2_FN64_AFFINITY_INFO, 1, 0) + "    mov x21, x0\n"
            + cpu_on(5) + "    mov x22, x0\n"
            + cpu_on(0xFFFFFFFFFFFFFFFF) + "    mov x23, x0\n")
    secondary = load(1, DATA) + "    str x0, [x1]\n    mrs x2, mpidr_el1\n    str x2, [x1, #8]\n1: wfi\n    b 1b\n"
    dom = guest(tmp_path, xl, "g", body, secondary)
    assert dom.vcpus[1].runstate == "offline" and dom.vcpus[1].cpu is None
    assert not any(ref[1] == dom.domid and ref[2] == 1 for ref in host.vcpu_refs())
    host.run(3000)
    cpu0, cpu1 = dom.vcpus[0].cpu, dom.vcpus[1].cpu
    assert cpu0.x[19] == P.PSCI_SUCCESS
    assert s32(cpu0.x[20]) == P.PSCI_ALREADY_ON
    assert cpu0.x[21] == P.PSCI_0_2_AFFINITY_LEVEL_ON
    assert s32(cpu0.x[22]) == s32(cpu0.x[23]) == P.PSCI_INVALID_PARAMETERS
    assert cpu1 is not None and cpu1.el == 1 and not cpu1.sys["sctlr_el1"] & 1      # MMU off, at EL1
    assert host.read_guest(dom, DATA, 16) == (0x1234).to_bytes(8, "little") + (P.MPIDR_SMP | 1).to_bytes(8, "little")
    rows = [line.split() for line in xl.vcpu_list().splitlines()[1:] if line.startswith("g ")]
    assert [r[2] for r in rows] == ["0", "1"]
    assert any(ref[1] == dom.domid and ref[2] == 1 for ref in host.vcpu_refs())          # the CPU pane's list
    ups = [e for e in host.trace.iter_all() if e.kind == "sched" and e.data["op"] == "up"]
    assert len(ups) == 1 and ups[0].vcpu == 1 and "PSCI CPU_ON" in ups[0].data["reason"]
    assert any("PSCI CPU_ON d1v1" in line for line in host.dmesg)


def test_cpu_off_takes_a_vcpu_down_and_cpu_on_starts_it_afresh(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = (cpu_on(1, 7) + YIELD + smccc(P.PSCI_0_2_FN32_AFFINITY_INFO, 1, 0) + "    mov x19, x0\n"
            + cpu_on(1, 8, fid=P.PSCI_cpu_on) + "    mov x20, x0\n" + YIELD
            + smccc(P.PSCI_0_2_FN32_AFFINITY_INFO, 1, 0) + "    mov x21, x0\n"
            + smccc(P.PSCI_0_2_FN32_AFFINITY_INFO, 0, 7) + "    mov x22, x0\n")
    secondary = (load(1, DATA) + "    ldr x2, [x1]\n    add x2, x2, x0\n    add x2, x2, #100\n    str x2, [x1]\n"
                 + smccc(P.PSCI_0_2_FN32_CPU_OFF) + "    mov x3, #1\n    str x3, [x1, #8]\n")
    dom = guest(tmp_path, xl, "g", body, secondary)
    host.run(4000)
    cpu0 = dom.vcpus[0].cpu
    assert cpu0.x[19] == P.PSCI_0_2_AFFINITY_LEVEL_OFF          # it turned itself off
    assert cpu0.x[20] == P.PSCI_SUCCESS                          # PSCI 0.1's cpu_on, from /psci
    assert cpu0.x[21] == P.PSCI_0_2_AFFINITY_LEVEL_OFF
    assert s32(cpu0.x[22]) == P.PSCI_INVALID_PARAMETERS          # no affinity level 7
    # it ran twice, the second time with x0 0 (PSCI 0.1 has no context id), never past CPU_OFF
    assert host.read_guest(dom, DATA, 16) == (7 + 100 + 0 + 100).to_bytes(8, "little") + bytes(8)
    assert dom.vcpus[1].runstate == "offline" and dom.alive
    downs = [e for e in host.trace.iter_all() if e.kind == "sched" and e.data["op"] == "down"]
    assert len(downs) == 2 and {e.vcpu for e in downs} == {1}


def test_version_features_and_unknown_functions_by_hvc_and_smc(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = ""
    calls = [(P.PSCI_0_2_FN32_PSCI_VERSION,), (P.PSCI_1_0_FN32_PSCI_FEATURES, P.PSCI_0_2_FN64_CPU_ON),
             (P.PSCI_1_0_FN32_PSCI_FEATURES, P.psci_0_2_fn32(5)), (P.PSCI_0_2_FN32_MIGRATE_INFO_TYPE,),
             (P.ARM_SMCCC_VERSION_FID,), (P.psci_0_2_fn32(0x1F),), (0xC6000000,)]
    for n, call in enumerate(calls):
        body += smccc(*call, conduit="hvc" if n % 2 else "smc") + f"    mov x{19 + n}, x0\n"
    dom = guest(tmp_path, xl, "g", body, vcpus=1)
    host.run(600)
    cpu = dom.vcpus[0].cpu
    assert [s32(cpu.x[19 + n]) for n in range(len(calls))] == [
        0x10001, 0, P.PSCI_NOT_SUPPORTED, P.PSCI_0_2_TOS_MP_OR_NOT_PRESENT, 0x10002, -1, -1]
    assert cpu.x[24] == M64                                      # ARM_SMCCC_ERR_UNKNOWN_FUNCTION, all 64 bits
    assert any("Unhandled SMC/HVC: 0x8400001f" in line for line in host.dmesg)
    assert dom.alive


def test_system_off_through_smc_powers_the_domain_off(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = guest(tmp_path, xl, "g", smccc(P.PSCI_0_2_FN32_SYSTEM_OFF, conduit="smc"), vcpus=1)
    host.run(300)
    assert dom.state == "shutdown" and dom.shutdown_reason == "poweroff"


def test_smccc_with_a_non_zero_immediate_is_undefined(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = guest(tmp_path, xl, "g", load(0, P.PSCI_0_2_FN32_PSCI_VERSION) + "    smc #1\n", vcpus=1)
    host.run(300)
    assert dom.state == "crashed" and dom.vcpus[0].cpu.x[20] >> 26 == X.EC_UNKNOWN


def test_cpu_on_at_an_entry_outside_the_guest_crashes_only_that_guest(tmp_path):
    """Xen does not check the entry point: the new vCPU fetches from an IPA stage 2 does not map,
    the abort goes to its EL1 vectors (VBAR_EL1 0 on a fresh vCPU, outside its memory too), and
    the lab crashes that domain; a Thumb (odd) entry is refused outright."""
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = (load(0, P.PSCI_0_2_FN64_CPU_ON) + load(1, 1) + load(2, 0x40080001) + "    hvc #0\n    mov x19, x0\n"
            + load(0, P.PSCI_0_2_FN64_CPU_ON) + load(1, 1) + load(2, 0xFFFF_FFFF_F000_0000) + "    hvc #0\n"
            + "    mov x20, x0\n1: wfi\n    b 1b\n")
    bad = guest(tmp_path, xl, "bad", body)
    good = guest(tmp_path, xl, "good", "1:\n" + hypercall(17, 0, 0) + "    b 1b\n", vcpus=1)
    host.run(3000)
    cpu0 = bad.vcpus[0].cpu
    assert s32(cpu0.x[19]) == P.PSCI_INVALID_ADDRESS and cpu0.x[20] == P.PSCI_SUCCESS
    assert bad.state == "crashed" and "exception vector" in bad.crash_reason
    faults = [e for e in host.trace.iter_all() if e.kind == "pagetable" and e.data["op"] == "stage2 fault"]
    assert faults and faults[0].vcpu == 1 and faults[0].dom == bad.domid
    assert good.alive and good.vcpus[0].cpu.icount > 300


def test_the_device_tree_has_cpus_and_a_psci_node_as_libxl_writes_them(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    dom = guest(tmp_path, xl, "g", "", vcpus=2)
    tree = parse(xl.device_trees[dom.domid])
    node = tree.child("psci")
    assert node.prop("compatible") == b"arm,psci-1.0\0arm,psci-0.2\0arm,psci\0"
    assert node.prop("method") == b"hvc\0"
    assert node.prop("cpu_on") == (2).to_bytes(4, "big") and node.prop("cpu_off") == (1).to_bytes(4, "big")
    cpus = tree.child("cpus")
    assert [c.name for c in cpus.children] == ["cpu@0", "cpu@1"]
    assert cpus.children[1].prop("enable-method") == b"psci\0" and cpus.children[1].prop("reg") == b"\0\0\0\1"
    assert P.vaffinity_to_vcpuid(P.vcpuid_to_vaffinity(0x123)) == 0x123
