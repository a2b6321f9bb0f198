"""Helpers for the screen's tests: build the app, wait for the simulation, read panes."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from lab.tui.app import XenLab, make_app

THEME = "textual-dark"


def run(coro) -> Any:
    return asyncio.run(coro)


async def settle(pilot, app: XenLab, timeout: float = 60.0) -> None:
    """Wait until the sim thread is idle and the screen shows all it produced."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    calm = 0
    while loop.time() < end:
        await pilot.pause(0.02)
        r = app.runner
        view_shown = r.view is None or app._gen == r.view.gen
        if r.settled() and view_shown:
            calm += 1
            if calm >= 3:
                # a log scrolls to its end with an animation: a snapshot taken mid-way
                # (on a loaded machine) would show older lines
                await pilot.wait_for_scheduled_animations()
                await pilot.pause()
                return
        else:
            calm = 0
    raise AssertionError(f"the lab did not settle (mode {app.runner.mode})")


async def command(pilot, app: XenLab, line: str) -> None:
    """Type a command line at the prompt and press enter, as a learner does."""
    cmd = app.main.cmd()
    cmd.focus()
    await pilot.pause()
    cmd.value = line
    await pilot.press("enter")
    await settle(pilot, app)


@asynccontextmanager
async def lab(size=(80, 24), messages: list | None = None, **kwargs):
    kwargs.setdefault("theme", THEME)
    from lab.paths import KERNELS
    target = kwargs.pop("target", str(KERNELS / "native.s"))
    app = make_app(target, **kwargs)
    hook = messages.append if messages is not None else None
    async with app.run_test(size=size, message_hook=hook) as pilot:
        await settle(pilot, app)
        yield app, pilot


def output_text(app: XenLab) -> str:
    """Everything the command output pane was given."""
    return "\n".join(text for _, text in app.transcript)


def message_text(app: XenLab) -> str:
    from textual.widgets import Static
    return str(app.main.query_one("#message", Static).render())


def pane_text(app: XenLab, selector: str) -> str:
    """The plain text a Static-based part of a pane shows."""
    w = app.main.query_one(selector)
    shown = getattr(w, "_shown", None)
    return shown.plain if shown is not None else str(w.render())
