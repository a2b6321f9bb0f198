"""Pin what a screenshot depends on: theme, colour, cursor blink, animations."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.pop("NO_COLOR", None)          # read by App.__init__
os.environ.pop("TEXTUAL_THEME", None)     # read when textual is imported
os.environ["TEXTUAL_ANIMATIONS"] = "none"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_blink(monkeypatch):
    """A blinking cursor makes screenshots depend on timing."""
    from textual.widgets import Input
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    yield


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TEXTUAL_THEME", raising=False)
    yield
