"""The check language: what a lesson step asks of the machine, parsed, never ``eval``-ed.

A check is one line such as::

    event hypercall:mmu_update dom=pv-guest and not event vmexit dom=pv-guest
    vcpu hvm-guest ring=0 mode=non-root
    (command walk or command events) and xenstore /local/domain/1/device/vbd/51712/state=4

Predicates (docs/lessons.md has the full table):

* ``event KIND[:NAME] [FIELD OP VALUE ...]``: an event happened since the step began;
  ``dom=``/``vcpu=`` name where, ``count>=N`` how often (default ``count>=1``).
* ``command NAME [WORD ...]``: the learner ran a command (its first words) since the step began.
* ``vcpu DOM[.V] [ring=N] [mode=root|non-root] [halted=yes|no]``: a vCPU's state now.
* ``focus DOM``: the learner is looking at DOM.
* ``xenstore PATH[=VALUE]``: a xenstore node exists (and holds VALUE) now.
* ``domain DOM [state=STATE]``: a domain exists (and is in STATE) now.
* ``true``: always met (a step that only asks a question).

joined with ``and``, ``or``, ``not`` and parentheses. Event and command predicates
count incrementally as events and inputs arrive (``feed``/``feed_input``); state
predicates read the machine when the check is evaluated. A failed check explains
what is missing (``explain``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..trace import KINDS, NAME_FIELD, Event, name_matches


class CheckSyntaxError(Exception):
    """A check that does not parse; ``column`` is 1-based within the check text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


_OPS = ("!=", ">=", "<=", "=", ">", "<")
_COND = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(!=|>=|<=|=|>|<)(.*)$")
_TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|[()]|[^\s()]+')
KEYWORDS = ("and", "or", "not")


@dataclass(frozen=True)
class Token:
    text: str
    column: int
    quoted: bool = False


def tokenize(text: str) -> list[Token]:
    out = []
    pos = 0
    for m in _TOKEN.finditer(text):
        gap = text[pos:m.start()]
        if gap.strip():
            raise CheckSyntaxError(f"unexpected '{gap.strip()}'", pos + 1)
        raw = m.group(0)
        if raw[0] in "\"'" and len(raw) >= 2 and raw[-1] == raw[0]:
            out.append(Token(raw[1:-1], m.start() + 1, quoted=True))
        elif '"' in raw or "'" in raw:
            raise CheckSyntaxError("unclosed quote", m.start() + 1 + max(raw.find('"'), raw.find("'")))
        else:
            out.append(Token(raw, m.start() + 1))
        pos = m.end()
    rest = text[pos:]
    if rest.strip():
        raise CheckSyntaxError(f"unexpected '{rest.strip()}' (an unclosed quote?)", pos + 1)
    return out


# --------------------------------------------------------------------- context
class Context:
    """What a check reads: the machine (through the session's views) and the step's inputs.

    ``session`` needs ``machine``, ``vcpus()`` and ``focus``, as
    :class:`lab.session.session.Session` has them.
    """

    def __init__(self, session: Any) -> None:
        self.session = session

    @property
    def machine(self) -> Any:
        return self.session.machine

    def domid(self, name: str) -> int | None:
        """A domain by name or id; None on a machine without it (yet)."""
        find = getattr(self.machine, "domain_by_name", None)
        if find is None:
            return None
        dom = find(name)
        return dom.domid if dom is not None else None

    def dom_name(self, domid: int | None) -> str:
        doms = getattr(self.machine, "domains", None)
        if domid is None or not isinstance(doms, dict) or domid not in doms:
            return "Xen" if domid is None else f"d{domid}"
        return doms[domid].name


# --------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"

    def test(self, actual: Any) -> bool:
        if actual is None:
            return self.op == "!=" and self.value.lower() not in ("none", "")
        want: Any = self.value
        if isinstance(actual, bool):
            want = want.lower() in ("1", "yes", "true", "on")
        elif isinstance(actual, int):
            try:
                want = int(want, 0)
            except ValueError:
                return False
        else:
            actual, want = str(actual).lower(), want.lower()
            if self.op in ("=", "!="):
                return (actual == want) == (self.op == "=")
            try:
                actual, want = float(actual), float(want)
            except ValueError:
                return False
        return {"=": actual == want, "!=": actual != want, ">=": actual >= want, "<=": actual <= want,
                ">": actual > want, "<": actual < want}[self.op]


