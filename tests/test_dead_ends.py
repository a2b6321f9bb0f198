"""The ways a learner used to get stuck: each one now has a way out."""

from __future__ import annotations

import dataclasses
import io

import pytest

from lab.errors import LabBug, UserError
from lab.paths import MACHINES
from lab.repl import run_script
from lab.session import live
from lab.session.commands import execute
from lab.session.eventspec import parse_spec
from lab.tui.widgets.commandline import suggest

NATIVE = str(MACHINES / "kernels" / "native.s")


@pytest.fixture(scope="module")
def xen():
    return live.open_session([str(MACHINES / "default.toml")])


@pytest.mark.machine
def test_io_with_no_argument_shows_the_focused_guest(xen):
    execute(xen, "focus pv-guest")
    execute(xen, "run 300000")
    text = execute(xen, "io")
    assert text and "event channel" in text.lower()


@pytest.mark.machine
def test_an_internal_error_fails_the_command_not_the_session(monkeypatch):
    session = live.open_session([NATIVE])
    from lab.session import commands

    def broken(session):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setitem(commands.REGISTRY, "regs", dataclasses.replace(commands.REGISTRY["regs"], run=broken))
    with pytest.raises(LabBug) as e:
        execute(session, "regs")
    assert "internal error in the lab" in str(e.value) and "ZeroDivisionError" in str(e.value)
    assert "stepped 3" in execute(session, "step 3")            # the session goes on


@pytest.mark.machine
def test_exec_tells_a_bug_from_a_mistake(monkeypatch):
    session = live.open_session([NATIVE])
    assert run_script(session, ["stpe 3"], io.StringIO()) == 2
    from lab.session import commands
    monkeypatch.setitem(commands.REGISTRY, "regs", dataclasses.replace(commands.REGISTRY["regs"],
                                                                      run=lambda s: str(1 / 0)))
    assert run_script(session, ["step", "regs"], io.StringIO()) == 1


@pytest.mark.machine
def test_reset_goes_back_to_the_start_and_seek_end_returns():
    session = live.open_session([NATIVE])
    start = session.machine.digest()
    execute(session, "run 5000")
    later = session.machine.digest()
    assert later != start
    out = execute(session, "reset")
    assert "back at the start" in out
    assert session.clock()[0] == 0 and session.machine.digest() == start
    execute(session, "seek end")
    assert session.machine.digest() == later


@pytest.mark.parametrize("spec,message", [
    ("hypercall:mmu_updat", "no hypercall 'mmu_updat'; did you mean mmu_update?"),
    ("vmexit:IO_INSTRUCTIO", "did you mean IO_INSTRUCTION?"),
    ("trap:#QQ", "traps go by x86 mnemonic"),
    ("ioport:abc", "a number"),
    ("hypercal", "did you mean hypercall?"),
])
def test_event_names_are_checked_against_xens_tables(spec, message):
    with pytest.raises(UserError) as e:
        parse_spec(spec)
    assert message in str(e.value)


@pytest.mark.parametrize("spec", ["hypercall:mmu_update", "vmexit:IO_INSTRUCTION", "vmexit:IOIO", "trap:#PF",
                                  "trap:pf", "ioport:0xe9", "ring:1", "console:checksum", "domain:create"])
def test_real_names_still_parse(spec):
    assert str(parse_spec(spec)) == spec


@pytest.mark.machine
@pytest.mark.parametrize("line,extra", [("regs now", "now"), ("until hypercall :mmu_update", ":mmu_update"),
                                        ("step 1 2", "2"), ("walk 0x1000 0x2000", "0x2000")])
def test_extra_arguments_are_an_error(line, extra):
    session = live.open_session([NATIVE])
    with pytest.raises(UserError) as e:
        execute(session, line)
    assert f"unexpected '{extra}'" in str(e.value)
    assert session.clock()[0] == 0                              # nothing ran


@pytest.mark.machine
def test_until_with_an_unknown_name_runs_nothing():
    session = live.open_session([NATIVE])
    with pytest.raises(UserError, match="did you mean mmu_update"):
        execute(session, "until hypercall:mmu_updat")
    assert session.clock()[0] == 0


def test_completion_keeps_kind_and_name_one_word():
    kinds = ["hypercall", "vmexit"]
    assert suggest("until hyp", [], kinds) == "until hypercall"
    assert suggest("until hypercall:mmu_u", [], kinds) == "until hypercall:mmu_update"
    assert suggest("break vmexit:IO_I", [], kinds) == "break vmexit:IO_INSTRUCTION"
    assert suggest("until hypercall:zzz", [], kinds) is None


def test_completion_of_a_domain_after_the_at_sign():
    kinds, domains = ["hypercall", "trap"], ["Domain-0", "hostile", "pv-guest"]
    assert suggest("until hypercall:mmu_update@hos", [], kinds, domains) == "until hypercall:mmu_update@hostile"
    assert suggest("break trap@pv", [], kinds, domains) == "break trap@pv-guest"
    assert suggest("until trap@hostile,hypercall@D", [], kinds, domains) == "until trap@hostile,hypercall@Domain-0"
    assert suggest("until trap@hostile", [], kinds, domains) is None      # already whole
    assert suggest("until trap@x", [], kinds, domains) is None            # no such domain
    assert suggest("until trap@hos", [], kinds) is None                   # no machine, no names

