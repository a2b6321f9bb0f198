"""The trace keeps a bounded window in memory and the whole stream on disk."""

from __future__ import annotations

import io
import json
import random

import pytest

from lab.session.build import native_machine
from lab.session.commands import execute
from lab.session.session import Session
from lab.trace import Trace, read_jsonl


def _fill(trace: Trace, n: int) -> None:
    for i in range(n):
        trace.emit(10 * i, 0, i % 3 or None, 0, "hypercall" if i % 5 == 0 else "console",
                   name="xen_version", nr=17, args=(i, (1, 2)), ret=-22, text=f"line {i}")


def test_memory_holds_only_the_window_and_disk_holds_everything():
    t = Trace(window=40, frame=16)
    _fill(t, 1000)
    assert len(t._window) == 40 and len(t._pending) < 16
    assert t._spill.frames == 1000 // 16 and t.spilled_bytes > 0
    assert len(t) == 1000 and t.seq == 1000
    everything = list(t.iter_all())
    assert [e.seq for e in everything] == list(range(1000))
    # read back exactly as emitted: tuples stay tuples, None stays None
    assert everything[7].data == {"name": "xen_version", "nr": 17, "args": (7, (1, 2)), "ret": -22,
                                  "text": "line 7"}
    assert everything[3].dom is None and everything[4].dom == 1
    assert [e.seq for e in t.recent(5)] == [995, 996, 997, 998, 999]
    assert t.recent(0) == [] and len(t.recent()) == 40


def test_since_reads_the_disk_when_the_window_does_not_reach():
    t = Trace(window=40, frame=16)
    _fill(t, 300)
    assert [e.seq for e in t.since(290)] == list(range(290, 300))       # from memory
    assert [e.seq for e in t.since(5)] == list(range(5, 300))           # from the spill file
    assert t.since(300) == []


def test_counts_are_kept_as_events_happen():
    t = Trace(window=40, frame=16)
    _fill(t, 100)
    assert t.count("hypercall") == 20 and t.count("console") == 80 and t.count() == 100
    assert len(t.of_kind("hypercall")) == 20


def test_last_matching_looks_past_the_window():
    t = Trace(window=40, frame=16)
    _fill(t, 500)
    old = t.last_matching(lambda e: e.seq < 10, 3)
    assert [e.seq for e in old] == [7, 8, 9]
    assert [e.seq for e in t.last_matching(lambda e: e.kind == "hypercall", 2)] == [490, 495]


def test_restore_rewinds_memory_and_disk_alike():
    t = Trace(window=40, frame=16)
    _fill(t, 100)
    snap = t.snapshot()
    _fill(t, 250)
    t.restore(snap)
    assert len(t) == 100 and t.seq == 100
    assert [e.seq for e in t.iter_all()] == list(range(100))
    assert [e.seq for e in t.recent()] == list(range(60, 100))
    _fill(t, 10)                                 # and it goes on from there
    assert [e.seq for e in t.iter_all()][-3:] == [107, 108, 109]


def test_export_reads_the_whole_stream_back():
    t = Trace(window=40, frame=16)
    _fill(t, 200)
    buf = io.StringIO()
    t.write_jsonl(buf, {"target": "test"})
    header, events = read_jsonl(buf.getvalue().splitlines())
    assert header["target"] == "test" and [e.seq for e in events] == list(range(200))
    assert json.loads(buf.getvalue().splitlines()[1])["args"] == [0, [1, 2]]


def test_a_trace_kept_nowhere_still_counts_and_tells_listeners():
    t = Trace(keep=False)
    seen = []
    t.listeners.append(seen.append)
    _fill(t, 10)
    assert len(t) == 0 and list(t.iter_all()) == [] and len(seen) == 10 and t.count("console") == 8


def test_closing_drops_the_spill_file():
    t = Trace(window=40, frame=16)
    _fill(t, 100)
    f = t._spill._file
    t.close()
    assert f.closed and list(t.iter_all()) == [] and t.spilled_bytes == 0


def test_events_command_finds_old_events_beyond_the_window():
    m = native_machine()
    m.trace = Trace(window=40, frame=16)     # a small window so a short run spills
    s = Session(m)
    s.run(20_000)
    assert len(m.trace) > 100
    first = next(m.trace.iter_all())
    out = execute(s, f"events 1 {first.kind}")
    last_of_kind = [e for e in m.trace.iter_all() if e.kind == first.kind][-1]
    assert out.startswith(f"#{last_of_kind.seq:<7}")
    out = execute(s, "events 3").splitlines()
    assert [int(ln.split()[0][1:]) for ln in out] == [m.trace.seq - 3, m.trace.seq - 2, m.trace.seq - 1]