def _parse_cond(tok: Token) -> Cond:
    m = _COND.match(tok.text)
    if m is None:
        raise CheckSyntaxError(f"expected FIELD=VALUE (or !=, >=, <=, >, <), not '{tok.text}'", tok.column)
    return Cond(m.group(1), m.group(2), m.group(3))


# --------------------------------------------------------------------- nodes
class Node(ABC):
    """A check or part of one."""

    def nodes(self) -> Iterator["Node"]:
        yield self

    @abstractmethod
    def met(self, ctx: Context) -> bool:
        """Whether the check holds now."""

    @abstractmethod
    def explain(self, ctx: Context) -> str:
        """Why the check is not met, in words (called only when it is not)."""

    def reset(self) -> None:
        """Forget what was counted: a new step (or the same step again) begins."""


class Always(Node):
    def __str__(self) -> str:
        return "true"

    def met(self, ctx: Context) -> bool:
        return True

    def explain(self, ctx: Context) -> str:
        return ""


@dataclass(eq=False)
class EventCheck(Node):
    kind: str
    name: str | None
    conds: list[Cond]
    dom: str | None = None
    vcpu: int | None = None
    count: Cond = field(default_factory=lambda: Cond("count", ">=", "1"))
    seen: int = 0
    last_same_kind: Event | None = None
    _domid: int | None = None

    def __str__(self) -> str:
        spec = self.kind + (f":{self.name}" if self.name else "")
        return " ".join(["event", spec] + [str(c) for c in self.conds])

    def reset(self) -> None:
        self.seen = 0
        self.last_same_kind = None
        self._domid = None

    def feed(self, ev: Event, ctx: Context) -> bool:
        """Count ``ev`` if it matches; True when the count changed."""
        if self.dom is not None:
            if self._domid is None:
                self._domid = ctx.domid(self.dom)
                if self._domid is None:
                    return False
            if ev.dom != self._domid:
                return False
        if self.vcpu is not None and ev.vcpu != self.vcpu:
            return False
        self.last_same_kind = ev
        if self.name is not None and not name_matches(ev, self.name):
            return False
        for c in self.conds:
            if not c.test(ev.data.get(c.field)):
                return False
        self.seen += 1
        return True

    def met(self, ctx: Context) -> bool:
        return self.count.test(self.seen)

    def describe(self, ctx: Context) -> str:
        what = self.kind if self.name is None else f"{self.kind} {self.name}"
        where = f" from {self.dom}" if self.dom is not None else ""
        if self.vcpu is not None:
            where += f" vCPU {self.vcpu}"
        conds = f" with {', '.join(str(c) for c in self.conds)}" if self.conds else ""
        return f"{what}{where}{conds}"

    def explain(self, ctx: Context) -> str:
        what = self.describe(ctx)
        c = self.count
        if c.op in (">=", ">") or (c.op == "=" and c.value not in ("0",)):
            if self.seen == 0:
                msg = f"no {what} since this step began"
            else:
                msg = f"{what}: {self.seen} since this step began, the objective wants count{c.op}{c.value}"
            last = self.last_same_kind
            if last is not None:
                field_name = NAME_FIELD.get(last.kind, "name")
                name = last.data.get(field_name)
                if isinstance(name, int) and last.kind in ("ioport", "ioreq", "mmio"):
                    name = f"{name:#x}"          # ports and addresses as the panes show them
                msg += f"; the last {last.kind} {'there ' if self.dom else ''}was {name}" \
                    if name is not None else f"; the last {last.kind} was #{last.seq}"
                if last.data.get("errno"):
                    msg += f" ({last.data['errno']})"
            return msg
        return f"{what}: {self.seen} since this step began, the objective wants count{c.op}{c.value}"


@dataclass(eq=False)
class CommandCheck(Node):
    words: list[str]
    seen: int = 0
    last: str | None = None

    def __str__(self) -> str:
        return "command " + " ".join(self.words)

    def reset(self) -> None:
        self.seen = 0
        self.last = None

    def feed_input(self, kind: str, text: str) -> bool:
        if kind != "command":
            return False
        self.last = text
        got = text.split()
        if got[:len(self.words)] == self.words:
            self.seen += 1
            return True
        return False

    def met(self, ctx: Context) -> bool:
        return self.seen > 0

    def explain(self, ctx: Context) -> str:
        msg = f"the command '{' '.join(self.words)}' has not been run since this step began"
        return msg + (f" (the last command was '{self.last}')" if self.last else "")


