"""System instructions, faults, privilege, interrupts, and root/non-root exits."""

from __future__ import annotations

import pytest

from lab.hw.x86 import EFER_LME, EFER_NXE, EFER_SCE, X86_CR0_PG
from lab.hw.faults import Fault
from lab.hw.ept import make_eptp
from lab.hw.pagebuild import FrameAllocator, ept_map
from lab.hw.vmx import Vmcs
from machine_helpers import machine_with, run_to_halt

# An IDT at 0x3000 whose every vector points at a handler stub that stores
# the vector and error code and halts, so tests can see what was delivered.
IDT_SETUP = """
    mov rdi, 0x3000
    mov rcx, 0
.gate:
    mov rax, handlers
    mov rdx, rcx
    shl rdx, 4
    add rax, rdx
    mov rdx, rax
    and rdx, 0xffff
    mov rsi, 0x8e0000080000
    or rdx, rsi
    mov rsi, rax
    shr rsi, 16
    shl rsi, 48
    or rdx, rsi
    mov [rdi], rdx
    mov qword [rdi + 8], 0
    add rdi, 16
    inc rcx
    cmp rcx, 32
    jb .gate
    mov word [0x2000], 4095
    mov qword [0x2002], 0x3000
    lidt [0x2000]
"""
def handlers_src() -> str:
    # Each stub is exactly 16 bytes (one instruction) so the table above can
    # compute its address as handlers + vector*16: a jump to a per-vector block.
    stubs = "".join(f"    jmp vec{v}\n" for v in range(32))
    blocks = "".join(f"vec{v}:\n    mov r15, {v}\n    jmp caught\n" for v in range(32))
    return (".align 16\nhandlers:\n" + stubs + blocks +
            "caught:\n    mov r14, [rsp]\n    mov r13, rsp\n    hlt\n")


def run_with_idt(body: str, limit: int = 10_000):
    m = machine_with(IDT_SETUP + body + "\n    hlt\n" + handlers_src())
    run_to_halt(m, limit)
    return m


def test_ud2_and_undefined_opcode_raise_ud():
    m = run_with_idt("ud2")
    assert m.cpu.regs[15] == 6
    m = run_with_idt("jmp bad\n.align 16\nbad:\n.quad 0xff, 0")
    assert m.cpu.regs[15] == 6


def test_divide_by_zero_is_de_with_rip_at_the_div():
    m = run_with_idt("xor ecx, ecx\nmov rax, 1\nfaulting:\ndiv rcx")
    assert m.cpu.regs[15] == 0
    assert m.cpu.regs[14] == m.images["test"].symbols["faulting"], "#DE pushes the address of the div"


def test_non_canonical_access_is_gp_and_bad_idt_vector_escalates():
    # paging off: addresses are physical; beyond memory is a #GP in the lab
    m = run_with_idt("mov rax, 0x7ffffffff000\nmov rbx, [rax]")
    assert m.cpu.regs[15] == 13


def test_page_fault_error_code_and_cr2():
    m = machine_with(IDT_SETUP + PAGING_SETUP + """
    mov rax, 0x40000000
    faulting:
    mov qword [rax + 8], 1
    hlt
    """ + handlers_src())
    run_to_halt(m)
    assert m.cpu.regs[15] == 14
    assert m.cpu.cr2 == 0x40000008
    assert m.cpu.regs[14] == 0b010, "#PF error code: not present, write, supervisor"


# Identity-map the first 2 MiB with one 2 MiB page, supervisor only, then turn paging on.
PAGING_SETUP = """
    mov rax, 0x5003
    mov [0x4000], rax
    mov rax, 0x6003
    mov [0x5000], rax
    mov rax, 0x83
    mov [0x6000], rax
    mov rax, 0x20
    mov cr4, rax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x901
    wrmsr
    mov rax, 0x4000
    mov cr3, rax
    mov rax, cr0
    mov rdx, 0x80010001
    or rax, rdx
    mov cr0, rax
"""


def test_paging_turns_on_and_long_mode_is_active():
    m = run_to_halt(machine_with(PAGING_SETUP + "mov rbx, [0x1000]\nhlt"))
    assert m.cpu.cr0 & X86_CR0_PG and m.cpu.efer & EFER_LME and m.cpu.efer & EFER_NXE and m.cpu.efer & EFER_SCE
    assert m.cpu.stopped and "hlt" in m.cpu.stopped


