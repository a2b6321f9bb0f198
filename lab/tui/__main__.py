"""``python -m lab.tui [TARGET]``: open the lab on screen (a scenario .toml, an xl.cfg, or a kernel .s;
the default Xen scenario when none is given)."""

from __future__ import annotations

import sys

from .launch import await_boot, start_runner


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = argv[0] if argv else None
    runner = start_runner(target)      # the machine boots before the screen's code loads
    from .app import make_app
    await_boot(runner)
    make_app(target, runner=runner, freeze_after_start=True).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