def _vcpu_refs(ctx: Context, spec: str) -> list[Any]:
    dom_part, _, vcpu_part = spec.partition(".")
    domid = ctx.domid(dom_part)
    out = []
    for ref in ctx.session.vcpus():
        if ref.dom is None:
            ok = dom_part in ("0", "bare", "native")
        else:
            ok = ref.dom == domid
        if ok and (not vcpu_part or str(ref.vcpu) == vcpu_part):
            out.append(ref)
    return out


_VCPU_FIELDS = ("ring", "mode", "halted")


@dataclass(eq=False)
class VcpuCheck(Node):
    spec: str
    conds: list[Cond]

    def __str__(self) -> str:
        return " ".join(["vcpu", self.spec] + [str(c) for c in self.conds])

    @staticmethod
    def _value(ref: Any, name: str) -> Any:
        cpu = ref.cpu
        return {"ring": cpu.cpl, "mode": "root" if cpu.root else "non-root", "halted": bool(cpu.halted)}[name]

    def met(self, ctx: Context) -> bool:
        refs = _vcpu_refs(ctx, self.spec)
        return any(all(c.test(self._value(r, c.field)) for c in self.conds) for r in refs)

    def explain(self, ctx: Context) -> str:
        refs = _vcpu_refs(ctx, self.spec)
        if not refs:
            return f"there is no vCPU {self.spec}"
        r = refs[0]
        now = ", ".join(f"{c.field}={self._value(r, c.field)}" for c in self.conds)
        want = ", ".join(str(c) for c in self.conds)
        return f"{self.spec}'s vCPU should have {want}; it has {now}"


@dataclass(eq=False)
class FocusCheck(Node):
    dom: str

    def __str__(self) -> str:
        return f"focus {self.dom}"

    def met(self, ctx: Context) -> bool:
        return any(r.cpu is ctx.session.focus.cpu for r in _vcpu_refs(ctx, self.dom))

    def explain(self, ctx: Context) -> str:
        return f"the panes show {ctx.session.focus.label}, not {self.dom} (focus {self.dom})"


@dataclass(eq=False)
class XenstoreCheck(Node):
    path: str
    value: str | None

    def __str__(self) -> str:
        return f"xenstore {self.path}" + (f"={self.value}" if self.value is not None else "")

    def _node(self, ctx: Context) -> Any:
        services = getattr(ctx.machine, "services", None)            # a bare machine has no dom0
        xs = services.xenstored if services is not None else None
        return xs.store.node(self.path) if xs is not None else None

    def met(self, ctx: Context) -> bool:
        node = self._node(ctx)
        return node is not None and (self.value is None or node.value == self.value)

    def explain(self, ctx: Context) -> str:
        node = self._node(ctx)
        if node is None:
            return f"xenstore has no {self.path} yet"
        return f"xenstore {self.path} holds \"{node.value}\", not \"{self.value}\""


@dataclass(eq=False)
class DomainCheck(Node):
    dom: str
    state: Cond | None

    def __str__(self) -> str:
        return f"domain {self.dom}" + (f" {self.state}" if self.state else "")

    def _dom(self, ctx: Context) -> Any:
        find = getattr(ctx.machine, "domain_by_name", None)
        return find(self.dom) if find is not None else None

    def met(self, ctx: Context) -> bool:
        d = self._dom(ctx)
        return d is not None and (self.state is None or self.state.test(d.state))

    def explain(self, ctx: Context) -> str:
        d = self._dom(ctx)
        if d is None:
            return f"there is no domain {self.dom} (xl list shows the domains)"
        return f"{self.dom} is {d.state}; the objective wants state{self.state.op}{self.state.value}"


@dataclass(eq=False)
class Not(Node):
    inner: Node

    def __str__(self) -> str:
        return f"not {self.inner}"

    def nodes(self) -> Iterator[Node]:
        yield self
        yield from self.inner.nodes()

    def met(self, ctx: Context) -> bool:
        return not self.inner.met(ctx)

    def explain(self, ctx: Context) -> str:
        if isinstance(self.inner, EventCheck):
            return f"{self.inner.describe(ctx)} happened ({self.inner.seen} since this step began), " \
                   f"and the objective is that it does not"
        return f"'{self.inner}' holds, and the objective is that it does not"