def test_restoring_a_later_snapshot_skips_seq_numbers_and_since_still_finds_by_seq():
    # A snapshot taken later and restored after an earlier one: the seq goes on from
    # the later snapshot while the events in between are gone.
    for window, n in ((40, 30), (40, 300)):
        t = Trace(window=window, frame=16)
        _fill(t, n)
        early = t.snapshot()
        _fill(t, 50)
        late = t.snapshot()
        t.restore(early)
        t.restore(late)
        assert t.seq == n + 50
        _fill(t, 5)
        assert [e.seq for e in t.since(n + 50)] == list(range(n + 50, n + 55))
        assert [e.seq for e in t.since(n - 3)] == [n - 3, n - 2, n - 1] + list(range(n + 50, n + 55))


def test_a_frame_read_in_part_builds_only_its_first_events():
    t = Trace(window=40, frame=16)
    _fill(t, 40)
    whole = t._spill.frame(1)
    assert t._spill.frame(1, 5) == whole[:5] and [e.seq for e in whole[:5]] == [16, 17, 18, 19, 20]


def test_record_takes_the_fields_as_a_dict_and_makes_what_emit_makes():
    a, b = Trace(window=40, frame=16), Trace(window=40, frame=16)
    seen: list = []
    b.listeners.append(seen.append)
    for i in range(40):
        fields = {"name": "xen_version", "nr": 17, "args": (i,), "ret": 0}
        ev = b.record(10 * i, 1, 2, 0, "hypercall", fields)
        assert ev.data is fields and seen[-1] is ev
        a.emit(10 * i, 1, 2, 0, "hypercall", name="xen_version", nr=17, args=(i,), ret=0)
    assert [e.to_json() for e in a.iter_all()] == [e.to_json() for e in b.iter_all()]
    assert (b.seq, b.counts, len(b)) == (40, {"hypercall": 40}, 40)


def _replay(ops, kept: bool) -> list:
    """Emits, snapshots and restores on a small trace; what it holds after each step."""
    t = Trace(window=24, frame=8)
    if not kept:
        t.snapshot = lambda: (t.seq, len(t), dict(t.counts))      # no events kept aside
    snaps, out, n = [], [], 0
    for op, arg in ops:
        if op == "emit":
            for _ in range(arg):
                t.emit(n, 0, 1, 0, "console", text=f"event {n}")
                n += 1
        elif op == "snap":
            snaps.append(t.snapshot())
        elif snaps:
            t.restore(snaps[arg % len(snaps)])
        out.append(([e.to_json() for e in t.iter_all()], [e.seq for e in t.recent()], t.seq, len(t)))
    return out


def test_restoring_into_a_spilled_frame_takes_the_snapshots_own_events_without_reading_the_file(monkeypatch):
    t = Trace(window=24, frame=8)
    for i in range(3):
        t.emit(i, 0, 1, 0, "console", text=f"boot {i}")
    snap = t.snapshot()
    for i in range(40):
        t.emit(10 + i, 0, 1, 0, "console", text=f"mode {i}")
    assert t._spill.frames == 5
    monkeypatch.setattr(t._spill, "frame", lambda *a: pytest.fail("read a spilled frame back"))
    t.restore(snap)
    assert [e.data["text"] for e in t.iter_all()] == ["boot 0", "boot 1", "boot 2"]
    assert [e.seq for e in t.recent()] == [0, 1, 2] and t.seq == 3


def test_restores_with_kept_events_hold_what_restores_reading_the_file_hold():
    # including a history that went another way after the events were kept
    ops = [("emit", 3), ("snap", 0), ("emit", 2), ("snap", 0), ("emit", 30), ("restore", 0),
           ("emit", 40), ("restore", 1), ("emit", 9), ("snap", 0), ("emit", 20), ("restore", 2),
           ("restore", 0), ("emit", 12), ("restore", 2), ("restore", 1), ("emit", 5)]
    assert _replay(ops, kept=True) == _replay(ops, kept=False)
    rng = random.Random(7)
    for _ in range(30):
        ops = [rng.choice([("emit", rng.randrange(1, 20)), ("snap", 0), ("restore", rng.randrange(9))])
               for _ in range(14)]
        assert _replay(ops, kept=True) == _replay(ops, kept=False), ops
