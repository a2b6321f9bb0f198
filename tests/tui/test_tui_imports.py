"""The core stays headless, and the ``xenlab`` command opens the screen only when asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ("lab.isa", "lab.hw", "lab.xen", "lab.dom0", "lab.trace", "lab.session", "lab.lessons")
FRONT_ENDS = ("textual", "rich", "prompt_toolkit")

_PROBE = """
import importlib, json, pkgutil, sys
name = sys.argv[1]
mod = importlib.import_module(name)
loaded = [name]
for info in pkgutil.walk_packages(getattr(mod, "__path__", []), name + "."):
    importlib.import_module(info.name)
    loaded.append(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {front})
print(json.dumps({{"loaded": loaded, "front_ends": bad}}))
""".format(front=repr(set(FRONT_ENDS)))


def _probe(module: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, module], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", CORE)
def test_simulator_core_imports_no_front_end(module):
    result = _probe(module)
    assert result["front_ends"] == [], f"{module} pulled in {result['front_ends']}"


@pytest.mark.parametrize("module", ("lab.cli", "lab.tui.runner", "lab.tui.sim_process", "lab.tui.launch", "lab.tui.state",
                                    "lab.tui.explain", "lab.tui.actions"))
def test_headless_parts_of_the_front_end_stay_headless(module):
    assert _probe(module)["front_ends"] == []


def test_the_screen_does_not_load_prompt_toolkit():
    code = "import sys, lab.tui.app; print('prompt_toolkit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_the_screen_loads_what_its_first_frame_needs_and_no_more():
    """Start-up: the assembler (images come from the cache), the Arm hardware (an x86 lab
    never needs it) and the lesson tutor (only with a lesson) load when first used."""
    later = ("lab.isa.assembler", "lab.hw.arm.cpu", "lab.isa.a64", "lab.lessons.tutor")
    # lab.session.live: what the simulation thread loads to boot the machine
    code = f"import sys, lab.tui.app, lab.session.live; print([m for m in {later!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    # ...and they are there when asked for: the package's entry points, an Arm core
    code = ("import sys, lab.isa; from lab.session import arm_view; from lab.hw.arm.cpu import ArmCpu; "
            "print(callable(lab.isa.assemble_file), arm_view.is_arm(object.__new__(ArmCpu)), arm_view.is_arm(1))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True True False", out.stdout + out.stderr


# -- the xenlab command -----------------------------------------------------------------
class _FakeApp:
    opened: list = []

    def __init__(self, target):
        self.target = target

    def run(self):
        _FakeApp.opened.append(self.target)


@pytest.fixture
def fake_screen(monkeypatch):
    import lab.tui.app
    import lab.tui.launch
    _FakeApp.opened = []
    monkeypatch.setattr(lab.tui.app, "make_app", lambda target=None, **kw: _FakeApp(target))
    # no machine boots behind the fake screen
    monkeypatch.setattr(lab.tui.launch, "start_runner", lambda target=None, **kw: None)
    return _FakeApp.opened


def test_xenlab_alone_opens_the_screen(fake_screen):
    from lab.cli import main
    assert main([]) == 0
    assert fake_screen == [None]


def test_xenlab_open_a_kernel(fake_screen):
    from lab.cli import main
    kernel = str(ROOT / "machines" / "kernels" / "native.s")
    assert main(["open", kernel]) == 0
    assert fake_screen == [kernel]


@pytest.mark.parametrize("target, message", (("no/such.s", "no/such.s: no such file"),
                                             ("README.md", "README.md: expected a kernel source (.s), a scenario (.toml) or an xl.cfg file")))
def test_xenlab_open_bad_target_is_one_line(fake_screen, capsys, monkeypatch, target, message):
    from lab.cli import main
    monkeypatch.chdir(ROOT)
    assert main(["open", target]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith(message) and "\n" not in err.strip()
    assert fake_screen == []
