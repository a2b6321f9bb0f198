"""Replaying a recording: re-simulate it from its own sources and check every digest.

The replay is the recorded session run again: the machine is built from the
files inside the recording (nothing beside it is read), each input is applied
at the point it was given, and after each the machine's digest is compared
with the one recorded. The first difference is a divergence, reported with
the line, the instruction count and what differs (a domain, a vCPU's
registers, machine frames).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from .. import sources
from ..errors import UserError
from ..paths import display
from ..sources import ServedSource
from .commands import execute
from .recording import (DIGEST_HEX, DigestState, Line, Recording, fingerprint, frame_value, memory_due,
                        load_recording)
from .recorder import on_live_edge
from .session import Session
from .timetravel import Origin, TimeMachine, run_to


@dataclass
class Divergence:
    line: int
    insns: int
    differences: list[str]

    def describe(self, shown: str) -> str:
        what = "; ".join(self.differences[:6]) or "the digest"
        more = f" (and {len(self.differences) - 6} more)" if len(self.differences) > 6 else ""
        return f"{shown}:{self.line}: diverged at instruction {self.insns:,}: {what}{more}"


@dataclass
class ReplayResult:
    recording: Recording
    session: Session
    inputs: int = 0
    digests_checked: int = 0
    divergence: Divergence | None = None
    #: (input index, trace seq before, trace seq after, Line) per input, for narration.
    spans: list[tuple[int, int, int, Line]] = field(default_factory=list)

    def summary(self) -> str:
        rec = self.recording
        m = self.session.machine
        shown = display(rec.path)
        head = (f"{shown}: {self.inputs} inputs, {self.session.clock()[0]:,} instructions, "
                f"{self.digests_checked} digests checked")
        if self.divergence is not None:
            return head + "\n" + self.divergence.describe(shown)
        end = "complete" if rec.complete else "ends early"
        return f"{head}: all match ({end}); final digest {m.digest()}"


def compare(recorded: DigestState, line: dict[str, Any], machine: Any) -> list[str]:
    """What differs between the recorded state (the digest lines up to ``line``) and the machine;
    the memory only if ``line`` covers it."""
    memory = "digest" in line
    fp = fingerprint(machine, memory)
    out: list[str] = []
    for name in sorted(set(recorded.doms) | set(fp["doms"])):
        if recorded.doms.get(name) != fp["doms"].get(name):
            out.append(f"domain {name}'s state" if name in fp["doms"] and name in recorded.doms
                       else f"domain {name} {'is missing' if name not in fp['doms'] else 'should not exist'}")
    for name in sorted(set(recorded.cpus) | set(fp["cpus"])):
        r, c = recorded.cpus.get(name), fp["cpus"].get(name)
        if r == c:
            continue
        if r is None or c is None:
            out.append(f"vCPU {name} {'is missing' if c is None else 'should not exist'}")
        elif r[0] != c[0]:
            out.append(f"vCPU {name} ran {c[0]:,} instructions, recorded {r[0]:,}")
        elif r[1] != c[1]:
            out.append(f"vCPU {name} rip {c[1]:#x}, recorded {r[1]:#x}")
        else:
            out.append(f"vCPU {name} registers or control state")
    if fp["seq"] != line["seq"]:
        out.append(f"the trace has {fp['seq']:,} events, recorded {line['seq']:,}")
    if not memory:
        return out
    frames, now = recorded.frames, {mfn: frame_value(h) for mfn, h in fp["frames"].items()}
    bad = sorted(mfn for mfn in set(frames) | set(now) if frames.get(mfn, 0) != now.get(mfn, 0))
    if bad:
        listed = ", ".join(f"{mfn:#x}" for mfn in bad[:4]) + (" ..." if len(bad) > 4 else "")
        out.append(f"machine frame{'s' if len(bad) > 1 else ''} {listed}")
    if not out and line["digest"] != fp["digest"]:
        out.append("host state (clocks, devices)")
    return out


def open_replay(rec: Recording) -> tuple[Session, ServedSource]:
    """A session on the recording's machine, as it was when recording began."""
    served = ServedSource(rec.files, rec.disks)
    origin = Origin(rec.build, rec.files, rec.disks, strict=True)
    try:
        _kind, machine, _warnings = origin.build_machine()
    except UserError as e:
        raise UserError(f"{display(rec.path)}: the recorded machine does not build: {e}") from None
    session = Session(machine)
    TimeMachine(session, origin)
    return session, served


