"""The console log's ring: bounded, deterministic whatever the writes, digested as before below its bound."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.hw.consolelog import XENCONSOLE_LIMIT, ConsoleLog
from lab.hw.snapshot import StateKeeper


def written(text: str, sizes: list[int], limit: int = 64) -> ConsoleLog:
    """``text`` appended in pieces of the given sizes (cycled), the rest at the end."""
    log = ConsoleLog(limit=limit)
    pos, i = 0, 0
    while pos < len(text):
        n = sizes[i % len(sizes)] if sizes else len(text)
        log.append(text[pos:pos + n])
        pos, i = pos + n, i + 1
    return log


def test_the_bound_is_libxls_console_limit():
    assert XENCONSOLE_LIMIT == 1048576          # tools/libs/light/libxl_internal.h
    assert ConsoleLog().limit == XENCONSOLE_LIMIT


def test_below_its_bound_the_log_is_the_whole_text_and_digests_as_the_text():
    log = written("hello\nworld\n" * 5, [1, 3, 7])
    assert log.text == "hello\nworld\n" * 5 and log.dropped == 0 and log.total == 60
    assert log.digest_form() == log.text           # a machine digest hashes what it hashed before
    assert repr(log) == "ConsoleLog(total=60, kept=60, limit=64)"     # no address: reprs stay deterministic


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab\nc\u00e9\u20ac", min_size=0, max_size=600), st.lists(st.integers(1, 90), max_size=6))
def test_what_is_kept_depends_on_the_text_alone(text, sizes):
    """However the output was split into writes, the log holds the same state: the newest part of
    the text, cut at a multiple of the block, no more than the limit."""
    log, whole = written(text, sizes), written(text, [])
    assert log.save_state() == whole.save_state()
    assert len(log) <= log.limit and log.total == len(text)
    assert log.dropped % log.block == 0 and log.text == text[log.dropped:]
    assert log.dropped == 0 or len(text) - (log.dropped - log.block) > log.limit     # the least dropped


def test_past_its_bound_the_digest_still_covers_everything_written():
    a, b = written("x" * 500 + "tail", [5]), written("y" + "x" * 499 + "tail", [5])
    assert a.dropped and a.text == b.text
    assert a.digest_form() != b.digest_form()
    assert a.digest_form() == (a.dropped, a.dropped_hash.hex(), a.text)


def test_a_megabyte_a_byte_at_a_time_keeps_at_most_the_limit():
    log = ConsoleLog()
    for _ in range(2 * XENCONSOLE_LIMIT // 4096 + 3):
        for c in "0123456789abcdef" * 256:
            log.append(c)
        assert len(log) <= XENCONSOLE_LIMIT
    assert log.total == (2 * XENCONSOLE_LIMIT // 4096 + 3) * 4096 and len(log.text) == len(log)


def test_it_saves_and_loads_through_a_snapshot_and_a_pickle():
    class Box:
        def __init__(self) -> None:
            self.log = written("abcdefgh" * 40, [3])

    box, keeper = Box(), StateKeeper()
    snap = pickle.loads(pickle.dumps(keeper.save(box)))
    before = box.log.save_state()
    box.log.append("more" * 50)
    keeper.load(snap)
    assert box.log.save_state() == before and box.log.dropped > 0
    box.log.append("z")
    assert box.log.text.endswith("z") and len(box.log) <= box.log.limit


def test_a_limit_too_small_to_keep_a_block_is_refused():
    with pytest.raises(ValueError):
        ConsoleLog(limit=8)


def test_the_bare_machines_debug_console_is_bounded_too():
    from lab.hw.devices.board import DebugConsole
    lines: list[str] = []
    con = DebugConsole(lines.append)
    for _ in range(3 * XENCONSOLE_LIMIT // 1000):
        for b in b"x" * 999 + b"\n":
            con.put(b)
    # a line with no newline is handed on at LINE_MAX characters, the rest when it ends
    assert {len(ln) for ln in lines} == {DebugConsole.LINE_MAX, 999 - 3 * DebugConsole.LINE_MAX}
    assert len(con.output) <= XENCONSOLE_LIMIT and con.output.endswith("x" * 999 + "\n")
    assert con.log.total == 3 * XENCONSOLE_LIMIT // 1000 * 1000 and con.log.dropped > 0
    con.put(ord("y"))
    con.flush()
    assert lines[-1] == "y" and con.buffer == ""
