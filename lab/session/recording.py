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
VERSION = 2
#: A digest line every this many instructions inside a long run (besides one after every input).
DIGEST_EVERY = 1_000_000
#: Files up to this size are inline as text; larger ones (kernels) compressed, to keep recordings small.
INLINE_TEXT_LIMIT = 2048


# ------------------------------------------------------------------ fingerprints
#: Hexadecimal digits of the machine's digest a digest line keeps (64 bits, see ``fingerprint``).
DIGEST_HEX = 16


class _Crc32:
    """A CRC-32 with a hash's ``update``, for the parts' own ``digest_into``."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)


def vcpu_crc(cpu: Any) -> int:
    crc = _Crc32()
    if callable(getattr(cpu, "digest_into", None)):
        cpu.digest_into(crc)
    else:
        s = cpu.snapshot()
        s.pop("tlb", None)
        crc.update(repr(sorted(s.items())).encode())
    return crc.value


def fingerprint(machine: Any, memory: bool = True) -> dict[str, Any]:
    """What a digest line records: the machine's digest plus enough to say what differs.

    ``digest`` is the first 64 bits of the machine's own ``digest()`` (SHA-256
    over every part of the machine). A replay compares it with the state it
    reached by the same inputs, so what matters is only the chance that a
    state that went another way hashes alike by accident: 2**-64 for one
    line, and a divergence stays different on every later line. Nobody is
    defending against a forged file here (its author could as well write
    other inputs), so 64 bits are as safe as 128 and half the size.

    ``frames`` maps every non-zero machine frame to its hash (a line stores
    32 bits of it, ``frame_value``); ``cpus`` holds each vCPU's instruction
    count, rip and a CRC-32 of its whole state; ``doms`` a CRC-32 of each
    domain's own state; ``seq`` the trace's position (events so far). These
    only name what differs once a difference is found, so 32 bits are plenty.

    Without ``memory`` there is neither ``digest`` nor ``frames``: hashing
    the memory means reading all of it (some 20 MB on a Xen host), the one
    costly part, which a recording does only every so often (``memory_due``).
    """
    out: dict[str, Any] = {}
    if memory:
        out["digest"] = machine.digest()[:DIGEST_HEX]
        out["frames"] = machine.mem.frame_hashes(as_digested=True)
    cpus = {}
    for _label, dom, vcpu, cpu in machine.vcpu_refs():
        name = "bare" if dom is None else f"d{dom}.{vcpu}"
        cpus[name] = [cpu.icount, cpu.rip, vcpu_crc(cpu)]
    doms = {}
    for d in sorted(getattr(machine, "domains", {}).values(), key=lambda d: d.domid):
        state = repr((d.name, d.state, d.pause_count, d.console_log.digest_form(),
                      [(v.runstate, v.kernel_mode, v.guest_table, v.guest_table_user, v.timer_deadline)
                       for v in d.vcpus]))
        doms[f"d{d.domid}"] = zlib.crc32(state.encode())
    out.update(cpus=cpus, doms=doms, seq=machine.trace.seq)
    return out


def frame_value(frame_hash: bytes) -> int:
    """The 32 bits of a frame's hash a digest line stores (never 0: that means all zeros)."""
    return int.from_bytes(frame_hash[:4], "big") or 1