def apply_line(session: Session, ln: Line) -> None:
    """Give the session one recorded input, as the front end gave it."""
    kind, text = ln.obj["kind"], ln.obj["text"]
    if kind == "command":
        try:
            execute(session, text)
        except UserError:
            pass                    # it failed when recorded too; the digest says whether alike
    elif kind == "run":
        session.note_input("run", text)
        run_to(session, text)
        session.input_applied()
    else:
        session.note_input(kind, text)     # lesson steps and the like: no effect on the machine


def replay(path_or_rec: Path | str | Recording, *, verify: bool = True, stop_at_divergence: bool = True,
           on_input: Callable[[int, Line], None] | None = None) -> ReplayResult:
    """Replay a whole recording (checking digests when ``verify``)."""
    rec = path_or_rec if isinstance(path_or_rec, Recording) else load_recording(path_or_rec)
    session, served = open_replay(rec)
    result = ReplayResult(rec, session)
    recorded = DigestState()
    shown = display(rec.path)
    every = rec.header["digest_every"]
    last_memory = [session.clock()[0]]          # where the last line that covered the memory was

    def check(ln: Line) -> None:
        obj = ln.obj
        if "digest" in obj:
            last_memory[0] = session.clock()[0]
        try:
            recorded.apply(obj)
        except (ValueError, TypeError) as e:
            raise UserError(f"{shown}:{ln.no}: bad digest line: {e}") from None
        if not verify or result.divergence is not None:
            return
        result.digests_checked += 1
        m = session.machine
        if "digest" in obj:
            same = m.digest()[:DIGEST_HEX] == obj["digest"]
        else:           # a light line: the vCPUs, the domains and the trace's position
            fp = fingerprint(m, memory=False)
            same = fp["seq"] == obj["seq"] and fp["cpus"] == recorded.cpus and fp["doms"] == recorded.doms
        if not same:
            result.divergence = Divergence(ln.no, session.clock()[0], compare(recorded, obj, m)
                                           or ["the digest"])

    lines = rec.lines
    k = 0
    with sources.using(served):
        while k < len(lines):
            if result.divergence is not None and stop_at_divergence:
                break
            ln = lines[k]
            k += 1
            t = ln.t
            if t == "input":
                # The digests taken while this input ran, checked as the replay passes the same points.
                during: list[Line] = []
                while k < len(lines) and (lines[k].t in ("source", "disk") or
                                          (lines[k].t == "digest" and lines[k].obj["at"] == "interval")):
                    if lines[k].t == "digest":
                        during.append(lines[k])
                    k += 1

                # An input written without digests (the part before a 'record on') was not watched.
                watched = bool(during) or (k < len(lines) and lines[k].t == "digest"
                                            and lines[k].obj["at"] == "input")

                def on_checkpoint() -> None:
                    if not watched or not on_live_edge(session) or \
                            not memory_due(last_memory[0], session.clock()[0], every):
                        return                  # too close to the last digest line: none was written
                    if during:
                        check(during.pop(0))
                    elif verify and result.divergence is None:
                        result.divergence = Divergence(ln.no, session.clock()[0],
                                                       ["the replay ran further than the recording"])
                stop = session.add_checkpoint(every, on_checkpoint)
                before = session.machine.trace.seq
                if on_input is not None:
                    on_input(result.inputs, ln)
                try:
                    apply_line(session, ln)
                finally:
                    stop()
                if during and verify and result.divergence is None:
                    result.divergence = Divergence(during[0].no, session.clock()[0],
                                                   ["the replay stopped before this point"])
                result.spans.append((result.inputs, before, session.machine.trace.seq, ln))
                result.inputs += 1
            elif t == "digest":
                check(ln)
            elif t == "end" and verify and result.divergence is None:
                result.digests_checked += 1
                if session.machine.digest()[:DIGEST_HEX] != ln.obj["digest"]:
                    result.divergence = Divergence(ln.no, session.clock()[0], ["the final digest"])
    return result


