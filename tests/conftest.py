"""Every test keeps the lab's data (disk images of the stock configs) in a directory of its own,
and the whole run shares one cache of assembled kernels, away from the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _lab_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("xenlab-cache")


@pytest.fixture(autouse=True)
def _lab_dirs(tmp_path_factory, monkeypatch, _lab_cache_dir):
    monkeypatch.setenv("XENLAB_DATA", str(tmp_path_factory.mktemp("xenlab-data")))
    monkeypatch.setenv("XENLAB_CACHE", str(_lab_cache_dir))
