"""x86 exceptions as Python exceptions that never escape the CPU.

An instruction that faults raises :class:`Fault`; the CPU catches it at the
instruction boundary and delivers it the way the hardware would (through the
IDT, to the hypervisor, or as a VM exit). A fault while delivering a fault is
a double fault; a fault while delivering a double fault stops the machine
(or, under a hypervisor, crashes only that domain).
"""

from __future__ import annotations

from .x86 import X86_EXC_HAVE_EC, X86_EXC_MNEMONICS


def mnemonic(vector: int) -> str:
    return X86_EXC_MNEMONICS.get(vector, f"INT {vector:#04x}" if vector >= 32 else f"vector {vector}")


class Fault(Exception):
    """An exception raised by the instruction being executed."""

    def __init__(self, vector: int, error_code: int | None = None, cr2: int | None = None,
                 reason: str = "") -> None:
        super().__init__(reason or mnemonic(vector))
        self.vector = vector
        self.error_code = error_code if vector in X86_EXC_HAVE_EC else None
        if vector in X86_EXC_HAVE_EC and self.error_code is None:
            self.error_code = 0
        self.cr2 = cr2
        self.reason = reason
        #: Index of the faulting instruction inside a translated block.
        self.index = 0

    @property
    def mnemonic(self) -> str:
        return mnemonic(self.vector)

    def __repr__(self) -> str:
        ec = f"({self.error_code:#x})" if self.error_code is not None else ""
        return f"{self.mnemonic}{ec} {self.reason}".strip()


class VmExit(Exception):
    """Non-root operation left for the hypervisor (raised inside the CPU)."""

    def __init__(self, reason: str, qualification: int = 0, info: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.qualification = qualification
        self.info = info or {}
        self.index = 0


class CpuStop(Exception):
    """The CPU can run no further (triple fault, halt with interrupts off)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = 0
