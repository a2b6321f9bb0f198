"""The progress file: atomic writes, a corrupt or foreign file set aside, reset."""

from __future__ import annotations

import json
import os

import pytest

from lab.cli import main
from lab.lessons.progress import Progress, default_path


def test_progress_survives_a_restart(tmp_path):
    p = Progress(tmp_path / "progress.json")
    p.of("tour").steps_done.update({0, 1})
    p.of("tour").answers[0] = "3"
    p.save()
    again = Progress(tmp_path / "progress.json")
    assert again.of("tour").steps_done == {0, 1} and again.of("tour").answers == {0: "3"}
    assert again.status("tour", 5) == "2/5" and again.status("rings", 4) == "new"


def test_a_save_replaces_the_file_whole_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    p = Progress(path)
    p.of("tour").done = True
    p.save()
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    p.of("rings").steps_done.add(0)
    with pytest.raises(OSError):
        p.save()
    assert path.read_text() == before                       # the old file, whole
    assert sorted(f.name for f in tmp_path.iterdir()) == ["progress.json"]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "something-else"}), "[1, 2]",
                                     json.dumps({"format": "xenlab-progress", "version": 99}),
                                     json.dumps({"format": "xenlab-progress", "version": 1,
                                                 "lessons": {"tour": {"steps_done": "all"}}})])
def test_a_corrupt_or_foreign_file_is_set_aside_with_a_message(tmp_path, content):
    path = tmp_path / "progress.json"
    path.write_text(content)
    p = Progress(path)
    assert p.lessons == {}
    assert p.notice and "set aside as progress.json.broken-1" in p.notice
    assert (tmp_path / "progress.json.broken-1").read_text() == content      # never lost
    p.of("tour").done = True
    p.save()
    assert Progress(path).of("tour").done


def test_lessons_reset_clears_progress(tmp_path, capsys):
    path = default_path()                                   # the test's own data directory
    p = Progress(path)
    p.of("tour").done = True
    p.save()
    assert main(["lessons"]) == 0
    assert "tour" in capsys.readouterr().out and Progress(path).status("tour", 5) == "done"
    assert main(["lessons", "--reset"]) == 0
    assert Progress(path).lessons == {}
