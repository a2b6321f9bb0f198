"""Register names of the teaching ISA.

General registers are numbered in x86 order (rax=0 ... r15=15) so that a
learner who reads a real ModRM table recognises the numbers.
"""

from __future__ import annotations

GPR64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
GPR32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
         "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d")
GPR16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
         "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w")
GPR8 = ("al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil",
        "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b")

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)

#: Pseudo register number used as a memory base for rip-relative operands.
RIP_BASE = 16
#: "No register" in the base/index bytes of the encoding.
NO_REG = 0xFF

#: name -> (number, size in bytes)
GPR_BY_NAME: dict[str, tuple[int, int]] = {}
for _size, _names in ((8, GPR64), (4, GPR32), (2, GPR16), (1, GPR8)):
    for _num, _name in enumerate(_names):
        GPR_BY_NAME[_name] = (_num, _size)

#: Control registers the ISA can move to and from.
CONTROL_REGS = {"cr0": 0, "cr2": 2, "cr3": 3, "cr4": 4}

SIZE_NAMES = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
SIZE_BY_NAME = {v: k for k, v in SIZE_NAMES.items()}


def reg_name(num: int, size: int = 8) -> str:
    """The assembly name of general register ``num`` at ``size`` bytes."""
    table = {8: GPR64, 4: GPR32, 2: GPR16, 1: GPR8}[size]
    return table[num]
