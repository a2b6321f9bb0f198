"""Every lesson of the course loads, is solved by its own solutions, and its checks are
neither too loose (each step's wrong tries fail) nor too strict (its right tries pass)."""

from __future__ import annotations

import pytest

from lab.lessons.model import course, load_course, load_lesson
from lab.session.lesson_play import open_lesson, rehearse, solve

LESSONS = course()


def test_the_course_has_at_least_twelve_lessons_of_four_to_ten_steps():
    lessons = load_course()
    assert len(lessons) >= 12
    for lesson in lessons:
        assert 4 <= len(lesson.steps) <= 10, lesson.id
    assert [lesson.id for lesson in lessons][0] == "tour"


def test_every_lesson_tries_a_wrong_and_a_right_action():
    for path in LESSONS:
        lesson = load_lesson(path)
        assert any(s.wrong for s in lesson.steps), f"{lesson.id} has no wrong try"
        assert any(s.right for s in lesson.steps), f"{lesson.id} has no right try"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_a_lesson_is_solved_by_its_solutions_and_its_checks_hold(path):
    lesson = load_lesson(path)
    results = solve(open_lesson(lesson))
    assert [(r.index, r.met, r.errors) for r in results] == [(i, True, []) for i in range(len(lesson.steps))], \
        [r.missing for r in results if not r.met]
    assert rehearse(open_lesson(lesson)) == []
