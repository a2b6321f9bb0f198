"""``KIND[:NAME]@DOMAIN``: until, break and events can name the domain whose events count."""

from __future__ import annotations

import pytest

from lab.errors import UserError
from lab.paths import MACHINES
from lab.session import live
from lab.session.commands import execute
from lab.session.eventspec import AnyEvent, AnyOf, EventSpec, parse_spec, parse_until
from lab.trace import Event


def _event(kind: str, dom: int | None, **data) -> Event:
    return Event(seq=1, cycle=1, pcpu=0, dom=dom, vcpu=0, kind=kind, data=data)


class _Dom:
    def __init__(self, domid: int, name: str) -> None:
        self.domid, self.name = domid, name


class _Host:
    domains = {0: _Dom(0, "Domain-0"), 1: _Dom(1, "pv-guest"), 2: _Dom(2, "hostile")}


def test_a_domain_id_needs_no_machine_and_reads_back_as_written():
    spec = parse_spec("hypercall:mmu_update@2")
    assert (spec.kind, spec.name, spec.dom, spec.domid) == ("hypercall", "mmu_update", "2", 2)
    assert str(spec) == "hypercall:mmu_update@2"
    assert str(parse_spec("trap@hostile", _Host())) == "trap@hostile"


def test_a_name_is_resolved_on_the_machine():
    assert parse_spec("hypercall@hostile", _Host()).domid == 2
    assert parse_spec("hypercall@Domain-0", _Host()).domid == 0
    assert parse_spec("hypercall@hostile").bind(_Host()).domid == 2


def test_only_the_named_domains_events_match():
    spec = parse_spec("hypercall:mmu_update@hostile", _Host())
    assert spec.matches(_event("hypercall", 2, name="mmu_update", nr=1))
    assert not spec.matches(_event("hypercall", 1, name="mmu_update", nr=1))
    assert not spec.matches(_event("hypercall", None, name="mmu_update", nr=1))   # Xen's own
    assert not spec.matches(_event("hypercall", 2, name="iret", nr=23))
    assert parse_spec("hypercall:mmu_update").matches(_event("hypercall", 1, name="mmu_update", nr=1))


def test_an_unbound_name_matches_nothing_rather_than_everything():
    spec = parse_spec("hypercall@hostile")
    assert spec.domid is None
    assert not spec.matches(_event("hypercall", 2, name="iret", nr=23))


def test_an_unknown_domain_is_one_error_naming_the_known_ones():
    with pytest.raises(UserError) as e:
        parse_spec("hypercall:mmu_update@victim", _Host())
    assert str(e.value) == "no domain 'victim' (domains: Domain-0 (0), pv-guest (1), hostile (2))"
    with pytest.raises(UserError, match="names no domain"):
        parse_spec("hypercall@")
    with pytest.raises(UserError, match="runs no Xen"):
        parse_spec("trap@1", object())
    with pytest.raises(UserError, match="no hypercall 'mmu_updat'"):
        parse_spec("hypercall:mmu_updat@1", _Host())


def test_a_spec_without_a_domain_is_unchanged():
    assert parse_spec("vmexit:IO_INSTRUCTION") == EventSpec("vmexit", "IO_INSTRUCTION")


def test_until_takes_a_domain_in_each_of_several_patterns():
    either = parse_until("hypercall:mmu_update@hostile,trap:#PF@pv-guest", _Host())
    assert isinstance(either, AnyOf) and str(either) == "hypercall:mmu_update@hostile,trap:#PF@pv-guest"
    assert either.matches(_event("hypercall", 2, name="mmu_update", nr=1))
    assert either.matches(_event("trap", 1, mnemonic="#PF", vector=14))
    assert not either.matches(_event("hypercall", 1, name="mmu_update", nr=1))
    assert not either.matches(_event("trap", 2, mnemonic="#PF", vector=14))
    # parsed before the machine is known (the screen's parser), then bound on it
    late = parse_until("hypercall@hostile,trap@pv-guest")
    assert not late.matches(_event("hypercall", 2, name="iret", nr=23))
    assert late.bind(_Host()).matches(_event("hypercall", 2, name="iret", nr=23))
    with pytest.raises(UserError, match=r"no domain 'victim'"):
        parse_until("trap,hypercall@victim", _Host())
    assert isinstance(parse_until("any", _Host()), AnyEvent)


@pytest.mark.machine
def test_until_break_and_events_take_a_domain():
    s = live.open_session([str(MACHINES / "isolation.toml")])
    by_seq = {}
    s.machine.trace.listeners.append(lambda ev: by_seq.__setitem__(ev.seq, ev))
    out = execute(s, "until trap:#PF@pv-guest")                      # the victim's faults only
    assert by_seq[int(out.split()[0].lstrip("#"))].dom == 1
    out = execute(s, "until hypercall:mmu_update@hostile")
    assert "mmu_update(1) -> -16 EBUSY" in out.splitlines()[0]     # the victim's succeed
    assert by_seq[int(out.split()[0].lstrip("#"))].dom == 2
    assert execute(s, "break grant@2") == "breakpoint 0: grant@2"
    listed = execute(s, "events 50 hypercall@hostile").splitlines()
    assert listed and all(" hypercall " in line for line in listed)
    with pytest.raises(UserError, match=r"no domain 'victim' \(domains: Domain-0 \(0\), pv-guest \(1\), hostile \(2\), granter \(3\)\)"):
        execute(s, "until hypercall@victim")
