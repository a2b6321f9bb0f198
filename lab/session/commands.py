"""The lab's command language, shared by the TUI's command line and the shell.

Each command takes a Session and its words and returns text to show. A
mistake is a UserError with one clear line; nothing here prints or exits.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError
from ..isa.encoding import INSN_SIZE
from .eventspec import parse_spec
from .session import Session
from .summary import format_summary, summarize


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Session, list[str]], str]


REGISTRY: dict[str, Command] = {}


def command(name: str, usage: str, summary: str):
    def deco(fn: Callable[[Session, list[str]], str]):
        REGISTRY[name] = Command(name, usage, summary, fn)
        return fn
    return deco


def _number(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UserError(f"{what} must be a number, not '{text}'") from None


def _count(args: list[str], default: int = 1) -> int:
    if not args:
        return default
    n = _number(args[0], "the count")
    if n < 1:
        raise UserError("the count must be at least 1")
    return n


def execute(session: Session, line: str) -> str:
    """Run one command line; return what it prints."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise UserError(f"cannot parse the command: {e}") from None
    if not words:
        return ""
    name, args = words[0], words[1:]
    cmd = REGISTRY.get(name)
    if cmd is None:
        close = [n for n in REGISTRY if n.startswith(name[:2])]
        hint = f" (did you mean {', '.join(sorted(close))}?)" if close else " (try 'help')"
        raise UserError(f"unknown command '{name}'{hint}")
    session.note_input("command", line.strip())
    return cmd.run(session, args)


def _where(session: Session) -> str:
    v = session.cpu_view()
    mode = "root" if v["root"] else "non-root"
    state = f" [{v['stopped']}]" if v["stopped"] else (" [halted]" if v["halted"] else "")
    return f"{v['label']}: ring {v['cpl']} {mode}, rip {v['rip']:#x}: {v['next']}{state}"


@command("help", "help [COMMAND]", "list commands, or explain one")
def _help(session: Session, args: list[str]) -> str:
    if args:
        cmd = REGISTRY.get(args[0])
        if cmd is None:
            raise UserError(f"no command '{args[0]}'")
        return f"{cmd.usage}\n  {cmd.summary}"
    width = max(len(c.usage) for c in REGISTRY.values())
    return "\n".join(f"{c.usage:<{width}}  {c.summary}" for c in sorted(REGISTRY.values(), key=lambda c: c.name))


@command("step", "step [N]", "execute N instructions one at a time (default 1)")
def _step(session: Session, args: list[str]) -> str:
    n = session.step(_count(args))
    hit = f"\nbreakpoint: {session.break_hit.summary()}" if session.break_hit else ""
    return f"stepped {n}\n{_where(session)}{hit}"


@command("run", "run [N]", "run N instructions, or until a breakpoint or the machine stops")
def _run(session: Session, args: list[str]) -> str:
    n = _count(args, default=0) if args else None
    hit = session.run(n)
    msg = f"breakpoint: {hit.summary()}\n" if hit else ""
    return msg + _where(session)


@command("until", "until KIND[:NAME]", "run until the next matching event (e.g. until trap:#PF)")
def _until(session: Session, args: list[str]) -> str:
    if not args:
        raise UserError("until needs an event, e.g. 'until vmexit:IO_INSTRUCTION'")
    ev = session.until(parse_spec(args[0]))
    if ev is None and session.break_hit is not None:
        return f"breakpoint first: {session.break_hit.summary()}\n{_where(session)}"
    if ev is None:
        return f"no {args[0]} event before the machine stopped\n{_where(session)}"
    return f"#{ev.seq} {ev.summary()}\n{_where(session)}"


@command("break", "break [KIND[:NAME] | clear | list]", "stop running at a matching event")
def _break(session: Session, args: list[str]) -> str:
    if not args or args[0] == "list":
        if not session.breakpoints:
            return "no breakpoints"
        return "\n".join(f"{i}: {b}" for i, b in enumerate(session.breakpoints))
    if args[0] == "clear":
        session.breakpoints.clear()
        return "breakpoints cleared"
    spec = parse_spec(args[0])
    session.breakpoints.append(spec)
    return f"breakpoint {len(session.breakpoints) - 1}: {spec}"


