"""``python -m lab.tui [TARGET]``: open the lab on screen (a scenario .toml, an xl.cfg, or a kernel .s;
the default Xen scenario when none is given)."""

from __future__ import annotations

import sys

from .app import make_app


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    make_app(argv[0] if argv else None).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