def go_to(result: ReplayResult, where: str) -> str:
    """``--to MARKER|INSN``: put the replayed session there."""
    session = result.session
    tm: TimeMachine = session.time_machine
    with sources.using(ServedSource(result.recording.files, result.recording.disks)):
        if where.replace("_", "").isdigit():
            tm.seek_insns(int(where.replace("_", "")))
        elif where in tm.markers:
            tm.seek_marker(where)
        else:
            mark = next((ln for ln in result.recording.markers() if ln.obj["name"] == where), None)
            if mark is None:
                names = sorted({ln.obj["name"] for ln in result.recording.markers()} | set(tm.markers))
                raise UserError(f"{display(result.recording.path)}: no marker '{where}' "
                                f"(markers: {', '.join(names) or 'none'})")
            tm.seek_insns(mark.obj["insns"])
    return f"at instruction {tm.now():,}: digest {session.machine.digest()}"


def write_trace(result: ReplayResult, out: str) -> None:
    from ..trace import FORMAT_VERSION
    try:
        with open(out, "w") as fp:
            result.session.machine.trace.write_jsonl(
                fp, {"target": f"replay of {display(result.recording.path)}", "lab_format": FORMAT_VERSION})
    except OSError as e:
        raise UserError(f"{out}: cannot write: {e.strerror}") from None


# ------------------------------------------------------------------ asciicast
CAST_WIDTH, CAST_HEIGHT = 100, 30
#: Seconds the narration gives each input, and each line of what it caused.
CAST_INPUT_PAUSE, CAST_LINE_PAUSE = 0.6, 0.05
CAST_EVENTS_PER_INPUT = 12


def write_cast(result: ReplayResult, out: str | TextIO) -> None:
    """The session's narration as an asciicast v2: each input, then the events it caused."""
    rec = result.recording
    events = {e.seq: e for e in result.session.machine.trace.iter_all()}
    hz = getattr(result.session.machine, "cpu_hz", 2_000_000_000)
    lines: list[str] = [json.dumps({"version": 2, "width": CAST_WIDTH, "height": CAST_HEIGHT,
                                    "title": f"xenlab: {display(rec.path)}",
                                    "env": {"TERM": "xterm-256color", "SHELL": "xenlab"}})]
    t = 0.0

    def out_line(text: str, pause: float) -> None:
        nonlocal t
        t += pause
        lines.append(json.dumps([round(t, 3), "o", text.replace("\n", "\r\n") + "\r\n"]))
    out_line(f"\x1b[1mxenlab replay\x1b[0m {display(rec.path)} ({rec.header.get('machine')} machine, "
             f"{len(rec.inputs())} inputs)", 0.0)
    for idx, before, after, ln in result.spans:
        o = ln.obj
        ms = o["cycles"] / hz * 1000
        out_line(f"\x1b[36m[{o['insns']:>12,} insns {ms:9.3f} ms]\x1b[0m xen> {o['text']}"
                 if o["kind"] == "command" else
                 f"\x1b[36m[{o['insns']:>12,} insns {ms:9.3f} ms]\x1b[0m ({o['kind']}) {o['text']}",
                 CAST_INPUT_PAUSE)
        caused = [events[s] for s in range(before, after) if s in events]
        for ev in caused[:CAST_EVENTS_PER_INPUT]:
            out_line(f"    #{ev.seq:<7} {ev.summary()}", CAST_LINE_PAUSE)
        if len(caused) > CAST_EVENTS_PER_INPUT:
            counts: dict[str, int] = {}
            for ev in caused:
                counts[ev.kind] = counts.get(ev.kind, 0) + 1
            out_line("    ... " + f"{len(caused):,} events: " +
                     ", ".join(f"{n:,} {k}" for k, n in sorted(counts.items())), CAST_LINE_PAUSE)
    out_line(result.summary(), CAST_INPUT_PAUSE)
    text = "\n".join(lines) + "\n"
    if isinstance(out, str):
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise UserError(f"{out}: cannot write: {e.strerror}") from None
    else:
        out.write(text)