@command("walk", "walk [ADDR]", "walk ADDR (default rip) through the page tables, level by level")
def _walk(session: Session, args: list[str]) -> str:
    va = _number(args[0], "the address") if args else session.focus.cpu.rip
    res, lines = session.walk(va)
    return "\n".join([f"walk {va:#x} (cr3 {session.focus.cpu.cr3:#x})"] + lines)


@command("focus", "focus DOM[.VCPU]", "choose the domain and vCPU the panes show")
def _focus(session: Session, args: list[str]) -> str:
    if not args:
        return "\n".join(("* " if r == session.focus else "  ") + f"{r.label} (vcpu {r.vcpu})"
                         for r in session.vcpus())
    ref = session.set_focus(args[0])
    return f"focus: {ref.label} vcpu {ref.vcpu}"


@command("regs", "regs", "show the focused CPU's registers")
def _regs(session: Session, args: list[str]) -> str:
    v = session.cpu_view()
    lines = [_where(session)]
    names = list(v["regs"])
    for i in range(0, 16, 4):
        lines.append("  ".join(f"{n:>3} {v['regs'][n]:016x}" for n in names[i:i + 4]))
    lines.append(f"rflags {v['rflags']:#x} [{v['flags']}]")
    lines.append(f"cr0 {v['cr0']:#x}  cr2 {v['cr2']:#x}  cr3 {v['cr3']:#x}  cr4 {v['cr4']:#x}  efer {v['efer']:#x}")
    return "\n".join(lines)


@command("disasm", "disasm [ADDR] [N]", "disassemble N instructions from ADDR (default rip)")
def _disasm(session: Session, args: list[str]) -> str:
    addr = _number(args[0], "the address") if args else session.focus.cpu.rip
    n = _count(args[1:], default=8)
    return "\n".join(f"{addr + k * INSN_SIZE:#018x}  {session.disassemble_at(addr + k * INSN_SIZE)}"
                     for k in range(n))


@command("source", "source", "show the source lines around the instruction about to run")
def _source(session: Session, args: list[str]) -> str:
    return "\n".join(("=> " if cur else "   ") + text for _, text, cur in session.source_view())


@command("console", "console [DOM [TEXT...]]",
         "a domain's console output (default: the focused one's); with TEXT, type TEXT and Enter into it")
def _console(session: Session, args: list[str]) -> str:
    if not args:
        return session.console() or "(no console output yet)"
    host = session.machine
    if not isinstance(getattr(host, "domains", None), dict):
        pc = getattr(host, "pc", None)
        if pc is None:
            raise UserError("this machine has no serial port to type into")
        # on bare metal: console TEXT (the first word may name the machine, as 'bare')
        words = args[1:] if args[0] in ("bare", "native") and len(args) > 1 else args
        text = " ".join(words) + "\n"
        pc.serial.feed(text.encode("latin-1", "replace"))
        return f"typed {len(text)} characters into the bare machine's COM1; run to let it answer"
    dom = host.domain_by_name(args[0])
    if dom is None:
        raise UserError(f"no domain '{args[0]}' (xl list shows them)")
    if len(args) == 1:
        return host.console_of(dom.domid) or f"(no console output from {dom.name} yet)"
    text = " ".join(args[1:]) + "\n"
    how = type_into_console(host, dom, text)
    return f"typed {len(text)} characters into {dom.name}'s console ({how}); run to let it answer"


def type_into_console(host, dom, text: str) -> str:
    """Give ``text`` to a guest as console input, the way its console reaches it: an HVM
    guest's emulated serial port (the device model), else its console ring (xenconsoled)."""
    if dom.privileged:
        # dom0's console is Xen's own serial console switched to it (ctrl-a three times on a host)
        host.type_at_console(text)
        return "Xen's serial console, which raises VIRQ_CONSOLE for dom0 to read it with CONSOLEIO_read"
    dm = host.services.get("device_model")
    if dm is not None and dm.wants(dom):
        if not dm.console_input(dom, text):
            raise UserError(f"{dom.name} has no serial port to type into")
        return "serial port 0x3f8 of its device model"
    cons = host.services.get("xenconsoled")
    feed = getattr(cons, "console_input", None)
    if feed is None or dom.privileged:
        raise UserError(f"{dom.name}'s console takes no input in the lab")
    feed(dom, text)
    return "the console ring's in[] and its event channel"


