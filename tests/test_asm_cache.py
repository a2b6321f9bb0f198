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


def test_a_cached_image_unpacks_its_line_maps_only_when_read(tmp_path, monkeypatch):
    import pickle
    monkeypatch.setenv("XENLAB_CACHE", str(tmp_path / "cache"))
    main = tmp_path / "main.s"
    main.write_text(".text\nstart:\n    mov rax, 7\n    hlt\n.data\nvalue:\n    .quad 1\n")
    first = cache.assemble_file_cached(main)
    again = cache.assemble_file_cached(main)
    assert "line_map" not in vars(again) and "_packed_lines" in vars(again)
    # passed on packed (a snapshot or a second cache copies it without unpacking)
    copy = pickle.loads(pickle.dumps(again))
    assert "line_map" not in vars(copy) and "line_map" not in vars(again)
    for image in (again, copy):
        assert image.source_line(first.entry) == first.source_line(first.entry)
        assert image.line_map == first.line_map and image.item_sizes == first.item_sizes
        assert image.instructions == first.instructions and "_packed_lines" not in vars(image)
    assert again == first
    with pytest.raises(AttributeError):
        again.no_such_field