def test_paging_without_pae_is_refused_with_gp():
    m = run_with_idt("mov rax, cr0\nmov rdx, 0x80000001\nor rax, rdx\nmov cr0, rax")
    assert m.cpu.regs[15] == 13


def test_double_fault_then_triple_fault_stops_the_machine():
    # An IDT limit of zero: #UD cannot be delivered -> #GP -> #DF cannot -> triple fault.
    m = run_to_halt(machine_with("mov word [0x2000], 0\nmov qword [0x2002], 0x3000\nlidt [0x2000]\nud2\nhlt"))
    assert m.cpu.stopped.startswith("triple fault")
    assert any(e.kind == "halt" and "triple" in e.data["reason"] for e in m.trace.iter_all())


def _user_mode_src(user_code: str) -> str:
    # Drop to ring 3 with an iretq frame (flat, paging off: the lab allows
    # CPL 3 without paging, so privilege checks can be tested alone).
    return IDT_SETUP + f"""
    mov rax, 0x8000
    mov rsp, rax
    push 0x1b
    push 0x7000
    push 0x2
    push 0x23
    mov rax, user
    push rax
    iretq
.align 16
user:
    {user_code}
    hlt
""" + handlers_src()


def _tss_for_ring3(m):
    # A TSS with RSP0 so that a trap from ring 3 has a kernel stack.
    m.cpu.tss_base = 0x2800
    m.mem.write_u64(0x2804, 0x8800)


@pytest.mark.parametrize("insn", ["hlt", "cli", "sti", "mov rax, cr0", "mov cr3, rax", "lidt [0x2000]",
                                  "rdmsr", "wrmsr", "invlpg [0x1000]", "in al, 0x21", "out 0xe9, al",
                                  "swapgs", "sysretq"])
def test_privileged_instructions_at_cpl3_raise_gp(insn):
    m = machine_with(_user_mode_src(insn))
    _tss_for_ring3(m)
    run_to_halt(m)
    assert m.cpu.regs[15] == 13, f"{insn} at CPL 3 must #GP"
    assert m.cpu.cpl == 0
    traps = [e for e in m.trace.iter_all() if e.kind == "trap"]
    assert traps[-1].data["mnemonic"] == "#GP" and traps[-1].data["cpl"] == 3


def test_in_out_allowed_at_cpl3_when_iopl_3():
    src = IDT_SETUP + """
    mov rax, 0x8000
    mov rsp, rax
    push 0x1b
    push 0x7000
    push 0x3002
    push 0x23
    mov rax, user
    push rax
    iretq
.align 16
user:
    mov al, 0x41
    out 0xe9, al
    ud2
""" + handlers_src()
    m = machine_with(src)
    _tss_for_ring3(m)
    run_to_halt(m)
    assert m.console.output == "A"
    assert m.cpu.regs[15] == 6


def test_int_from_user_needs_gate_dpl():
    m = machine_with(_user_mode_src("int 0x10"))
    _tss_for_ring3(m)
    run_to_halt(m)
    assert m.cpu.regs[15] == 13, "a DPL 0 gate refuses int n from ring 3"


def test_syscall_and_sysret_switch_rings():
    src = """
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1
    wrmsr
    mov ecx, 0xc0000081
    xor eax, eax
    mov edx, 0x00100008
    wrmsr
    mov ecx, 0xc0000082
    mov rax, kentry
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov rcx, user
    mov r11, 0x2
    sysretq
.align 16
user:
    mov rax, 39
    syscall
    mov rbx, rax
    mov rax, 1
    mov rdx, 2
    mov rcx, 0x9999
    int3
kentry:
    mov rax, 1234
    sysretq
    """
    m = machine_with(src)
    m.run(100)
    assert m.cpu.regs[3] == 1234
    kinds = [e.kind for e in m.trace.iter_all()]
    assert "syscall" in kinds and "sysret" in kinds
    rings = [(e.data["from_cpl"], e.data["to_cpl"]) for e in m.trace.iter_all() if e.kind == "ring"]
    assert rings[:3] == [(0, 3), (3, 0), (0, 3)]


