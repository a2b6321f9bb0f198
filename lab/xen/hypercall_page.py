"""The hypercall page Xen writes into a guest: one 32-byte stub per hypercall.

A guest calls ``hypercall_page + nr * 32``. Xen's own 64-bit PV stub is
``push rcx; push r11; mov eax, nr; syscall; pop r11; pop rcx; ret``. The
lab's instructions are 16 bytes, so a 32-byte slot holds two of them:
``mov eax, nr`` and a jump to a shared tail in the page's last slot, which
holds the trap instruction for the guest type and ``ret``. The lab's Xen
preserves rcx and r11 across a PV hypercall itself, which is what the
pushes and pops in Xen's stub are for. As in Xen, the iret slot of an HVM
page is ``ud2``.
"""

from __future__ import annotations

from ..isa import opcodes
from ..isa.encoding import INSN_SIZE, Instruction, encode

from ..hw.memory import PAGE_SIZE
from .abi.hypercalls import HYPERCALL_STUB_SIZE as STUB_SIZE
TAIL = PAGE_SIZE - STUB_SIZE          # the last slot: trap instruction + ret
NR_STUBS = TAIL // STUB_SIZE
IRET = 23

_OP = {o.name: o.code for o in opcodes.ALL}


def _mov_eax(nr: int) -> bytes:
    return encode(Instruction(_OP["mov"], "ri", 4, a=0, imm=nr))


def _jmp(from_next: int, target: int) -> bytes:
    return encode(Instruction(_OP["jmp"], "i", 8, imm=target - from_next))


def _plain(name: str) -> bytes:
    return encode(Instruction(_OP[name], "", 8))


def _trap(kind: str) -> bytes:
    if kind == "pv64":
        return _plain("syscall")
    if kind == "pv32":
        return encode(Instruction(_OP["int"], "i", 8, imm=0x82))
    if kind == "intel":
        return _plain("vmcall")
    if kind == "amd":
        return _plain("vmmcall")
    raise ValueError(kind)


def build(kind: str) -> bytes:
    """The page for ``kind``: pv64, pv32, intel (HVM/PVH on VMX) or amd (on SVM)."""
    page = bytearray(PAGE_SIZE)
    for nr in range(NR_STUBS):
        base = nr * STUB_SIZE
        if nr == IRET and kind in ("intel", "amd"):
            stub = _plain("ud2") + _plain("ud2")
        else:
            stub = _mov_eax(nr) + _jmp(base + 2 * INSN_SIZE, TAIL)
        page[base:base + STUB_SIZE] = stub
    page[TAIL:TAIL + STUB_SIZE] = _trap(kind) + _plain("ret")
    return bytes(page)
