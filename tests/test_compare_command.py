"""compare in the command language takes the command line's options (--workload, --scenario)."""

from __future__ import annotations

import pytest

from lab.errors import UserError
from lab.paths import MACHINES
from lab.session.commands import parse

HELLO = str(MACHINES / "examples" / "hello-user.s")
NO_VTX = str(MACHINES / "no-vtx.toml")


@pytest.mark.parametrize("line, args", [
    ("compare", {"modes": None, "program": None, "scenario": None}),
    ("compare prog.s", {"modes": None, "program": "prog.s", "scenario": None}),
    ("compare --workload prog.s --modes pv,hvm", {"modes": ["pv", "hvm"], "program": "prog.s", "scenario": None}),
    ("compare --workload=prog.s --scenario=host.toml", {"modes": None, "program": "prog.s", "scenario": "host.toml"}),
    ("compare --scenario host.toml prog.s", {"modes": None, "program": "prog.s", "scenario": "host.toml"}),
])
def test_compare_parses_the_command_lines_options(line, args):
    assert parse(line).args == args


@pytest.mark.parametrize("line, message", [
    ("compare --workload a.s b.s", "give the program once"),
    ("compare --workload", "--workload needs a value"),
    ("compare --scenario", "--scenario needs a value"),
    ("compare --scenario a.toml --scenario b.toml", "--scenario given twice"),
    ("compare --json", "unexpected '--json'"),
    ("compare a.s b.s", "unexpected 'b.s'"),
])
def test_compare_option_mistakes_are_one_line(line, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse(line)


def test_compare_with_a_missing_scenario_names_it():
    call = parse("compare --modes native --scenario no-such-host.toml")
    with pytest.raises(UserError, match="no-such-host.toml: no such file"):
        call.command.run(None, **call.args)


@pytest.mark.machine
def test_compare_runs_a_workload_of_ones_own_on_another_host():
    """Your own program in two modes on a host without VT-x: the PV guest runs it, the
    HVM guest is refused (as xl create is there), as `xenlab compare` says too."""
    call = parse(f"compare --modes pv,hvm --workload {HELLO} --scenario {NO_VTX}")
    text = call.command.run(None, **call.args)
    rows = {line.split("  ")[0]: line.split()[-2:] for line in text.splitlines() if "  " in line}
    assert rows["xl create"] == ["ok", "refused"]
    assert rows["system calls"][1] == "0" and int(rows["system calls"][0]) > 0
    assert "cycles per mode" in text


def test_only_the_compare_process_runs_without_the_cyclic_collector(monkeypatch, capsys):
    """`xenlab compare` as a process turns the collector off and freezes its objects in its
    last exit handler (finalization then has nothing to walk); main() called in a caller's
    process leaves its collector alone."""
    import gc
    import sys

    from lab import cli
    registered, disabled = [], []
    monkeypatch.setattr(cli.atexit, "register", registered.append)
    monkeypatch.setattr(cli.gc, "disable", lambda: disabled.append(True))
    monkeypatch.setattr(sys, "argv", ["xenlab", "compare", "--modes", "nosuch"])
    assert cli.main() == 2
    assert registered == [gc.freeze] and disabled == [True]
    registered.clear()
    disabled.clear()
    assert cli.main(["compare", "--modes", "nosuch"]) == 2
    monkeypatch.setattr(sys, "argv", ["xenlab", "asm", "machines/programs/workload.s", "--listing"])
    assert cli.main() == 0
    assert registered == [] and disabled == []
    capsys.readouterr()


def test_compare_loads_neither_the_assembler_nor_xl_s_table_formats_when_it_needs_none():
    """A warm compare imports only what it runs: the kernels come from the image cache (the
    assembler is loaded on a miss only) and xl's list/info tables are another command's."""
    import subprocess
    import sys
    code = ("import sys; import lab.cli, lab.session.compare, lab.session.scenario, lab.dom0.toolstack; "
            "print(sorted(m for m in ('lab.isa.assembler', 'lab.dom0.xlformat') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
