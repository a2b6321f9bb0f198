"""The Armv8-A core: instructions, exception levels, exceptions and the registers they write."""

from __future__ import annotations

import pytest

from lab.hw.arm import exceptions as X
from lab.hw.arm.cpu import ArmCpu
from lab.hw.memory import MachineMemory
from lab.isa.assembler import assemble

CODE = 0x40080000
VBAR1 = 0x40010000
VBAR2 = 0x40020000


def core(src: str, el: int = 1, mem_mib: int = 1200) -> ArmCpu:
    """A core at ``el`` about to run ``src`` (assembled at CODE), MMU off, vectors set."""
    mem = MachineMemory(mem_mib << 20)
    img = assemble(f".arch arm64\n.org {CODE:#x}\n" + src, "t.s")
    for sec in img.sections:
        mem.write(sec.base, bytes(sec.data))
    c = ArmCpu(mem)
    c.el = el
    c.spsel = int(el > 0)
    c.pc = CODE
    c.daif = 0
    c.sys["vbar_el1"] = VBAR1
    c.sys["vbar_el2"] = VBAR2
    c.sp = [0x40300000, 0x40200000, 0x40100000]
    return c


def run(c: ArmCpu, n: int) -> ArmCpu:
    for _ in range(n):
        c.step()
    return c


def test_arithmetic_sets_the_flags_arm_defines():
    c = run(core("mov x0, #-1\nadds x1, x0, #1\n"), 2)
    assert c.x[1] == 0 and c.nzcv == 0b0110                  # Z and C, no overflow
    c = run(core("movz x0, #0x7fff, lsl #48\nmovk x0, #0xffff, lsl #32\nmovk x0, #0xffff, lsl #16\n"
                 "movk x0, #0xffff\nadds x1, x0, #1\n"), 5)
    assert c.x[0] == 0x7FFFFFFFFFFFFFFF and c.x[1] == 1 << 63 and c.nzcv == 0b1001      # N and V
    c = run(core("mov x0, #3\nsubs x1, x0, #5\n"), 2)
    assert c.x[1] == (1 << 64) - 2 and c.nzcv == 0b1000      # borrow: C clear


def test_compare_and_branch():
    src = """
        mov x0, #0
        mov x1, #5
    1:  add x0, x0, x1
        subs x1, x1, #1
        b.ne 1b
        cbz x1, 2f
        mov x0, #99
    2:  mov x2, x0
    """
    c = run(core(src), 2 + 5 * 3 + 2)
    assert c.x[2] == 15


def test_loads_stores_and_the_stack():
    src = """
        mov x0, #0x1234
        stp x0, x0, [sp, #-16]!
        ldr x1, [sp, #8]
        str x1, [sp, #-8]!
        ldr x2, [sp], #24
        strb w0, [sp]
        ldrb w3, [sp]
    """
    c = core(src)
    sp0 = c.sp_now
    run(c, 7)
    assert c.x[1] == 0x1234 and c.x[2] == 0x1234 and c.x[3] == 0x34
    assert c.sp_now == sp0


def test_calls_return_through_x30():
    src = "bl f\nmov x1, #2\nb .\nf: mov x0, #1\nret\n"
    c = run(core(src), 4)
    assert (c.x[0], c.x[1], c.pc) == (1, 2, CODE + 8)


def test_division_by_zero_gives_zero_and_shifts_wrap():
    c = run(core("mov x1, #7\nudiv x0, x1, xzr\nmov x2, #65\nlsl x3, x1, x2\nasr x4, x0, #1\n"), 5)
    assert c.x[0] == 0 and c.x[3] == 14


def test_svc_from_el0_enters_el1_at_the_lower_el_vector():
    c = run(core("svc #0x42\n", el=0), 1)
    assert c.el == 1 and c.pc == VBAR1 + X.VEC_LOWER_A64 + X.VEC_SYNC
    esr = c.sys["esr_el1"]
    assert esr >> 26 == X.EC_SVC64 and esr & 0xFFFF == 0x42
    assert c.sys["elr_el1"] == CODE + 4                      # svc returns to the next instruction
    assert c.sys["spsr_el1"] & 0xF == 0b0000 and c.daif == 0xF


def test_eret_returns_to_el0():
    c = run(core("svc #0\n", el=0), 1)
    c.eret()
    assert c.el == 0 and c.pc == CODE + 4 and c.daif == 0


