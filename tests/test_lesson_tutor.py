"""The tutor on a running machine: live checks, the hint ladder, answers, and lesson inputs."""

from __future__ import annotations

import pytest

from lab.errors import UserError
from lab.lessons.model import find_lesson
from lab.lessons.progress import Progress
from lab.lessons.tutor import drill_values
from lab.session.lesson_play import check_script, open_lesson, perform


@pytest.fixture(scope="module")
def tour():
    return find_lesson("tour")


def test_the_check_is_met_as_events_arrive_and_lesson_actions_are_inputs(tour, tmp_path):
    progress = Progress(tmp_path / "p.json")
    tutor = open_lesson(tour, progress)
    inputs = []
    tutor.session.input_listeners.append(lambda i: inputs.append((i.kind, i.text)))
    tutor.act("goto", "3")                                   # 'event hypercall dom=pv-guest'
    assert not tutor.met and "no hypercall from pv-guest" in tutor.missing
    perform(tutor, "until hypercall")
    assert "answer the question" in tutor.missing           # the objective alone is not enough
    assert "not a" in tutor.act("answer", "a")
    assert not tutor.met
    assert tutor.act("answer", "b").startswith("right")
    assert tutor.met and 2 in tutor.done_steps
    assert ("lesson", "goto 3") in inputs and ("command", "until hypercall") in inputs \
        and ("lesson", "answer b") in inputs
    assert Progress(tmp_path / "p.json").of("tour").steps_done == {2}


def test_the_hint_ladder_climbs_and_stops_at_the_last_rung(tour):
    tutor = open_lesson(tour)
    st = tour.steps[0]
    assert tutor.act("hint") == f"hint 1/2: {st.hints[0]}"
    assert tutor.act("hint") == f"hint 2/2: {st.hints[1]}"
    assert tutor.act("hint") == f"hint 2/2: {st.hints[1]}"
    assert tutor.state().hints == st.hints and tutor.state().solution is None
    assert "xl list" in tutor.act("solution") and tutor.state().solution == st.solution
    tutor.act("next")
    assert tutor.state().hints == [] and tutor.index == 1
    with pytest.raises(UserError, match="unknown lesson action"):
        tutor.act("skip")


def test_reset_forgets_what_happened_before(tour):
    tutor = open_lesson(tour)
    tutor.act("goto", "2")                                   # focus pv-guest and command step
    perform(tutor, "step")
    tutor.act("reset")
    perform(tutor, "focus pv-guest")
    assert not tutor.met and "'step' has not been run" in tutor.missing
    perform(tutor, "step")
    assert tutor.met


def test_a_step_can_pause_the_machine_when_met(tour):
    tutor = open_lesson(tour)
    tutor.act("goto", "3")
    tutor.lesson.steps[2].pause_when_met = True
    try:
        out = perform(tutor, "run 3000000")
    finally:
        tutor.lesson.steps[2].pause_when_met = False
    assert out.startswith("breakpoint: hypercall")             # stopped at the hypercall that met it


def test_a_learners_file_is_checked_step_by_step(tour, tmp_path):
    results = check_script(open_lesson(tour), ["xl list", "answer 3", "focus pv-guest", "# a comment", "step",
                                                "regs"])
    assert [(r.index, r.met) for r in results] == [(0, True), (1, True), (2, False)]
    assert "no hypercall from pv-guest" in results[-1].missing


def test_the_live_values_of_a_text():
    tutor = open_lesson(find_lesson("tour"))
    tutor.act("goto", "2")
    perform(tutor, "focus pv-guest")
    assert "for pv-guest right now" in tutor.state().text
    assert tutor.render("{{last.hypercall}}") == "none yet"


def test_a_drill_is_the_same_for_the_same_seed_and_answers_are_computed():
    assert drill_values(7) == drill_values(7) and drill_values(7) != drill_values(8)
    v = drill_values(7)
    addr = int(v["drill.address"], 16)
    assert int(v["drill.l4"]) == (addr >> 39) & 511 and int(v["drill.offset"], 16) == addr & 0xFFF
    tutor = open_lesson(find_lesson("walk-drill"), seed=7)
    assert v["drill.address"] in tutor.state().question
    assert tutor.act("answer", v["drill.l4"]).startswith("right")
