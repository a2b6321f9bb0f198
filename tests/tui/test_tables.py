"""Tables in the command output keep their columns at every width (lab/tui/tables.py)."""

from __future__ import annotations

from lab.tui.tables import fit_answer, fit_table, is_table

# As xl prints it: the header's last columns are separated by tabs.
XL_LIST = [
    "Name                                        ID   Mem VCPUs\tState\tTime(s)",
    "Domain-0                                     0    64     1     r-----       0.0",
    "pv-guest                                     1    32     1     r-----       0.0",
    "hvm-guest                                    2    32     1     ------       0.0",
]

MATRIX = [
    "                     native          pv         hvm",
    "guest instructions  318,804     393,018     318,293",
    "hypercalls                0         356           1",
    "  mmu_update              0          48           0",
    "total cycles        963,450     879,955  11,533,741",
]

HELP = [
    "back [N | event | hypercall | vmexit]                                go back N instructions (default 1), or to the previous event of a kind",
    "break [KIND[:NAME][@DOM] | clear | list]                             stop running at a matching event",
    "seek INSN | #EVENT | MARKER | end | +input | -input | +mark | -mark  go to any point of the session",
    "step [N]                                                             execute N instructions one at a time (default 1)",
    "",
    "on the screen (xenlab open) also:",
    "pause                                                                pause the running machine",
    "quit                                                                 leave the lab",
    "theme [dark|light|NAME]                                              switch the colour theme",
]


def _starts(row: str) -> list[int]:
    """Where each word of a row starts."""
    return [i for i, ch in enumerate(row) if ch != " " and (i == 0 or row[i - 1] == " ")]


def test_a_table_that_fits_is_drawn_as_written():
    assert fit_answer(XL_LIST, 100) == [(r.expandtabs(8), False) for r in XL_LIST]


def test_xl_list_keeps_every_column_aligned_in_a_narrow_pane():
    rows = [line for line, _ in fit_answer(XL_LIST, 57)]
    assert max(len(r) for r in rows) <= 57
    assert rows[0].split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]
    assert [r.split()[0] for r in rows[1:]] == ["Domain-0", "pv-guest", "hvm-guest"]
    # right-aligned numbers end under their headers' ends, in every row
    for header in ("ID", "Mem", "VCPUs", "Time(s)"):
        end = rows[0].index(header) + len(header)
        assert all(r[end - 1] != " " and (end == len(r) or r[end] == " ") for r in rows[1:]), header


def test_a_matrix_too_wide_comes_in_bands_led_by_the_row_names():
    rows = fit_table(MATRIX, 34)
    assert max(len(r) for r in rows) <= 34
    bands = "\n".join(rows).split("\n\n")
    assert len(bands) >= 2
    for band in bands:
        lines = band.splitlines()
        assert [ln[:20].strip() for ln in lines] == ["", "guest instructions", "hypercalls",
                                                     "mmu_update", "total cycles"]
    # every value is still under its mode's name, and each mode appears once
    text = "\n".join(rows)
    for mode, total in (("native", "963,450"), ("pv", "879,955"), ("hvm", "11,533,741")):
        assert text.count(f" {mode}") == 1
        band = next(b for b in bands if f" {mode}" in b.splitlines()[0])
        head, last = band.splitlines()[0], band.splitlines()[-1]
        end = head.index(f" {mode}") + 1 + len(mode)
        assert last[:end].endswith(total)


def test_help_wraps_its_descriptions_under_themselves():
    out = fit_answer(HELP, 57)
    rows = [line for line, _ in out]
    assert max(len(r) for r in rows) <= 57
    # a usage too long to share a line with its description puts it below (itself wrapped)
    seek = rows.index(next(r for r in rows if r.startswith("seek")))
    assert rows[seek].startswith("seek INSN | #EVENT") and rows[seek + 1].startswith("  ")
    assert " ".join(" ".join(rows[seek:seek + 2]).split()) == \
        "seek INSN | #EVENT | MARKER | end | +input | -input | +mark | -mark"
    indent = rows[seek + 2]
    assert indent.lstrip().startswith("go to any point")
    col = len(indent) - len(indent.lstrip())
    # short usages share the line, the description at the same column
    step = next(r for r in rows if r.startswith("step [N]"))
    assert step[col:].startswith("execute N") and step[:col].strip() == "step [N]"
    # every word of every description is still there, in order
    lines = [line for line, _ in out]
    back = lines[1:lines.index("break [KIND[:NAME][@DOM] | clear | list]")]
    assert all(ln[:col].strip() == "" for ln in back)
    assert " ".join(ln.strip() for ln in back) == \
        "go back N instructions (default 1), or to the previous event of a kind"
    # a line that is no table row is left to wrap as prose
    assert ("on the screen (xenlab open) also:", True) in out


