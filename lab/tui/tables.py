"""Fitting a command's answer to a pane's width when it is drawn.

An answer is kept as written (``xl list`` prints what xl prints) and laid out
again for every width the pane takes. Prose is wrapped by the pane. A table
(rows of columns two or more spaces apart, such as ``xl list``, ``help`` or
``compare``) keeps its columns at every width:

1. as written, if it fits;
2. else with the blank space between columns shrunk, widest gaps first, down
   to two spaces (the same character columns are removed from every row, so
   columns stay aligned);
3. else, when its last column is its widest (descriptions, values: ``help``,
   ``xl info``), that column wraps under itself (between words, never inside a
   short bracketed group such as ``(Hard / Soft)``), and a row whose first
   columns are too long for the space left puts it on the lines below;
4. else (a matrix such as ``compare``) in bands: the first column (the rows'
   names) and as many further columns as fit, then the next band below; where
   the first column is too wide for any band (a bar chart's names and bars),
   the other columns go on the line under it.

Plain text in, plain text out: no widget or style here, so it can be tested
without a screen.
"""

from __future__ import annotations

import re
import textwrap

#: Two spaces (or a tab) between words: the columns of a table such as ``xl list``.
_COLUMNS = re.compile(r"\S(\s{2,}|\t)\S")
#: The least room a wrapped last column keeps, in characters.
MIN_WRAP = 20


def has_columns(line: str) -> bool:
    return bool(_COLUMNS.search(line))


def is_table(lines: list[str]) -> bool:
    """Whether a block is a table: most of its lines (at least three) have columns."""
    rows = [ln for ln in lines if ln.strip()]
    return len(rows) >= 3 and sum(has_columns(ln) for ln in rows) * 3 >= len(rows) * 2


def fit_answer(lines: list[str], width: int) -> list[tuple[str, bool]]:
    """``lines`` laid out for ``width`` columns, as (line, wrap): wrap says the pane may
    wrap that line (prose); a table's rows come out already fitted."""
    out: list[tuple[str, bool]] = []
    block: list[str] = []

    def flush() -> None:
        if block and is_table(block):
            # rows without columns (a title, a wrapped cell) may wrap as prose
            out.extend((row, not has_columns(row)) for row in fit_table(block, width))
        else:
            out.extend((line, True) for line in block)
        block.clear()

    for line in lines:
        if line.strip():
            block.append(line.expandtabs(8))    # as a terminal shows xl's tabs
        else:
            flush()
            out.append((line, True))
    flush()
    return out


def _gaps(rows: list[str]) -> list[tuple[int, int]]:
    """The runs of two or more character columns blank in every row, as [start, end)."""
    n = max(len(r) for r in rows)
    blank = [True] * n
    for r in rows:
        for i, ch in enumerate(r):
            if ch != " ":
                blank[i] = False
    lead = next((i for i, b in enumerate(blank) if not b), n)
    gaps, i = [], lead
    while i < n:
        if blank[i]:
            j = i
            while j < n and blank[j]:
                j += 1
            if j < n and j - i >= 2:       # trailing blanks are no gap
                gaps.append((i, j))
            i = j
        else:
            i += 1
    return gaps


