"""PSCI SYSTEM_SUSPEND, PSCI_FEATURES and SMCCC's own queries, as xen/arch/arm/vpsci.c and vsmc.c
answer them (Xen's tree: vpsci.c do_psci_1_0_system_suspend() and do_psci_1_0_features(),
vsmc.c handle_arch(), handle_hypervisor() and handle_sssc(); domain.c arch_domain_resume())."""

from __future__ import annotations

import struct

import pytest

from lab.dom0.arm.toolstack import boot_arm_host
from lab.errors import UserError
from lab.session.xlcommand import run_xl
from lab.xen.arm import psci as P
from lab.xen.arm import smccc as S
from lab.xen.arm.host import ArmHostConfig
from test_arm_psci import DATA, YIELD, cpu_on, guest, load, s32, smccc

M64 = (1 << 64) - 1


def regs(dom, *numbers: int) -> list[int]:
    return [dom.vcpus[0].cpu.x[n] for n in numbers]


def test_psci_features_answers_for_each_function_id_as_do_psci_1_0_features(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    asked = sorted(P.FEATURES | P.SUSPEND_FIDS) + [P.psci_0_2_fn32(5), P.psci_0_2_fn64(2), 0x8400FF01, 0]
    body = f"    movz x28, #{DATA >> 16:#x}, lsl #16\n" + "".join(
        smccc(P.PSCI_1_0_FN32_PSCI_FEATURES, fid) + f"    str x0, [x28, #{8 * i}]\n" for i, fid in enumerate(asked))
    dom = guest(tmp_path, xl, "g", body)
    host.run(5000)
    got = [s32(v) for v in struct.unpack(f"<{len(asked)}Q", host.read_guest(dom, DATA, 8 * len(asked)))]
    assert got == [0] * (len(P.FEATURES) + len(P.SUSPEND_FIDS)) + [P.PSCI_NOT_SUPPORTED] * 4
    assert P.PSCI_1_0_FN32_SYSTEM_SUSPEND == 0x8400000E and P.PSCI_1_0_FN64_SYSTEM_SUSPEND == 0xC400000E


def test_smccc_version_arch_features_and_the_service_queries(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = (smccc(S.ARM_SMCCC_VERSION_FID) + "    mov x19, x0\n"
            + smccc(S.ARM_SMCCC_ARCH_FEATURES_FID, S.ARM_SMCCC_ARCH_WORKAROUND_1_FID) + "    mov x20, x0\n"
            + smccc(S.ARM_SMCCC_ARCH_FEATURES_FID, S.ARM_SMCCC_ARCH_WORKAROUND_2_FID) + "    mov x21, x0\n"
            + smccc(S.ARM_SMCCC_ARCH_FEATURES_FID, S.ARM_SMCCC_VERSION_FID) + "    mov x22, x0\n"
            + smccc(S.ARM_SMCCC_ARCH_WORKAROUND_1_FID) + "    mov x23, x0\n"          # returns nothing
            + smccc(0x8500FF00) + "    mov x24, x0\n"                                  # Hypervisor call count
            + smccc(0x8400FF00) + "    mov x25, x0\n"                                  # Standard call count
            + smccc(0x8500FF03) + "    mov x26, x0\n    mov x27, x1\n"                 # Hypervisor revision
            + smccc(0xC500FF00) + "    mov x28, x0\n"                                  # SMC64: not a query
            + smccc(0x8500FF01, conduit="smc"))                                         # the UID, in x0-x3
    dom = guest(tmp_path, xl, "g", body)
    host.run(3000)
    assert regs(dom, 19) == [0x10002]
    assert [s32(r) for r in regs(dom, 20, 21, 22)] == [S.ARM_SMCCC_NOT_SUPPORTED, S.ARM_SMCCC_NOT_REQUIRED,
                                                       S.ARM_SMCCC_NOT_SUPPORTED]
    assert regs(dom, 23) == [S.ARM_SMCCC_ARCH_WORKAROUND_1_FID]
    assert regs(dom, 24, 25, 26, 27) == [3, 17, 0, 1]
    assert s32(regs(dom, 28)[0]) == -1 and "Unhandled SMC/HVC: 0xc500ff00" in "\n".join(host.dmesg)
    # XEN_SMCCC_UID a71812dc-c698-4369-9acf-79d18ddee667, four bytes a register, first byte lowest
    assert regs(dom, 0, 1, 2, 3) == [0xdc1218a7, 0x694398c6, 0xd179cf9a, 0x67e6de8d]
    assert dom.alive


def test_system_suspend_waits_for_the_other_vcpus_then_suspends_and_resumes_at_its_entry(tmp_path):
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    body = (cpu_on(1) + "    mov x19, x0\n"
            + load(0, P.PSCI_1_0_FN64_SYSTEM_SUSPEND) + "    adr x1, resumed\n" + load(2, 0xC1D) + "    hvc #0\n"
            + "    mov x20, x0\n"                                           # DENIED: vCPU 1 is on
            + load(0, P.PSCI_1_0_FN64_SYSTEM_SUSPEND) + "    adr x1, resumed\n    orr x1, x1, #1\n    hvc #0\n"
            + "    mov x21, x0\n"                                           # a Thumb entry point
            + "2:  " + load(0, P.PSCI_0_2_FN64_AFFINITY_INFO) + load(1, 1) + load(2, 0) + "    hvc #0\n"
            + "    cmp x0, #1\n    b.eq 4f\n" + YIELD + "    b 2b\n4:\n"              # until vCPU 1 is off
            + "    mov x22, #0x5e\n"
            + load(0, P.PSCI_1_0_FN64_SYSTEM_SUSPEND) + "    adr x1, resumed\n" + load(2, 0xC1D) + "    hvc #0\n"
            + "    mov x23, #0xbad\n"                                       # never: it wakes at resumed
            + "3:  b 3b\nresumed:\n    mov x24, x0\n    mrs x25, sctlr_el1\n    mov x26, #0x900d\n")
    secondary = load(0, P.PSCI_0_2_FN32_CPU_OFF) + "    hvc #0\n"
    dom = guest(tmp_path, xl, "g", body, secondary=secondary)
    host.run(20000)
    assert dom.state == "shutdown" and dom.shutdown_reason == "suspend"
    assert [s32(r) for r in regs(dom, 19, 20, 21)] == [P.PSCI_SUCCESS, P.PSCI_DENIED, P.PSCI_INVALID_ADDRESS]
    assert regs(dom, 22) == [0x5e]
    assert "SYSTEM_SUSPEND requested" in "\n".join(host.dmesg)
    assert "s" in [line.split()[4] for line in xl.list().splitlines() if line.startswith("g ")][0]
    run_xl(xl, ["resume", "g"])
    assert dom.state == "running"
    host.run(200)
    assert regs(dom, 24, 25, 26) == [0xC1D, 0, 0x900d]          # x0 the context id, MMU off, at resumed
    assert regs(dom, 23) == [0]
    assert [e.data["op"] for e in host.trace.iter_all() if e.kind == "domain"][-1] == "resume"
    with pytest.raises(UserError, match="g is not suspended"):
        run_xl(xl, ["resume", "g"])
