"""The recording format's digest lines: compact, light where they may be, and still able to
name what differs (a domain, a vCPU's registers, a machine frame)."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path

import pytest

from lab.cli import main
from lab.hw.memory import PAGE_SIZE, MachineMemory
from lab.paths import MACHINES
from lab.session.commands import execute
from lab.session.live import open_session
from lab.session.recorder import stop_recording
from lab.session.recording import VERSION, pack_frames, unpack_frames
from lab.session.replay import replay

NATIVE = str(MACHINES / "kernels" / "native.s")
DEFAULT = str(MACHINES / "default.toml")


@pytest.fixture
def every_4000(monkeypatch):
    import lab.session.recording as recording
    monkeypatch.setattr(recording, "DIGEST_EVERY", 4000)


def record(tmp_path: Path, target: str, lines: list[str], name: str = "s.jsonl") -> Path:
    path = tmp_path / name
    session = open_session([target], record=path)
    for line in lines:
        execute(session, line)
    stop_recording(session)
    session.stop_watching()
    return path


def digest_lines(path: Path) -> list[tuple[int, dict]]:
    return [(no, obj) for no, obj in enumerate((json.loads(x) for x in path.read_text().splitlines()), 1)
            if obj.get("t") == "digest"]


def test_packed_frames_round_trip():
    rng = random.Random(5)
    for _ in range(40):
        frames: dict[int, int] = {}
        mfn = rng.randrange(0, 1 << 20)
        for _ in range(rng.randrange(0, 200)):
            mfn += rng.choice([1, 1, 1, 2, 300, 1 << 18])
            value = rng.choice([0, 7, 7, rng.randrange(1 << 32)])
            for k in range(rng.choice([1, 1, 5])):          # ranges of equal frames too
                frames[mfn + k] = value
            mfn += 5
        assert unpack_frames(pack_frames(frames)) == frames
    same = {0x100 + k: 1234 for k in range(256)}
    assert len(pack_frames(same)) <= 12                     # a range of equal frames is one value


@pytest.mark.parametrize("bad", ["!!not base64!!", "gAI=", "/////w==",
                                 # a run of 2**56 equal frames: refused, not built
                                 base64.b64encode(bytes([0, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
                                                         1, 2, 3, 4])).decode()])
def test_damaged_frames_are_refused_with_the_line(bad):
    with pytest.raises(ValueError):
        unpack_frames(bad)


def test_a_damaged_frames_field_is_one_clean_message(tmp_path, capsys):
    path = record(tmp_path, NATIVE, ["run 3000", "regs", "run 2000"])
    lines = path.read_text().splitlines()
    no, obj = next((no, obj) for no, obj in digest_lines(path) if "frames" in obj and no < len(lines) - 3)
    obj["frames"] = obj["frames"][:5] + "@" + obj["frames"][6:]
    lines[no - 1] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(path), "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"s.jsonl:{no}: bad digest line: the frames are not base64"), err


def test_the_old_format_is_refused_with_one_message(tmp_path, capsys):
    path = record(tmp_path, NATIVE, ["run 100"])
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == VERSION == 2
    header["version"] = 1
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    assert main(["replay", str(path), "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.jsonl:1: recording format version 1" in err[0]
    assert "record the session again" in err[0]


def test_digest_lines_hold_only_what_changed_and_the_memory_every_so_often(tmp_path, every_4000):
    path = record(tmp_path, NATIVE, ["run 3000", "regs", "run 10000", "regs", "run 100"])
    lines = digest_lines(path)
    by_at = [obj["at"] for _, obj in lines]
    assert by_at[0] == "start" and by_at[-1] == "end" and "interval" in by_at
    full = [obj for _, obj in lines if "digest" in obj]
    light = [obj for _, obj in lines if "digest" not in obj]
    assert full and light
    assert all(len(obj["digest"]) == 16 for obj in full)
    assert all("frames" not in obj for obj in light)
    # a line after 'regs' (nothing changed) holds no vCPU, domain or frame at all
    after_regs = [obj for _, obj in lines if obj["at"] == "input" and obj["n"] in (1, 3)]
    assert after_regs and all(set(obj) == {"t", "at", "n", "insns", "seq"} for obj in after_regs)
    # the memory is covered at least every three quarters of digest_every, and at the end
    covered = [obj["insns"] for obj in full]
    assert all(b - a <= 4000 + 3000 for a, b in zip(covered, covered[1:]))
    assert "digest" in lines[-1][1]
    assert replay(path).divergence is None


def test_divergence_in_memory_names_the_frame(tmp_path, every_4000, capsys):
    """Console input the guest has not read yet: only its ring's frame differs."""
    path = record(tmp_path, DEFAULT, ["run 20000", "console pv-guest hello", "run 10000"])
    path.write_text(path.read_text().replace("console pv-guest hello", "console pv-guest hellp"))
    assert main(["replay", str(path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "diverged at instruction" in out and "machine frame 0x" in out, out


def test_divergence_names_the_domains(tmp_path, every_4000, capsys):
    path = record(tmp_path, DEFAULT, ["run 20000", "xl pause hvm-guest", "run 5000"])
    text = path.read_text()
    path.write_text(text.replace('"text":"xl pause hvm-guest"', '"text":"xl pause pv-guest"'))
    assert main(["replay", str(path), "--verify"]) == 1
    out = capsys.readouterr().out
    line = next(no for no, obj in digest_lines(path) if obj["at"] == "input" and obj["n"] == 1)
    assert f"s.jsonl:{line}: diverged at instruction 20,000: domain d1's state; domain d2's state" in out


def test_divergence_names_a_vcpus_registers(tmp_path, capsys):
    path = record(tmp_path, NATIVE, ["run 3000", "run 2000"])
    lines = path.read_text().splitlines()
    no, obj = next((no, obj) for no, obj in digest_lines(path) if obj["at"] == "input" and obj["n"] == 0)
    assert "digest" not in obj                               # a light line: vCPUs, domains, trace
    obj["cpus"]["bare"][2] ^= 1                              # recorded: other registers, same rip
    lines[no - 1] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert f"s.jsonl:{no}: diverged at instruction 3,000: vCPU bare registers or control state" in out


def test_memory_digest_follows_every_kind_of_write():
    """Frame hashes are kept between digests: a write by any path must show, as a fresh memory
    holding the same bytes hashes them."""
    def fresh_digest(mem: MachineMemory) -> str:
        other = MachineMemory(mem.size)
        for mfn, f in mem.frames.items():
            other.frame(mfn)[:] = f
        h = hashlib.sha256()
        other.digest_into(h)
        return h.hexdigest()

    def digest(mem: MachineMemory) -> str:
        h = hashlib.sha256()
        mem.digest_into(h)
        return h.hexdigest()
    mem = MachineMemory(64 * PAGE_SIZE)
    seen = {digest(mem)}
    mem.write(0x1000, b"abc")
    saved = mem.save_state()
    state = {**saved, "frames": saved["frames"].value}       # as the snapshot keeper hands it back
    steps = [lambda: mem.frame(1).__setitem__(5, 9),          # the CPU's fast path: the bytearray itself
             lambda: mem.write_u64(0x3008, 42),
             lambda: mem.zero_frame(1),
             lambda: mem.load_state(state),                   # frame 3 dropped again
             lambda: mem.frame(7)]                            # a zero frame counts as absent
    for step in steps:
        step()
        d = digest(mem)
        assert d == fresh_digest(mem)
        seen.add(d)
    assert len(seen) == 5                                     # every step but the last changed it
    assert mem.frame_hashes() == {1: hashlib.sha256(bytes(mem.frame(1))).digest()[:16]}


def test_travel_writes_no_interval_lines_and_going_back_covers_the_memory_again(tmp_path, every_4000):
    path = record(tmp_path, NATIVE, ["run 30000", "seek 2000", "seek 29000", "run 500", "back 800", "run 100"])
    rows = [json.loads(x) for x in path.read_text().splitlines()[1:]]
    after_first = rows[next(i for i, r in enumerate(rows) if r.get("t") == "input" and r["n"] == 1):]
    # re-executing the past to travel is no input running: no interval lines
    assert not any(r.get("at") == "interval" for r in after_first)
    inputs = {r["n"]: r for r in after_first if r.get("t") == "digest" and r["at"] == "input"}
    assert "digest" in inputs[1] and "digest" in inputs[4]        # back before the last full line
    assert "digest" not in inputs[3]                              # 500 on from a full line: light
    assert replay(path).divergence is None


def test_record_on_after_a_long_run_replays(tmp_path, every_4000):
    """The inputs 'record on' writes for the session before it have no interval lines: the
    replay must not look for them (the run here passes several multiples of digest_every)."""
    session = open_session([NATIVE])
    execute(session, "run 20000")
    execute(session, f"record on {tmp_path / 'later.jsonl'}")
    execute(session, "run 9000")
    digest = session.machine.digest()
    execute(session, "record off")
    session.stop_watching()
    rows = [json.loads(x) for x in (tmp_path / "later.jsonl").read_text().splitlines()[1:]]
    assert [r["at"] for r in rows if r.get("t") == "digest"][:1] == ["start"]
    result = replay(tmp_path / "later.jsonl")
    assert result.divergence is None, result.summary()
    assert result.session.machine.digest() == digest
