"""Every theme keeps text readable: WCAG AA (4.5:1) for each text colour on each background."""

from __future__ import annotations

import pytest
from textual.theme import BUILTIN_THEMES

from lab.tui.themes import AA_TEXT, contrast, low_contrast, readable
from textual.color import Color
from tui_support import lab, run


@pytest.mark.parametrize("name", sorted(BUILTIN_THEMES))
def test_every_theme_reads_at_aa_once_the_lab_has_it(name):
    theme = BUILTIN_THEMES[name]
    variables = {**theme.to_color_system().generate(), **theme.variables}
    assert low_contrast(readable(variables)) == []


def test_textual_light_needs_it_and_keeps_its_hue():
    theme = BUILTIN_THEMES["textual-light"]
    variables = {**theme.to_color_system().generate(), **theme.variables}
    assert ("text-warning", "panel", 2.8) in low_contrast(variables)        # amber on light grey
    fixed = Color.parse(readable(variables)["text-warning"])
    amber = Color.parse(variables["text-warning"])
    assert fixed.r > fixed.b and abs(fixed.hsl.h - amber.hsl.h) < 0.05       # still amber, darker


def test_contrast_known_answers():
    assert contrast(Color(0, 0, 0), Color(255, 255, 255)) == pytest.approx(21.0)
    assert contrast(Color(119, 119, 119), Color(255, 255, 255)) == pytest.approx(4.48, abs=0.01)


def test_the_app_draws_with_the_readable_variables():
    async def go():
        async with lab(theme="textual-light") as (app, pilot):
            v = app.theme_variables
            assert low_contrast(v) == []
            panel = Color.parse(v["panel"])
            assert contrast(Color.parse(v["text-warning"]), panel) >= AA_TEXT
    run(go())
