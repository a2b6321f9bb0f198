"""Mutation testing of the lab's Xen: how many deliberate small bugs do the tests catch?

For each module named, copies the project into a scratch directory and has mutmut change the
module one small thing at a time (a comparison flipped, a constant moved by one, a condition
dropped...). For each change it runs the tests that reach the changed function; a change the
tests notice is "killed", one they miss "survived". It prints, per module, the counts and the
names of the survivors; ``mutmut show NAME`` in the scratch directory (``--keep``) shows one.

Usage::

    python benchmarks/mutation.py [MODULE ...] [--tests PATH ...] [-m MARKERS] [--jobs N] [--keep DIR]

MODULE is a file under lab/xen (default: grant.py and mm.py); each has a default set of tests
(TESTS below) that --tests replaces; ``-m "not machine"`` keeps to the fast tier (no test that
boots a whole machine), which makes a run minutes instead of hours. Needs the dev extra (``pip install -e '.[dev]'``). It takes
minutes to hours and loads every core it is given: it is a measurement for developers, never run
in CI. It exits 0 once it has printed its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The tests that exercise each module (the mutants of a function run only the tests that reach it).
TESTS = {
    "grant.py": ["tests/test_grants.py", "tests/test_grants_edges.py", "tests/test_grants_wire.py",
                 "tests/test_blkback.py", "tests/test_netback.py"],
    "mm.py": ["tests/test_xen_mm.py", "tests/test_xen_mm_foreigndom.py", "tests/test_checkers_fire.py",
              "tests/test_xen_pv.py"],
}
DEFAULT_MODULES = ("grant.py", "mm.py")


def mutmut_config(module: str, tests: list[str], marker: str | None) -> str:
    """The [tool.mutmut] table for one module (TOML; lists of strings)."""
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"
    return "\n".join([
        "",
        "[tool.mutmut]",
        'source_paths = ["lab"]',
        f"only_mutate = {toml_list([f'lab/xen/{module}'])}",
        'also_copy = ["machines"]',
        # one process per mutant already: no pytest-xdist inside it
        f"pytest_add_cli_args = {toml_list(['-n', '0', '-p', 'no:cacheprovider', '-q'] + (['-m', marker] if marker else []))}",
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}",
        "",
    ])


def scratch_copy(dest: Path, module: str, tests: list[str], marker: str | None) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "mutants", ".pytest_cache")
    for name in ("lab", "tests", "machines"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    (dest / "pyproject.toml").write_text(pyproject + mutmut_config(module, tests, marker))


def mutmut(*args: str, cwd: Path, log: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "mutmut"
    if not exe.exists():
        sys.exit("mutmut is not installed: pip install -e '.[dev]'")
    out = open(log, "w") if log else subprocess.PIPE
    try:
        return subprocess.run([str(exe), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(cwd)})
    finally:
        if log:
            out.close()


def run_module(module: str, tests: list[str], marker: str | None, jobs: int, workdir: Path) -> dict:
    scratch_copy(workdir, module, tests, marker)
    start = time.monotonic()
    run = mutmut("run", "--max-children", str(jobs), cwd=workdir, log=workdir / "mutmut-run.log")
    seconds = time.monotonic() - start
    results = mutmut("results", "--all", "true", cwd=workdir).stdout or ""
    status: dict[str, list[str]] = {}
    for line in results.splitlines():
        m = re.match(r"\s*(\S+):\s*(.+?)\s*$", line)
        if m and m.group(1).startswith("lab.xen."):
            status.setdefault(m.group(2), []).append(m.group(1))
    return {"module": f"lab/xen/{module}", "seconds": round(seconds), "exit": run.returncode,
            "counts": {k: len(v) for k, v in sorted(status.items())},
            "survived": sorted(status.get("survived", []))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES), help="files under lab/xen")
    ap.add_argument("--tests", nargs="+", help="the tests to run (instead of the module's defaults)")
    ap.add_argument("-m", dest="marker", help="only the tests of this marker expression, e.g. 'not machine'")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    ap.add_argument("--keep", type=Path, help="keep the scratch directories under DIR")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    figures = []
    for module in args.modules:
        if not (ROOT / "lab" / "xen" / module).is_file():
            print(f"mutation.py: no module lab/xen/{module}", file=sys.stderr)
            return 2
        tests = args.tests or TESTS.get(module) or ["tests"]
        if args.keep:
            workdir = args.keep / module.removesuffix(".py")
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            figures.append(run_module(module, tests, args.marker, args.jobs, workdir))
        else:
            with tempfile.TemporaryDirectory(prefix="xenlab-mutation-") as d:
                figures.append(run_module(module, tests, args.marker, args.jobs, Path(d)))
        f = figures[-1]
        if not args.json:
            counts = ", ".join(f"{n} {k}" for k, n in f["counts"].items()) or "no mutants (see mutmut-run.log)"
            print(f"{f['module']}: {counts}  ({f['seconds']} s)")
            for name in f["survived"]:
                print(f"  survived: {name}")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
