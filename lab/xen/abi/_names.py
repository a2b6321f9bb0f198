"""Name tables derived from a module's own spelled-out constants."""

from __future__ import annotations

from typing import Any


def collect(namespace: dict[str, Any], prefix: str, strip: bool = False,
            exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """{value: name} of the int constants named ``prefix...`` in ``namespace``, by value.

    The constants themselves are written out one by one in the module; this
    only builds the reverse table the panes print from, so that it cannot
    drift from them.
    """
    found = [(v, k) for k, v in namespace.items()
             if k.startswith(prefix) and isinstance(v, int) and not isinstance(v, bool)
             and k not in exclude]
    found.sort()
    return {v: (k[len(prefix):] if strip else k) for v, k in found}
