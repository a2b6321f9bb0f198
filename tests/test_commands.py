"""The command language: one parser, its errors, and no dead ends (io, internal errors, reset, names)."""

from __future__ import annotations

import io as iolib

import pytest

from lab.errors import LabBug, UserError
from lab.paths import KERNELS, MACHINES
from lab.session import live
from lab.session.commands import REGISTRY, execute, parse
from lab.session.session import Session
from lab.session.targets import resolve_target


def open_session(name: str) -> Session:
    """A session on a machine named as a learner names it (a path, or a shipped machine)."""
    return live.open_session([name])


@pytest.fixture(scope="module")
def xen():
    """The default scenario (dom0, a PV and an HVM guest), opened from its file."""
    return open_session("default")


def bare() -> Session:
    return open_session(str(KERNELS / "native.s"))


# -- dead ends ----------------------------------------------------------------------
def test_io_with_no_argument_shows_the_focused_domain(xen):
    xen.set_focus("pv-guest")
    out = execute(xen, "io")
    assert out.startswith("d1 pv-guest: PV I/O") and "event channels" in out
    assert execute(xen, "io hvm-guest").startswith("d2 hvm-guest")


def test_an_internal_error_in_a_command_fails_that_command_only(monkeypatch, xen):
    from lab.session import io_state

    def broken(host, domid):
        raise TypeError("'VcpuRef' object is not callable")
    monkeypatch.setattr(io_state, "describe", broken)
    with pytest.raises(LabBug) as e:
        execute(xen, "io")
    msg = str(e.value)
    assert "io: internal error in the lab (TypeError: 'VcpuRef' object is not callable)" in msg
    assert "The session goes on" in msg
    assert "rflags" in execute(xen, "regs")            # the session goes on


@pytest.mark.parametrize("line, message", [
    ("until hypercall:mmu_updat", "no hypercall 'mmu_updat'; did you mean mmu_update?"),
    ("break hypercall:mmu_updat", "no hypercall 'mmu_updat'; did you mean mmu_update?"),
    ("until vmexit:IO_INSTRUCTON", "no vmexit 'IO_INSTRUCTON'; did you mean IO_INSTRUCTION"),
    ("until trap:#QQ", "no trap '#QQ'"),
    ("until hypercal", "unknown event kind 'hypercal' (did you mean hypercall?"),
    ("until ioport:serial", "ioport events are named by a port, a number"),
    ("events 5 hypercall:grant_table", "no hypercall 'grant_table'; did you mean grant_table_op"),
])
def test_event_names_are_checked_against_xens_tables(line, message):
    with pytest.raises(UserError) as e:
        parse(line)
    assert message in str(e.value)


@pytest.mark.parametrize("line", ["until trap:#PF", "until trap:PF", "until hypercall:mmu_update",
                                  "until vmexit:IO_INSTRUCTION", "until vmexit:VMMCALL", "until ioport:0x3f8",
                                  "until console:hello", "until any", "until hypercall,vmexit",
                                  "break xenstore:XS_READ", "break domain:crash"])
def test_good_event_patterns_parse(line):
    assert parse(line).command.name == line.split()[0]


@pytest.mark.parametrize("name", sorted(n for n, c in REGISTRY.items() if not c.args and c.parser is None))
def test_extra_arguments_to_a_command_without_arguments_are_an_error(name):
    with pytest.raises(UserError, match=f"{name}: unexpected 'extra'"):
        parse(f"{name} extra")


@pytest.mark.parametrize("line", ["step 3 4", "run 10 20", "until trap:#PF now", "walk 0x1000 0x2000",
                                  "focus 1 2", "io d1 d2", "disasm 0x1000 4 5", "break syscall now",
                                  "events 5 trap trap", "help step run", "compare a.s b.s", "open a b",
                                  "theme dark now", "speed 1 2"])
def test_extra_arguments_to_any_command_are_an_error(line):
    with pytest.raises(UserError, match="unexpected"):
        parse(line)


def test_unknown_commands_name_the_nearest():
    with pytest.raises(UserError, match=r"unknown command 'stpe' \(did you mean step"):
        parse("stpe")


# -- one language ----------------------------------------------------------------------
def test_every_command_is_noted_once_and_mistakes_are_not():
    s = bare()
    heard = []
    s.input_listeners.append(heard.append)
    execute(s, "step 2")
    with pytest.raises(UserError):
        execute(s, "step 2 3")
    assert [i.text for i in heard] == ["step 2"]


