"""Turn the screen's snapshot SVGs into PNGs that look as the terminal does, to review them.

    python3 tests/tui/snapshot_png.py [SVG ...] [--out DIR]

(any Python with cairosvg; with no SVG named, every snapshot under tests/tui/__snapshots__).

The SVGs name the font "Fira Code, monospace". Where Fira Code is not installed, cairosvg
takes the first family it cannot find as a proportional font rather than falling back to
the monospace one, so bold text comes out wider than its cells and runs over the space
after it: "▶ vcpu0 pCPU0" reads "vcpu0pCPU0", "walk 0x401000 (pinned address)" reads
"0x401000(pinned address)", though the terminal (and the SVG in a browser) shows the
spaces. So the PNG is drawn with a monospace font that is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: A font-family value in the SVG's CSS, up to the ';' or '}' that ends it.
_FAMILY = re.compile(r"font-family:\s*[^;}]*")


def installed_monospace() -> str:
    """The family name of the monospace font fontconfig picks (DejaVu Sans Mono on Debian)."""
    if shutil.which("fc-match"):
        name = subprocess.run(["fc-match", "-f", "%{family[0]}", "monospace"], capture_output=True,
                              text=True).stdout.strip()
        if name:
            return name
    return "DejaVu Sans Mono"


def monospaced(svg: str, family: str) -> str:
    """``svg`` with every font family replaced by ``family`` (the window title's too: it
    is drawn in the same cells)."""
    return _FAMILY.sub(f'font-family: "{family}"', svg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("svgs", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, help="folder for the PNGs (default: beside each SVG)")
    args = ap.parse_args(argv)
    try:
        import cairosvg
    except ImportError:
        print("cairosvg is not installed for this Python (try the system python3)", file=sys.stderr)
        return 2
    family = installed_monospace()
    svgs = args.svgs or sorted((HERE / "__snapshots__").rglob("*.svg"))
    for svg in svgs:
        out = (args.out / svg.name if args.out else svg).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        cairosvg.svg2png(bytestring=monospaced(svg.read_text(encoding="utf-8"), family).encode(),
                         write_to=str(out))
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
