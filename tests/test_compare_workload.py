"""xenlab compare --workload FILE: a learner's own user program, unchanged, in every mode; the same
answer (checksum and exit code) per mode, and one clear line for a broken file."""

from __future__ import annotations

import json

from lab.cli import main
from lab.session.compare import ModeResult, disagreement

PROGRAM = """\
; a learner's program: one line with a checksum, then exit(7)
.equ SYS_write, 1
.equ SYS_exit, 60
.text
.org 0x400000
_start:
    mov rdi, 1
    lea rsi, [rip + line]
    mov rdx, 20
    mov rax, SYS_write
    syscall
    mov rdi, 7
    mov rax, SYS_exit
    syscall
line: .ascii "mine: checksum 0x2a\\n"
"""


def test_own_program_runs_in_every_mode_asked_with_the_same_answer(tmp_path, capsys):
    prog = tmp_path / "mine.s"
    prog.write_text(PROGRAM)
    assert main(["compare", "--workload", str(prog), "--modes", "native,pv,pvh", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["native", "pv", "pvh"]
    assert {(r["checksum"], r["exit_code"]) for r in rows} == {("0x2a", 7)}
    # two system calls each: write and exit, bounced through Xen for PV, native for PVH
    assert all(r["syscalls"] == 2 for r in rows)


def test_a_broken_program_is_one_line_naming_file_line_and_problem(tmp_path, capsys):
    prog = tmp_path / "broken.s"
    prog.write_text(".text\n_start:\n    mov rax, 60\n    frobnicate rdi\n")
    assert main(["compare", "--workload", str(prog), "--modes", "native"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.s:4:" in err and "frobnicate" in err


def test_a_missing_program_and_a_program_given_twice_are_refused(tmp_path, capsys):
    assert main(["compare", "--workload", str(tmp_path / "none.s")]) == 2
    assert "none.s: no such file" in capsys.readouterr().err
    assert main(["compare", "--workload", "a.s", "b.s"]) == 2
    assert "give the program once" in capsys.readouterr().err


def test_modes_that_disagree_are_named():
    a, b = ModeResult("pv", "", checksum="0x1", exit_code=0), ModeResult("hvm", "", checksum="0x2", exit_code=0)
    assert disagreement([a, b]) == "the modes disagree on the program's checksum: pv 0x1, hvm 0x2"
    b.checksum = "0x1"
    assert disagreement([a, b]) is None
    b.exit_code = None
    assert "exit code: pv 0, hvm -" in disagreement([a, b])
