"""The snapshot reviewer's PNGs are drawn in a monospace font, as the terminal draws them."""

from __future__ import annotations

from pathlib import Path

from snapshot_png import monospaced

SNAPSHOTS = Path(__file__).resolve().parent / "__snapshots__"


def test_every_font_family_of_a_snapshot_becomes_the_monospace_one():
    svg = (SNAPSHOTS / "test_tui_snapshots" / "test_xen_medium_screen.svg").read_text(encoding="utf-8")
    assert "Fira Code" in svg
    out = monospaced(svg, "DejaVu Sans Mono")
    assert "Fira Code" not in out and "arial" not in out
    assert out.count('font-family: "DejaVu Sans Mono"') == svg.count("font-family:")
    # nothing but the families changes: the text and its cells stay as the snapshot has them
    assert out.replace('font-family: "DejaVu Sans Mono"', "").count("&#160;pCPU0&#160;") == \
        svg.count("&#160;pCPU0&#160;") > 0
