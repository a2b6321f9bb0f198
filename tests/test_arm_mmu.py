"""Arm translation: stage 1, stage 2, the 2-D walk, faults as ESR reports them, a TLB tagged by VMID;
and the GIC's virtual interface and the virtual timer."""

from __future__ import annotations

from lab.hw.arm import exceptions as X
from lab.hw.arm.cpu import ArmCpu
from lab.hw.arm.gic import PPI_VIRT_TIMER, lr_fields, lr_value
from lab.hw.arm.mmu import AF, stage2_walk, walk_text
from lab.hw.arm.tables import TableBuilder, bump_allocator, stage1_attrs, stage2_attrs
from lab.hw.memory import MachineMemory
from lab.isa.assembler import assemble

CODE = 0x40080000
VBAR1, VBAR2 = 0x40010000, 0x40020000
TCR_48BIT = 16 | (16 << 16)          # T0SZ = T1SZ = 16: 48-bit VAs, a 4-level walk from L0
VTCR_48BIT = 16 | (2 << 6)           # T0SZ = 16, SL0 = 2: stage 2 starts at L0 (4 levels)
DATA_VA = 0x0000_0000_0040_0000


def machine(src: str) -> tuple[ArmCpu, MachineMemory]:
    mem = MachineMemory(1200 << 20)
    img = assemble(f".arch arm64\n.org {CODE:#x}\n" + src, "t.s")
    for sec in img.sections:
        mem.write(sec.base, bytes(sec.data))
    c = ArmCpu(mem)
    c.pc, c.daif = CODE, 0
    c.sys["vbar_el1"], c.sys["vbar_el2"] = VBAR1, VBAR2
    c.sp = [0x40300000, 0x40200000, 0x40100000]
    return c, mem


def stage1(c: ArmCpu, mem: MachineMemory, alloc) -> TableBuilder:
    t = TableBuilder(mem, alloc)
    t.map(CODE, CODE, stage1_attrs(exec_el1=True, exec_el0=True, el0=True, writable=False))
    c.sys["ttbr0_el1"], c.sys["tcr_el1"], c.sys["sctlr_el1"] = t.root, TCR_48BIT, 1
    return t


def test_a_stage1_walk_finds_the_page_in_four_levels():
    c, mem = machine("ldr x0, [x1]\n")
    alloc = bump_allocator(mem, 0x40400000)
    t = stage1(c, mem, alloc)
    t.map(DATA_VA, 0x40500000, stage1_attrs())
    mem.write_u64(0x40500008, 0xFEED)
    c.x[1] = DATA_VA + 8
    c.step()
    assert c.x[0] == 0xFEED
    res = c.walk(DATA_VA + 8)
    assert [s.level for s in res.steps] == [0, 1, 2, 3] and res.pa == 0x40500008 and res.mem_refs == 4


def test_el0_touching_a_kernel_page_is_a_permission_fault_at_el1():
    c, mem = machine("ldr x0, [x1]\n")
    t = stage1(c, mem, bump_allocator(mem, 0x40400000))
    t.map(DATA_VA, 0x40500000, stage1_attrs(el0=False))
    c.el, c.spsel, c.x[1] = 0, 0, DATA_VA
    c.step()
    esr = c.sys["esr_el1"]
    assert c.el == 1 and esr >> 26 == X.EC_DABT_LOW
    assert esr & 0x3F == X.FSC_PERMISSION | 3 and not esr & (1 << 6)
    assert c.sys["far_el1"] == DATA_VA and c.pc == VBAR1 + X.VEC_LOWER_A64


def test_an_unmapped_address_faults_at_the_level_that_was_missing():
    c, mem = machine("str x0, [x1]\n")
    stage1(c, mem, bump_allocator(mem, 0x40400000))
    c.x[1] = 0x0000_7F00_0000_0000                        # its L0 entry is empty
    c.step()
    esr = c.sys["esr_el1"]
    assert esr >> 26 == X.EC_DABT_CUR and esr & 0x3F == X.FSC_TRANSLATION | 0 and esr & (1 << 6)


def test_an_access_flag_of_zero_faults():
    c, mem = machine("ldr x0, [x1]\n")
    t = stage1(c, mem, bump_allocator(mem, 0x40400000))
    t.map(DATA_VA, 0x40500000, stage1_attrs() & ~AF)
    c.x[1] = DATA_VA
    c.step()
    assert c.sys["esr_el1"] & 0x3F == X.FSC_ACCESS_FLAG | 3


