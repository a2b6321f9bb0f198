"""Every x86 source under machines/ assembles to the very image, listing or message recorded."""

from __future__ import annotations

import json

from assembler_digests import RECORDED, all_digests, sources


def test_every_source_assembles_to_its_recorded_image_listing_or_message():
    want = json.loads(RECORDED.read_text())
    assert sorted(want) == sources(), "the sources under machines/ changed: record again"
    got = all_digests()
    changed = [name for name in want if got[name] != want[name]]
    assert not changed, (
        f"the assembler's output changed for {changed}; if on purpose, record it again with: "
        "python tests/assembler_digests.py --update")


def test_assembling_again_in_another_order_gives_the_same_results():
    # Parses are reused between images (every kernel includes the same common files), so a
    # file assembled after the others must come out exactly as when assembled first.
    want = json.loads(RECORDED.read_text())
    names = sources()[::-1]
    assert all_digests(names) == {name: want[name] for name in names}
