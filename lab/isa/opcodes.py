"""The instruction table of the teaching ISA.

Every mnemonic has one opcode byte and the operand forms it accepts. A form
is a string with one letter per operand: ``r`` general register, ``m``
memory, ``i`` immediate (or a branch target, encoded relative to the next
instruction). ``docs/isa.md`` describes each instruction; this table is the
single source both the assembler and the CPU read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpInfo:
    name: str
    code: int
    forms: tuple[str, ...]
    privileged: bool = False     # #GP(0) at CPL > 0
    branch: bool = False         # ends a translated block
    doc: str = ""


# Condition codes in x86 order (the low nibble of Jcc/SETcc/CMOVcc).
CONDITIONS = {
    "o": 0, "no": 1, "b": 2, "c": 2, "nae": 2, "ae": 3, "nb": 3, "nc": 3,
    "e": 4, "z": 4, "ne": 5, "nz": 5, "be": 6, "na": 6, "a": 7, "nbe": 7,
    "s": 8, "ns": 9, "p": 10, "pe": 10, "np": 11, "po": 11,
    "l": 12, "nge": 12, "ge": 13, "nl": 13, "le": 14, "ng": 14, "g": 15, "nle": 15,
}
#: The canonical name the disassembler prints for each condition code.
CONDITION_NAMES = ("o", "no", "b", "ae", "e", "ne", "be", "a",
                   "s", "ns", "p", "np", "l", "ge", "le", "g")

ALU_FORMS = ("rr", "ri", "rm", "mr", "mi")
UNARY_FORMS = ("r", "m")
SHIFT_FORMS = ("ri", "rr", "mi", "mr")   # the register count must be cl

_TABLE = [
    OpInfo("nop", 0x00, ("",), doc="no operation"),
    OpInfo("mov", 0x01, ("rr", "ri", "rm", "mr", "mi"), doc="copy"),
    OpInfo("movzx", 0x02, ("rr", "rm"), doc="copy, zero-extending a smaller source"),
    OpInfo("movsx", 0x03, ("rr", "rm"), doc="copy, sign-extending a smaller source"),
    OpInfo("lea", 0x04, ("rm",), doc="load effective address"),
    OpInfo("xchg", 0x05, ("rr", "rm", "mr"), doc="exchange"),
    OpInfo("push", 0x06, ("r", "i", "m"), doc="push onto the stack"),
    OpInfo("pop", 0x07, ("r", "m"), doc="pop from the stack"),
    OpInfo("pushfq", 0x08, ("",), doc="push rflags"),
    OpInfo("popfq", 0x09, ("",), doc="pop rflags (IF and IOPL only at sufficient privilege)"),
    # 0x10-0x17 follow x86's /0 .. /7 ALU group order.
    OpInfo("add", 0x10, ALU_FORMS, doc="add"),
    OpInfo("or", 0x11, ALU_FORMS, doc="bitwise or"),
    OpInfo("adc", 0x12, ALU_FORMS, doc="add with carry"),
    OpInfo("sbb", 0x13, ALU_FORMS, doc="subtract with borrow"),
    OpInfo("and", 0x14, ALU_FORMS, doc="bitwise and"),
    OpInfo("sub", 0x15, ALU_FORMS, doc="subtract"),
    OpInfo("xor", 0x16, ALU_FORMS, doc="bitwise exclusive or"),
    OpInfo("cmp", 0x17, ALU_FORMS, doc="compare (subtract, flags only)"),
    OpInfo("test", 0x18, ("rr", "ri", "mr", "mi"), doc="and, flags only"),
    OpInfo("inc", 0x19, UNARY_FORMS, doc="increment (CF unchanged)"),
    OpInfo("dec", 0x1A, UNARY_FORMS, doc="decrement (CF unchanged)"),
    OpInfo("neg", 0x1B, UNARY_FORMS, doc="two's complement negate"),
    OpInfo("not", 0x1C, UNARY_FORMS, doc="bitwise not (flags unchanged)"),
    OpInfo("mul", 0x1D, UNARY_FORMS, doc="unsigned multiply rdx:rax = rax * src"),
    OpInfo("imul", 0x1E, ("r", "m", "rr", "rm", "rri", "rmi"), doc="signed multiply"),
    OpInfo("div", 0x1F, UNARY_FORMS, doc="unsigned divide rdx:rax by src (#DE on zero or overflow)"),
    OpInfo("idiv", 0x20, UNARY_FORMS, doc="signed divide rdx:rax by src (#DE on zero or overflow)"),
    OpInfo("shl", 0x22, SHIFT_FORMS, doc="shift left"),
    OpInfo("shr", 0x23, SHIFT_FORMS, doc="logical shift right"),
    OpInfo("sar", 0x24, SHIFT_FORMS, doc="arithmetic shift right"),
    OpInfo("rol", 0x25, SHIFT_FORMS, doc="rotate left"),
    OpInfo("ror", 0x26, SHIFT_FORMS, doc="rotate right"),
    OpInfo("cqo", 0x27, ("",), doc="sign-extend rax into rdx"),
    OpInfo("jmp", 0x30, ("i", "r", "m"), branch=True, doc="jump"),
    OpInfo("jcc", 0x31, ("i",), branch=True, doc="jump if condition"),
    OpInfo("call", 0x32, ("i", "r", "m"), branch=True, doc="call"),
    OpInfo("ret", 0x33, ("", "i"), branch=True, doc="return, optionally popping imm bytes"),
    OpInfo("setcc", 0x34, ("r", "m"), doc="set byte to condition"),
    OpInfo("cmovcc", 0x35, ("rr", "rm"), doc="move if condition"),
    OpInfo("movs", 0x36, ("",), doc="copy [rsi] to [rdi]; with rep, rcx times"),
    OpInfo("stos", 0x37, ("",), doc="store rax to [rdi]; with rep, rcx times"),
    OpInfo("int", 0x40, ("i",), branch=True, doc="software interrupt through the IDT"),
    OpInfo("int3", 0x41, ("",), branch=True, doc="breakpoint trap (#BP)"),
    OpInfo("iretq", 0x42, ("",), branch=True, doc="return from interrupt (may not raise privilege)"),
    OpInfo("syscall", 0x43, ("",), branch=True, doc="fast system call through LSTAR"),
    OpInfo("sysretq", 0x44, ("",), privileged=True, branch=True, doc="return from a fast system call"),
    OpInfo("hlt", 0x45, ("",), privileged=True, branch=True, doc="halt until an interrupt"),
    OpInfo("cli", 0x46, ("",), doc="clear IF (needs CPL <= IOPL)"),
    OpInfo("sti", 0x47, ("",), branch=True, doc="set IF (needs CPL <= IOPL)"),
    OpInfo("in", 0x48, ("rr", "ri"), branch=True, doc="read an I/O port (needs CPL <= IOPL)"),
    OpInfo("out", 0x49, ("rr", "ir"), branch=True, doc="write an I/O port (needs CPL <= IOPL)"),
    OpInfo("cpuid", 0x4A, ("",), branch=True, doc="processor identification"),
    OpInfo("rdmsr", 0x4B, ("",), privileged=True, branch=True, doc="read model-specific register ecx"),
    OpInfo("wrmsr", 0x4C, ("",), privileged=True, branch=True, doc="write model-specific register ecx"),
    OpInfo("rdtsc", 0x4D, ("",), doc="read the time-stamp counter into edx:eax"),
    OpInfo("movtocr", 0x4E, ("rr",), privileged=True, branch=True, doc="mov crN, reg"),
    OpInfo("movfromcr", 0x4F, ("rr",), privileged=True, doc="mov reg, crN"),
    OpInfo("invlpg", 0x50, ("m",), privileged=True, branch=True, doc="invalidate one TLB entry"),
    OpInfo("lidt", 0x51, ("m",), privileged=True, branch=True, doc="load the IDT register"),
    OpInfo("lgdt", 0x52, ("m",), privileged=True, branch=True, doc="load the GDT register"),
    OpInfo("vmcall", 0x53, ("",), branch=True, doc="call the hypervisor (Intel)"),
    OpInfo("vmmcall", 0x54, ("",), branch=True, doc="call the hypervisor (AMD)"),
    OpInfo("pause", 0x55, ("",), doc="spin-loop hint"),
    OpInfo("ud2", 0x56, ("",), branch=True, doc="raise #UD"),
    OpInfo("swapgs", 0x57, ("",), privileged=True, doc="swap GS base with KERNEL_GS_BASE"),
    OpInfo("ltr", 0x58, ("r",), privileged=True, branch=True,
           doc="load the task register (a 16-bit TSS selector; the TSS holds RSP0 for interrupts)"),
]

BY_NAME: dict[str, OpInfo] = {o.name: o for o in _TABLE}
BY_CODE: dict[int, OpInfo] = {o.code: o for o in _TABLE}
ALL: tuple[OpInfo, ...] = tuple(_TABLE)

#: Mnemonics that are spelled with a condition suffix (jne, sete, cmovz ...).
CONDITIONAL_PREFIXES = {"j": "jcc", "set": "setcc", "cmov": "cmovcc"}
#: String instructions by spelling -> (opinfo name, operand size).
STRING_SPELLINGS = {"movsb": ("movs", 1), "movsq": ("movs", 8),
                    "stosb": ("stos", 1), "stosq": ("stos", 8)}
