"""The screen's pump: every tick, but only ten times a second while the machine runs flat out."""

from __future__ import annotations

from lab.paths import KERNELS
from lab.tui.app import make_app
from lab.tui.runner import DEFAULT_SPEED, PAUSED, RUNNING, SPEEDS, TICK


def test_the_logs_are_pumped_ten_times_a_second_at_full_speed_and_every_tick_otherwise():
    app = make_app(str(KERNELS / "native.s"))        # not run: no thread, no machine
    runner = app.runner
    assert SPEEDS[DEFAULT_SPEED] is None
    runner.mode = RUNNING
    app._last_pump = 100.0
    due = [round(k * TICK, 3) for k in range(1, 10) if app.pump_due(100.0 + k * TICK)]
    assert due[0] == round(3 * TICK, 3)               # a tenth of a second, in whole ticks
    runner.set_speed(DEFAULT_SPEED - 1)               # 100,000 instructions a tick: every tick
    assert app.pump_due(100.0 + TICK)
    runner.set_speed(DEFAULT_SPEED)
    runner.mode = PAUSED
    assert app.pump_due(100.0 + TICK)
