"""Decoding reuses instructions decoded before, by their bytes: rewritten code decodes anew,
and bytes that do not decode are refused every time."""

from __future__ import annotations

import pytest

from lab.isa.assembler import assemble_line
from lab.isa.encoding import DecodeError, decode, encode


def test_rewritten_bytes_decode_as_what_they_now_are():
    frame = bytearray(32)
    add = assemble_line("add rax, 1")
    sub = assemble_line("sub rbx, 7")
    frame[0:16] = encode(add)
    assert decode(frame, 0) == add
    frame[0:16] = encode(sub)                 # the same place, new code
    assert decode(frame, 0) == sub
    frame[16:32] = encode(add)
    assert decode(frame, 16) == add


def test_bad_bytes_are_refused_every_time():
    bad = bytes([0xFF]) + bytes(15)
    for _ in range(2):
        with pytest.raises(DecodeError):
            decode(bad)
    good = encode(assemble_line("nop"))
    with pytest.raises(DecodeError):
        decode(good[:8])                      # truncated, even though its head decoded before


def test_a_run_of_instructions_is_decoded_anew_when_any_of_its_bytes_change():
    from lab.hw.translate import fetch_run
    frame = bytearray(4096)
    add, sub, ret = (assemble_line(t) for t in ("add rax, 1", "sub rbx, 7", "ret"))
    frame[0x100:0x130] = encode(add) + encode(add) + encode(ret)
    assert fetch_run(frame, 0x5100, False) == ([add, add, ret], None)
    assert fetch_run(frame, 0x5100, False) == ([add, add, ret], None)     # again, from memory
    frame[0x110:0x120] = encode(sub)
    assert fetch_run(frame, 0x5100, False) == ([add, sub, ret], None)
    assert fetch_run(frame, 0x5100, True) == ([add], None)
    frame[0x110] = 0xFF                      # no longer an instruction: the run ends before it
    assert fetch_run(frame, 0x5100, False) == ([add], None)
    for _ in range(2):
        insns, fault = fetch_run(frame, 0x5110, False)
        assert insns == [] and fault is not None and "0x5110" in fault.reason
