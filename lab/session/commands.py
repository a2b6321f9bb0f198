"""The lab's command language: one parser for the screen, the shell, ``exec``, lessons and recordings.

Each command declares its arguments (and so its usage, its errors and its
help), whether it is *timed* (``run``, ``step``, ``until``: the screen runs
them on its simulation thread at the chosen speed, and they can be paused)
and whether it belongs to the screen alone (``theme``, ``speed`` ...: they
change what is shown, never the machine). :func:`parse` turns a line into a
:class:`Call`; :func:`perform` runs it on a session, after noting it as an
:class:`~lab.session.session.Input`; :func:`execute` does both.

A mistake is a UserError with one clear line; an internal error in a command
is a LabBug that says what failed, and the session goes on. Nothing here
prints or exits.
"""

from __future__ import annotations

import difflib
import os
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import LabBug, UserError
from ..isa.encoding import INSN_SIZE
from . import arm_view
from .eventspec import EventSpec, parse_spec, parse_until
from .recorder import start_recording, stop_recording
from .session import Session
from .summary import format_summary, summarize


# -- arguments ------------------------------------------------------------------------
def read_number(text: str, what: str = "the address") -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UserError(f"{what} must be a number, not '{text}'") from None


def read_count(text: str) -> int:
    n = read_number(text, "the count")
    if n < 1:
        raise UserError("the count must be at least 1")
    return n


def read_word(text: str) -> str:
    return text


@dataclass(frozen=True)
class Arg:
    """One argument: its name in the usage, how a word becomes its value."""
    name: str
    read: Callable[[str], Any] = read_word
    optional: bool = False
    #: Takes every word left (a list); required means at least one.
    rest: bool = False
    #: The keyword the command's function gets (default: the name in lower case).
    key: str = ""
    #: What to say when it is missing (default: "NAME needs ARG: usage").
    missing: str = ""

    @property
    def keyword(self) -> str:
        return self.key or self.name.lower().split("[")[0].replace("-", "_").replace(".", "_")


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    run: Callable[..., str]
    args: tuple[Arg, ...] = ()
    #: The usage line, where the arguments alone do not say it (alternatives, options).
    usage_text: str = ""
    #: A parser of the words after the name, where ``args`` cannot express them.
    parser: Callable[[list[str]], dict[str, Any]] | None = None
    #: Run, step or until: the screen runs it in slices on its simulation thread.
    timed: bool = False
    #: The screen's own (what is shown, not the machine): the shell has no use for it.
    screen: bool = False
    #: Examples and details for ``help NAME``.
    details: str = ""

    @property
    def usage(self) -> str:
        if self.usage_text:
            return self.usage_text
        parts = [self.name]
        for a in self.args:
            word = a.name + ("..." if a.rest else "")
            parts.append(f"[{word}]" if a.optional else word)
        return " ".join(parts)

    def parse(self, words: list[str]) -> dict[str, Any]:
        if self.parser is not None:
            return self.parser(words)
        out: dict[str, Any] = {}
        left = list(words)
        for a in self.args:
            if a.rest:
                if not left and not a.optional:
                    raise UserError(a.missing or f"{self.name} needs {a.name}: {self.usage}")
                out[a.keyword] = [a.read(w) for w in left]
                left = []
            elif left:
                out[a.keyword] = a.read(left.pop(0))
            elif a.optional:
                out[a.keyword] = None
            else:
                raise UserError(a.missing or f"{self.name} needs {a.name}: {self.usage}")
        if left:
            raise self.unexpected(left[0])
        return out

    def unexpected(self, word: str) -> UserError:
        return UserError(f"{self.name}: unexpected '{word}' (usage: {self.usage})")


@dataclass(frozen=True)
class Call:
    """A parsed command line: the command, its arguments by keyword, the line as typed."""
    command: Command
    args: dict[str, Any] = field(default_factory=dict)
    line: str = ""

    @property
    def name(self) -> str:
        return self.command.name


REGISTRY: dict[str, Command] = {}


def command(name: str, summary: str, *args: Arg, usage: str = "", parser: Callable | None = None,
            timed: bool = False, screen: bool = False, details: str = ""):
    def deco(fn: Callable[..., str]):
        REGISTRY[name] = Command(name, summary, fn, tuple(args), usage, parser, timed, screen, details)
        return fn
    return deco


