"""Text every learner can read, in every theme.

WCAG 2.x asks for a contrast ratio of at least 4.5:1 between text and its
background (success criterion 1.4.3, level AA). Textual's themes do not all
keep it: its light theme draws amber, green and red text on light grey at
about 3:1, and its dark theme's secondary colour falls short on the panels.
The app passes every theme's variables through :func:`readable`, which moves
each text colour that falls short towards black (on a light theme) or white
(on a dark one) just far enough, so the hue stays and the text reads.
"""

from __future__ import annotations

from textual.color import BLACK, WHITE, Color

#: The theme variables the lab draws text in, and the backgrounds text sits on.
TEXT_VARIABLES = ("foreground", "text-muted", "text-accent", "text-warning", "text-error", "text-success",
                  "text-primary", "text-secondary")
BACKGROUNDS = ("background", "surface", "panel")
AA_TEXT = 4.5


def _luminance(c: Color) -> float:
    def channel(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)


def contrast(a: Color, b: Color) -> float:
    """WCAG contrast ratio of two opaque colours, 1 to 21."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(value: str, background: Color) -> Color:
    """A text variable's colour as drawn on ``background`` (``auto 60%`` and alpha resolved)."""
    if value.startswith("auto"):
        words = value.split()
        alpha = float(words[1].rstrip("%")) / 100 if len(words) > 1 else 1.0
        colour = background.get_contrast_text(alpha)
    else:
        colour = Color.parse(value)
    return background + colour if colour.a < 1 else colour


def _ratio(variables: dict[str, str], fg: str, value: str) -> float:
    """The worst contrast of text variable ``fg`` (drawn as ``value``) on the backgrounds."""
    worst = 21.0
    for bg in BACKGROUNDS:
        background = Color.parse(variables[bg])
        worst = min(worst, contrast(text_colour(value, background), background))
    return worst


def readable(variables: dict[str, str]) -> dict[str, str]:
    """``variables`` with every text colour below AA on a background moved until it reaches AA."""
    out = dict(variables)
    light = _luminance(Color.parse(variables["background"])) > 0.5
    target = BLACK if light else WHITE
    if any(out[name].startswith("ansi") for name in BACKGROUNDS):
        return out                       # the terminal's own colours: nothing to measure
    for fg in TEXT_VARIABLES:
        value = out[fg]
        if value.startswith("ansi") or _ratio(out, fg, value) >= AA_TEXT:
            continue
        # "auto 60%" is drawn over each background; made concrete on the panel, the darkest case.
        colour = text_colour(value, Color.parse(out["panel"]))
        for step in range(1, 21):
            moved = colour.blend(target, step / 20, alpha=1.0).hex
            if _ratio(out, fg, moved) >= AA_TEXT:
                out[fg] = moved
                break
    return out


def low_contrast(variables: dict[str, str]) -> list[tuple[str, str, float]]:
    """(text variable, background, ratio) for every pair below AA."""
    out: list[tuple[str, str, float]] = []
    if any(variables[name].startswith("ansi") for name in BACKGROUNDS):
        return out
    for bg in BACKGROUNDS:
        background = Color.parse(variables[bg])
        for fg in TEXT_VARIABLES:
            if variables[fg].startswith("ansi"):
                continue                 # the terminal's own colour
            ratio = contrast(text_colour(variables[fg], background), background)
            if ratio < AA_TEXT:
                out.append((fg, bg, round(ratio, 2)))
    return out
