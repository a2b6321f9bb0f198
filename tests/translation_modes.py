"""Running guest code each way the translator can run a block: as whole compiled blocks,
as cold blocks (a sequence of one-instruction pieces) and as blocks turning hot in mid-run."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lab.hw import translate
from lab.hw.blockcache import BlockCache

#: Runs a block makes before its whole code is compiled, by way of running.
HOT_AFTER = {"hot": 0, "cold": 1 << 62, "warming": 2, "lab": translate.HOT_AFTER}


@contextlib.contextmanager
def translation(mode: str) -> Iterator[None]:
    """Blocks made inside run ``mode``'s way: none made before is reused, and no compiled
    block is found in the cache (which would make a block hot from its first run)."""
    saved = translate.HOT_AFTER, translate._MADE, translate.BLOCKS
    with tempfile.TemporaryDirectory() as d:
        translate.HOT_AFTER, translate._MADE, translate.BLOCKS = HOT_AFTER[mode], {}, BlockCache(Path(d))
        try:
            yield
        finally:
            translate.HOT_AFTER, translate._MADE, translate.BLOCKS = saved