def test_pit_interrupt_is_delivered_through_the_pic():
    src = IDT_SETUP + """
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov al, 10
    out 0x40, al
    mov al, 0
    out 0x40, al
    mov rax, 0x20
    shl rax, 4
    add rax, 0x3000
    mov rdx, tick
    mov rcx, rdx
    and rcx, 0xffff
    mov rsi, 0x8e0000080000
    or rcx, rsi
    shr rdx, 16
    shl rdx, 48
    or rcx, rdx
    mov [rax], rcx
    sti
.spin:
    cmp r12, 3
    jb .spin
    cli
    hlt
tick:
    inc r12
    mov al, 0x20
    out 0x20, al
    iretq
""" + handlers_src()
    m = machine_with(src)
    run_to_halt(m, 200_000)
    assert m.cpu.regs[12] == 3
    assert sum(1 for e in m.trace.iter_all() if e.kind == "interrupt" and e.data["vector"] == 0x20) == 3


def test_hlt_with_interrupts_on_idles_until_the_timer():
    m = machine_with("hlt\nhlt")
    m.cpu.rf |= 1 << 9
    m.run(10)
    assert "no timer" in m.cpu.stopped


# ------------------------------------------------------------------ non-root operation
class RecordingHost:
    """Stands in for a hypervisor: records exits and resumes past the instruction."""

    def __init__(self):
        self.exits = []

    def on_vmexit(self, cpu, exc):
        self.exits.append((exc.reason, exc.qualification, dict(exc.info)))
        if exc.reason in ("HLT", "EPT_VIOLATION", "TRIPLE_FAULT"):
            cpu.stop(f"exit {exc.reason}")
            return
        cpu.rip += 16
        cpu.vmentry()

    def on_cpu_stop(self, cpu, reason):
        pass


def _guest(src: str, **controls):
    m = machine_with(src)
    host = RecordingHost()
    m.cpu.host = host
    m.cpu.vmcs = Vmcs(**controls)
    m.cpu.vmentry()
    return m, host


def test_exit_decisions_follow_the_vmcs_controls():
    m, host = _guest("cpuid\nin al, 0x60\nout 0x80, al\nmov ecx, 0x10\nrdmsr\nrdtsc\nvmcall\nhlt",
                     msr_exit={0x10})
    m.run(100)
    reasons = [r for r, _, _ in host.exits]
    assert reasons == ["CPUID", "IO_INSTRUCTION", "IO_INSTRUCTION", "MSR_READ", "VMCALL", "HLT"]
    qual_in = host.exits[1][1]
    assert qual_in & 8 and qual_in >> 16 == 0x60 and qual_in & 0x40, "in, port 0x60, immediate operand"


def test_io_bitmap_lets_unlisted_ports_through():
    m, host = _guest("out 0xe9, al\nout 0x80, al\nhlt", io_bitmap={0x80})
    m.cpu.regs[0] = 0x42
    m.run(100)
    assert [r for r, _, _ in host.exits] == ["IO_INSTRUCTION", "HLT"]
    assert m.console.output == "B"


def test_vmmcall_on_an_intel_host_is_ud_and_vmcall_outside_vmx_is_ud():
    m = run_with_idt("vmcall")
    assert m.cpu.regs[15] == 6
    m, host = _guest("vmmcall\nhlt", exception_bitmap=1 << 6)
    m.run(10)
    assert host.exits[0][0] == "EXCEPTION_NMI" and host.exits[0][2]["vector"] == 6


def test_ept_violation_reports_its_qualification():
    m = machine_with("mov rax, [0x200000]\nhlt")
    alloc = FrameAllocator(m.mem, 0x100, 0x200)
    pml4 = alloc()
    for page in range(0, 0x20):   # code and stack below 128 KiB, read/write/execute
        ept_map(m.mem, alloc, pml4 << 12, page << 12, page << 12, perms="rwx")
    host = RecordingHost()
    m.cpu.host = host
    m.cpu.vmcs = Vmcs(ept=True, eptp=make_eptp(pml4 << 12))
    m.cpu.vmentry()
    m.run(10)
    reason, qual, info = host.exits[0]
    assert reason == "EPT_VIOLATION" and info["gpa"] == 0x200000
    assert qual & 1, "a data read"


def test_faults_never_escape_as_python_exceptions():
    m = machine_with("mov rax, 0x123456789\njmp rax\n")
    m.run(50)
    assert m.cpu.stopped  # triple fault: no IDT at all
    assert not isinstance(m.cpu.stopped, Fault)


