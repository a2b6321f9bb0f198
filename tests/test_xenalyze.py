"""Xen's own xenalyze summarises a lab xentrace file as the lab's trace does.

xenalyze (tools/xentrace/xenalyze.c of Xen 4.17, which Debian 12 does not ship as a
binary) is built from Debian's xen source package by .ci/run, which passes its path in
XENALYZE. The test runs the default scenario with the xentrace writer attached and holds
``xenalyze --summary`` against the lab's events: each domain's PV hypercalls by name and
count, and each HVM domain's VM exits by reason and count; and xenalyze must meet no
scheduling record it takes for a broken trace.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from lab.paths import MACHINES
from lab.session import xentrace as X
from lab.session.targets import build_target
from lab.xen import abi

pytestmark = pytest.mark.machine


def _xenalyze() -> str:
    path = os.environ.get("XENALYZE") or shutil.which("xenalyze")
    if not path or not Path(path).is_file():
        pytest.skip("no xenalyze: Debian 12 ships none, and .ci/run builds it from the xen source package "
                    "(needs apt-get source access and gcc); set XENALYZE to a built one")
    return path


def _summary(text: str) -> dict[int, dict[str, Counter]]:
    """Per domain: its PV hypercalls ({name: count}) and VM exits ({reason: count})."""
    out: dict[int, dict[str, Counter]] = {}
    dom = None
    section = None
    for line in text.splitlines():
        m = re.match(r"\|-- Domain (\d+) --\|", line)
        if m:
            dom = int(m.group(1))
            out[dom] = {"hypercalls": Counter(), "exits": Counter()}
            section = None
            continue
        if dom is None:
            continue
        if re.match(r"\s+hypercall\s+\d+$", line):
            section = "hypercalls"
        elif line.startswith("Exit reasons:"):
            section = "exits"
        elif section == "hypercalls" and (m := re.match(r"\s+(\w+)\s+\[\s*\d+\]:\s+(\d+)$", line)):
            out[dom]["hypercalls"][m.group(1)] += int(m.group(2))
        elif section == "exits" and (m := re.match(r" ([A-Z_]+)\s+(\d+)\s", line)):
            out[dom]["exits"][m.group(1)] += int(m.group(2))
        elif section and line and not line.startswith(" "):
            section = None
    return out


def test_xenalyze_summarises_a_lab_trace_as_the_lab_does(tmp_path):
    xenalyze = _xenalyze()
    _kind, host, _xl, _w = build_target([str(MACHINES / "default.toml")])
    buf = io.BytesIO()
    first = host.trace.seq
    writer = X.XentraceWriter(buf, host.vendor, lambda d: d in host.domains and host.domains[d].is_hvm)
    host.trace.listeners.append(writer)
    host.run(300_000)
    writer.close()
    path = tmp_path / "lab.xentrace"
    path.write_bytes(buf.getvalue())
    mhz = host.config.cpu_mhz
    done = subprocess.run([xenalyze, "--summary", f"--cpu-hz={mhz}M", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout + done.stderr
    assert not re.search(r"FATAL|p->current null|Unexpected record|unexpected runstate", text), text[:3000]
    got = _summary(done.stdout)

    events = host.trace.since(first)
    hvm = {d for d, dom in host.domains.items() if dom.is_hvm}
    want_calls: dict[int, Counter] = {}
    want_exits: dict[int, Counter] = {}
    for e in events:
        if e.kind == "hypercall" and e.dom not in hvm and e.data.get("nr") is not None and e.data["nr"] < 64:
            want_calls.setdefault(e.dom, Counter())[_xenalyze_name(e.data["nr"])] += 1
        elif e.kind == "vmexit" and e.dom in hvm:
            want_exits.setdefault(e.dom, Counter())[e.data["reason"]] += 1
    assert want_calls and want_exits
    for dom, calls in want_calls.items():
        assert got[dom]["hypercalls"] == calls, f"d{dom} hypercalls"
    for dom, exits in want_exits.items():
        assert got[dom]["exits"] == exits, f"d{dom} exit reasons"


def _xenalyze_name(nr: int) -> str:
    """xenalyze's hypercall_name[] spells a few hypercalls its own way (evtchn_op for
    event_channel_op, the number 32 of public/xen.h)."""
    name = abi.hypercall_name(nr)
    return {"event_channel_op": "evtchn_op"}.get(name, name)
