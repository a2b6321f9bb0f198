"""The check language: parsing, every predicate, explanations, and errors with columns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.lessons.checks import CheckSyntaxError, Context, Watch, parse_check
from lab.trace import Event


class FakeMachine:
    """Just enough of a Xen host for checks: named domains, a xenstore, no simulation."""

    def __init__(self):
        self.domains = {0: SimpleNamespace(domid=0, name="Domain-0", state="running"),
                        1: SimpleNamespace(domid=1, name="pv-guest", state="running")}
        store = {"/local/domain/1/name": "pv-guest"}
        self.services = SimpleNamespace(xenstored=SimpleNamespace(store=SimpleNamespace(
            node=lambda path: SimpleNamespace(value=store[path]) if path in store else None)))
        self.store = store

    def domain_by_name(self, name):
        return next((d for d in self.domains.values() if name in (d.name, str(d.domid))), None)


class FakeSession:
    def __init__(self):
        self.machine = FakeMachine()
        cpu = SimpleNamespace(cpl=3, root=True, halted=False)
        self.refs = [SimpleNamespace(label="pv-guest (pv)", dom=1, vcpu=0, cpu=cpu)]
        self.focus = self.refs[0]

    def vcpus(self):
        return self.refs


def ev(kind, dom=1, **data):
    return Event(0, 0, 0, dom, 0, kind, data)


def watch(text):
    return Watch(parse_check(text), Context(FakeSession()))


def test_an_event_predicate_counts_matching_events_of_its_domain():
    w = watch("event hypercall:mmu_update dom=pv-guest count>=2")
    w.feed(ev("hypercall", name="mmu_update"))
    w.feed(ev("hypercall", dom=0, name="mmu_update"))         # another domain's
    assert not w.met()
    assert "1 since this step began" in w.explain()
    w.feed(ev("hypercall", name="mmu_update"))
    assert w.met()


def test_a_failed_event_check_names_the_last_event_of_that_kind():
    w = watch("event hypercall:mmu_update dom=pv-guest")
    w.feed(ev("hypercall", name="update_va_mapping"))
    assert not w.met()
    assert w.explain() == ("no hypercall mmu_update from pv-guest since this step began; "
                           "the last hypercall there was update_va_mapping")


def test_field_conditions_compare_numbers_and_names():
    w = watch("event ioport port=0x10 dir=in value>=0x40")
    w.feed(ev("ioport", port=0x10, dir="out", value=0x49d2))
    w.feed(ev("ioport", port=0x11, dir="in", value=0x49d2))
    assert not w.met()
    w.feed(ev("ioport", port=16, dir="IN", value=0x49d2))
    assert w.met()


def test_count_zero_means_it_must_not_happen():
    w = watch("event vmexit:CR_ACCESS count=0")
    assert w.met()
    w.feed(ev("vmexit", reason="CR_ACCESS"))
    assert not w.met()


def test_command_predicate_matches_leading_words_only_since_the_step_began():
    w = watch("command xl list")
    w.feed_input("command", "xl info")
    assert not w.met()
    assert "'xl info'" in w.explain()
    w.feed_input("lesson", "xl list")                          # a lesson action is not a command
    assert not w.met()
    w.feed_input("command", "xl list -v")
    assert w.met()


def test_state_predicates_read_the_machine_now():
    s = FakeSession()
    ctx = Context(s)
    assert parse_check("vcpu pv-guest ring=3 mode=root").met(ctx)
    node = parse_check("vcpu pv-guest ring=0")
    assert not node.met(ctx) and "it has ring=3" in node.explain(ctx)
    assert parse_check("focus pv-guest").met(ctx)
    assert parse_check("xenstore /local/domain/1/name=pv-guest").met(ctx)
    missing = parse_check("xenstore /local/domain/1/device/vbd/51712/state=4")
    assert "no /local/domain/1/device/vbd/51712/state yet" in missing.explain(ctx)
    assert not parse_check("domain pv-guest state=shutdown").met(ctx)
    s.machine.domains[1].state = "shutdown"
    assert parse_check("domain pv-guest state=shutdown").met(ctx)
    assert "no domain nosuch" in parse_check("domain nosuch").explain(ctx)


def test_and_or_not_and_parentheses():
    w = watch("(command walk or command regs) and not event trap")
    w.feed_input("command", "regs")
    assert w.met()
    w.feed(ev("trap", mnemonic="#PF"))
    assert not w.met()
    assert "happened (1 since this step began)" in w.explain()


def test_and_binds_tighter_than_or():
    w = watch("command a or command b and command c")
    w.feed_input("command", "a")
    assert w.met()


@pytest.mark.parametrize("text, message, column", [
    ("evnt hypercall", "unknown predicate 'evnt'", 1),
    ("event hypercal", "unknown event kind 'hypercal'", 7),
    ("event hypercall nme=x", "a hypercall event has no field 'nme'", 17),
    ("event hypercall count>=many", "count must be compared with a number", 17),
    ("command walk and", "the check ends too soon", 17),
    ("(command walk", "missing ')'", 14),
    ("command walk command regs", None, None),        # words are arguments: valid
    ("vcpu pv-guest mode=sideways", "mode is root or non-root", 15),
    ("xenstore local/x", "a xenstore path starts with '/'", 10),
    ("command \"walk", "unclosed quote", 9),
    ("", "the check is empty", 1),
])
def test_syntax_errors_name_the_problem_and_its_column(text, message, column):
    if message is None:
        parse_check(text)
        return
    with pytest.raises(CheckSyntaxError) as e:
        parse_check(text)
    assert message in str(e.value)
    assert e.value.column == column


def test_quoted_names_may_hold_spaces():
    w = watch('event "pagetable:shadow sync"')
    w.feed(ev("pagetable", op="shadow sync"))
    assert w.met()
