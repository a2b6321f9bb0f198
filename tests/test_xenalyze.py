"""Xen's own xenalyze summarises a lab xentrace file as the lab's trace does.

xenalyze (tools/xentrace/xenalyze.c of Xen 4.17, which Debian 12 does not ship as a
binary) is built from Debian's xen source package by .ci/run, which passes its path in
XENALYZE. The tests run scenarios with the xentrace writer attached and hold
``xenalyze --summary`` against the lab's events: each domain's PV hypercalls by name and
count, and each HVM domain's VM exits by reason and count; and xenalyze must meet no
scheduling record it takes for a broken trace.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from lab.paths import MACHINES
from lab.session import xentrace as X
from lab.session.targets import build_target

pytestmark = pytest.mark.machine


def _xenalyze() -> str:
    path = os.environ.get("XENALYZE") or shutil.which("xenalyze")
    if not path or not Path(path).is_file():
        pytest.skip("no xenalyze: Debian 12 ships none, and .ci/run builds it from the xen source package "
                    "(needs apt-get source access and gcc); set XENALYZE to a built one")
    return path


def _summary(text: str) -> dict[int, dict[str, Counter]]:
    """Per domain: its PV hypercalls ({number: count}) and VM exits ({reason: count}). Hypercalls
    are keyed by number: xenalyze 4.17's name table stops at kexec_op (37) and prints later
    ones, dm_op (41) among them, as "(null)"."""
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
        elif section == "hypercalls" and (m := re.match(r"\s+\S+\s+\[\s*(\d+)\]:\s+(\d+)$", line)):
            out[dom]["hypercalls"][int(m.group(1))] += int(m.group(2))
        elif section == "exits" and (m := re.match(r" (?:VMEXIT_)?([A-Z_]+)\s+(\d+)\s", line)):
            out[dom]["exits"][m.group(1)] += int(m.group(2))
        elif section and line and not line.startswith(" "):
            section = None
    return out


# Runs long enough for vCPUs to move between pCPUs whose clocks run apart (each once gave
# xenalyze FATAL scheduling errors), each a few seconds.
RUNS = [("default", 2_000_000), ("five-modes", 1_000_000), ("amd", 1_000_000)]


@pytest.mark.parametrize("scenario,instructions", RUNS, ids=[r[0] for r in RUNS])
def test_xenalyze_summarises_a_lab_trace_as_the_lab_does(tmp_path, scenario, instructions):
    xenalyze = _xenalyze()
    _kind, host, _xl, _w = build_target([str(MACHINES / f"{scenario}.toml")])
    buf = io.BytesIO()
    first = host.trace.seq
    writer = X.writer_for(host, buf)
    host.trace.listeners.append(writer)
    host.run(instructions)
    writer.close()
    path = tmp_path / "lab.xentrace"
    data = buf.getvalue()
    options = []
    if host.vendor == "amd":
        data, options = _as_xen_4_17_svm(data), ["--svm-mode"]
    path.write_bytes(data)
    mhz = host.config.cpu_mhz
    done = subprocess.run([xenalyze, "--summary", f"--cpu-hz={mhz}M", *options, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout + done.stderr
    assert not re.search(r"FATAL|p->current null|Unexpected record|unexpected runstate", text), text[:3000]
    # TRC_HVM_CPUID follows each CPUID exit, TRC_HVM_HLT each HLT exit that blocks
    assert "(CPUID) missing a handler" not in text and "(HLT) missing a handler" not in text
    got = _summary(done.stdout)

    events = host.trace.since(first)
    assert len({(e.dom, e.vcpu, e.pcpu) for e in events if e.kind == "sched" and e.data.get("op") == "switch"}) > \
        len({(e.dom, e.vcpu) for e in events if e.kind == "sched" and e.data.get("op") == "switch"}), \
        "the run should move a vCPU between pCPUs"
    hvm = {d for d, dom in host.domains.items() if dom.is_hvm}
    want_calls: dict[int, Counter] = {}
    want_exits: dict[int, Counter] = {}
    open_exit: dict[tuple[int, int], str] = {}
    for e in events:
        if e.kind == "hypercall" and e.dom not in hvm and e.data.get("nr") is not None and e.data["nr"] < 64:
            want_calls.setdefault(e.dom, Counter())[e.data["nr"]] += 1
        elif e.kind == "vmexit" and e.dom in hvm:
            open_exit[e.dom, e.vcpu] = e.data["reason"]
        elif e.kind == "vmentry" and (e.dom, e.vcpu) in open_exit:
            # xenalyze sums an exit up when its vCPU enters the guest again: an exit the run
            # ends in is left out of its summary
            want_exits.setdefault(e.dom, Counter())[open_exit.pop((e.dom, e.vcpu))] += 1
    assert want_calls and want_exits
    for dom, calls in want_calls.items():
        assert got[dom]["hypercalls"] == calls, f"d{dom} hypercalls"
    for dom, exits in want_exits.items():
        assert got[dom]["exits"] == exits, f"d{dom} exit reasons"


def _as_xen_4_17_svm(data: bytes) -> bytes:
    """The file with each SVM exit record under Xen 4.17's id. Xen gave AMD's exits their own
    TRC_HVM_SVM_EXIT(64) only in 4.19 (x86/hvm/trace: "Use a different trace type for AMD
    processors"); before, both vendors wrote TRC_HVM_VMEXIT64 and xenalyze 4.17, which knows
    no other, is told the vendor with --svm-mode."""
    out = bytearray(data)
    pos = 0
    while pos + 4 <= len(out):
        (h,) = struct.unpack_from("<I", out, pos)
        if h & 0x0FFF_FFFF == X.TRC_HVM_SVM_EXIT64:
            struct.pack_into("<I", out, pos, (h & ~0x0FFF_FFFF) | X.TRC_HVM_VMX_EXIT64)
        pos += 4 + (8 if h >> 31 else 0) + 4 * ((h >> 28) & 7)
    return bytes(out)