def pack_frames(frames: dict[int, int]) -> str:
    """Frame values as a digest line stores them: base64 of runs of frames in order, each run
    (frames since the last run's end, frames in the run, one 32-bit big-endian value per frame,
    or one value for all when ``count`` has its low bit set), numbers as LEB128 varints.

    Neighbouring frames that changed together cost four bytes each, and a range of frames with
    the same content (a fresh guest's memory, a buffer) costs one value."""
    out = bytearray()
    end = 0
    mfns = sorted(frames)
    i = 0
    while i < len(mfns):
        j = i + 1
        while j < len(mfns) and mfns[j] == mfns[j - 1] + 1:
            j += 1
        run = mfns[i:j]                  # contiguous frames: split into same-value and mixed parts
        k = 0
        while k < len(run):
            same = k + 1
            while same < len(run) and frames[run[same]] == frames[run[k]]:
                same += 1
            if same - k >= 3:
                _varint(out, run[k] - end)
                _varint(out, ((same - k) << 1) | 1)
                out += frames[run[k]].to_bytes(4, "big")
                end = run[k] + (same - k)
                k = same
                continue
            mixed = k + 1                # up to where three equal values begin
            while mixed < len(run) and not (mixed + 2 < len(run) and
                                            frames[run[mixed]] == frames[run[mixed + 1]] == frames[run[mixed + 2]]):
                mixed += 1
            _varint(out, run[k] - end)
            _varint(out, (mixed - k) << 1)
            for mfn in run[k:mixed]:
                out += frames[mfn].to_bytes(4, "big")
            end = run[k] + (mixed - k)
            k = mixed
        i = j
    return base64.b64encode(bytes(out)).decode("ascii")


#: Frames one digest line may name at most (8 GiB of memory): a damaged count must not make
#: the reader build a map of billions of frames.
MAX_LINE_FRAMES = 1 << 21


def unpack_frames(text: str) -> dict[int, int]:
    """The frame values of ``pack_frames``; ValueError if the text is damaged."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError("the frames are not base64") from None
    out: dict[int, int] = {}
    pos = end = 0
    while pos < len(raw):
        gap, pos = _read_varint(raw, pos)
        count, pos = _read_varint(raw, pos)
        n, same = count >> 1, count & 1
        need = 4 if same else 4 * n
        if n == 0 or pos + need > len(raw):
            raise ValueError("the frames end in the middle of a run")
        if len(out) + n > MAX_LINE_FRAMES:
            raise ValueError(f"more than {MAX_LINE_FRAMES:,} frames on one line")
        start = end + gap
        for k in range(n):
            at = pos if same else pos + 4 * k
            out[start + k] = int.from_bytes(raw[at:at + 4], "big")
        pos += need
        end = start + n
    return out


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise ValueError("the frames end in the middle of a number")
        b = raw[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


class DigestState:
    """The recorded state so far, as the digest lines build it up: each line holds only the
    vCPUs, domains and frames that changed since the line before it."""

    def __init__(self) -> None:
        self.cpus: dict[str, list[int]] = {}
        self.doms: dict[str, int] = {}
        self.frames: dict[int, int] = {}
        #: The writer's side: the frames' whole hashes at the last line.
        self._frame_hashes: dict[int, bytes] = {}

    def changes(self, fp: dict[str, Any]) -> dict[str, Any]:
        """The fields of a digest line for fingerprint ``fp`` (and take it as the state so far):
        what changed (a vCPU or domain gone: null; a frame now all zeros: 0), empty ones left out."""
        out: dict[str, Any] = {}
        for key, now, before in (("cpus", fp["cpus"], self.cpus), ("doms", fp["doms"], self.doms)):
            changed = {k: v for k, v in now.items() if before.get(k) != v}
            changed.update({k: None for k in before if k not in now})
            if changed:
                out[key] = changed
        self.cpus, self.doms = dict(fp["cpus"]), dict(fp["doms"])
        if "frames" in fp:
            now_frames, before_frames = fp["frames"], self._frame_hashes
            frames = {mfn: frame_value(h) for mfn, h in now_frames.items() if before_frames.get(mfn) != h}
            frames.update({mfn: 0 for mfn in before_frames.keys() - now_frames.keys()})
            if frames:
                out["frames"] = pack_frames(frames)
            self._frame_hashes = now_frames
        return out

    def apply(self, obj: dict[str, Any]) -> None:
        """Take in a digest line's changes; ValueError if they are damaged."""
        for key, into in (("cpus", self.cpus), ("doms", self.doms)):
            for k, v in dict(obj.get(key, {})).items():
                if v is None:
                    into.pop(k, None)
                elif key == "cpus" and not (isinstance(v, list) and len(v) == 3 and
                                            all(isinstance(x, int) for x in v)):
                    raise ValueError(f"vCPU {k}: not [instructions, rip, crc]")
                elif key == "doms" and not isinstance(v, int):
                    raise ValueError(f"domain {k}: not a number")
                else:
                    into[k] = v
        for mfn, v in unpack_frames(obj.get("frames", "")).items():
            if v:
                self.frames[mfn] = v
            else:
                self.frames.pop(mfn, None)


