"""The assembler reuses the parse of a line it has seen (the kernels' common files come back in
every image): a repeated line still means what its own place says, and a mistake in it is
reported where it stands, every time."""

from __future__ import annotations

import pytest

from lab.isa.assembler import AsmError, assemble
from lab.isa.encoding import INSN_SIZE, decode

SOURCE = """
first:
    mov rax, [rip + .data]
    jmp .data
.align 16
.data:
    .quad 1
.align 16
second:
    nop
    nop
    mov rax, [rip + .data]
    jmp .data
.align 16
.data:
    .quad 2
"""


def _targets(image, at: int) -> tuple[int, int]:
    """Where the rip-relative load at ``at`` reads and where the jump after it goes."""
    load = decode(image.bytes_at(at, INSN_SIZE))
    jump = decode(image.bytes_at(at + INSN_SIZE, INSN_SIZE))
    return at + INSN_SIZE + load.mem.disp, at + 2 * INSN_SIZE + jump.imm


def test_a_repeated_line_names_the_local_label_of_its_own_scope():
    once = assemble(SOURCE, "repeat.s")
    again = assemble(SOURCE, "repeat.s")              # every line now seen before
    assert once.to_bytes() == again.to_bytes()
    for image in (once, again):
        sym = image.symbols
        assert _targets(image, sym["first"]) == (sym["first.data"], sym["first.data"])
        assert _targets(image, sym["second"] + 2 * INSN_SIZE) == (sym["second.data"], sym["second.data"])


@pytest.mark.parametrize("bad", ["    mov rax, [rbx + rcx*2 + rdx]", "    add rax, )", "    mov rax, 0x1z"])
def test_a_repeated_mistake_is_reported_at_each_place(bad):
    for line in (3, 5):
        src = "start:\n" + "    nop\n" * (line - 2) + bad + "\n"
        with pytest.raises(AsmError) as err:
            assemble(src, f"bad{line}.s")
        assert (err.value.file, err.value.line) == (f"bad{line}.s", line)