def test_screen_commands_parse_everywhere_but_run_on_the_screen_only():
    s = bare()
    assert parse("theme light").args == {"name": "light"}
    with pytest.raises(UserError, match="'theme' changes the screen, not the machine"):
        execute(s, "theme light")


def test_help_names_every_command_once_from_the_registry():
    text = execute(bare(), "help")
    for cmd in REGISTRY.values():
        assert text.count(cmd.usage + " ") >= 1, cmd.name
    assert "on the screen (xenlab open) also:" in text
    assert execute(bare(), "help until").startswith("until KIND[:NAME]")


# -- focus and stops ------------------------------------------------------------------
def test_until_focuses_the_vcpu_where_the_event_fired():
    s = open_session("default")
    s.set_focus("pv-guest")
    out = execute(s, "until vmexit:IO_INSTRUCTION")
    assert s.focused.label.startswith("hvm-guest")
    assert "hvm-guest (hvm): ring 0 non-root" in out          # and says where it stopped


def test_focus_lists_moves_and_reaches_dom0s_services(xen):
    assert execute(xen, "focus 0") == "focus: Domain-0 (d0): its vCPU runs dom0's services, not guest code"
    with pytest.raises(UserError, match="Domain-0 runs no guest code in the lab"):
        execute(xen, "regs")
    assert execute(xen, "focus next").startswith("focus: pv-guest")
    assert execute(xen, "focus next").startswith("focus: hvm-guest")
    listing = execute(xen, "focus")
    assert "* 2.0  hvm-guest (hvm) vcpu 0" in listing and "0.0  Domain-0 (pv) vcpu 0: dom0 services" in listing
    assert [t.spec for t in xen.focus_targets()] == ["0.0", "1.0", "2.0"]


# -- targets ---------------------------------------------------------------------------
def test_shipped_machines_open_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_target("five-modes") == MACHINES / "five-modes.toml"
    assert resolve_target("pv-guest.cfg") == MACHINES / "pv-guest.cfg"
    assert resolve_target("native.s") == KERNELS / "native.s"
    (tmp_path / "mine.toml").write_text("")
    assert resolve_target("mine.toml").resolve() == (tmp_path / "mine.toml").resolve()   # cwd first
    with pytest.raises(UserError, match="nosuch: no such file .*five-modes"):
        resolve_target("nosuch")


def test_open_in_a_running_session_says_how_to_open_another():
    s = bare()
    with pytest.raises(UserError, match="keeps its machine .*'xenlab open PATH'"):
        execute(s, "open default")


# -- the shell --------------------------------------------------------------------------
def test_shell_script_exit_status_tells_a_mistake_from_a_bug(monkeypatch):
    from lab.repl import answer, run_script
    out = iolib.StringIO()
    assert run_script(bare(), ["step", "regs"], out) == 0
    assert run_script(bare(), ["step 1 2"], out) == 2
    s = bare()
    monkeypatch.setattr(s.machine, "step", lambda: 1 // 0)
    assert run_script(s, ["step"], out) == 1
    assert "internal error in the lab" in answer(s, "step")      # the interactive shell goes on
    assert "rflags" in answer(s, "regs")


def test_exec_io_with_no_argument_and_a_machine_by_name(capsys, tmp_path, monkeypatch):
    from lab.cli import main
    monkeypatch.chdir(tmp_path)                       # outside the lab's folder
    assert main(["exec", "default", "-c", "io"]) == 0
    assert "d1 pv-guest: PV I/O" in capsys.readouterr().out


def test_the_summary_names_system_calls():
    s = bare()
    execute(s, "run")
    text = execute(s, "summary")
    assert "write (1)" in text and "exit (60)" in text


def test_compare_draws_cycles_as_bars_split_by_who_did_the_work():
    from lab.session.compare import ModeResult, format_chart
    native = ModeResult("native", "", cycles=1000, ratio=1.0)
    pv = ModeResult("pv", "", cycles=1500, xen_cycles=500, dom0_cycles=500, ratio=2.0)
    lines = format_chart([native, pv], width=20).splitlines()
    assert lines[0].startswith("cycles per mode") and "▓ Xen" in lines[0]
    assert lines[1].startswith("native  " + "█" * 10 + " " * 10)
    assert lines[2].startswith("pv      " + "█" * 10 + "▓" * 5 + "░" * 5)
    assert lines[2].rstrip().endswith("2,000  2.00x")
