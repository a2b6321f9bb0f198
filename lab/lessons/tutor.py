"""A lesson being followed on a running session: the one place where lesson actions happen.

The tutor listens to the machine's trace events and the session's inputs and
keeps the current step's check up to date as they arrive. Every action a
learner takes on a lesson (hint, solution, reset, restart, next, prev,
answer) goes through :meth:`Tutor.act`, which notes it as an input of kind
``lesson`` so a recording holds it beside the commands.

The tutor never imports the session layer: it is handed a session object
(``machine``, ``vcpus()``, ``focus``, ``note_input``, ``input_listeners``,
and its ``time_machine`` if it has one), the lab's command language, with
which it marks where the lesson and each step began and goes back there
(``lesson reset``, ``lesson restart``), and a function that makes a fresh
session for a restart where there is no time machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError
from ..trace import Event
from .checks import Context, Watch
from .model import PLACEHOLDER, Lesson, Step
from .progress import Progress

ACTIONS = ("hint", "solution", "reset", "restart", "next", "prev", "answer", "goto")


#: What is missing once a step's objective is met and its question is not yet answered.
AWAITING_ANSWER = "the objective is met; now answer the question (answer ...)"


@dataclass
class StepState:
    """What the lesson panel shows, copied so another thread may read it."""
    lesson_id: str
    lesson_title: str
    index: int
    total: int
    title: str
    text: str
    met: bool
    missing: str
    hints: list[str]
    hints_total: int
    solution: list[str] | None
    question: str | None
    choices: list[str] = field(default_factory=list)
    answered: bool = False
    feedback: str = ""
    done_steps: frozenset[int] = frozenset()
    finished: bool = False
    #: The objective is met and only the step's question is left (``missing`` says so).
    awaiting_answer: bool = False


def drill_values(seed: int) -> dict[str, str]:
    """A page-walk drill's address and its indices, picked by ``seed`` (the same seed, the same drill)."""
    rng = random.Random(seed)
    # A canonical user address (bit 47 clear), page-aligned plus an offset, as a kernel maps them.
    addr = (rng.randrange(1, 1 << 35) << 12) | rng.randrange(0, 1 << 12)
    return {"drill.address": f"{addr:#x}", "drill.l4": str((addr >> 39) & 511), "drill.l3": str((addr >> 30) & 511),
            "drill.l2": str((addr >> 21) & 511), "drill.l1": str((addr >> 12) & 511),
            "drill.offset": f"{addr & 0xFFF:#x}", "seed": str(seed)}


