"""Recorded sessions: the file (JSON Lines, docs/recordings.md), its writer and its reader.

A recording is the machine's sources plus the ordered inputs that drove it.
The first line is a header naming the format, the lab's version, how the
machine was built and every file it was built from, inline. Then one line per
input, a state digest after every input and at regular intervals, markers,
files read later (an ``xl create`` of a new config), and an end line. Every
line is written and flushed whole, so a lab killed mid-session leaves a file
that replays up to its last complete line.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..errors import UserError
from ..paths import display
from ..sources import DiskStart

FORMAT = "xenlab-recording"
VERSION = 1
#: A digest line every this many instructions inside a long run (besides one after every input).
DIGEST_EVERY = 1_000_000
#: Files up to this size are inline as text; larger ones (kernels) compressed, to keep recordings small.
INLINE_TEXT_LIMIT = 2048


# ------------------------------------------------------------------ fingerprints
def fingerprint(machine: Any) -> dict[str, Any]:
    """What a digest line records: the machine's digest plus enough to say what differs.

    ``frames`` maps every non-zero machine frame to a CRC of its bytes (the
    writer stores only the frames that changed since the previous line);
    ``cpus`` holds each vCPU's instruction count, rip and a CRC of its whole
    state; ``doms`` a CRC of each domain's own state.
    """
    mem = machine.mem
    frames = {mfn: zlib.crc32(f) for mfn, f in mem.frames.items() if any_nonzero(f)}
    cpus = {}
    for label, dom, vcpu, cpu in machine.vcpu_refs():
        name = "bare" if dom is None else f"d{dom}.{vcpu}"
        s = cpu.snapshot()
        s.pop("tlb", None)
        cpus[name] = [cpu.icount, cpu.rip, zlib.crc32(repr(sorted(s.items())).encode())]
    doms = {}
    for d in sorted(getattr(machine, "domains", {}).values(), key=lambda d: d.domid):
        state = repr((d.name, d.state, d.pause_count, d.console_output,
                      [(v.runstate, v.kernel_mode, v.guest_table, v.guest_table_user, v.timer_deadline)
                       for v in d.vcpus]))
        doms[f"d{d.domid}"] = zlib.crc32(state.encode())
    return {"digest": machine.digest(), "frames": frames, "cpus": cpus, "doms": doms}


def any_nonzero(frame: bytearray) -> bool:
    return frame.count(0) != len(frame)


def encode_file(data: bytes) -> Any:
    """A source file inline: its text, or ``{"zlib": base64}`` when it is large or not UTF-8."""
    if len(data) <= INLINE_TEXT_LIMIT:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"zlib": base64.b64encode(zlib.compress(data, 9)).decode("ascii")}


def decode_file(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("zlib"), str):
        return zlib.decompress(base64.b64decode(value["zlib"]))
    raise ValueError("a file must be text or {\"zlib\": ...}")


# ------------------------------------------------------------------ writing
class RecordingWriter:
    """Appends a session's lines to a file, each flushed as it is written."""

    def __init__(self, path: Path | str, build: dict[str, Any], kind: str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fp: IO[str] | None = open(self.path, "w", encoding="utf-8")
        except OSError as e:
            raise UserError(f"{display(self.path)}: cannot write the recording: {e.strerror or e}") from None
        self.build = build
        self.kind = kind
        self.files: dict[str, bytes] = {}
        self.disks: dict[str, DiskStart] = {}
        self._pending: list[dict[str, Any]] = []
        self._started = False
        self._frames: dict[int, int] = {}
        self.inputs = 0
        self.lines = 0
        self.bytes = 0

    # Sources arrive while the machine is built (header) and later (their own lines).
    def add_file(self, key: str, data: bytes) -> None:
        if key in self.files:
            return
        self.files[key] = data
        if self._started:
            self._write({"t": "source", "name": key, "data": encode_file(data)})

    def add_disk(self, key: str, start: DiskStart) -> None:
        if key in self.disks:
            return
        self.disks[key] = start
        if self._started:
            self._write({"t": "disk", "name": key, **start.to_json()})

    def start(self, machine: Any) -> None:
        """Write the header once the machine is built (every file it read is known)."""
        header = {"format": FORMAT, "version": VERSION, "lab": __version__, "machine": self.kind,
                  "build": self.build, "digest_every": DIGEST_EVERY,
                  "sources": {k: encode_file(v) for k, v in self.files.items()},
                  "disks": {k: d.to_json() for k, d in self.disks.items()}}
        self._write(header)
        self._started = True
        if machine is not None:
            self.digest(machine, "start")

    def input(self, n: int, kind: str, text: str, insns: int, cycles: int) -> None:
        self.inputs += 1
        self._write({"t": "input", "n": n, "kind": kind, "text": text, "insns": insns, "cycles": cycles})

    def mark(self, name: str, insns: int, n: int) -> None:
        self._write({"t": "mark", "name": name, "n": n, "insns": insns})

    def digest(self, machine: Any, at: str, n: int = -1) -> dict[str, Any]:
        fp = fingerprint(machine)
        changed = {f"{mfn:x}": crc for mfn, crc in fp["frames"].items() if self._frames.get(mfn) != crc}
        changed.update({f"{mfn:x}": 0 for mfn in self._frames if mfn not in fp["frames"]})
        self._frames = fp["frames"]
        insns = sum(c[0] for c in fp["cpus"].values())
        self._write({"t": "digest", "at": at, "n": n, "insns": insns, "digest": fp["digest"],
                     "cpus": fp["cpus"], "doms": fp["doms"], "frames": changed})
        return fp

    def end(self, machine: Any, n: int) -> None:
        if self._fp is None:
            return
        fp = self.digest(machine, "end", n)
        self._write({"t": "end", "inputs": self.inputs, "digest": fp["digest"]})
        self.close()

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    @property
    def closed(self) -> bool:
        return self._fp is None

    def _write(self, obj: dict[str, Any]) -> None:
        if self._fp is None:
            return
        line = json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n"
        try:
            self._fp.write(line)
            self._fp.flush()          # a crash loses at most the line being written
        except OSError as e:
            self.close()
            raise UserError(f"{display(self.path)}: cannot write the recording: {e.strerror or e}") from None
        self.lines += 1
        self.bytes += len(line.encode())


# ------------------------------------------------------------------ reading
@dataclass
class Line:
    """One line of a recording after the header; ``no`` is its line number in the file."""
    no: int
    obj: dict[str, Any]

    @property
    def t(self) -> str:
        return self.obj["t"]


@dataclass
class Recording:
    path: Path
    header: dict[str, Any]
    files: dict[str, bytes]
    disks: dict[str, DiskStart]
    lines: list[Line] = field(default_factory=list)
    complete: bool = False
    #: Why the file ends early (a crash, a damaged last line), or None.
    warning: str | None = None

    @property
    def build(self) -> dict[str, Any]:
        return self.header["build"]

    def inputs(self) -> list[Line]:
        return [ln for ln in self.lines if ln.t == "input"]

    def markers(self) -> list[Line]:
        return [ln for ln in self.lines if ln.t == "mark"]

    def digests(self) -> list[Line]:
        return [ln for ln in self.lines if ln.t == "digest"]


_LINE_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "source": {"name": str},
    "disk": {"name": str, "sectors": int},
    "input": {"n": int, "kind": str, "text": str, "insns": int, "cycles": int},
    "digest": {"at": str, "n": int, "insns": int, "digest": str, "cpus": dict, "doms": dict, "frames": dict},
    "mark": {"name": str, "n": int, "insns": int},
    "end": {"inputs": int, "digest": str},
}


