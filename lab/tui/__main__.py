"""``python -m lab.tui [KERNEL.s]``: open the lab on screen."""

from __future__ import annotations

import sys

from .app import make_app


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    make_app(argv[0] if argv else None).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
