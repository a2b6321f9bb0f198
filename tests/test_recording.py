"""Recorded sessions: record, replay exactly, survive damage, detect divergence, travel in time."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import UserError
from lab.paths import MACHINES
from lab.session.commands import execute
from lab.session.live import open_session
from lab.session.recorder import stop_recording
from lab.session.recording import load_recording
from lab.session.replay import replay, write_cast

NATIVE = str(MACHINES / "kernels" / "native.s")
DEFAULT = str(MACHINES / "default.toml")
XEN_SCRIPT = ["run 20000", "xl list", "mark booted", "run 15000", "console pv-guest hello",
              "run 4000", "back 300", "step 2", "xl destroy hvm-guest", "run 3000"]
NATIVE_SCRIPT = ["step 5", "run 20000", "mark here", "break hypercall", "run 30000", "back 77", "step 3",
                 "seek here", "run 1000"]


def record(tmp_path: Path, target: str | list[str], lines: list[str],
           name: str = "s.jsonl") -> tuple[Path, list[str], str]:
    path = tmp_path / name
    session = open_session([target] if isinstance(target, str) else target, record=path)
    digests = []
    for line in lines:
        try:
            execute(session, line)
        except UserError:
            pass
        digests.append(session.machine.digest())
    trace = io.StringIO()
    session.machine.trace.write_jsonl(trace, {})
    stop_recording(session)
    session.stop_watching()
    return path, digests, trace.getvalue()


def test_record_then_replay_is_exact_on_bare_metal(tmp_path):
    path, digests, trace = record(tmp_path, NATIVE, NATIVE_SCRIPT)
    result = replay(path)
    assert result.divergence is None, result.summary()
    assert result.inputs == len(NATIVE_SCRIPT)
    assert result.digests_checked >= len(NATIVE_SCRIPT)
    assert result.session.machine.digest() == digests[-1]
    again = io.StringIO()
    result.session.machine.trace.write_jsonl(again, {})
    assert again.getvalue() == trace            # the trace, byte for byte


@pytest.mark.parametrize("scenario", sorted(p.name for p in MACHINES.glob("*.toml") if p.name != "costs.toml"))
def test_every_shipped_scenario_replays_exactly(tmp_path, scenario):
    target = str(MACHINES / scenario)
    path, digests, trace = record(tmp_path, target, ["run 6000", "xl list", "step 3", "run 2000"])
    result = replay(path)
    assert result.divergence is None, result.summary()
    assert result.session.machine.digest() == digests[-1]
    again = io.StringIO()
    result.session.machine.trace.write_jsonl(again, {})
    assert again.getvalue() == trace


def small_intervals(monkeypatch, every: int) -> None:
    """Digest lines inside runs every ``every`` instructions instead of every million."""
    import lab.session.recording as recording
    monkeypatch.setattr(recording, "DIGEST_EVERY", every)


def test_guest_configs_of_the_other_modes_replay_exactly(tmp_path):
    """The modes no shipped scenario holds: 32-bit PV and HVM with shadow paging, as xl.cfg files."""
    targets = [str(MACHINES / "pv32-guest.cfg"), str(MACHINES / "hvm-shadow.cfg")]
    path, digests, trace = record(tmp_path, targets, ["run 8000", "step 2", "run 1500"])
    assert load_recording(path).build["targets"] == ["machines/pv32-guest.cfg", "machines/hvm-shadow.cfg"]
    result = replay(path)
    assert result.divergence is None, result.summary()
    assert result.session.machine.digest() == digests[-1]
    again = io.StringIO()
    result.session.machine.trace.write_jsonl(again, {})
    assert again.getvalue() == trace


def test_xen_session_with_time_travel_replays(tmp_path, monkeypatch):
    small_intervals(monkeypatch, 7000)
    path, digests, _ = record(tmp_path, DEFAULT, XEN_SCRIPT)
    rec = load_recording(path)
    assert rec.complete and rec.warning is None
    assert len([d for d in rec.digests() if d.obj["at"] == "interval"]) >= 4
    assert [m.obj["name"] for m in rec.markers()] == ["booted"]
    result = replay(rec)
    assert result.divergence is None, result.summary()
    assert result.session.machine.digest() == digests[-1]


def test_recording_is_self_contained(tmp_path, monkeypatch):
    """Every file the machine was built from is inside, and replay reads nothing else."""
    path, digests, _ = record(tmp_path, NATIVE, ["run 3000"])
    rec = load_recording(path)
    assert "machines/kernels/native.s" in rec.files
    assert "machines/costs.toml" in rec.files
    import lab.sources as sources

    def refuse(self, p):
        raise AssertionError(f"replay read {p} from the disk")
    monkeypatch.setattr(sources.FileSource, "read_bytes", refuse)
    monkeypatch.setenv("XENLAB_CACHE", str(tmp_path / "empty-cache"))
    result = replay(rec)
    assert result.divergence is None and result.session.machine.digest() == digests[-1]


def test_a_missing_source_is_one_clean_message(tmp_path):
    path, _, _ = record(tmp_path, NATIVE, ["run 100"])
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del header["sources"]["machines/kernels/native.s"]
    lines[0] = json.dumps(header)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="native.s"):
        replay(path)


def test_killed_at_any_line_replays_its_prefix(tmp_path):
    path, _, _ = record(tmp_path, NATIVE, NATIVE_SCRIPT)
    raw = path.read_bytes()
    ends = [i + 1 for i, b in enumerate(raw) if b == ord("\n")]
    rng = random.Random(11)
    for cut in sorted(rng.sample(ends[1:-1], 4)) + [ends[-1] - 5, ends[3] + 7]:
        damaged = tmp_path / "cut.jsonl"
        damaged.write_bytes(raw[:cut])
        rec = load_recording(damaged)
        assert not rec.complete
        assert "ends early" in rec.warning or "no end line" in rec.warning
        result = replay(rec)
        assert result.divergence is None, result.summary()


@pytest.mark.parametrize("damage", ["flip", "swap", "version", "not-json", "empty", "garbage-middle", "trace"])
def test_damaged_recordings_give_one_clean_message(tmp_path, capsys, damage):
    path, _, _ = record(tmp_path, NATIVE, NATIVE_SCRIPT[:4])
    lines = path.read_text().splitlines()
    rng = random.Random(damage)
    if damage == "flip":
        raw = bytearray(path.read_bytes())
        for _ in range(3):
            i = rng.randrange(len(lines[0]) + 1, len(raw) - 200)
            raw[i] ^= 0x5A
        path.write_bytes(bytes(raw))
    elif damage == "swap":
        i = next(k for k, ln in enumerate(lines) if '"t":"input","n":1' in ln)
        j = next(k for k, ln in enumerate(lines) if '"t":"input","n":2' in ln)
        lines[i], lines[j] = lines[j], lines[i]
        path.write_text("\n".join(lines) + "\n")
    elif damage == "version":
        header = json.loads(lines[0])
        header["version"] = 99
        path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    elif damage == "not-json":
        path.write_text("this is not a recording\n")
    elif damage == "empty":
        path.write_text("")
    elif damage == "garbage-middle":
        lines.insert(3, '{"t": "input", "n": "x"}')
        path.write_text("\n".join(lines) + "\n")
    elif damage == "trace":
        path.write_text(json.dumps({"format": "xenlab-trace", "version": 1}) + "\n")
    code = main(["replay", str(path), "--verify"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2)
    if code == 2:
        assert len(err) == 1 and "s.jsonl:" in err[0], err
        assert "Traceback" not in err[0]


def test_divergence_names_line_instruction_and_what(tmp_path, capsys):
    path, _, _ = record(tmp_path, NATIVE, ["run 5000", "run 3000", "run 1000"])
    text = path.read_text().replace('"text":"run 3000"', '"text":"run 3001"')
    path.write_text(text)
    code = main(["replay", str(path), "--verify"])
    out = capsys.readouterr().out
    assert code == 1
    lines = text.splitlines()
    bad = next(i for i, ln in enumerate(lines, 1) if '"t":"digest"' in ln and '"n":1' in ln)
    assert f"s.jsonl:{bad}: diverged at instruction 8,001" in out
    assert "vCPU bare ran 8,001 instructions, recorded 8,000" in out


def test_seek_lands_on_recorded_digests_bare_metal(tmp_path):
    session = open_session([NATIVE])
    tm = session.time_machine
    at_input = []
    rng = random.Random(5)
    for k in range(12):
        execute(session, rng.choice(["run 7000", "step 4", "run 40000", "console bare hi", "run 300000"]))
        at_input.append((len(tm.steps), session.machine.digest(), tm.now()))
    for i, digest, insns in rng.sample(at_input, 8):
        execute(session, f"seek {insns}") if rng.random() < 0.5 else tm.goto(i, None)
        assert session.machine.digest() == digest
    session.stop_watching()


FAST_PATH_CASES = {
    "native": (NATIVE, ["run 30000", "step 7", "run 600000", "console bare ls", "run 90000"], 6),
    "xen": (DEFAULT, ["run 12000", "step 3", "run 9000", "console pv-guest ls", "run 4000"], 3),
}


@pytest.mark.parametrize("machine", sorted(FAST_PATH_CASES))
def test_fast_path_agrees_with_rebuilding(tmp_path, machine):
    """Where the machine saves and loads its state, travel through saved states must land on
    exactly the state a rebuild from the sources reaches (where it cannot, both are rebuilds)."""
    target, lines, n = FAST_PATH_CASES[machine]
    session = open_session([target])
    tm = session.time_machine
    for line in lines:
        execute(session, line)
    end = tm.now()
    rng = random.Random(9)
    points = sorted(rng.randrange(1, end) for _ in range(n))
    fast = []
    for x in points:
        tm.seek_insns(x)
        fast.append(session.machine.digest())
    if machine == "native":
        assert tm.can_snapshot and tm._saved
    tm.can_snapshot = False
    tm._saved.clear()
    for x, want in zip(points, fast):
        tm._rebuild()               # from the sources, each time: nothing carried over
        tm.seek_insns(x)
        assert session.machine.digest() == want, f"instruction {x}"
    session.stop_watching()


def test_seek_and_back_on_a_xen_host_land_on_recorded_digests(tmp_path):
    """The Xen host: across xl create, console input and destroy; whichever path is available."""
    session = open_session([DEFAULT])
    tm = session.time_machine
    cfg = str(MACHINES / "pvh-guest.cfg")
    seen = []
    for line in ["run 15000", f"xl create {cfg}", "run 12000", "console pv-guest hi", "run 9000",
                 "xl destroy hvm-guest", "run 5000"]:
        execute(session, line)
        seen.append((len(tm.steps), session.machine.digest(), tm.now()))
    rng = random.Random(3)
    for i, digest, _ in rng.sample(seen, 3):
        tm.goto(i, None)
        assert session.machine.digest() == digest
    execute(session, "seek end")
    assert session.machine.digest() == seen[-1][1]
    out = execute(session, "back hypercall")
    assert out.startswith("back to #") and "hypercall" in out
    here = tm.now()
    execute(session, "back 10")
    assert tm.now() == here - 10
    session.stop_watching()


def test_new_input_in_the_past_starts_a_new_future(tmp_path):
    session = open_session([NATIVE])
    tm = session.time_machine
    execute(session, "run 10000")
    execute(session, "run 10000")
    execute(session, "back 5000")
    execute(session, "step 1")
    assert tm.extent() == 15001
    with pytest.raises(UserError, match="outside this session"):
        execute(session, "seek 20000")
    session.stop_watching()


def test_commands_refuse_clearly(tmp_path):
    session = open_session([NATIVE])
    with pytest.raises(UserError, match="no marker"):
        execute(session, "seek nowhere")
    with pytest.raises(UserError, match="start of the session"):
        execute(session, "back")
    with pytest.raises(UserError, match="one word"):
        execute(session, "mark 9lives")
    with pytest.raises(UserError, match="not a number or one of"):
        execute(session, "back sideways")
    session.stop_watching()


def test_record_on_mid_session_replays(tmp_path):
    session = open_session([NATIVE])
    execute(session, "run 20000")
    execute(session, "back 500")
    out = execute(session, f"record on {tmp_path / 'later.jsonl'}")
    assert "recording to" in out
    execute(session, "run 700")
    digest = session.machine.digest()
    execute(session, "record off")
    result = replay(tmp_path / "later.jsonl")
    assert result.divergence is None, result.summary()
    assert result.session.machine.digest() == digest
    session.stop_watching()


def test_cli_record_replay_to_marker_trace_and_cast(tmp_path, capsys):
    rec = tmp_path / "c.jsonl"
    assert main(["exec", NATIVE, "--record", str(rec), "-c", "run 4000; mark there; run 2000"]) == 0
    capsys.readouterr()
    cast, trace = tmp_path / "c.cast", tmp_path / "t.jsonl"
    assert main(["replay", str(rec), "--to", "there", "--trace", str(trace), "--export-cast", str(cast)]) == 0
    out = capsys.readouterr().out
    assert "at instruction 4,000" in out
    assert json.loads(trace.read_text().splitlines()[0])["format"] == "xenlab-trace"
    header = json.loads(cast.read_text().splitlines()[0])
    assert header["version"] == 2
    played = subprocess.run([sys.executable, "-m", "asciinema", "cat", str(cast)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert played.returncode == 0, played.stderr
    assert "xen> mark there" in played.stdout and "xen> run 2000" in played.stdout


def test_cli_run_record_replays(tmp_path, capsys):
    rec = tmp_path / "r.jsonl"
    assert main(["run", NATIVE, "--steps", "5000", "--record", str(rec)]) == 0
    capsys.readouterr()
    assert main(["replay", str(rec), "--verify"]) == 0
    assert "all match (complete)" in capsys.readouterr().out


def test_a_screen_run_outside_the_command_language_is_an_input(tmp_path):
    path = tmp_path / "screen.jsonl"
    session = open_session([NATIVE], record=path)
    execute(session, "step 2")
    session.run(12345)              # what the screen's run key does
    execute(session, "step 1")
    digest = session.machine.digest()
    stop_recording(session)
    rec = load_recording(path)
    assert [ln.obj["kind"] for ln in rec.inputs()] == ["command", "run", "command"]
    result = replay(rec)
    assert result.divergence is None and result.session.machine.digest() == digest
    session.stop_watching()


def test_cast_is_written_to_a_stream(tmp_path):
    path, _, _ = record(tmp_path, NATIVE, ["run 2000"])
    out = io.StringIO()
    write_cast(replay(path), out)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rows[0]["version"] == 2 and all(r[1] == "o" for r in rows[1:])
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])


def test_digests_inside_long_runs_find_a_divergence_there(tmp_path, monkeypatch):
    small_intervals(monkeypatch, 4000)
    path, digests, _ = record(tmp_path, NATIVE, ["run 10000", "run 10000"])
    rec = load_recording(path)
    inside = [d for d in rec.digests() if d.obj["at"] == "interval"]
    assert [d.obj["insns"] for d in inside] == [4000, 8000, 12000, 16000, 20000]
    assert replay(rec).divergence is None
    # a different state in the middle of the second run: named at that line, not at its end
    lines = path.read_text().splitlines()
    target = inside[3].no - 1
    obj = json.loads(lines[target])
    obj["digest"] = "0" * 16
    lines[target] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")
    result = replay(path)
    assert result.divergence is not None
    assert result.divergence.line == inside[3].no and result.divergence.insns == 16000


def test_random_damage_never_escapes_as_a_traceback(tmp_path, capsys):
    path, _, _ = record(tmp_path, NATIVE, ["run 300", "mark a", "step 2"])
    raw = path.read_bytes()
    rng = random.Random(77)
    for trial in range(25):
        damaged = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(damaged))
            damaged[i] = rng.choice(b'{}[]",:0123456789abcdefxyz \n\x00\xff')
        bad = tmp_path / f"d{trial}.jsonl"
        bad.write_bytes(bytes(damaged))
        code = main(["replay", str(bad), "--verify"])
        out, err = capsys.readouterr()
        assert code in (0, 1, 2), (trial, code)
        assert "internal error" not in err and "Traceback" not in err, (trial, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, (trial, err)


def test_a_lab_killed_mid_session_leaves_a_replayable_file(tmp_path):
    """SIGKILL while recording: the file replays up to its last complete line, and says so."""
    import os
    import signal
    import time
    path = tmp_path / "killed.jsonl"
    script = tmp_path / "long.txt"
    script.write_text("\n".join(["run 40000", "regs"] * 400) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "exec", NATIVE, "--record", str(path),
                             "-f", str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if path.exists() and path.read_bytes().count(b'"t":"input"') >= 6:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    rec = load_recording(path)
    assert not rec.complete and rec.warning
    assert len(rec.inputs()) >= 6
    result = replay(rec)
    assert result.divergence is None, result.summary()
    assert "ends early" in result.summary()