def guest_with_stage2(src: str, ipa_to_pa: dict[int, int], s1: bool = False):
    """A guest at EL1 whose IPAs go through Xen's stage 2: CODE's page and ``ipa_to_pa``."""
    c, mem = machine(src)
    alloc = bump_allocator(mem, 0x40600000)
    s2 = TableBuilder(mem, alloc)
    s2.map(CODE, CODE, stage2_attrs())
    for ipa, pa in ipa_to_pa.items():
        s2.map(ipa, pa, stage2_attrs())
    c.sys["hcr_el2"] = X.HCR_VM | X.HCR_IMO
    c.sys["vttbr_el2"], c.sys["vtcr_el2"] = s2.root | (1 << 48), VTCR_48BIT
    return c, mem, s2, alloc


def test_a_guest_touching_an_ipa_xen_did_not_map_traps_to_el2_with_hpfar():
    c, mem, *_ = guest_with_stage2("ldr x0, [x1]\n", {})
    c.x[1] = 0x48001234                                   # stage 1 is off: the VA is the IPA
    c.step()
    esr = c.sys["esr_el2"]
    assert c.el == 2 and esr >> 26 == X.EC_DABT_LOW and esr & 0x3F == X.FSC_TRANSLATION | 2   # no L2 entry
    assert c.sys["hpfar_el2"] == (0x48001234 >> 12) << 4 and c.sys["far_el2"] == 0x48001234
    assert c.sys["esr_el1"] == 0                          # the guest kernel never saw it


def test_a_stage1_table_outside_the_guest_is_a_stage2_fault_during_the_walk():
    c, mem, s2, alloc = guest_with_stage2("ldr x0, [x1]\n", {})
    c.sys["sctlr_el1"], c.sys["tcr_el1"], c.sys["ttbr0_el1"] = 1, TCR_48BIT, 0x47000000    # no such IPA
    c.x[1] = DATA_VA
    c.step()
    esr = c.sys["esr_el2"]
    assert c.el == 2 and esr >> 26 == X.EC_IABT_LOW and esr & (1 << 7)       # the fetch, S1PTW
    assert c.sys["hpfar_el2"] == (0x47000000 >> 12) << 4


def test_the_2d_walk_makes_24_memory_references():
    ipa_tables = 0x41000000
    pa_tables = 0x44000000
    mapping = {ipa_tables + k * 4096: pa_tables + k * 4096 for k in range(8)}
    mapping[0x42000000] = 0x45000000                      # the data page
    c, mem, s2, alloc = guest_with_stage2("nop\n", mapping)
    # The guest's stage-1 tables live at IPAs; write them where stage 2 puts them.
    frames = iter(range(8))
    s1 = TableBuilder(mem, lambda: ipa_tables + next(frames) * 4096,
                      start_level=0)
    to_pa = lambda ipa: ipa - ipa_tables + pa_tables       # noqa: E731
    mem.zero_frame(pa_tables >> 12)
    for k in range(8):
        mem.zero_frame((pa_tables >> 12) + k)
    s1.map(DATA_VA, 0x42000000, stage1_attrs(), to_table=to_pa)
    c.sys["sctlr_el1"], c.sys["tcr_el1"], c.sys["ttbr0_el1"] = 1, TCR_48BIT, s1.root
    res = c.walk(DATA_VA + 0x10)
    assert res.ok and res.out == 0x42000010 and res.pa == 0x45000010
    assert res.mem_refs == 24
    text = "\n".join(walk_text(res))
    assert "through stage 2" in text and "24 descriptor reads" in text


def test_a_read_only_stage2_page_refuses_a_write_with_wnr():
    c, mem, s2, alloc = guest_with_stage2("str x0, [x1]\n", {})
    s2.map(0x48000000, 0x48000000, stage2_attrs(write=False))
    c.x[1] = 0x48000000
    c.step()
    esr = c.sys["esr_el2"]
    assert esr & 0x3F == X.FSC_PERMISSION | 3 and esr & (1 << 6)


