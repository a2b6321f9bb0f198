"""Console input to an Arm guest: xenconsoled puts what is typed into the console ring's in[] and
notifies; the Arm kernel's shell (its command line says "shell") waits in wfi for that event's PPI,
reads, answers on out[], and drives blkfront, netfront and the program from there. Headless, through
the session's console command, as the screen's console and xl console do it."""

from __future__ import annotations

import pytest

from lab.errors import UserError
from lab.paths import MACHINES
from lab.session import live
from lab.session.commands import execute

ARM = MACHINES / "arm"


@pytest.fixture(scope="module")
def shell_session(tmp_path_factory):
    d = tmp_path_factory.mktemp("armshell")
    (d / "shell.cfg").write_text(
        f'name = "arm-shell"\nmemory = 32\nvcpus = 1\nkernel = "{ARM / "kernel.s"}"\ncmdline = "shell"\n'
        "disk = ['format=raw, vdev=xvda, access=rw, target=arm-shell.img']\n"
        "vif = ['mac=00:16:3e:00:00:41, bridge=xenbr0']\non_poweroff = \"preserve\"\n")
    (d / "shell.toml").write_text('description = "an Arm guest with its shell"\n[host]\narch = "arm64"\n'
                                  '[[domain]]\nconfig = "shell.cfg"\n')
    session = live.open_session([str(d / "shell.toml")])
    execute(session, "run 400000")
    return session


def _out(session) -> str:
    return session.machine.domain_by_name("arm-shell").console_output


def test_the_shell_reads_what_is_typed_from_the_console_ring(shell_session):
    s = shell_session
    assert _out(s).endswith("xenlab arm64 shell: type help for the commands\narm# ")
    said = execute(s, "console arm-shell echo hello from the ring")
    assert "the console ring's in[] and its event channel" in said
    execute(s, "run 300000")
    assert _out(s).endswith("arm# echo hello from the ring\nhello from the ring\narm# ")
    events = list(s.machine.trace.iter_all())
    fed = [e for e in events if e.kind == "ring_io" and e.data.get("ring") == "console"
           and e.data["op"].startswith("input:")]
    assert fed and fed[0].data["op"] == "input: 25 byte(s) into in[]"
    dom = s.machine.domain_by_name("arm-shell")
    # the guest read them all: in_cons caught up with in_prod in its ring page
    page = s.machine.read_guest(dom, dom.console_pfn << 12, 4096)
    assert page[3072:3076] == page[3076:3080] == (25).to_bytes(4, "little")


def test_the_shell_drives_the_pv_drivers_and_unknown_commands_are_answered(shell_session):
    s = shell_session
    for line in ("disk read 0", "ping", "frobnicate"):
        execute(s, f"console arm-shell {line}")
        execute(s, "run 600000")
    out = _out(s)
    assert "arm# disk read 0\nsector 0: " in out
    assert "arm# ping\nping 10.0.0.1: reply\n" in out
    assert "arm# frobnicate\nunknown command; type help\n" in out


def test_run_starts_the_workload_from_the_shell(shell_session):
    s = shell_session
    execute(s, "console arm-shell run")
    execute(s, "run 500000")
    dom = s.machine.domain_by_name("arm-shell")
    assert "arm# run\nkernel: starting the program at EL0\n" in _out(s)
    assert "workload: disk ok" in _out(s) and dom.shutdown_reason == "poweroff"
    with pytest.raises(UserError, match="no domain 'nosuch'"):
        execute(s, "console nosuch ls")