def test_widening_gives_the_table_back_as_written():
    wide = [line for line, _ in fit_answer(HELP, 200)]
    assert wide == [line.rstrip() for line in HELP]


def test_prose_is_not_a_table():
    prose = ["The lab's Xen runs in Python.", "It is deterministic.", "Same inputs, same trace."]
    assert not is_table(prose)
    assert fit_answer(prose, 10) == [(line, True) for line in prose]


def test_a_bar_chart_too_wide_puts_its_numbers_under_each_bar_still_aligned():
    bars = {"native": 3, "pv": 4, "hvm": 40, "arm": 1}
    chart = ["cycles per mode   █ guest  ▓ Xen  ░ dom0"] + [
        f"{name:<6}  {'█' * n:<40}  {n * 287_000:>12,}  {n / 3:.2f}x" for name, n in bars.items()]
    rows = fit_table(chart, 50)
    assert max(len(r) for r in rows) <= 50
    assert rows[0] == chart[0]
    for k, name in enumerate(bars):
        bar, numbers = rows[1 + 2 * k], rows[2 + 2 * k]
        assert bar.split()[0] == name and set(bar.split()[1]) == {"█"}
        assert numbers.split() == chart[1 + k].split()[2:]
    numbers = [rows[2 + 2 * k] for k in range(len(bars))]
    ends = {r.index(r.split()[0]) + len(r.split()[0]) for r in numbers}
    assert len(ends) == 1                   # right-aligned as written: they end in one column


def test_xl_vcpu_list_keeps_its_header_readable_at_every_width():
    """xl's header is one line whose last two columns are one space apart ("Time(s) Affinity
    (Hard / Soft)"), so they are fitted as one column: when it wraps under itself it breaks
    between words, never inside "(Hard / Soft)" (it read "Affinity (Hard /" over "Soft)")."""
    from lab.dom0.xlformat import VcpuRow, format_vcpu_list

    text = format_vcpu_list([VcpuRow("Domain-0", 0, 0, 0, running=True, time_s=1.5),
                             VcpuRow("pv-guest", 1, 0, 1, blocked=True, time_s=0.3),
                             VcpuRow("hvm-guest", 2, 0, 0, online=False)], nr_cpus=2)
    lines = text.splitlines()
    header_words = lines[0].split()
    wrapped = 0
    for width in range(30, 121):
        rows = [line for line, _ in fit_answer(lines, width)]
        assert max(len(r) for r in rows) <= width, width
        head = rows[:next(i for i, r in enumerate(rows[1:], 1) if r.startswith("Domain-0"))]
        assert " ".join(head).split() == header_words, width         # every word, in order
        assert any("(Hard / Soft)" in r for r in head), (width, head)
        assert any("Time(s)" in r for r in head) and any("Affinity" in r for r in head)
        wrapped += len(head) > 1
        starts = [i for i, r in enumerate(rows) if r.split()[0] in ("Domain-0", "pv-guest", "hvm-guest")]
        for k, start in enumerate(starts):          # each row keeps its cells, in order
            end = starts[k + 1] if k + 1 < len(starts) else len(rows)
            assert " ".join(rows[start:end]).split() == lines[1 + k].split(), width
    assert wrapped                       # the narrow widths did wrap the header
    assert [line for line, _ in fit_answer(lines, 100)][0] == lines[0]      # wide: as xl prints it


def test_console_choice_shows_every_console_or_the_one_attached():
    from types import SimpleNamespace
    from lab.tui.state import console_choice
    view = SimpleNamespace(console="boot\nhvc0 line\nttyS0 line\n", focus_dom=4,
                           consoles=(("serial", "ttyS0 line\n"), ("pv", "hvc0 line\n")))
    assert console_choice(view, "m", None) == (view.console, "console of m (d4) · every console: serial, pv")
    assert console_choice(view, "m", "pv") == ("hvc0 line\n", "pv console of m (d4) · also serial")
    assert console_choice(view, "m", "serial") == ("ttyS0 line\n", "serial console of m (d4) · also pv")
    lone = SimpleNamespace(console="x", focus_dom=1, consoles=(("pv", "x"),))
    assert console_choice(lone, "p", None) == ("x", "console of p (d1)")
    assert console_choice(lone, "p", "serial") == ("x", "console of p (d1)")
