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