def memory_due(last_insns: int, now: int, every: int = DIGEST_EVERY) -> bool:
    """Whether a digest here covers the memory: where a run passes a multiple of ``every``
    (an ``interval`` line) or an input ends, once three quarters of ``every`` instructions
    have passed since the last line that covered it, or the session went back before that
    line (time travel). The writer and the replay both ask, with the instruction count at
    their last such line."""
    return now < last_insns or now - last_insns >= every * 3 // 4


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
        #: Digest lines inside runs every so many instructions (written in the header).
        self.digest_every = DIGEST_EVERY
        self.files: dict[str, bytes] = {}
        self.disks: dict[str, DiskStart] = {}
        self._pending: list[dict[str, Any]] = []
        self._started = False
        self._state = DigestState()
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
                  "build": self.build, "digest_every": self.digest_every,
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

    def digest(self, machine: Any, at: str, n: int = -1, memory: bool = True) -> dict[str, Any]:
        """A digest line; without ``memory`` a light one (no digest, no frames)."""
        fp = fingerprint(machine, memory)
        insns = sum(c[0] for c in fp["cpus"].values())
        line = {"t": "digest", "at": at, "n": n, "insns": insns, "seq": fp["seq"]}
        if memory:
            line["digest"] = fp["digest"]
        self._write({**line, **self._state.changes(fp)})
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
    "digest": {"at": str, "n": int, "insns": int, "seq": int},
    "mark": {"name": str, "n": int, "insns": int},
    "end": {"inputs": int, "digest": str},
}
#: Fields a line may leave out (a digest line's changes), and their types when present.
_OPTIONAL_KEYS: dict[str, dict[str, type]] = {"digest": {"digest": str, "cpus": dict, "doms": dict, "frames": str}}


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
    if header.get("version") == 1:
        # Version 1 digests hashed memory otherwise and listed every frame: they cannot be checked now.
        raise UserError(f"{shown}:1: recording format version 1 (an older lab's, whose digests this lab "
                        f"does not compute); this lab reads version {VERSION}: record the session again")
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
        every = header.get("digest_every")
        if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
            raise ValueError("the header's digest_every must be a positive number")
        if header.get("machine") not in ("xen", "native"):
            raise ValueError("the header's machine must be 'xen' or 'native'")
    except (KeyError, TypeError, ValueError, zlib.error, base64.binascii.Error) as e:
        raise UserError(f"{shown}:1: bad recording header: {e}") from None
    rec = Recording(p, header, files, disks)
    last_n = -1
    state = DigestState()           # the digest lines' changes must fit together
    for i, chunk in enumerate(chunks[1:], start=2):
        at_end = i == len(chunks) and not ends_cleanly
        obj = _parse(chunk, shown, i, last=i == len(chunks))
        problem = None if obj is None else _check_line(obj, last_n)
        if obj is not None and problem is None and obj["t"] == "digest":
            try:
                state.apply(obj)
            except (ValueError, TypeError) as e:
                problem = f"bad digest line: {e}"
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
    for key, typ in _OPTIONAL_KEYS.get(t, {}).items():
        if key in obj and not isinstance(obj[key], typ):
            return f"{t} line: '{key}' is not a {typ.__name__}"
    if t == "digest" and "frames" in obj and "digest" not in obj:
        return "digest line: frames without the digest they belong to"
    if t == "input":
        if obj["n"] != last_n + 1:
            return f"input {obj['n']} out of order (expected input {last_n + 1})"
        if obj["insns"] < 0 or obj["cycles"] < 0:
            return "input line: a negative time"
    if t in ("digest", "mark") and obj["n"] > last_n:
        return f"{t} line for input {obj['n']}, which has not happened yet"
    return None
