"""Every test keeps the lab's data (disk images of the stock configs) in a directory of its own."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _lab_data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XENLAB_DATA", str(tmp_path_factory.mktemp("xenlab-data")))