def test_a_stage2_entry_past_the_end_of_ram_faults_instead_of_raising():
    mem = MachineMemory(64 << 20)
    alloc = bump_allocator(mem, 0x100000)
    s2 = TableBuilder(mem, alloc)
    s2.map(0x40000000, 0xFFFF_F000_0000, stage2_attrs())
    res = stage2_walk(mem, s2.root, VTCR_48BIT, 0x40000000)
    assert not res.ok and res.fault is not None and res.fault.level == 3


def test_the_tlb_is_tagged_by_vmid():
    c, mem, s2a, alloc = guest_with_stage2("ldr x0, [x1]\nldr x0, [x1]\n", {0x48000000: 0x46000000})
    s2b = TableBuilder(mem, alloc)
    s2b.map(CODE, CODE, stage2_attrs())
    s2b.map(0x48000000, 0x46100000, stage2_attrs())
    mem.write_u64(0x46000000, 1)
    mem.write_u64(0x46100000, 2)
    c.x[1] = 0x48000000
    c.step()
    assert c.x[0] == 1
    c.sys["vttbr_el2"] = s2b.root | (2 << 48)            # another guest: VMID 2, no flush
    c.pc = CODE + 4
    c.step()
    assert c.x[0] == 2
    assert {k[0] for k in c.tlb.cache} == {1, 2} == {e.vmid for e in c.tlb.entries()}


def test_a_changed_descriptor_is_not_seen_until_the_tlb_is_invalidated():
    c, mem = machine("ldr x0, [x1]\nldr x0, [x1]\ntlbi vae1, x2\nldr x0, [x1]\n")
    t = stage1(c, mem, bump_allocator(mem, 0x40400000))
    t.map(DATA_VA, 0x40500000, stage1_attrs())
    mem.write_u64(0x40500000, 10)
    mem.write_u64(0x40510000, 20)
    c.x[1], c.x[2] = DATA_VA, DATA_VA >> 12
    c.step()
    t.map(DATA_VA, 0x40510000, stage1_attrs())
    c.step()
    assert c.x[0] == 10                                   # the stale translation
    c.step()
    c.step()
    assert c.x[0] == 20


# ----------------------------------------------------------------- GIC and timer
def test_the_virtual_timer_interrupts_el1():
    c, mem = machine("b .\n")
    c.gic.grpen1, c.gic.pmr = 1, 0xFF
    c.write_sysreg("cntv_tval_el0", 10)
    c.write_sysreg("cntv_ctl_el0", 1)
    for _ in range(400):
        c.step()
        if c.pc != CODE:
            break
    assert c.pc == VBAR1 + X.VEC_CUR_SPX + X.VEC_IRQ
    assert c.read_sysreg("cntv_ctl_el0") & 4                 # ISTATUS
    assert c.read_sysreg("icc_iar1_el1") == PPI_VIRT_TIMER


def test_imo_takes_physical_interrupts_to_el2_even_when_the_guest_masks_them():
    c, mem, *_ = guest_with_stage2("b .\n", {})
    c.daif = 0b0010                                       # the guest has IRQs masked
    c.gic.grpen1, c.gic.pmr = 1, 0xFF
    c.gic.raise_irq(40)
    c.step()
    assert c.el == 2 and c.pc == VBAR2 + X.VEC_LOWER_A64 + X.VEC_IRQ


def test_a_list_register_injects_a_virtual_interrupt_the_guest_acks_and_ends():
    c, mem, *_ = guest_with_stage2("b .\n", {})
    c.el = 2
    c.write_sysreg("ich_lr0_el2", lr_value(31))
    c.write_sysreg("ich_hcr_el2", 1)
    c.el = 1
    c.write_sysreg("icc_pmr_el1", 0xFF)                   # the guest's virtual interface
    c.write_sysreg("icc_igrpen1_el1", 1)
    assert c.gic.pmr == 0 and c.gic.v_pmr == 0xFF
    c.step()
    assert c.el == 1 and c.pc == VBAR1 + X.VEC_CUR_SPX + X.VEC_IRQ
    assert c.read_sysreg("icc_iar1_el1") == 31
    assert lr_fields(c.gic.lr[0])["state"] == 2           # active
    c.write_sysreg("icc_eoir1_el1", 31)
    assert lr_fields(c.gic.lr[0])["state"] == 0
    c.el = 2
    assert c.read_sysreg("ich_elrsr_el2") & 1             # Xen sees the list register free again
