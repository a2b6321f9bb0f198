"""The ``xenlab`` command: help, version, asm, run, bench, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab import __version__
from lab.cli import COMMANDS, main
from lab.trace import read_jsonl
from test_machine import expected_checksum


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"xenlab {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name, summary, _, _ in COMMANDS:
        assert name in out and summary in out


def test_asm_listing(capsys):
    code, out, err = run(capsys, "asm", "machines/programs/workload.s", "--listing")
    assert code == 0 and not err
    assert "0000000000400000" in out and "mov r15, rdi" in out


def test_asm_writes_an_image(capsys, tmp_path):
    target = tmp_path / "w.img"
    code, out, err = run(capsys, "asm", "machines/programs/workload.s", "-o", str(target))
    assert code == 0 and target.stat().st_size > 0
    from lab.isa.image import Image
    img = Image.from_bytes(target.read_bytes())
    assert img.entry == 0x400000


@pytest.mark.parametrize("argv,needle", [
    (["asm", "no/such/file.s"], "no/such/file.s: no such file"),
    (["run", "no/such/kernel.s"], "no such file"),
    (["run", "machines/kernels/native.s", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["run", "machines/kernels/native.s", "--steps", "many"], "not a number"),
    (["run", "machines/kernels/native.s", "--until", "nonsense:x"], "unknown event kind 'nonsense'"),
    (["nosuchcommand"], "invalid choice"),
    (["run", "README.md"], "expected a kernel source"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_syntax_error_names_file_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.s"
    bad.write_text("_start:\n    mov rxx, 1\n")
    code, out, err = run(capsys, "asm", str(bad))
    assert code == 2
    assert err.strip().endswith("bad.s:2:9: unknown register 'rxx'")


@pytest.mark.machine
def test_run_prints_console_and_summary(capsys):
    code, out, err = run(capsys, "run", "machines/kernels/native.s", "--summary")
    assert code == 0
    assert "workload: checksum 0x" in out
    assert "stopped: power off" in out
    assert "#PF (14)" in out and "-- bare metal v0 --" in out


@pytest.mark.machine
def test_run_until_and_trace(capsys, tmp_path):
    trace = tmp_path / "t.jsonl"
    code, out, err = run(capsys, "run", "machines/kernels/native.s", "--until", "trap:#PF", "--trace", str(trace))
    assert code == 0 and "reached trap event" in out
    header, events = read_jsonl(trace.read_text().splitlines())
    assert header["format"] == "xenlab-trace" and header["version"] == 1
    traps = [e for e in events if e.kind == "trap"]
    assert len(traps) == 1 and traps[0].data["mnemonic"] == "#PF", "the run stops at the first #PF"
    assert traps[0].seq >= len(events) - 3
    assert [e.seq for e in events] == list(range(len(events)))


@pytest.mark.machine
def test_run_json(capsys):
    code, out, err = run(capsys, "run", "machines/kernels/native.s", "--json", "--steps", "5000")
    data = json.loads(out)
    assert data["instructions"] == 5000 and data["stopped"] is None


@pytest.mark.machine
def test_bench_json_has_instructions_per_second(capsys):
    code, out, err = run(capsys, "bench", "--json", "--rounds", "1")
    data = json.loads(out)
    assert data["instructions_per_second"] > 0 and "checksum" in data["checksum"]
    # The benchmark script divides by the run's CPU time: the run's, not the process's.
    assert 0 < data["cpu_seconds"] <= data["seconds"] * 4 + 0.5


def test_the_installed_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "run", "machines/kernels/native.s", "--steps", "100"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "after 100 instructions" in r.stdout


@pytest.mark.machine
def test_run_a_native_scenario_and_a_xen_scenario(capsys):
    code, out, err = run(capsys, "run", "machines/native.toml")
    assert code == 0 and "stopped: power off" in out and "checksum 0x" in out
    code, out, err = run(capsys, "run", "machines/default.toml")
    assert code == 0
    assert "--- pv-guest (d1, pv) ---" in out and "--- hvm-guest (d2, hvm) ---" in out
    assert out.count(f"workload: checksum {expected_checksum():#018x}") == 2


def test_bad_scenario_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[host]\nvendor = \"arm\"\n")
    code, out, err = run(capsys, "run", str(bad))
    assert code == 2 and 'vendor must be "intel" or "amd"' in err and len(err.strip().splitlines()) == 1


@pytest.mark.machine
def test_xl_against_the_default_scenario(capsys):
    code, out, err = run(capsys, "xl", "--steps", "3000000", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Name") and "Domain-0" in lines[1]
    assert any(ln.startswith("pv-guest") and "---s--" in ln for ln in lines)
    code, out, err = run(capsys, "xl", "--steps", "3000000", "console", "pv-guest")
    assert f"workload: checksum {expected_checksum():#018x}" in out
    code, out, err = run(capsys, "xl", "console", "nosuch")
    assert code == 2 and "invalid domain identifier 'nosuch'" in err


def test_xl_options_after_the_command_go_to_xl(capsys):
    code, out, err = run(capsys, "xl", "dmesg", "-c")
    assert code == 0 and out.startswith("(XEN) Xen version 4.23")
    code, out, err = run(capsys, "xl", "console", "-t", "serial", "Domain-0")
    assert code == 0 and out.startswith("(no console output")
    code, out, err = run(capsys, "xl", "dmesg", "-x")
    assert code == 2 and "usage: xl dmesg [-c]" in err


@pytest.mark.machine
def test_exec_runs_lab_commands_headless(capsys):
    code, out, err = run(capsys, "exec", "machines/default.toml", "-c",
                         "break hypercall:mmu_update; run; xl list; break clear; focus hvm-guest; "
                         "until vmexit:IO_INSTRUCTION")
    assert code == 0, err
    assert "breakpoint: hypercall mmu_update(1) -> 0" in out
    assert "pv-guest                                     1    32     1     r-----" in out, "stopped at the breakpoint"
    assert "focus: hvm-guest (hvm) vcpu 0" in out
    assert "vmexit IO_INSTRUCTION(30)" in out


@pytest.mark.machine
def test_exec_stops_at_a_bad_command(capsys):
    code, out, err = run(capsys, "exec", "machines/native.toml", "-c", "step 2; frobnicate; step")
    assert code == 2 and "unknown command 'frobnicate'" in err
    assert out.count("xen> ") == 2
