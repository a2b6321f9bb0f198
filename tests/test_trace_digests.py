"""Every mode's trace stays byte for byte what it was: faster never means different."""

from __future__ import annotations

import json

import pytest

from lab.session.compare import DEFAULT_MODES
from trace_digests import RECORDED, mode_digest


@pytest.mark.parametrize("mode", DEFAULT_MODES)
def test_the_trace_of_every_mode_is_unchanged(mode):
    want = json.loads(RECORDED.read_text())[mode]
    assert mode_digest(mode) == want, (
        f"{mode}: the trace differs from the recorded one; if the machine's behaviour changed on "
        "purpose, record it again with: python tests/trace_digests.py --update")


def test_an_idle_pcpu_waiting_for_dom0_does_not_step_cycle_by_cycle(monkeypatch):
    # While dom0 works for the guest on the other pCPU, the idle pCPU used to move
    # on one cycle at a time (some 25,000 scheduler rounds in this run).
    from lab.xen.host import XenHost
    rounds = []
    idle = XenHost._idle
    monkeypatch.setattr(XenHost, "_idle", lambda self, p: rounds.append(p) or idle(self, p))
    assert mode_digest("pvh") == json.loads(RECORDED.read_text())["pvh"]
    assert len(rounds) < 500