def split(line: str) -> list[str]:
    """The words of a command line (shell quoting), or a UserError."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UserError(f"cannot parse the command: {e}") from None


def parse(line: str) -> Call | None:
    """The command a line asks for, its arguments checked; None for a blank line."""
    words = split(line)
    if not words:
        return None
    name = words[0]
    cmd = REGISTRY.get(name)
    if cmd is None:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.6)
        close += [n for n in sorted(REGISTRY) if n.startswith(name[:2]) and n not in close]
        hint = f" (did you mean {', '.join(close[:4])}?)" if close else " (try 'help')"
        raise UserError(f"unknown command '{name}'{hint}")
    return Call(cmd, cmd.parse(words[1:]), line.strip())


def perform(session: Session, call: Call) -> str:
    """Run a parsed command on the session (noted as an input first); return what it prints."""
    if call.command.screen:
        raise UserError(f"'{call.name}' changes the screen, not the machine: it works in the lab's window "
                        "(xenlab open)")
    session.note_input("command", call.line)
    try:
        return call.command.run(session, **call.args)
    except UserError:
        raise
    except Exception as e:
        # A bug in the lab must not end the screen or the shell: the command fails, the session goes on.
        if os.environ.get("XENLAB_DEBUG"):
            raise
        raise LabBug(f"{call.name}: internal error in the lab ({type(e).__name__}: {e}). The session goes on; "
                     "if the machine looks wrong, 'reset' starts it again from its start") from e
    finally:
        session.input_applied()


def execute(session: Session, line: str) -> str:
    """Run one command line; return what it prints."""
    call = parse(line)
    if call is None:
        return ""
    return perform(session, call)


# -- help -----------------------------------------------------------------------------
def help_text(name: str | None = None, *, screen: bool = False, keys: tuple[tuple[str, str], ...] = ()) -> str:
    """``help``: every command (the screen's own too when ``screen``), and the keys given."""
    if name:
        cmd = REGISTRY.get(name)
        if cmd is None:
            raise UserError(f"no command '{name}' (help lists them)")
        where = "\n  (on the screen only)" if cmd.screen and not screen else ""
        more = f"\n{cmd.details}" if cmd.details else ""
        return f"{cmd.usage}\n  {cmd.summary}{where}{more}"
    lab = [c for c in sorted(REGISTRY.values(), key=lambda c: c.name) if not c.screen]
    own = [c for c in sorted(REGISTRY.values(), key=lambda c: c.name) if c.screen]
    width = max(len(c.usage) for c in REGISTRY.values())
    out = [f"{c.usage:<{width}}  {c.summary}" for c in lab]
    out += ["", "on the screen also:" if screen else "on the screen (xenlab open) also:"]
    out += [f"{c.usage:<{width}}  {c.summary}" for c in own]
    if keys:
        out += ["", "keys: " + ", ".join(f"{k} {label}" for k, label in keys)]
    return "\n".join(out)


@command("help", "list commands, or explain one", Arg("COMMAND", optional=True))
def _help(session: Session, command: str | None) -> str:
    return help_text(command)


# -- time -----------------------------------------------------------------------------
def where_line(view: dict[str, Any]) -> str:
    """``bare metal: ring 0 root, rip 0x...: mov rax, 1`` for a cpu_view dict (an Arm vCPU by its EL)."""
    if view.get("arch") == "arm64":
        return arm_view.where_text(view)
    mode = "root" if view["root"] else "non-root"
    state = f" [{view['stopped']}]" if view["stopped"] else (" [halted]" if view["halted"] else "")
    return f"{view['label']}: ring {view['cpl']} {mode}, rip {view['rip']:#x}: {view['next']}{state}"


def _where(session: Session) -> str:
    return where_line(session.cpu_view())


@command("step", "execute N instructions one at a time (default 1)", Arg("N", read_count, optional=True),
         timed=True)
def _step(session: Session, n: int | None) -> str:
    done = session.step(n or 1)
    hit = f"\nbreakpoint: {session.break_hit.summary()}" if session.break_hit else ""
    return f"stepped {done}\n{_where(session)}{hit}"


@command("run", "run N instructions, or until a breakpoint or the machine stops",
         Arg("N", read_count, optional=True), timed=True)
def _run(session: Session, n: int | None) -> str:
    hit = session.run(n)
    msg = f"breakpoint: {hit.summary()}\n" if hit else ""
    return msg + _where(session)


@command("until", "run until the next matching event, and show where it happened",
         Arg("KIND[:NAME][@DOM]", parse_until, key="spec",
             missing="until needs an event, e.g. 'until vmexit:IO_INSTRUCTION' (or 'until any')"), timed=True,
         details="  e.g. until trap:#PF, until hypercall:mmu_update, until vmexit:IO_INSTRUCTION\n"
                 "  @DOM (a domain's name or id) counts only that domain's events: until trap:#PF@pv-guest\n"
                 "  'until any' stops at the next event; 'until hypercall,vmexit' at either\n"
                 "  names are Xen's: a misspelt one is an error with the nearest names")
def _until(session: Session, spec: Any) -> str:
    ev = session.until(spec.bind(session.machine))
    if ev is None and session.break_hit is not None:
        return f"breakpoint first: {session.break_hit.summary()}\n{_where(session)}"
    if ev is None:
        return f"no {spec} event before the machine stopped\n{_where(session)}"
    return f"#{ev.seq} {ev.summary()}\n{_where(session)}"


def _parse_break(words: list[str]) -> dict[str, Any]:
    if len(words) > 1:
        raise REGISTRY["break"].unexpected(words[1])
    if not words or words[0] == "list":
        return {"what": "list", "spec": None}
    if words[0] == "clear":
        return {"what": "clear", "spec": None}
    return {"what": "add", "spec": parse_spec(words[0])}


@command("break", "stop running at a matching event", usage="break [KIND[:NAME][@DOM] | clear | list]",
         parser=_parse_break)
def _break(session: Session, what: str, spec: EventSpec | None) -> str:
    if what == "list":
        if not session.breakpoints:
            return "no breakpoints"
        return "\n".join(f"{i}: {b}" for i, b in enumerate(session.breakpoints))
    if what == "clear":
        session.breakpoints.clear()
        return "breakpoints cleared"
    assert spec is not None
    spec = spec.bind(session.machine)
    session.breakpoints.append(spec)
    return f"breakpoint {len(session.breakpoints) - 1}: {spec}"


@command("open", "open another machine: a scenario, an xl.cfg or a kernel (.s), or a shipped one by name",
         Arg("PATH"), details="  e.g. open five-modes, open machines/pv-guest.cfg, open my-kernel.s\n"
                              "  on the screen when no machine is loaded; a running session keeps its machine\n"
                              "  (its timeline and recording follow it): 'xenlab open PATH' starts another")
def _open(session: Session, path: str) -> str:
    raise UserError("this session keeps its machine (its timeline and recording follow it); "
                    "'xenlab open PATH' starts a session on another, 'reset' goes back to this one's start")


# -- what the focused vCPU shows -----------------------------------------------------------
def _guest_cpu(session: Session, name: str) -> None:
    """Refuse a command that reads registers while a domain with no guest code is focused."""
    t = session.focused
    if not t.has_cpu:
        guest = next((x.spec for x in session.focus_targets() if x.has_cpu), "1")
        raise UserError(f"{t.label.split()[0]} runs no guest code in the lab, so '{name}' has nothing to "
                        f"show: focus a guest first (e.g. 'focus {guest}')")


@command("walk", "walk ADDR (default rip) through the page tables, level by level",
         Arg("ADDR", read_number, optional=True))
def _walk(session: Session, addr: int | None) -> str:
    _guest_cpu(session, "walk")
    va = session.focus.cpu.rip if addr is None else addr
    _res, lines = session.walk(va)
    if arm_view.is_arm(session.focus.cpu):
        return "\n".join([arm_view.walk_header(va, session.focus)] + lines)
    return "\n".join([f"walk {va:#x} (cr3 {session.focus.cpu.cr3:#x})"] + lines)


@command("grid", "the walk of ADDR (default rip) as a grid: guest levels across, EPT levels down, "
         "every memory reference numbered in the order the CPU makes it",
         Arg("ADDR", read_number, optional=True),
         details="For an HVM guest over EPT each guest table's address is walked through EPT before "
                 "the guest entry is read: 24 references for 4 levels on both sides, where a walk "
                 "without EPT makes 4. 'walk' lists the same references level by level.")
def _grid(session: Session, addr: int | None) -> str:
    from .walkgrid import grid_lines, walk_grid
    _guest_cpu(session, "grid")
    if arm_view.is_arm(session.focus.cpu):
        raise UserError("grid draws x86 walks (EPT); on Arm 'walk' lists the stage-1 and stage-2 reads")
    va = session.focus.cpu.rip if addr is None else addr
    res, _lines = session.walk(va)
    return "\n".join(grid_lines(walk_grid(res)))


def focus_listing(session: Session) -> str:
    """Every vCPU that can be focused, the focused one starred."""
    here = session.focused.spec
    lines = []
    for t in session.focus_targets():
        if not session.xen:
            lines.append(("* " if t.spec == here else "  ") + f"{t.label} (vcpu {t.vcpu})")
            continue
        if t.has_cpu:
            ref = next(r for r in session.vcpus() if r.dom == t.dom and r.vcpu == t.vcpu)
            what = f"ring {ref.cpu.cpl} {'root' if ref.cpu.root else 'non-root'}"
        else:
            what = "dom0 services"
        lines.append(f"{'* ' if t.spec == here else '  '}{t.spec}  {t.label} vcpu {t.vcpu}: {what}")
    return "\n".join(lines)


@command("focus", "choose the domain and vCPU the panes show; 'next' for the next domain; none: list them",
         Arg("DOM[.VCPU]", optional=True, key="spec"), usage="focus [DOM[.VCPU] | next]")
def _focus(session: Session, spec: str | None) -> str:
    if spec is None:
        return focus_listing(session)
    t = session.focus_next() if spec == "next" else session.set_focus(spec)
    if not t.has_cpu:
        return f"focus: {t.label.split()[0]} (d{t.dom}): its vCPU runs dom0's services, not guest code"
    return f"focus: {t.label} vcpu {t.vcpu}"


@command("regs", "show the focused CPU's registers")
def _regs(session: Session) -> str:
    _guest_cpu(session, "regs")
    v = session.cpu_view()
    lines = [_where(session)]
    if v.get("arch") == "arm64":
        return "\n".join(lines + arm_view.regs_text(v))
    names = list(v["regs"])
    for i in range(0, 16, 4):
        lines.append("  ".join(f"{n:>3} {v['regs'][n]:016x}" for n in names[i:i + 4]))
    lines.append(f"rflags {v['rflags']:#x} [{v['flags']}]")
    lines.append(f"cr0 {v['cr0']:#x}  cr2 {v['cr2']:#x}  cr3 {v['cr3']:#x}  cr4 {v['cr4']:#x}  efer {v['efer']:#x}")
    return "\n".join(lines)


@command("disasm", "disassemble N instructions from ADDR (default rip)", Arg("ADDR", read_number, optional=True),
         Arg("N", read_count, optional=True))
def _disasm(session: Session, addr: int | None, n: int | None) -> str:
    _guest_cpu(session, "disasm")
    start = session.focus.cpu.rip if addr is None else addr
    size = arm_view.INSN_SIZE if arm_view.is_arm(session.focus.cpu) else INSN_SIZE
    return "\n".join(f"{start + k * size:#018x}  {session.disassemble_at(start + k * size)}"
                     for k in range(n or 8))


@command("source", "show the source lines around the instruction about to run")
def _source(session: Session) -> str:
    _guest_cpu(session, "source")
    return "\n".join(("=> " if cur else "   ") + text for _, text, cur in session.source_view())


# -- consoles and I/O ---------------------------------------------------------------------
@command("console", "a domain's console output (default: the focused one's); with TEXT, type TEXT and Enter "
         "into it", Arg("DOM", optional=True), Arg("TEXT", optional=True, rest=True),
         usage="console [-t pv|serial] [DOM [TEXT...]]",
         details="  on the screen, 'console DOM' (or 'xl console DOM') attaches the command line to the\n"
                 "  guest's console, as xl console does; ctrl+] leaves\n"
                 "  -t pv|serial: which console, as xl console -t; without it the domain's primary one\n"
                 "  (libxl: the serial port of an HVM guest, PVHVM included; the PV ring of PV and PVH)")
def _console(session: Session, dom: str | None, text: list[str] | None) -> str:
    kind = None
    if dom == "-t":
        words = list(text or [])
        if len(words) < 2:
            raise UserError("usage: console [-t pv|serial] [DOM [TEXT...]]")
        kind, dom, text = words[0], words[1], words[2:] or None
        if kind not in CONSOLE_TYPES:
            raise UserError("console type supported are: " + ", ".join(CONSOLE_TYPES))
    if dom is None:
        return session.console() or "(no console output yet)"
    host = session.machine
    if not session.xen:
        pc = getattr(host, "pc", None)
        if pc is None:
            raise UserError("this machine has no serial port to type into")
        # on bare metal: console TEXT (the first word may name the machine, as 'bare')
        words = text if dom in ("bare", "native") and text else [dom, *(text or [])]
        line = " ".join(words) + "\n"
        pc.serial.feed(line.encode("latin-1", "replace"))
        return f"typed {len(line)} characters into the bare machine's COM1; run to let it answer"
    d = host.domain_by_name(dom)
    if d is None:
        raise UserError(f"no domain '{dom}' (xl list shows them)")
    if not text:
        if kind is not None:
            return host.toolstack.console(d.name, kind) or f"(no {kind} console output from {d.name} yet)"
        return host.console_of(d.domid) or f"(no console output from {d.name} yet)"
    line = " ".join(text) + "\n"
    how = type_into_console(host, d, line, kind)
    return f"typed {len(line)} characters into {d.name}'s console ({how}); run to let it answer"


#: xl console -t (tools/xl/xl_console.c); the lab has no vuart.
CONSOLE_TYPES = ("pv", "serial")


def type_into_console(host, dom, text: str, kind: str | None = None) -> str:
    """Give ``text`` to a guest as console input, the way its console reaches it.

    ``kind`` is xl console's -t: "serial" (the device model's COM1), "pv" (the console ring,
    through xenconsoled) or None, the primary console libxl__primary_console_find()
    (tools/libs/light/libxl_console.c) picks: the serial port of an HVM guest (PVHVM and HVM
    with PV drivers too), the PV console of a PV or PVH one."""
    if dom.privileged:
        # dom0's console is Xen's own serial console switched to it (ctrl-a three times on a host)
        host.type_at_console(text)
        return "Xen's serial console, which raises VIRQ_CONSOLE for dom0 to read it with CONSOLEIO_read"
    dm = host.services.device_model
    if kind != "pv" and dm is not None and dm.wants(dom):
        if not dm.console_input(dom, text):
            raise UserError(f"{dom.name} has no serial port to type into")
        return "serial port 0x3f8 of its device model"
    if kind == "serial":
        raise UserError("Unable to attach console")         # xl: a PV or PVH guest has no serial
    cons = host.services.xenconsoled
    feed = getattr(cons, "console_input", None)
    if feed is None or dom.privileged:
        raise UserError(f"{dom.name}'s console takes no input in the lab")
    if not feed(dom, text):
        raise UserError("Unable to attach console")         # no PV console ring
    return "the console ring's in[] and its event channel"


def _parse_events(words: list[str]) -> dict[str, Any]:
    n, spec = None, None
    for w in words:
        if w[:1].isdigit() and n is None:
            n = read_count(w)
        elif spec is None and not w[:1].isdigit():
            spec = parse_spec(w)
        else:
            raise REGISTRY["events"].unexpected(w)
    return {"n": n or 20, "spec": spec}


@command("events", "show the last N trace events (default 20)", usage="events [N] [KIND[:NAME][@DOM]]",
         parser=_parse_events)
def _events(session: Session, n: int, spec: EventSpec | None) -> str:
    if spec is not None:
        spec = spec.bind(session.machine)
    trace = session.machine.trace
    evs = trace.recent(n) if spec is None else trace.last_matching(spec.matches, n)
    return "\n".join(f"#{e.seq:<7} {e.cycle:>12}  {e.summary()}" for e in evs) or "(no events)"


@command("summary", "count hypercalls, exits, traps and system calls so far")
def _summary(session: Session) -> str:
    return format_summary(summarize(session.machine.trace.iter_all()))


@command("xl", "the Xen toolstack: list, info, dmesg, console NAME, vcpu-list, create CFG ...",
         Arg("COMMAND", rest=True, key="words"), usage="xl COMMAND [ARGS]")
def _xl(session: Session, words: list[str]) -> str:
    xl = getattr(session.machine, "toolstack", None)
    if xl is None:
        raise UserError("xl needs a Xen host; this is a bare machine (open a scenario, e.g. 'open default')")
    from .xlcommand import run_xl
    return run_xl(xl, words)


@command("io", "a domain's shared rings, event channels (pending, masked) and grants (default: the focused one)",
         Arg("DOM", optional=True))
def _io(session: Session, dom: str | None) -> str:
    if not session.xen:
        raise UserError("io needs a Xen host; the bare machine has no rings, event channels or grants")
    host = session.machine
    if dom is not None:
        d = host.domain_by_name(dom)
        if d is None:
            raise UserError(f"no domain '{dom}' (xl list shows them)")
        domid = d.domid
    else:
        domid = session.focused.dom
    from .io_state import describe
    return describe(host, domid)


def _parse_compare(words: list[str]) -> dict[str, Any]:
    """As ``xenlab compare``: ``--modes``, ``--workload FILE`` (or PROGRAM, not both) and
    ``--scenario FILE``, each also as ``--opt=VALUE``."""
    usage = REGISTRY["compare"].usage
    options = {"--modes": None, "--workload": None, "--scenario": None}
    program = None
    it = iter(words)
    for word in it:
        name, eq, value = word.partition("=")
        if name in options:
            if not eq:
                value = next(it, "")
            if not value:
                raise UserError(f"compare: {name} needs a value (usage: {usage})")
            if options[name] is not None:
                raise UserError(f"compare: {name} given twice (usage: {usage})")
            options[name] = value
        elif program is None and not word.startswith("-"):
            program = word
        else:
            raise REGISTRY["compare"].unexpected(word)
    if program is not None and options["--workload"] is not None:
        raise UserError("compare: give the program once (--workload FILE or PROGRAM)")
    modes = options["--modes"]
    return {"modes": [m for m in modes.split(",") if m] if modes is not None else None,
            "program": options["--workload"] or program, "scenario": options["--scenario"]}


@command("compare", "run one program in each mode on fresh machines and count them side by side",
         usage="compare [--modes M1,M2...] [--workload FILE | PROGRAM.s] [--scenario FILE.toml]",
         parser=_parse_compare,
         details="As 'xenlab compare': --workload runs your own user program (.s) in every mode, "
                 "--scenario compares on another host (machines/no-vtx.toml has no VT-x); "
                 "relative paths are read from the current directory.")
def _compare(session: Session, modes: list[str] | None, program: str | None, scenario: str | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> str:
    from .compare import compare, format_chart, format_table
    if scenario is not None and not os.path.isfile(scenario):
        raise UserError(f"{scenario}: no such file (compare --scenario FILE.toml)")
    # fresh machines, one per mode: the session's own machine is not touched
    results = compare(program, modes, scenario=scenario, progress=progress)
    return format_table(results, descriptions=False) + "\n\n" + format_chart(results)


def _xenstore(session: Session):
    services = getattr(session.machine, "services", None)        # a bare machine has no dom0
    xs = services.xenstored if services is not None else None
    if xs is None:
        raise UserError("xenstore needs a Xen host; this is a bare machine")
    return xs


@command("xenstore-ls", "the xenstore tree below PATH, as xenstore-ls prints it", Arg("PATH", optional=True))
def _xs_ls(session: Session, path: str | None) -> str:
    from ..dom0.xsclient import xenstore_ls
    return xenstore_ls(_xenstore(session), path or "/")


@command("xenstore-read", "the values at PATH", Arg("PATH", rest=True, key="paths"))
def _xs_read(session: Session, paths: list[str]) -> str:
    from ..dom0.xsclient import xenstore_read
    return xenstore_read(_xenstore(session), *paths)


def _parse_xs_write(words: list[str]) -> dict[str, Any]:
    if len(words) < 2 or len(words) % 2:
        raise UserError("usage: xenstore-write PATH VALUE [PATH VALUE ...]")
    return {"pairs": words}


@command("xenstore-write", "write values, as dom0", usage="xenstore-write PATH VALUE [PATH VALUE ...]",
         parser=_parse_xs_write)
def _xs_write(session: Session, pairs: list[str]) -> str:
    from ..dom0.xsclient import xenstore_write
    return xenstore_write(_xenstore(session), *pairs)


@command("digest", "print a hash of the whole machine state")
def _digest(session: Session) -> str:
    return session.machine.digest()


# -- time travel ----------------------------------------------------------------------
def _time_machine(session: Session):
    tm = session.time_machine
    if tm is None:
        raise UserError("this session cannot travel in time (it was not opened from its sources)")
    return tm


def _landed(session: Session, what: str) -> str:
    tm = session.time_machine
    return f"{what}: instruction {tm.now():,} of {tm.extent():,}\n{_where(session)}"


#: ``back KIND``: the event kinds a learner steps back through by name.
BACK_KINDS = {"event": None, "hypercall": "hypercall", "vmexit": "vmexit", "trap": "trap", "ioport": "ioport",
              "evtchn": "evtchn", "console": "console", "domain": "domain"}


def read_back(word: str) -> int | str:
    """``back``'s argument: a count, or a kind of event to go back to."""
    if word[:1].isdigit():
        return read_count(word)
    if word not in BACK_KINDS:
        raise UserError(f"back: '{word}' is not a number or one of {', '.join(BACK_KINDS)}")
    return word


@command("back", "go back N instructions (default 1), or to the previous event of a kind",
         Arg("N|event|hypercall|vmexit", read_back, optional=True, key="what"),
         usage="back [N | event | hypercall | vmexit]")
def _back(session: Session, what: int | str | None) -> str:
    tm = _time_machine(session)
    if isinstance(what, str):
        seq = tm.back_events(BACK_KINDS[what])
        ev = next((e for e in session.machine.trace.since(seq) if e.seq == seq), None)
        return _landed(session, f"back to #{seq} {ev.summary() if ev else ''}".rstrip())
    n = what or 1
    here = tm.now()
    if here == 0:
        raise UserError("already at the start of the session")
    tm.seek_insns(max(0, here - n))
    return _landed(session, f"back {here - tm.now():,}")


SEEK_USAGE = "seek INSN | #EVENT | MARKER | end | +input | -input | +mark | -mark"


@command("seek", "go to any point of the session: an instruction count, just after an event, a marker, "
         "the end, the next or previous input or marker",
         Arg("WHERE", key="where", missing=f"usage: {SEEK_USAGE} (e.g. seek 1000, seek #42, seek boot)"),
         usage=SEEK_USAGE)
def _seek(session: Session, where: str) -> str:
    tm = _time_machine(session)
    if where in ("+input", "-input"):
        tm.move_input(1 if where[0] == "+" else -1)
        return _landed(session, f"input {tm.position[0]}")
    if where in ("+mark", "-mark"):
        name = tm.move_marker(1 if where[0] == "+" else -1)
        return _landed(session, f"at marker '{name}'")
    if where.startswith("#"):
        tm.seek_event(read_number(where[1:], "the event number"))
        return _landed(session, f"after event {where}")
    if where[0].isdigit():
        tm.seek_insns(read_number(where.replace("_", ""), "the instruction count"))
        return _landed(session, "at")
    if where in ("end", "live"):
        tm.goto(len(tm.steps), None)
        return _landed(session, "at the end")
    tm.seek_marker(where)
    return _landed(session, f"at marker '{where}'")


@command("reset", "go back to the start: the machine as it was built, nothing run yet, the same "
         "seed (the session so far stays on its timeline: 'seek end' returns)")
def _reset(session: Session) -> str:
    tm = _time_machine(session)
    tm.goto(0, None)
    return _landed(session, "back at the start")


@command("mark", "set a marker here (seek NAME comes back); without NAME, list them",
         Arg("NAME", optional=True))
def _mark(session: Session, name: str | None) -> str:
    tm = _time_machine(session)
    if name is None:
        if not tm.markers:
            return "no markers"
        return "\n".join(f"{n:<16} instruction {insns:,}" for n, (_, _, insns)
                         in sorted(tm.markers.items(), key=lambda kv: kv[1][2]))
    return tm.mark(name)


RECORD_USAGE = "record [on FILE | off | save FILE]"


def _parse_record(words: list[str]) -> dict[str, Any]:
    if not words:
        return {"what": None, "path": None}
    what, rest = words[0], words[1:]
    if what == "off" and not rest:
        return {"what": "off", "path": None}
    if what == "on" and len(rest) <= 1:
        return {"what": "on", "path": rest[0] if rest else None}
    if what == "save" and len(rest) == 1:
        return {"what": "save", "path": rest[0]}
    if what in ("on", "off", "save") and len(rest) > (0 if what == "off" else 1):
        raise REGISTRY["record"].unexpected(rest[0 if what == "off" else 1])
    if what == "save":
        raise UserError("usage: record save FILE")
    raise UserError(f"usage: {RECORD_USAGE}")


@command("record", "show, start or stop the session's recording; save writes the session so far and records on",
         usage=RECORD_USAGE, parser=_parse_record)
def _record(session: Session, what: str | None, path: str | None) -> str:
    from ..paths import display
    rec = session.recorder
    if what is None:
        if rec is None:
            return "not recording (record on FILE starts)"
        return f"recording to {display(rec.path)}: {rec.writer.inputs} inputs, {rec.writer.bytes:,} bytes"
    if what == "off":
        if rec is None:
            return "not recording"
        stop_recording(session)
        return f"recording stopped; {display(rec.path)} is complete"
    if what == "on":
        if rec is not None and path is None:
            return f"already recording to {display(rec.path)}"
        if path is None:
            raise UserError("usage: record on FILE")
        rec = start_recording(session, path)
        return f"recording to {display(rec.path)}"
    assert path is not None
    old = rec
    rec = start_recording(session, path)
    was = f" ({display(old.path)} is complete)" if old is not None else ""
    return f"saved the session so far to {display(rec.path)}, and recording on into it{was}"


@command("devicetree", "the device tree an Arm guest was given (default: the focused one's), as DTS",
         Arg("DOM", optional=True))
def _devicetree(session: Session, dom: str | None) -> str:
    xl = getattr(session.machine, "toolstack", None)
    if not hasattr(xl, "device_tree"):
        raise UserError("devicetree: this host is not an Arm host (x86 guests get no device tree)")
    return xl.device_tree(dom if dom is not None else str(session.focus.dom))


# -- the screen's own ---------------------------------------------------------------------
def _screen_only(session: Session, **_: Any) -> str:      # perform() refuses before this runs
    raise UserError("this command works on the screen only")


def read_speed(word: str) -> str | int:
    w = word.lower()
    if w in ("faster", "slower", "max", "full"):
        return w
    return read_count(w)


def _parse_filter(words: list[str]) -> dict[str, Any]:
    usage = REGISTRY["filter"].usage
    log = "calls"
    if words and words[0] in ("calls", "io"):
        log, words = words[0], words[1:]
    if not words:
        return {"log": log, "what": None, "value": None}
    if words[0] == "clear" and len(words) == 1:
        return {"log": log, "what": "clear", "value": None}
    if words[0] in ("kind", "domain", "dom") and len(words) == 2:
        return {"log": log, "what": "domain" if words[0] == "dom" else words[0], "value": words[1]}
    raise UserError(f"usage: {usage}")


command("pause", "pause the running machine", screen=True)(_screen_only)
command("speed", "show or set the speed: instructions per screen tick, or max",
        Arg("faster|slower|max|N", read_speed, optional=True, key="speed"), screen=True)(_screen_only)
command("filter", "narrow the hypercall log (calls) or device I/O log (io) to one kind or domain",
        usage="filter [calls|io] [kind KIND|domain DOM|clear]", parser=_parse_filter, screen=True)(_screen_only)
command("theme", "switch the colour theme", Arg("dark|light|NAME", optional=True, key="name"),
        screen=True)(_screen_only)
command("clear", "clear the command output", screen=True)(_screen_only)
command("quit", "leave the lab", screen=True)(_screen_only)


def _parse_lesson(words: list[str]) -> dict[str, Any]:
    """``lesson ACTION [ARG]``: the open lesson's tutor knows its actions and says so for an unknown one."""
    if not words:
        raise UserError(f"usage: {REGISTRY['lesson'].usage}")
    if len(words) > 2 or len(words) == 2 and words[0] != "goto":
        raise REGISTRY["lesson"].unexpected(words[-1])
    return {"action": words[0], "arg": words[1] if len(words) == 2 else ""}


command("lessons", "choose a guided lesson", screen=True)(_screen_only)
command("lesson", "act on the open lesson: the next hint, the solution, begin the step again ...",
        usage="lesson hint|solution|reset|restart|next|prev|goto N", parser=_parse_lesson, screen=True)(_screen_only)
command("answer", "answer the lesson step's question", Arg("CHOICE|NUMBER", key="choice"),
        screen=True)(_screen_only)
