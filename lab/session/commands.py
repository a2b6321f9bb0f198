"""The lab's command language, shared by the TUI's command line and the shell.

Each command takes a Session and its words and returns text to show. A
mistake is a UserError with one clear line; nothing here prints or exits.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Callable

from ..errors import LabBug, UserError
from ..isa.encoding import INSN_SIZE
from . import arm_view
from .eventspec import parse_spec
from .session import Session
from .summary import format_summary, summarize


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Session, list[str]], str]
    max_args: int | None = None


REGISTRY: dict[str, Command] = {}


def command(name: str, usage: str, summary: str, max_args: int | None = None):
    """Register a command; ``max_args`` (when given) is how many words may follow its name."""
    def deco(fn: Callable[[Session, list[str]], str]):
        REGISTRY[name] = Command(name, usage, summary, fn, max_args)
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
    if cmd.max_args is not None and len(args) > cmd.max_args:
        extra = " ".join(args[cmd.max_args:])
        raise UserError(f"{name}: unexpected '{extra}' (usage: {cmd.usage})")
    session.note_input("command", line.strip())
    try:
        return cmd.run(session, args)
    except UserError:
        raise
    except Exception as e:
        # A bug in the lab must not end the screen or the shell: the command fails, the session goes on.
        if os.environ.get("XENLAB_DEBUG"):
            raise
        raise LabBug(f"{name}: internal error in the lab ({type(e).__name__}: {e}). The session goes on; "
                     "if the machine looks wrong, 'reset' starts it again from its start") from e
    finally:
        session.input_applied()


def _where(session: Session) -> str:
    v = session.cpu_view()
    if v.get("arch") == "arm64":
        return arm_view.where_text(v)
    mode = "root" if v["root"] else "non-root"
    state = f" [{v['stopped']}]" if v["stopped"] else (" [halted]" if v["halted"] else "")
    return f"{v['label']}: ring {v['cpl']} {mode}, rip {v['rip']:#x}: {v['next']}{state}"


@command("help", "help [COMMAND]", "list commands, or explain one", max_args=1)
def _help(session: Session, args: list[str]) -> str:
    if args:
        cmd = REGISTRY.get(args[0])
        if cmd is None:
            raise UserError(f"no command '{args[0]}'")
        return f"{cmd.usage}\n  {cmd.summary}"
    width = max(len(c.usage) for c in REGISTRY.values())
    return "\n".join(f"{c.usage:<{width}}  {c.summary}" for c in sorted(REGISTRY.values(), key=lambda c: c.name))


@command("step", "step [N]", "execute N instructions one at a time (default 1)", max_args=1)
def _step(session: Session, args: list[str]) -> str:
    n = session.step(_count(args))
    hit = f"\nbreakpoint: {session.break_hit.summary()}" if session.break_hit else ""
    return f"stepped {n}\n{_where(session)}{hit}"


@command("run", "run [N]", "run N instructions, or until a breakpoint or the machine stops", max_args=1)
def _run(session: Session, args: list[str]) -> str:
    n = _count(args, default=0) if args else None
    hit = session.run(n)
    msg = f"breakpoint: {hit.summary()}\n" if hit else ""
    return msg + _where(session)


@command("until", "until KIND[:NAME][@DOM]", "run until the next matching event (e.g. until trap:#PF@pv-guest)", max_args=1)
def _until(session: Session, args: list[str]) -> str:
    if not args:
        raise UserError("until needs an event, e.g. 'until vmexit:IO_INSTRUCTION'")
    ev = session.until(parse_spec(args[0], session.machine))
    if ev is None and session.break_hit is not None:
        return f"breakpoint first: {session.break_hit.summary()}\n{_where(session)}"
    if ev is None:
        return f"no {args[0]} event before the machine stopped\n{_where(session)}"
    return f"#{ev.seq} {ev.summary()}\n{_where(session)}"


@command("break", "break [KIND[:NAME][@DOM] | clear | list]", "stop running at a matching event", max_args=1)
def _break(session: Session, args: list[str]) -> str:
    if not args or args[0] == "list":
        if not session.breakpoints:
            return "no breakpoints"
        return "\n".join(f"{i}: {b}" for i, b in enumerate(session.breakpoints))
    if args[0] == "clear":
        session.breakpoints.clear()
        return "breakpoints cleared"
    spec = parse_spec(args[0], session.machine)
    session.breakpoints.append(spec)
    return f"breakpoint {len(session.breakpoints) - 1}: {spec}"


@command("walk", "walk [ADDR]", "walk ADDR (default rip) through the page tables, level by level", max_args=1)
def _walk(session: Session, args: list[str]) -> str:
    va = _number(args[0], "the address") if args else session.focus.cpu.rip
    res, lines = session.walk(va)
    if arm_view.is_arm(session.focus.cpu):
        return "\n".join([arm_view.walk_header(va, session.focus)] + lines)
    return "\n".join([f"walk {va:#x} (cr3 {session.focus.cpu.cr3:#x})"] + lines)


@command("focus", "focus DOM[.VCPU]", "choose the domain and vCPU the panes show", max_args=1)
def _focus(session: Session, args: list[str]) -> str:
    if not args:
        return "\n".join(("* " if r == session.focus else "  ") + f"{r.label} (vcpu {r.vcpu})"
                         for r in session.vcpus())
    ref = session.set_focus(args[0])
    return f"focus: {ref.label} vcpu {ref.vcpu}"


@command("regs", "regs", "show the focused CPU's registers", max_args=0)
def _regs(session: Session, args: list[str]) -> str:
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


@command("disasm", "disasm [ADDR] [N]", "disassemble N instructions from ADDR (default rip)", max_args=2)
def _disasm(session: Session, args: list[str]) -> str:
    addr = _number(args[0], "the address") if args else session.focus.cpu.rip
    n = _count(args[1:], default=8)
    size = arm_view.INSN_SIZE if arm_view.is_arm(session.focus.cpu) else INSN_SIZE
    return "\n".join(f"{addr + k * size:#018x}  {session.disassemble_at(addr + k * size)}"
                     for k in range(n))


@command("source", "source", "show the source lines around the instruction about to run", max_args=0)
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


@command("events", "events [N] [KIND[:NAME][@DOM]]", "show the last N trace events (default 20)", max_args=2)
def _events(session: Session, args: list[str]) -> str:
    n = 20
    spec = None
    for a in args:
        if a[0].isdigit():
            n = _count([a])
        else:
            spec = parse_spec(a, session.machine)
    trace = session.machine.trace
    evs = trace.recent(n) if spec is None else trace.last_matching(spec.matches, n)
    return "\n".join(f"#{e.seq:<7} {e.cycle:>12}  {e.summary()}" for e in evs) or "(no events)"


@command("summary", "summary", "count hypercalls, exits, traps and system calls so far", max_args=0)
def _summary(session: Session, args: list[str]) -> str:
    return format_summary(summarize(session.machine.trace.iter_all()))


@command("xl", "xl COMMAND [ARGS]", "the Xen toolstack: list, info, dmesg, console NAME, vcpu-list, create CFG ...")
def _xl(session: Session, args: list[str]) -> str:
    xl = getattr(session.machine, "toolstack", None)
    if xl is None:
        raise UserError("xl needs a Xen host; this is a bare machine (open a scenario, e.g. machines/default.toml)")
    from .xlcommand import run_xl
    return run_xl(xl, args)


@command("io", "io [DOM]", "a domain's shared rings, event channels (pending, masked) and grants", max_args=1)
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
        domid = session.focus.dom
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


@command("xenstore-ls", "xenstore-ls [PATH]", "the xenstore tree below PATH, as xenstore-ls prints it", max_args=1)
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


@command("digest", "digest", "print a hash of the whole machine state", max_args=0)
def _digest(session: Session, args: list[str]) -> str:
    return session.machine.digest()


# --------------------------------------------------------------------- time travel
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


@command("back", "back [N | event | hypercall | vmexit]",
         "go back N instructions (default 1), or to the previous event of a kind", max_args=1)
def _back(session: Session, args: list[str]) -> str:
    tm = _time_machine(session)
    if args and not args[0][0].isdigit():
        if args[0] not in BACK_KINDS:
            raise UserError(f"back: '{args[0]}' is not a number or one of {', '.join(BACK_KINDS)}")
        seq = tm.back_events(BACK_KINDS[args[0]])
        ev = next((e for e in session.machine.trace.since(seq) if e.seq == seq), None)
        return _landed(session, f"back to #{seq} {ev.summary() if ev else ''}".rstrip())
    n = _count(args)
    here = tm.now()
    if here == 0:
        raise UserError("already at the start of the session")
    tm.seek_insns(max(0, here - n))
    return _landed(session, f"back {here - tm.now():,}")


@command("seek", "seek INSN | #EVENT | MARKER | end | +input | -input | +mark | -mark",
         "go to any point of the session: an instruction count, just after an event, a marker, "
         "the end, the next or previous input or marker")
def _seek(session: Session, args: list[str]) -> str:
    tm = _time_machine(session)
    if len(args) != 1:
        raise UserError("usage: seek INSN | #EVENT | MARKER | end | +input | -input | +mark | -mark "
                        "(e.g. seek 1000, seek #42, seek boot)")
    arg = args[0]
    if arg in ("+input", "-input"):
        tm.move_input(1 if arg[0] == "+" else -1)
        return _landed(session, f"input {tm.position[0]}")
    if arg in ("+mark", "-mark"):
        name = tm.move_marker(1 if arg[0] == "+" else -1)
        return _landed(session, f"at marker '{name}'")
    if arg.startswith("#"):
        tm.seek_event(_number(arg[1:], "the event number"))
        return _landed(session, f"after event {arg}")
    if arg[0].isdigit():
        tm.seek_insns(_number(arg.replace("_", ""), "the instruction count"))
        return _landed(session, "at")
    if arg in ("end", "live"):
        tm.goto(len(tm.steps), None)
        return _landed(session, "at the end")
    tm.seek_marker(arg)
    return _landed(session, f"at marker '{arg}'")


@command("reset", "reset", "go back to the start: the machine as it was built, nothing run yet, the same "
         "seed (the session so far stays on its timeline: 'seek end' returns)", max_args=0)
def _reset(session: Session, args: list[str]) -> str:
    tm = _time_machine(session)
    tm.goto(0, None)
    return _landed(session, "back at the start")


@command("mark", "mark [NAME]", "set a marker here (seek NAME comes back); without NAME, list them", max_args=1)
def _mark(session: Session, args: list[str]) -> str:
    tm = _time_machine(session)
    if not args:
        if not tm.markers:
            return "no markers"
        return "\n".join(f"{name:<16} instruction {insns:,}" for name, (_, _, insns)
                         in sorted(tm.markers.items(), key=lambda kv: kv[1][2]))
    return tm.mark(args[0])


@command("record", "record [on FILE | off | save FILE]",
         "show, start or stop the session's recording; save writes the session so far and records on")
def _record(session: Session, args: list[str]) -> str:
    from .live import start_recording, stop_recording
    from ..paths import display
    rec = session.recorder
    if not args:
        if rec is None:
            return "not recording (record on FILE starts)"
        return f"recording to {display(rec.path)}: {rec.writer.inputs} inputs, {rec.writer.bytes:,} bytes"
    if args[0] == "off":
        if rec is None:
            return "not recording"
        stop_recording(session)
        return f"recording stopped; {display(rec.path)} is complete"
    if args[0] == "on":
        if rec is not None and len(args) == 1:
            return f"already recording to {display(rec.path)}"
        if len(args) != 2:
            raise UserError("usage: record on FILE")
        rec = start_recording(session, args[1])
        return f"recording to {display(rec.path)}"
    if args[0] == "save":
        if len(args) != 2:
            raise UserError("usage: record save FILE")
        old = rec
        rec = start_recording(session, args[1])
        was = f" ({display(old.path)} is complete)" if old is not None else ""
        return f"saved the session so far to {display(rec.path)}, and recording on into it{was}"
    raise UserError("usage: record [on FILE | off | save FILE]")


@command("devicetree", "devicetree [DOM]", "the device tree an Arm guest was given (default: the focused one's), as DTS",
         max_args=1)
def _devicetree(session: Session, args: list[str]) -> str:
    xl = getattr(session.machine, "toolstack", None)
    if not hasattr(xl, "device_tree"):
        raise UserError("devicetree: this host is not an Arm host (x86 guests get no device tree)")
    name = args[0] if args else str(session.focus.dom)
    return xl.device_tree(name)
