"""What `xenlab compare` does once per process, not once per mode: the booted host is
restored for each mode, and what is not machine state survives the restore."""

from __future__ import annotations

import pytest

from lab.dom0 import toolstack
from lab.session.compare import _FreshHost, run_mode
from lab.session.build import DEFAULT_PROGRAM

pytestmark = pytest.mark.machine


def test_a_restored_host_keeps_its_toolstacks_assembled_images(monkeypatch):
    loaded: list[str] = []
    real = toolstack.assemble

    def assemble(path):
        loaded.append(path.name)
        return real(path)

    monkeypatch.setattr(toolstack, "assemble", assemble)
    hosts = _FreshHost()
    first = run_mode("pv", DEFAULT_PROGRAM, hosts=hosts)
    host, xl = hosts.get()                        # restored to the booted host
    images = dict(xl._images)
    assert sorted(loaded) == ["pv.s", "workload.s"]
    again = run_mode("pv", DEFAULT_PROGRAM, hosts=hosts)
    assert sorted(loaded) == ["pv.s", "workload.s"], "the second run assembled or loaded again"
    assert again == first
    assert all(xl._images[k] is v for k, v in images.items())
    assert "_images" not in host.snapshot().states[host._keeper.token(xl)][1]


def test_compare_collects_young_objects_seldom_while_it_runs_and_puts_the_collector_back():
    import gc

    from lab.session.compare import COMPARE_GC_THRESHOLD, compare
    before = gc.get_threshold()
    seen = []
    compare(modes=["native"], progress=lambda i, n, m: seen.append(gc.get_threshold()))
    assert seen == [(COMPARE_GC_THRESHOLD, *before[1:])]
    assert gc.get_threshold() == before