def test_hvc_from_el1_enters_el2_with_its_immediate():
    c = run(core("hvc #0xea1\n"), 1)
    assert c.el == 2 and c.pc == VBAR2 + X.VEC_LOWER_A64
    assert c.sys["esr_el2"] == (X.EC_HVC64 << 26) | (1 << 25) | 0xEA1


def test_hvc_at_el0_is_undefined():
    c = run(core("hvc #0\n", el=0), 1)
    assert c.el == 1 and c.sys["esr_el1"] >> 26 == X.EC_UNKNOWN and c.sys["elr_el1"] == CODE


def test_an_exception_at_the_same_el_uses_the_current_el_vector():
    c = run(core("svc #1\n", el=1), 1)
    assert c.pc == VBAR1 + X.VEC_CUR_SPX


def test_wfi_traps_to_el2_when_xen_says_so():
    c = core("wfi\n")
    c.sys["hcr_el2"] = X.HCR_TWI
    run(c, 1)
    assert c.el == 2 and c.sys["esr_el2"] >> 26 == X.EC_WFX


def test_wfi_without_twi_waits_for_an_interrupt():
    c = run(core("wfi\nnop\n"), 3)
    assert c.halted and c.pc == CODE + 4


def test_tvm_traps_the_kernels_page_table_base_write_with_its_syndrome():
    c = core("msr ttbr0_el1, x3\n")
    c.sys["hcr_el2"] = X.HCR_TVM
    run(c, 1)
    esr = c.sys["esr_el2"]
    assert esr >> 26 == X.EC_SYSREG
    iss = esr & 0x1FFFFFF
    assert (iss >> 5) & 31 == 3 and iss & 1 == 0             # Rt = x3, a write
    assert ((iss >> 20) & 3, (iss >> 14) & 7, (iss >> 10) & 15, (iss >> 1) & 15, (iss >> 17) & 7) == (3, 0, 2, 0, 0)


def test_el1_cannot_touch_el2_registers():
    c = run(core("msr vttbr_el2, x0\n"), 1)
    assert c.el == 1 and c.sys["esr_el1"] >> 26 == X.EC_UNKNOWN and c.sys["vttbr_el2"] == 0


def test_smc_traps_to_el2_only_with_tsc():
    c = core("smc #0\n")
    c.sys["hcr_el2"] = X.HCR_TSC
    run(c, 1)
    assert c.el == 2 and c.sys["esr_el2"] >> 26 == X.EC_SMC64
    c = run(core("smc #0\n"), 1)
    assert c.el == 1 and c.sys["esr_el1"] >> 26 == X.EC_UNKNOWN


def test_currentel_and_daif_read_as_registers():
    c = core("mrs x0, currentel\nmsr daifset, #2\nmrs x1, daif\n")
    run(c, 3)
    assert c.x[0] == 1 << 2 and c.x[1] == 0b0010 << 6


def test_eret_to_a_higher_el_is_an_illegal_return():
    c = core("eret\n")
    c.sys["spsr_el1"] = 0b1000            # EL2
    run(c, 1)
    assert c.sys["esr_el1"] >> 26 == X.EC_ILLEGAL_STATE


def test_an_undefined_word_is_an_undefined_exception():
    c = core(".word 0\n")
    run(c, 1)
    assert c.sys["esr_el1"] >> 26 == X.EC_UNKNOWN and c.sys["elr_el1"] == CODE


def test_a_python_hypervisor_takes_el2_exceptions():
    seen = []

    class Hyp:
        def trap(self, cpu, syndrome, kind):
            seen.append((syndrome.ec, syndrome.iss, cpu.el, cpu.sys["elr_el2"]))
            cpu.x[0] = 0                      # the hypercall's result
            cpu.eret()

    c = core("mov x16, #17\nhvc #0xea1\nmov x1, x0\n")
    c.x[0] = 5
    c.hypervisor = Hyp()
    run(c, 3)
    assert seen == [(X.EC_HVC64, 0xEA1, 2, CODE + 8)]
    assert c.el == 1 and c.x[1] == 0


@pytest.mark.parametrize("word", [0xD4000002, 0xD401D422])
def test_hvc_words_decode_as_hvc(word):
    from lab.isa.a64 import decode
    assert decode(word).op == "hvc"


def test_a_saved_core_continues_exactly_as_it_would_have():
    src = "mov x0, #0\n1: add x0, x0, #3\nstr x0, [sp, #-8]!\nsvc #1\nb 1b\n"
    a = core(src)
    run(a, 3)
    saved = a.save_state()
    run(a, 40)
    b = core(src)
    b.load_state(saved)
    run(b, 40)
    assert b.save_state() == a.save_state()