# ------------------------------------------------------------------ sti's interrupt shadow
class OneInterrupt:
    """An interrupt controller with one vector to give, requesting from when r13 is set."""

    name = "test line"

    def __init__(self, cpu, vector: int = 0x1F):
        self.cpu, self.vector, self.given = cpu, vector, False

    @property
    def waiting(self) -> bool:
        return not self.given and self.cpu.regs[13] != 0

    def pending(self):
        return self.vector if self.waiting else None

    def ack(self):
        if not self.waiting:
            return None
        self.given = True
        return self.vector


def _shadow_machine(src: str, guest: Vmcs | None = None):
    m = machine_with(IDT_SETUP + src + handlers_src())
    m.cpu.irq_source = OneInterrupt(m.cpu)
    if guest is not None:
        m.cpu.host = ShadowHost()
        m.cpu.vmcs = guest
        m.cpu.vmentry()
    return m


SHADOW_BODY = """
    mov r13, 1
    sti
    mov r12, 1
after:
    mov r12, 2
    cli
    hlt
"""


@pytest.mark.parametrize("stepped", [False, True])
def test_sti_lets_one_more_instruction_run_before_an_interrupt(stepped):
    # SDM vol. 2, STI: with IF clear before it, interrupts are taken at the boundary after the
    # next instruction, not the one after sti, whether the code runs as blocks or single steps.
    m = _shadow_machine(SHADOW_BODY)
    if stepped:
        for _ in range(5_000):
            if m.cpu.stopped:
                break
            m.cpu.step()
    else:
        run_to_halt(m)
    assert m.cpu.regs[15] == 0x1F                                   # the interrupt came
    assert m.cpu.regs[14] == m.images["test"].symbols["after"]      # after the one instruction
    assert m.cpu.regs[12] == 1 and m.cpu.int_shadow is False


def test_sti_with_interrupts_already_on_opens_no_shadow():
    m = _shadow_machine("""
    sti
    nop
    mov r13, 1
    sti
after:
    mov r12, 1
    cli
    hlt
""")
    run_to_halt(m)
    assert m.cpu.regs[15] == 0x1F and m.cpu.regs[14] == m.images["test"].symbols["after"]
    assert m.cpu.regs[12] == 0


class ShadowHost(RecordingHost):
    """Resumes the first I/O exit without moving on (the instruction runs again) and carries
    the guest past the second, noting the interruptibility state each exit saved."""

    def __init__(self):
        super().__init__()
        self.blocking: list[int] = []

    def on_vmexit(self, cpu, exc):
        self.exits.append((exc.reason, exc.qualification, dict(exc.info)))
        self.blocking.append(cpu.vmcs.guest_interruptibility)
        if exc.reason == "HLT":
            cpu.stop("exit HLT")
            return
        if exc.reason == "IO_INSTRUCTION" and len(self.exits) > 1:
            cpu.rip += 16
        cpu.vmentry()


def test_an_exit_in_stis_shadow_keeps_it_for_the_instruction_run_again():
    # The exit saves "blocking by STI" in the VMCS; the entry that resumes the same instruction
    # brings it back, and once the hypervisor moves the guest past it (update_guest_eip) it is gone.
    m = _shadow_machine("""
    mov r13, 1
    sti
    out 0x80, al
after:
    mov r12, 1
    cli
    hlt
""", Vmcs(external_interrupt_exiting=False))
    run_to_halt(m)
    host = m.cpu.host
    assert [r for r, _, _ in host.exits] == ["IO_INSTRUCTION", "IO_INSTRUCTION", "HLT"]
    assert host.blocking == [1, 1, 0]
    assert m.cpu.regs[15] == 0x1F and m.cpu.regs[14] == m.images["test"].symbols["after"]
    assert m.cpu.regs[12] == 0


def test_an_exit_outside_stis_shadow_saves_no_blocking():
    m = _shadow_machine("""
    sti
    nop
    cli
    mov r13, 1
    out 0x80, al
    sti
after:
    mov r12, 1
    cli
    hlt
""", Vmcs(external_interrupt_exiting=False))
    run_to_halt(m)
    assert m.cpu.host.blocking == [0, 0, 0]
    assert m.cpu.regs[14] == m.images["test"].symbols["after"] + 16 and m.cpu.regs[12] == 1