@command("events", "events [N] [KIND[:NAME]]", "show the last N trace events (default 20)")
def _events(session: Session, args: list[str]) -> str:
    n = 20
    spec = None
    for a in args:
        if a[0].isdigit():
            n = _count([a])
        else:
            spec = parse_spec(a)
    evs = session.machine.trace.events
    if spec is not None:
        evs = [e for e in evs if spec.matches(e)]
    return "\n".join(f"#{e.seq:<7} {e.cycle:>12}  {e.summary()}" for e in evs[-n:]) or "(no events)"


@command("summary", "summary", "count hypercalls, exits, traps and system calls so far")
def _summary(session: Session, args: list[str]) -> str:
    return format_summary(summarize(session.machine.trace.events))


@command("xl", "xl COMMAND [ARGS]", "the Xen toolstack: list, info, dmesg, console NAME, vcpu-list, create CFG ...")
def _xl(session: Session, args: list[str]) -> str:
    xl = getattr(session.machine, "toolstack", None)
    if xl is None:
        raise UserError("xl needs a Xen host; this is a bare machine (open a scenario, e.g. machines/default.toml)")
    from .xlcommand import run_xl
    return run_xl(xl, args)


@command("io", "io [DOM]", "a domain's shared rings, event channels (pending, masked) and grants")
def _io(session: Session, args: list[str]) -> str:
    host = session.machine
    if not isinstance(getattr(host, "domains", None), dict):
        raise UserError("io needs a Xen host; the bare machine has no rings, event channels or grants")
    if args:
        dom = host.domain_by_name(args[0])
        if dom is None:
            raise UserError(f"no domain '{args[0]}' (xl list shows them)")
        domid = dom.domid
    else:
        domid = session.focus().dom
        if domid is None:
            raise UserError("no domain is focused: io DOM")
    from .io_state import describe
    return describe(host, domid)


@command("compare", "compare [--modes M1,M2...] [PROGRAM.s]",
         "run one program in each mode on fresh machines and count them side by side")
def _compare(session: Session, args: list[str]) -> str:
    from .compare import compare, format_table
    modes, program = None, None
    it = iter(args)
    for word in it:
        if word == "--modes":
            value = next(it, None)
            if value is None:
                raise UserError("usage: compare [--modes M1,M2...] [PROGRAM.s]")
            modes = [m for m in value.split(",") if m]
        elif word.startswith("--modes="):
            modes = [m for m in word.split("=", 1)[1].split(",") if m]
        elif program is None and not word.startswith("-"):
            program = word
        else:
            raise UserError(f"compare: unexpected '{word}' (usage: compare [--modes M1,M2...] [PROGRAM.s])")
    # fresh machines, one per mode: the session's own machine is not touched
    return format_table(compare(program, modes), descriptions=False)


def _xenstore(session: Session):
    xs = getattr(session.machine, "services", {}).get("xenstored")
    if xs is None:
        raise UserError("xenstore needs a Xen host; this is a bare machine")
    return xs


@command("xenstore-ls", "xenstore-ls [PATH]", "the xenstore tree below PATH, as xenstore-ls prints it")
def _xs_ls(session: Session, args: list[str]) -> str:
    from ..dom0.xsclient import xenstore_ls
    return xenstore_ls(_xenstore(session), args[0] if args else "/")


@command("xenstore-read", "xenstore-read PATH...", "the values at PATH")
def _xs_read(session: Session, args: list[str]) -> str:
    from ..dom0.xsclient import xenstore_read
    if not args:
        raise UserError("usage: xenstore-read PATH...")
    return xenstore_read(_xenstore(session), *args)


@command("xenstore-write", "xenstore-write PATH VALUE...", "write values, as dom0")
def _xs_write(session: Session, args: list[str]) -> str:
    from ..dom0.xsclient import xenstore_write
    if len(args) < 2 or len(args) % 2:
        raise UserError("usage: xenstore-write PATH VALUE [PATH VALUE ...]")
    return xenstore_write(_xenstore(session), *args)


@command("digest", "digest", "print a hash of the whole machine state")
def _digest(session: Session, args: list[str]) -> str:
    return session.machine.digest()