def _shrink(rows: list[str], gaps: list[tuple[int, int]], width: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Remove blank character columns from the widest gaps (never below two) until the
    rows fit ``width`` or every gap is two wide."""
    excess = max(len(r) for r in rows) - width
    sizes = [e - s for s, e in gaps]
    while excess > 0:
        widest = max(range(len(sizes)), key=lambda k: (sizes[k], -k), default=None)
        if widest is None or sizes[widest] <= 2:
            break
        sizes[widest] -= 1
        excess -= 1
    cut = sorted(i for (s, e), size in zip(gaps, sizes) for i in range(s + size, e))
    if not cut:
        return rows, gaps
    drop = set(cut)
    keep = [i for i in range(max(len(r) for r in rows)) if i not in drop]
    new_rows = ["".join(r[i] for i in keep if i < len(r)).rstrip() for r in rows]
    index = {old: new for new, old in enumerate(keep)}
    new_gaps = [(index[s], index[s] + size) for (s, _), size in zip(gaps, sizes)]
    return new_rows, new_gaps


def fit_table(lines: list[str], width: int) -> list[str]:
    """A table's lines fitted to ``width`` (see the module's text); lines without
    columns in it (a title, a note) are left to wrap as prose."""
    width = max(width, 8)
    rows = [ln.rstrip() for ln in lines]
    table = [r for r in rows if has_columns(r)]
    if not table or max(len(r) for r in table) <= width:
        return rows
    gaps = _gaps(table)
    if not gaps:
        return rows
    table, gaps = _shrink(table, gaps, width)
    fitted = iter(table)
    rows = [next(fitted) if has_columns(r) else r for r in rows]
    if max(len(r) for r in table) <= width:
        return rows
    starts = [0] + [e for _, e in gaps]
    ends = [s for s, _ in gaps] + [max(len(r) for r in table)]
    spans = [e - s for s, e in zip(starts, ends)]
    if spans[-1] == max(spans):
        return _wrap_last(rows, starts[-1], width)
    if ends[1] > width:
        # the rows' names leave no room for a band (a bar chart's bars): what follows
        # them goes under them instead
        return _wrap_last(rows, starts[1], width, stacked=True)
    return _bands(rows, starts, ends, width)


def _wrap_last(rows: list[str], start: int, width: int, stacked: bool = False) -> list[str]:
    """The columns from ``start`` on wrapped under themselves; where the columns before
    them leave too little room, they start further left, below rows too long to share a
    line with them (``stacked``: below every row, a little indented)."""
    # the wrapped column keeps at least MIN_WRAP characters and two fifths of the width
    room = max(MIN_WRAP, width * 2 // 5)
    if stacked:
        indent = 2
    elif start <= width - room:
        indent = start
    else:
        indent = max(width - 2 * MIN_WRAP, width // 3, 4)
    out: list[str] = []
    for row in rows:
        if not has_columns(row):
            out.append(row)
            continue
        head, tail = row[:start].rstrip(), row[start:].rstrip()
        if len(tail) > width - indent:
            body = _wrap_cell(tail.strip(), max(width - indent, 8))
        else:
            body = [tail]           # as it was: right-aligned numbers stay aligned
        if not tail.strip():
            out.append(head)
            continue
        if len(head) + 2 <= indent and not stacked:
            out.append(head.ljust(indent) + body[0])
            body = body[1:]
        else:       # the first columns on lines of their own (wrapped if even they are too long)
            out.extend(textwrap.wrap(head, width, subsequent_indent="  ", break_on_hyphens=False) or [""])
        out.extend(" " * indent + part for part in body)
    return out


#: A bracketed group of words, such as xl vcpu-list's "(Hard / Soft)".
_GROUP = re.compile(r"\([^()]{1,14}\)")
#: Stands for a space inside a group while wrapping: textwrap breaks only at ASCII blanks.
_KEEP = "\u00a0"


def _wrap_cell(text: str, room: int) -> list[str]:
    """A cell wrapped to ``room``, never inside a bracketed group that fits on a line
    ("Affinity" over "(Hard / Soft)", not "Affinity (Hard /" over "Soft)")."""
    kept = _GROUP.sub(lambda m: m.group().replace(" ", _KEEP), text)
    lines = textwrap.wrap(kept, room, break_long_words=False, break_on_hyphens=False)
    if lines and max(len(ln) for ln in lines) <= room:
        return [ln.replace(_KEEP, " ") for ln in lines]
    return textwrap.wrap(text, room, break_long_words=True, break_on_hyphens=False) or [""]


def _bands(rows: list[str], starts: list[int], ends: list[int], width: int) -> list[str]:
    """The columns after the first in bands that fit ``width``, each band led by the first
    column (the rows' names), one blank line between bands."""
    label = ends[0]
    bands: list[tuple[int, int]] = []
    k = 1
    while k < len(starts):
        first, last = k, k
        # a column's slice begins where the column before it ends: its gap and padding
        while last + 1 < len(starts) and label + ends[last + 1] - ends[first - 1] <= width:
            last += 1
        bands.append((ends[first - 1], ends[last]))
        k = last + 1
    out: list[str] = []
    for b, (lo, hi) in enumerate(bands):
        if b:
            out.append("")
        for row in rows:
            if not has_columns(row):
                if b == 0:
                    out.append(row)
                continue
            out.append((row[:label] + row[lo:hi]).rstrip())
    return out
