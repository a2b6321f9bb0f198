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


def test_a_line_built_before_takes_its_new_values_and_reports_its_new_mistakes():
    # The same instruction lines, in a second image where the constant and the targets differ.
    line = "    mov eax, VALUE\n    call far\n    jne far\n    mov rbx, [rip + far]\n"
    near = assemble(f"VALUE = 7\nstart:\n{line}far:\n    ret\n", "near.s")
    later = assemble(f"VALUE = -1\nstart:\n{line}.space 0x1000\nfar:\n    ret\n", "later.s")
    for image, value in ((near, 7), (later, -1)):
        start, far = image.symbols["start"], image.symbols["far"]
        mov, call, jne, load = (decode(image.bytes_at(start + k * INSN_SIZE, INSN_SIZE)) for k in range(4))
        assert mov.imm == value
        assert start + 2 * INSN_SIZE + call.imm == far and start + 3 * INSN_SIZE + jne.imm == far
        assert start + 4 * INSN_SIZE + load.mem.disp == far
    with pytest.raises(AsmError, match=r"wide.s:3:14: immediate does not fit in 32 bits"):
        assemble(f"VALUE = 1 << 32\nstart:\n{line}far:\n    ret\n", "wide.s")
    with pytest.raises(AsmError, match=r"gone.s:4:10: undefined symbol 'far'"):
        assemble(f"VALUE = 1\nstart:\n{line}", "gone.s")


def test_an_image_assembled_again_reads_and_builds_no_line_afresh(monkeypatch):
    from lab.isa import assembler
    source = "VALUE = 3\n.macro twice r\n    add \\r, \\r\n.endm\nstart:\n    mov rax, VALUE\n" \
             "    twice rax\n    jmp start\n    .quad start, VALUE\n"
    first = assemble(source, "again.s")
    plans, builds = [], []
    make_plan, build = assembler._make_plan, assembler._Builder.build
    monkeypatch.setattr(assembler, "_make_plan", lambda *a: plans.append(a) or make_plan(*a))
    monkeypatch.setattr(assembler._Builder, "build", lambda self: builds.append(self) or build(self))
    assert assemble(source, "again.s").to_bytes() == first.to_bytes()
    assert plans == [] and builds == []
