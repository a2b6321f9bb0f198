"""x86 exceptions as Python exceptions that never escape the CPU.

An instruction that faults raises :class:`Fault`; the CPU catches it at the
instruction boundary and delivers it the way the hardware would (through the
IDT, to the hypervisor, or as a VM exit). A fault while delivering a fault is
a double fault; a fault while delivering a double fault stops the machine
(or, under a hypervisor, crashes only that domain).
"""

from __future__ import annotations

DE, DB, NMI, BP, OF_, BR, UD, NM, DF, TS, NP, SS, GP, PF = 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14

MNEMONICS = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
             8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
             17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP"}
#: Vectors whose delivery pushes an error code.
HAS_ERROR_CODE = frozenset((8, 10, 11, 12, 13, 14, 17, 21))
#: Contributory exceptions: two of these in a row make a double fault.
CONTRIBUTORY = frozenset((0, 10, 11, 12, 13))


def mnemonic(vector: int) -> str:
    return MNEMONICS.get(vector, f"INT {vector:#04x}" if vector >= 32 else f"vector {vector}")


class Fault(Exception):
    """An exception raised by the instruction being executed."""

    def __init__(self, vector: int, error_code: int | None = None, cr2: int | None = None,
                 reason: str = "") -> None:
        super().__init__(reason or mnemonic(vector))
        self.vector = vector
        self.error_code = error_code if vector in HAS_ERROR_CODE else None
        if vector in HAS_ERROR_CODE and self.error_code is None:
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
