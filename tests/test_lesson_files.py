"""Lesson files: a broken one is one message naming the file, the line and the problem."""

from __future__ import annotations

import pytest

from lab.cli import main
from lab.lessons.model import LessonError, find_lesson, load_lesson

GOOD = '''title = "T"
summary = "S"
scenario = "pv-guest.cfg"

[[step]]
title = "one"
text = "Look at {{focus.ring}}."
check = "command xl list"
hints = ["h1", "h2"]
solution = ["xl list"]

[[step]]
title = "two"
text = "t"
hints = ["h"]
solution = ["answer b"]

[step.question]
ask = "q?"
choices = ["x", "y"]
answer = "b"
explain = { a = "not x" }
'''


def write(tmp_path, text, name="l.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_good_lesson_loads(tmp_path):
    lesson = load_lesson(write(tmp_path, GOOD))
    assert lesson.id == "l" and len(lesson.steps) == 2
    assert lesson.steps[0].hints == ["h1", "h2"]
    assert lesson.steps[1].question.answer == "b" and lesson.steps[1].check_text == "true"


@pytest.mark.parametrize("old, new, message", [
    ('check = "command xl list"', 'check = "command xl list and evnt x"',
     "l.toml:8:30: step 1 check: unknown predicate 'evnt'"),
    ('hints = ["h1", "h2"]', 'hints = []', "l.toml:5: step 1 needs at least one hint"),
    ('solution = ["answer b"]', 'solution = ["xl list"]', "l.toml:16: step 2 asks a question: its solution"),
    ('answer = "b"', 'answer = "c"', "l.toml:21: answer 'c' is not one of the choices (a, b)"),
    ('text = "t"', 'text = "t"\ncolour = "red"', "l.toml:15: a step has no key 'colour'"),
    ('Look at {{focus.ring}}', 'Look at {{focus.rnig}}', "l.toml:7: unknown value {{focus.rnig}}"),
    ('scenario = "pv-guest.cfg"', 'scenario = "nosuch.cfg"', "l.toml:3: scenario 'nosuch.cfg' not found"),
    ('summary = "S"', 'summary = "S"\nsummry = "x"', "l.toml:3: a lesson has no key 'summry'"),
    ('title = "one"', 'title = one', "l.toml:6:9: Invalid value"),
])
def test_a_broken_lesson_names_file_line_and_problem(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(LessonError) as e:
        load_lesson(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(e.value), str(e.value)


def test_validate_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    bad = write(tmp_path, GOOD.replace('check = "command xl list"', 'check = "event nokind"'))
    assert main(["lesson", "validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "l.toml:8" in err[0] and "unknown event kind 'nokind'" in err[0]
    assert main(["lesson", "validate", str(write(tmp_path, GOOD, "ok.toml"))]) == 0
    assert "ok.toml: ok (2 steps)" in capsys.readouterr().out


def test_lessons_are_found_by_id_and_by_number():
    assert find_lesson("tour").id == "tour"
    assert find_lesson("2").id == "rings"
    with pytest.raises(Exception, match="no lesson 'nosuch'"):
        find_lesson("nosuch")


def test_the_lesson_layer_imports_nothing_above_it():
    """lab/lessons sits below the session layer: it is handed a session, it never imports one."""
    import subprocess
    import sys
    code = ("import sys, lab.lessons.model, lab.lessons.checks, lab.lessons.tutor, lab.lessons.progress; "
            "print(sorted(m for m in sys.modules if m.startswith(('lab.session', 'lab.tui', 'lab.cli', "
            "'textual', 'rich', 'prompt_toolkit'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
