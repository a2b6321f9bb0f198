"""``lesson reset`` and ``lesson restart`` take the machine back in time, not to the files:
the trace after a rewind is the trace of a fresh start, event for event."""

from __future__ import annotations

import pytest

from lab.lessons.model import find_lesson
from lab.session.lesson_play import open_lesson, perform

pytestmark = pytest.mark.machine       # every test here boots a whole machine


@pytest.fixture(scope="module")
def isolation():
    return find_lesson("isolation")


def _trace(tutor) -> list[dict]:
    return [e.to_dict() for e in tutor.session.machine.trace.iter_all()]


def _no_rebuild():
    raise AssertionError("the lesson was rebuilt from its files instead of rewound")


def test_reset_rewinds_the_machine_to_where_the_step_began(isolation):
    fresh = open_lesson(isolation)
    fresh.act("goto", "2")
    start_clock = fresh.session.clock()
    perform(fresh, "until trap:#PF@hostile")
    assert fresh.met is False and fresh.answered is False    # the objective; the question is open
    want = _trace(fresh)

    tutor = open_lesson(isolation)
    tutor._restart = _no_rebuild
    tutor.act("goto", "2")
    perform(tutor, "until trap:#PF")                          # the wrong try: the victim's fault
    perform(tutor, "step 50")
    assert tutor.session.clock() != start_clock
    out = tutor.act("reset")
    assert "back where the step began" in out
    assert tutor.session.clock() == start_clock
    perform(tutor, "until trap:#PF@hostile")
    assert _trace(tutor) == want
    assert "answer the question" in tutor.missing             # the check counted the new events only once
    tutor.act("answer", "b")
    assert tutor.met


def test_reset_forgets_the_events_before_it_and_counts_the_replayed_ones_once(isolation):
    tutor = open_lesson(isolation)
    tutor.act("goto", "3")
    perform(tutor, "until hypercall:mmu_update@hostile")      # the refusal, then a rewind before it
    tutor.act("reset")
    assert "no pagetable MMU_NORMAL_PT_UPDATE from hostile" in tutor.missing
    perform(tutor, "until pagetable:MMU_NORMAL_PT_UPDATE@hostile")
    tutor.act("answer", "16")
    assert tutor.met


def test_restart_rewinds_to_the_lessons_start_on_the_same_session(isolation):
    fresh = open_lesson(isolation)
    want_clock = fresh.session.clock()
    perform(fresh, "until hypercall:domctl@hostile")
    want = _trace(fresh)

    tutor = open_lesson(isolation)
    tutor._restart = _no_rebuild
    session = tutor.session
    perform(tutor, "focus hostile")
    tutor.act("answer", "1")
    tutor.act("next")
    perform(tutor, "run 500000")
    assert "back at the lesson's start" in tutor.act("restart")
    assert tutor.session is session and tutor.index == 0
    assert tutor.session.clock() == want_clock
    perform(tutor, "until hypercall:domctl@hostile")
    assert _trace(tutor) == want
    assert 0 in tutor.done_steps                               # what was done stays done


def test_a_start_cut_off_the_timeline_is_not_travelled_to(isolation):
    tutor = open_lesson(isolation)
    perform(tutor, "focus hostile")
    tutor.act("goto", "2")                                     # the step begins after that input
    perform(tutor, "step 10")
    perform(tutor, "reset")                                    # the machine's start, before 'focus hostile'
    perform(tutor, "step 5")                                   # a new input there cuts the old future off
    here = tutor.session.clock()
    assert "from now on counts" in tutor.act("reset")          # the step's start is gone: no travel
    assert tutor.session.clock() == here
    assert "back at the lesson's start" in tutor.act("restart")   # the lesson's start is still there
    assert tutor.session.clock()[0] == 0


def test_a_recorded_lesson_with_rewinds_replays_exactly(isolation, tmp_path):
    from lab.session.replay import replay
    tutor = open_lesson(isolation)
    path = tmp_path / "lesson.jsonl"
    perform(tutor, f"record on {path}")
    perform(tutor, "focus hostile")
    tutor.act("answer", "1")
    tutor.act("next")
    perform(tutor, "run 200000")
    tutor.act("reset")                                         # a trip the recording must hold
    perform(tutor, "until trap:#PF@hostile")
    tutor.act("restart")
    perform(tutor, "until hypercall:mmu_update@hostile")
    want = _trace(tutor)
    perform(tutor, "record off")
    result = replay(path)
    assert result.divergence is None, result.summary()
    assert [e.to_dict() for e in result.session.machine.trace.iter_all()] == want
    marks = tutor.session.time_machine.markers
    # where the lesson and step 1 began; step 2's start went with the future the restart cut off
    assert {"lesson-start", "lesson-step-1"} <= set(marks) and "lesson-step-2" not in marks


def test_a_marker_set_before_the_recording_began_is_in_it(tmp_path):
    from lab.paths import MACHINES
    from lab.session import live
    from lab.session.commands import execute
    from lab.session.replay import replay
    s = live.open_session([str(MACHINES / "isolation.toml")])
    path = tmp_path / "late.jsonl"
    for line in ("run 20000", "mark here", "run 20000", f"record on {path}", "seek here", "run 5000", "record off"):
        execute(s, line)
    result = replay(path)
    assert result.divergence is None, result.summary()
    assert result.session.clock() == s.clock()
