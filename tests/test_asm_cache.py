"""Assembled images are reused only while every source they came from reads the same."""

from __future__ import annotations

import pytest

from lab.isa import cache
from lab.isa.assembler import AsmError


def test_an_image_comes_back_from_the_cache_until_an_included_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "consts.inc").write_text(".equ VALUE, 7\n")
    main = tmp_path / "main.s"
    main.write_text('.include "consts.inc"\n.text\nstart:\n    mov rax, VALUE\n    hlt\n')
    first = cache.assemble_file_cached(main)
    calls = []
    real = cache.assemble_file
    monkeypatch.setattr(cache, "assemble_file", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = cache.assemble_file_cached(main)
    assert calls == [] and again.sections[0].data == first.sections[0].data
    (tmp_path / "consts.inc").write_text(".equ VALUE, 9\n")          # an included file changes
    changed = cache.assemble_file_cached(main)
    assert len(calls) == 1 and changed.sections[0].data != first.sections[0].data
    assert changed.symbols["VALUE"] == 9


def test_errors_come_from_the_assembler_and_a_broken_cache_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.s"
    bad.write_text(".text\n    mov rxx, 1\n")
    with pytest.raises(AsmError, match="bad.s:2"):
        cache.assemble_file_cached(bad)
    good = tmp_path / "good.s"
    good.write_text(".text\n    hlt\n")
    cache.assemble_file_cached(good)
    for entry in (tmp_path / "cache" / "images").iterdir():
        entry.write_bytes(b"not a pickle")
    assert cache.assemble_file_cached(good).sections[0].data      # assembled afresh