def load_recording(path: Path | str) -> Recording:
    """Read and check a recording; damage at the very end becomes a warning, elsewhere a UserError."""
    p = Path(path)
    shown = display(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{shown}: no such file") from None
    except OSError as e:
        raise UserError(f"{shown}: cannot read: {e.strerror or e}") from None
    chunks = raw.split(b"\n")
    ends_cleanly = raw.endswith(b"\n")
    if ends_cleanly:
        chunks.pop()
    if not chunks or not chunks[0].strip():
        raise UserError(f"{shown}:1: not a xenlab recording (the file is empty)")
    header = _parse(chunks[0], shown, 1, last=False)
    if header is None or header.get("format") != FORMAT:
        raise UserError(f"{shown}:1: not a xenlab recording (no '{FORMAT}' header)")
    if header.get("version") != VERSION:
        raise UserError(f"{shown}:1: recording format version {header.get('version')!r}; "
                        f"this lab reads version {VERSION}")
    try:
        build = header["build"]
        if not isinstance(build, dict) or not isinstance(build.get("targets"), list) \
                or not all(isinstance(t, str) for t in build["targets"]) or not build["targets"]:
            raise ValueError("the header's build has no targets")
        if not all(build.get(k) is None or isinstance(build.get(k), str) for k in ("program", "costs")) \
                or not isinstance(build.get("arg", 0), int) or isinstance(build.get("arg", 0), bool):
            raise ValueError("the header's build names its program and costs as text and arg as a number")
        files = {str(k): decode_file(v) for k, v in dict(header["sources"]).items()}
        disks = {str(k): DiskStart.from_json(v) for k, v in dict(header.get("disks", {})).items()}
        if header.get("machine") not in ("xen", "native"):
            raise ValueError("the header's machine must be 'xen' or 'native'")
    except (KeyError, TypeError, ValueError, zlib.error, base64.binascii.Error) as e:
        raise UserError(f"{shown}:1: bad recording header: {e}") from None
    rec = Recording(p, header, files, disks)
    last_n = -1
    for i, chunk in enumerate(chunks[1:], start=2):
        at_end = i == len(chunks) and not ends_cleanly
        obj = _parse(chunk, shown, i, last=i == len(chunks))
        problem = None if obj is None else _check_line(obj, last_n)
        if obj is None or problem:
            if i == len(chunks):
                # Only the last line is damaged: a crash while writing it. Replay what came before.
                rec.warning = (f"{shown}:{i}: the last line is incomplete or damaged; "
                               f"the recording ends early, after line {i - 1}")
                break
            raise UserError(f"{shown}:{i}: {problem or 'not a JSON object'}")
        del at_end
        t = obj["t"]
        try:
            if t == "source":
                files.setdefault(obj["name"], decode_file(obj.get("data")))
            elif t == "disk":
                disks.setdefault(obj["name"], DiskStart.from_json(obj))
        except (ValueError, TypeError, zlib.error, base64.binascii.Error) as e:
            raise UserError(f"{shown}:{i}: bad {t} line: {e}") from None
        if t == "input":
            last_n = obj["n"]
        rec.lines.append(Line(i, obj))
        if t == "end":
            rec.complete = True
            if i != len(chunks):
                raise UserError(f"{shown}:{i + 1}: lines after the end line")
            break
    if not rec.complete and rec.warning is None:
        rec.warning = (f"{shown}: the recording has no end line (the lab stopped while recording); "
                       f"it replays up to line {len(chunks)}")
    return rec


def _parse(chunk: bytes, shown: str, no: int, last: bool) -> dict[str, Any] | None:
    try:
        obj = json.loads(chunk.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        if no == 1:
            raise UserError(f"{shown}:1: not a xenlab recording (the first line is not JSON)") from None
        return None
    return obj if isinstance(obj, dict) else None


def _check_line(obj: dict[str, Any], last_n: int) -> str | None:
    t = obj.get("t")
    if t not in _LINE_KEYS:
        return f"unknown line type {t!r}"
    for key, typ in _LINE_KEYS[t].items():
        v = obj.get(key)
        if not isinstance(v, typ) or isinstance(v, bool):
            return f"{t} line: '{key}' is missing or not a {getattr(typ, '__name__', typ)}"
    if t == "input":
        if obj["n"] != last_n + 1:
            return f"input {obj['n']} out of order (expected input {last_n + 1})"
        if obj["insns"] < 0 or obj["cycles"] < 0:
            return "input line: a negative time"
    if t in ("digest", "mark") and obj["n"] > last_n:
        return f"{t} line for input {obj['n']}, which has not happened yet"
    return None