@dataclass(eq=False)
class All(Node):
    parts: list[Node]

    def __str__(self) -> str:
        return " and ".join(f"({p})" if isinstance(p, AnyOf) else str(p) for p in self.parts)

    def nodes(self) -> Iterator[Node]:
        yield self
        for p in self.parts:
            yield from p.nodes()

    def met(self, ctx: Context) -> bool:
        return all(p.met(ctx) for p in self.parts)

    def explain(self, ctx: Context) -> str:
        return "; ".join(p.explain(ctx) for p in self.parts if not p.met(ctx))


@dataclass(eq=False)
class AnyOf(Node):
    parts: list[Node]

    def __str__(self) -> str:
        return " or ".join(str(p) for p in self.parts)

    def nodes(self) -> Iterator[Node]:
        yield self
        for p in self.parts:
            yield from p.nodes()

    def met(self, ctx: Context) -> bool:
        return any(p.met(ctx) for p in self.parts)

    def explain(self, ctx: Context) -> str:
        return "none of these yet: " + "; or ".join(p.explain(ctx) for p in self.parts)


# --------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.end = len(text) + 1

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise CheckSyntaxError("the check ends too soon", self.end)
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and not tok.quoted and tok.text in words

    def parse(self) -> Node:
        if not self.toks:
            raise CheckSyntaxError("the check is empty", 1)
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            raise CheckSyntaxError(f"unexpected '{tok.text}' (join predicates with and/or)", tok.column)
        return node

    def expr(self) -> Node:
        parts = [self.term()]
        while self.at_word("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else AnyOf(parts)

    def term(self) -> Node:
        parts = [self.factor()]
        while self.at_word("and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else All(parts)

    def factor(self) -> Node:
        if self.at_word("not"):
            self.take()
            return Not(self.factor())
        if self.at_word("("):
            self.take()
            node = self.expr()
            if not self.at_word(")"):
                raise CheckSyntaxError("missing ')'", (self.peek() or Token("", self.end)).column)
            self.take()
            return node
        return self.predicate()

    def args(self) -> list[Token]:
        out = []
        while (tok := self.peek()) is not None and not (not tok.quoted and tok.text in KEYWORDS + ("(", ")")):
            out.append(self.take())
        return out

    def predicate(self) -> Node:
        head = self.take()
        word = head.text
        args = self.args()
        parse = _PREDICATES.get(word)
        if parse is None or head.quoted:
            raise CheckSyntaxError(f"unknown predicate '{word}' (known: {', '.join(sorted(_PREDICATES))})",
                                   head.column)
        return parse(head, args)


def _need(head: Token, args: list[Token], what: str) -> Token:
    if not args:
        raise CheckSyntaxError(f"{head.text} needs {what}", head.column + len(head.text) + 1)
    return args[0]


def _p_event(head: Token, args: list[Token]) -> Node:
    spec = _need(head, args, "an event, e.g. 'event hypercall:mmu_update'")
    kind, _, name = spec.text.partition(":")
    if kind not in KINDS:
        raise CheckSyntaxError(f"unknown event kind '{kind}' (known: {', '.join(sorted(KINDS))})", spec.column)
    node = EventCheck(kind, name or None, [])
    fields = set(KINDS[kind].fields)
    for tok in args[1:]:
        c = _parse_cond(tok)
        if c.field == "dom":
            if c.op != "=":
                raise CheckSyntaxError("dom takes '=' and a domain's name or id", tok.column)
            node.dom = c.value
        elif c.field == "vcpu":
            if c.op != "=" or not c.value.isdigit():
                raise CheckSyntaxError("vcpu takes '=' and a number", tok.column)
            node.vcpu = int(c.value)
        elif c.field == "count":
            try:
                int(c.value, 0)
            except ValueError:
                raise CheckSyntaxError(f"count must be compared with a number, not '{c.value}'",
                                       tok.column) from None
            node.count = c
        elif c.field not in fields:
            raise CheckSyntaxError(f"a {kind} event has no field '{c.field}' (fields: "
                                   f"{', '.join(KINDS[kind].fields)}, dom, vcpu, count)", tok.column)
        else:
            node.conds.append(c)
    return node


def _p_command(head: Token, args: list[Token]) -> Node:
    _need(head, args, "a command name, e.g. 'command walk'")
    return CommandCheck([t.text for t in args])


def _p_vcpu(head: Token, args: list[Token]) -> Node:
    spec = _need(head, args, "a domain, e.g. 'vcpu pv-guest ring=3'")
    conds = [_parse_cond(t) for t in args[1:]]
    if not conds:
        raise CheckSyntaxError("vcpu needs at least one of ring=N, mode=root|non-root, halted=yes|no",
                               spec.column + len(spec.text) + 1)
    for t, c in zip(args[1:], conds):
        if c.field not in _VCPU_FIELDS:
            raise CheckSyntaxError(f"a vCPU has no field '{c.field}' (fields: {', '.join(_VCPU_FIELDS)})", t.column)
        if c.field == "mode" and c.value not in ("root", "non-root"):
            raise CheckSyntaxError(f"mode is root or non-root, not '{c.value}'", t.column)
    return VcpuCheck(spec.text, conds)


def _p_focus(head: Token, args: list[Token]) -> Node:
    dom = _need(head, args, "a domain, e.g. 'focus hvm-guest'")
    if len(args) > 1:
        raise CheckSyntaxError(f"focus takes one domain, not '{args[1].text}'", args[1].column)
    return FocusCheck(dom.text)


def _p_xenstore(head: Token, args: list[Token]) -> Node:
    tok = _need(head, args, "a path, e.g. 'xenstore /local/domain/1/name=pv-guest'")
    if len(args) > 1:
        raise CheckSyntaxError(f"xenstore takes one PATH[=VALUE], not '{args[1].text}'", args[1].column)
    path, eq, value = tok.text.partition("=")
    if not path.startswith("/"):
        raise CheckSyntaxError(f"a xenstore path starts with '/', not '{path}'", tok.column)
    return XenstoreCheck(path, value if eq else None)


def _p_domain(head: Token, args: list[Token]) -> Node:
    dom = _need(head, args, "a domain, e.g. 'domain pv-guest state=running'")
    state = None
    for t in args[1:]:
        c = _parse_cond(t)
        if c.field != "state" or c.op not in ("=", "!="):
            raise CheckSyntaxError(f"domain takes state=STATE or state!=STATE, not '{t.text}'", t.column)
        state = c
    return DomainCheck(dom.text, state)


def _p_true(head: Token, args: list[Token]) -> Node:
    if args:
        raise CheckSyntaxError(f"true takes nothing, not '{args[0].text}'", args[0].column)
    return Always()


_PREDICATES = {"event": _p_event, "command": _p_command, "vcpu": _p_vcpu, "focus": _p_focus,
               "xenstore": _p_xenstore, "domain": _p_domain, "true": _p_true}


def parse_check(text: str) -> Node:
    """Parse one check; a mistake is a :class:`CheckSyntaxError` with its column."""
    return _Parser(text).parse()


# --------------------------------------------------------------------- a step's watch
class Watch:
    """One step's check, counting what happens from the moment the step began.

    ``feed`` sees every trace event and ``feed_input`` every learner input; both
    touch only the predicates that could care (event kinds are indexed), so the
    check costs nothing for the events it does not name.
    """

    def __init__(self, check: Node, ctx: Context) -> None:
        self.check = check
        self.ctx = ctx
        self.by_kind: dict[str, list[EventCheck]] = {}
        self.commands: list[CommandCheck] = []
        for n in check.nodes():
            n.reset()
            if isinstance(n, EventCheck):
                self.by_kind.setdefault(n.kind, []).append(n)
            elif isinstance(n, CommandCheck):
                self.commands.append(n)
        #: Whether an event predicate changed since the last evaluation.
        self.changed = True

    def feed(self, ev: Event) -> bool:
        preds = self.by_kind.get(ev.kind)
        if not preds:
            return False
        hit = False
        for p in preds:
            hit = p.feed(ev, self.ctx) or hit
        if hit:
            self.changed = True
        return hit

    def feed_input(self, kind: str, text: str) -> None:
        for c in self.commands:
            if c.feed_input(kind, text):
                self.changed = True

    def met(self) -> bool:
        self.changed = False
        return self.check.met(self.ctx)

    def explain(self) -> str:
        return self.check.explain(self.ctx)
