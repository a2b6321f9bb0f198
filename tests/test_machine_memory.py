"""Machine memory's word helpers: the bytes they read and write, at any offset, and who hears of it."""

from __future__ import annotations

import pytest

from lab.hw.memory import PAGE_SIZE, BusError, MachineMemory


def test_words_are_little_endian_at_every_offset_across_frames_and_in_untouched_frames():
    mem = MachineMemory(4 * PAGE_SIZE)
    value = 0x0102_0304_0506_0708
    for addr in (0, 8, PAGE_SIZE - 8, PAGE_SIZE - 3, 2 * PAGE_SIZE + 5):
        mem.write_u64(addr, value)
        assert mem.read(addr, 8) == value.to_bytes(8, "little")
        assert mem.read_u64(addr) == value
    mem.write_u64(16, -1)                              # kept to 64 bits, as the hardware stores it
    assert mem.read_u64(16) == 0xFFFF_FFFF_FFFF_FFFF
    assert mem.read_u64(3 * PAGE_SIZE + 64) == 0 and 3 in mem.frames    # a fresh frame reads zeros
    for bad in (4 * PAGE_SIZE, -8):
        with pytest.raises(BusError):
            mem.read_u64(bad)
        with pytest.raises(BusError):
            mem.write_u64(bad, 1)


def test_a_word_written_to_a_watched_frame_is_reported_once_per_write():
    mem = MachineMemory(2 * PAGE_SIZE)
    heard: list[int] = []
    mem.on_watched_write = heard.append
    mem.watched.add(1)
    mem.write_u64(8, 1)
    mem.write_u64(PAGE_SIZE + 8, 2)
    mem.write_u64(PAGE_SIZE - 4, 3)                    # straddles into the watched frame
    assert heard == [1, 1]