class Tutor:
    def __init__(self, lesson: Lesson, session: Any, *, progress: Progress | None = None,
                 restart: Callable[[], Any] | None = None, seed: int = 0,
                 command: Callable[[Any, str], Any] | None = None) -> None:
        self.lesson = lesson
        self.progress = progress
        self._restart = restart
        self.seed = seed
        self.fixed = drill_values(seed) if lesson.is_drill else {"seed": str(seed)}
        self.session: Any = None
        self.index = 0
        self.hints_shown = 0
        self.solution_shown = False
        self.answered = False
        self.feedback = ""
        self.met = False
        self.missing = ""
        self.done_steps: set[int] = set()
        self.last: dict[str, Event] = {}
        #: Called (on whatever thread the machine runs) when a step's objective is first met.
        self.on_met: Callable[[int], None] | None = None
        self.message = progress.notice if progress is not None and progress.notice else ""
        self._watch: Watch | None = None
        #: The lab's command language (``execute(session, line)``), for the markers and trips
        #: a lesson makes on the session's timeline; without it they are made unrecorded.
        self._command = command
        self._quiet = False
        #: The markers where the lesson and the current step began, for reset and restart.
        self._lesson_start: str | None = None
        self._step_start: str | None = None
        if progress is not None:
            saved = progress.of(lesson.id)
            self.done_steps = set(s for s in saved.steps_done if s < len(lesson.steps))
        self.attach(session)

    # -- wiring ---------------------------------------------------------------
    def attach(self, session: Any) -> None:
        """Follow ``session`` (a fresh one after a restart) from the current step."""
        if self.session is not None:
            self.detach()
        self.session = session
        self.ctx = Context(session)
        session.machine.trace.listeners.append(self._on_event)
        session.input_listeners.append(self._on_input)
        tm = self._time_machine()
        if tm is not None:
            tm.on_replace.append(self._machine_replaced)
        self._lesson_start = self._mark("lesson-start")
        self._begin_step()

    def detach(self) -> None:
        s = self.session
        if s is None:
            return
        if self._on_event in s.machine.trace.listeners:
            s.machine.trace.listeners.remove(self._on_event)
        if self._on_input in s.input_listeners:
            s.input_listeners.remove(self._on_input)
        tm = self._time_machine()
        if tm is not None and self._machine_replaced in tm.on_replace:
            tm.on_replace.remove(self._machine_replaced)
        self.session = None

    # -- the timeline ------------------------------------------------------------
    def _time_machine(self) -> Any:
        return getattr(self.session, "time_machine", None)

    def _quietly(self, line: str) -> None:
        """Run one of the lab's commands for the lesson: recorded like any input (so a replay
        makes the same trip), but not one of the learner's, so no check counts it."""
        self._quiet = True
        try:
            self._command(self.session, line)        # type: ignore[misc]
        finally:
            self._quiet = False

    def _mark(self, name: str) -> str | None:
        """A marker on the session's timeline where the lesson or a step begins: ``lesson-start``,
        ``lesson-step-N``. Reset and restart go back to it; the learner may ``seek`` it too."""
        tm = self._time_machine()
        if tm is None:
            return None
        if self._command is not None:
            self._quietly(f"mark {name}")
        else:
            tm.mark(name)
        return name

    def _machine_replaced(self, machine: Any) -> None:
        """Travel built the machine afresh: follow the new one's trace."""
        if self._on_event not in machine.trace.listeners:
            machine.trace.listeners.append(self._on_event)

    def _rewind(self, marker: str | None) -> bool:
        """Put the machine back at ``marker`` through the time machine (True if it went).

        A marker the timeline lost (the learner went back before it and gave a new input
        there) is not travelled to. The tutor stops listening while the machine travels:
        what travel re-executes happened before the step began and must not count for it,
        nor pause the machine.
        """
        tm = self._time_machine()
        if tm is None or marker is None or marker not in tm.markers:
            return False
        trace_listeners = self.session.machine.trace.listeners
        if self._on_event in trace_listeners:
            trace_listeners.remove(self._on_event)
        try:
            if self._command is not None:
                self._quietly(f"seek {marker}")
            else:
                tm.seek_marker(marker)
        finally:
            listeners = self.session.machine.trace.listeners     # a rebuilt machine's, perhaps
            if self._on_event not in listeners:
                listeners.append(self._on_event)
        self.last.clear()
        return True

    @property
    def step(self) -> Step:
        return self.lesson.steps[self.index]

    def _begin_step(self) -> None:
        self._step_start = self._mark(f"lesson-step-{self.index + 1}")
        self.hints_shown = 0
        self.solution_shown = False
        self.answered = self.step.question is None
        self.feedback = ""
        self.met = False
        self.missing = ""
        self._watch = Watch(self.step.check, self.ctx)
        self.evaluate()

    # -- listening --------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        if ev.kind in ("hypercall", "vmexit", "trap"):
            self.last[ev.kind] = ev
        w = self._watch
        if w is not None and w.feed(ev) and not self.met:
            if w.met() and self.step.pause_when_met:
                self._pause_at(ev)
            self.evaluate()

    def _on_input(self, inp: Any) -> None:
        if self._quiet:
            return
        w = self._watch
        if w is not None and inp.kind == "command":
            w.feed_input(inp.kind, inp.text)
            self.evaluate()

    def _pause_at(self, ev: Event) -> None:
        """Stop the machine here, as a breakpoint does, so the moment stays on screen."""
        s = self.session
        if getattr(s, "break_hit", None) is None:
            s.break_hit = ev
        for ref in s.vcpus():
            ref.cpu.yield_now = True
        if hasattr(s.machine, "yield_now"):
            s.machine.yield_now = True

    def evaluate(self) -> bool:
        """Bring the step's state up to date (cheap: state predicates read a few fields)."""
        w = self._watch
        if w is None:
            return False
        if self.met:
            return True            # met once is met: the moment may pass, the step stays done
        objective = w.met()
        was = self.met
        self.met = objective and self.answered
        if not objective:
            self.missing = w.explain()
        elif not self.answered:
            self.missing = AWAITING_ANSWER
        else:
            self.missing = ""
        if self.met and not was:
            self._record_step()
            if self.on_met is not None:
                self.on_met(self.index)
        return self.met

    def _record_step(self) -> None:
        self.done_steps.add(self.index)
        if self.progress is None:
            return
        p = self.progress.of(self.lesson.id)
        p.steps_done.add(self.index)
        p.current = self.index
        p.done = len(self.done_steps) == len(self.lesson.steps)
        self._save()

    def _save(self) -> None:
        try:
            self.progress.save()       # type: ignore[union-attr]
        except OSError as e:
            self.message = f"progress not saved: {e.strerror or e}"

    # -- the learner's actions ------------------------------------------------------
    def act(self, action: str, arg: str = "") -> str:
        """Do one lesson action and say what happened; unknown actions are a UserError."""
        action = action.strip().lower()
        if action not in ACTIONS:
            raise UserError(f"unknown lesson action '{action}' (known: {', '.join(ACTIONS)})")
        text = f"{action} {arg}".strip()
        self.session.note_input("lesson", text)
        return getattr(self, f"_act_{action}")(arg.strip())

    def _act_hint(self, arg: str) -> str:
        hints = self.step.hints
        if self.hints_shown < len(hints):
            self.hints_shown += 1
        n = self.hints_shown
        return f"hint {n}/{len(hints)}: {hints[n - 1]}"

    def _act_solution(self, arg: str) -> str:
        self.solution_shown = True
        return "solution: " + " ; ".join(self.step.solution)

    def _act_reset(self, arg: str) -> str:
        if self._rewind(self._step_start):
            self._begin_step()
            return f"step {self.index + 1} begins again: the machine is back where the step began"
        self._begin_step()
        return f"step {self.index + 1} begins again: what happens from now on counts"

    def _act_restart(self, arg: str) -> str:
        if self._rewind(self._lesson_start):
            self.index = 0
            self._save_position()
            self._begin_step()
            return "the lesson starts again: the machine is back at the lesson's start"
        if self._restart is None:
            self.index = 0
            self._begin_step()
            return "back to step 1 (the machine keeps its state: reopen the lesson for a fresh one)"
        fresh = self._restart()
        self.index = 0
        self.attach(fresh)
        return "the lesson starts again on a fresh machine"

    def _act_next(self, arg: str) -> str:
        if self.index + 1 >= len(self.lesson.steps):
            return "this is the last step" + (": the lesson is done" if self.finished else "")
        self.index += 1
        self._save_position()
        self._begin_step()
        return f"step {self.index + 1}: {self.step.title}"

    def _act_prev(self, arg: str) -> str:
        if self.index == 0:
            return "this is the first step"
        self.index -= 1
        self._save_position()
        self._begin_step()
        return f"step {self.index + 1}: {self.step.title}"

    def _act_goto(self, arg: str) -> str:
        try:
            n = int(arg)
        except ValueError:
            raise UserError(f"goto needs a step number, not '{arg}'") from None
        if not 1 <= n <= len(self.lesson.steps):
            raise UserError(f"this lesson has steps 1 to {len(self.lesson.steps)}")
        self.index = n - 1
        self._save_position()
        self._begin_step()
        return f"step {n}: {self.step.title}"

    def _save_position(self) -> None:
        if self.progress is not None:
            self.progress.of(self.lesson.id).current = self.index
            self._save()

    def _act_answer(self, arg: str) -> str:
        q = self.step.question
        if q is None:
            raise UserError("this step asks no question")
        if not arg:
            raise UserError("answer needs your answer, e.g. 'answer b' or 'answer 24'")
        given = arg.strip().lower()
        right = self.render(q.answer).lower()
        if q.choices:
            if given not in q.letters():
                raise UserError(f"answer with a letter: {', '.join(q.letters())}")
            ok = given == right
        else:
            try:
                ok = int(given, 0) == int(right, 0)
            except ValueError:
                raise UserError(f"the answer is a number, not '{arg}'") from None
        if self.progress is not None:
            self.progress.of(self.lesson.id).answers[self.index] = given
        if ok:
            self.answered = True
            self.feedback = "right. " + self.render(q.why) if q.why else "right."
        else:
            why = q.explain.get(given, "")
            self.feedback = f"not {given}. " + (self.render(why) if why else "look again at the panes and try once more.")
        self.evaluate()
        if self.progress is not None and not self.met:
            self._save()
        return self.feedback

    # -- what the panel shows --------------------------------------------------------
    @property
    def finished(self) -> bool:
        return len(self.done_steps) == len(self.lesson.steps)

    def live_values(self) -> dict[str, str]:
        values = dict(self.fixed)
        s = self.session
        try:
            ref = s.focus
            cpu = ref.cpu
            values["focus.name"] = ref.label.split()[0]
            values["focus.ring"] = str(cpu.cpl)
            values["focus.mode"] = "root" if cpu.root else "non-root"
            values["focus.rip"] = f"{cpu.rip:#x}"
            values["focus.cr3"] = f"{cpu.cr3:#x}"
        except Exception:           # no vCPU to show (yet): the text says so instead
            pass
        h = self.last.get("hypercall")
        values["last.hypercall"] = f"{h.data.get('name')} ({h.data.get('nr')})" if h else "none yet"
        x = self.last.get("vmexit")
        values["last.vmexit"] = f"{x.data.get('reason')} ({x.data.get('nr')})" if x else "none yet"
        t = self.last.get("trap")
        values["last.trap"] = str(t.data.get("mnemonic")) if t else "none yet"
        return values

    def render(self, text: str) -> str:
        values = self.live_values()
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), "?"), text)

    def state(self) -> StepState:
        st = self.step
        q = st.question
        return StepState(
            self.lesson.id, self.lesson.title, self.index, len(self.lesson.steps), st.title, self.render(st.text),
            self.met, self.missing, list(st.hints[:self.hints_shown]), len(st.hints),
            list(st.solution) if self.solution_shown else None,
            self.render(q.ask) if q else None, list(q.choices) if q else [], self.answered, self.feedback,
            frozenset(self.done_steps), self.finished,
            awaiting_answer=bool(q) and not self.met and self.missing == AWAITING_ANSWER)
