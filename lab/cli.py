"""The ``xenlab`` command.

With no arguments it opens the lab on screen; each subcommand is the
headless equivalent of something the screen does. Every failure a learner
can cause is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


# --------------------------------------------------------------------- asm
def cmd_asm(args: argparse.Namespace) -> int:
    from .isa.listing import render_listing
    from .session.build import assemble
    image = assemble(args.file)
    if args.output:
        try:
            Path(args.output).write_bytes(image.to_bytes())
        except OSError as e:
            raise UserError(f"{args.output}: cannot write: {e.strerror}") from None
    if args.listing or not args.output:
        sys.stdout.write(render_listing(image))
        if not render_listing(image).endswith("\n"):
            sys.stdout.write("\n")
    return 0


# --------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from .session.eventspec import parse_spec
    from .session.headless import run_headless
    until = parse_spec(args.until) if args.until else None
    result = run_headless(args.target, steps=args.steps, until=until, program=args.program, arg=args.arg,
                          trace_path=args.trace, costs=args.costs, xentrace_path=args.xentrace,
                          record=args.record)
    for w in result.warnings:
        print(w, file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(summary=args.summary), indent=2))
        return 0
    sys.stdout.write(result.console)
    if result.console and not result.console.endswith("\n"):
        sys.stdout.write("\n")
    print(result.status_line())
    if args.summary:
        from .session.summary import format_summary
        print(format_summary(result.summary))
    return 0


# --------------------------------------------------------------------- xl
XL_COMMANDS = ("list", "info", "dmesg", "console", "vcpu-list", "block-list", "network-list", "create", "destroy",
               "pause", "unpause", "shutdown", "resume")


def cmd_xl(args: argparse.Namespace) -> int:
    from .session.scenario import DEFAULT_SCENARIO, load_scenario, start_scenario
    from .session.xlcommand import run_xl
    host, xl = start_scenario(load_scenario(args.scenario or DEFAULT_SCENARIO))
    if args.steps:
        host.run(args.steps)
    out = run_xl(xl, [args.xl_command] + args.xl_args)
    for w in xl.warnings:
        print(w, file=sys.stderr)
    if out:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


# --------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    from .session.compare import compare, disagreement, format_chart, format_table
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    results = compare(_compare_program(args), modes, scenario=args.scenario)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(format_table(results))
        print()
        print(format_chart(results))
    problem = disagreement(results)
    if problem:
        print(f"compare: {problem}", file=sys.stderr)
        return 1
    return 0


def _compare_program(args: argparse.Namespace) -> str | None:
    """The user program: ``--workload FILE`` or the positional PROGRAM, not both."""
    if args.workload and args.program:
        raise UserError("compare: give the program once (--workload FILE or PROGRAM)")
    return args.workload or args.program


# --------------------------------------------------------------------- xenstored
def cmd_xenstored(args: argparse.Namespace) -> int:
    from .session.scenario import DEFAULT_SCENARIO, load_scenario, start_scenario
    from .xenstored_socket import SocketFront, announce, serve
    scenario = args.scenario or str(DEFAULT_SCENARIO)
    host, _ = start_scenario(load_scenario(scenario))
    if args.steps:
        host.run(args.steps)
    serve(SocketFront(host.services.xenstored), args.socket, ready=announce(args.socket, scenario))
    return 0


def _setup_xenstored(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=None, help="the host and domains (default machines/default.toml)")
    p.add_argument("--socket", required=True, metavar="PATH",
                   help="the Unix socket to serve on; point Xen's tools at it with XENSTORED_PATH=PATH")
    p.add_argument("--steps", type=_int, default=0, help="run the guests this many instructions first")


# --------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    from .session.bench import run_bench
    figures = run_bench(rounds=args.rounds)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"guest instructions:          {figures['instructions']:,}")
        print(f"wall time:                   {figures['seconds']:.3f} s")
        print(f"instructions per second:     {figures['instructions_per_second']:,.0f}")
        print(f"translated blocks:           {figures['translations']:,}")
        print(f"checksum line:               {figures['checksum']}")
    return 0


# --------------------------------------------------------------------- shell / exec
def cmd_shell(args: argparse.Namespace) -> int:
    from .repl import interactive, open_session
    session = open_session(args.target, record=args.record)
    try:
        return interactive(session)
    finally:
        _finish_recording(session)


def _finish_recording(session) -> None:
    from .session.recorder import stop_recording
    rec = stop_recording(session)
    if rec is not None:
        from .paths import display
        print(f"recorded {rec.writer.inputs} inputs to {display(rec.path)}", file=sys.stderr)


def cmd_exec(args: argparse.Namespace) -> int:
    from .repl import open_session, run_script
    lines: list[str] = []
    for chunk in args.commands or []:
        lines += chunk.split(";")
    if args.script:
        try:
            lines += Path(args.script).read_text().splitlines()
        except OSError as e:
            raise UserError(f"{args.script}: cannot read: {e.strerror}") from None
    if not lines:
        raise UserError("exec: give commands with -c \"step 5; walk\" or a script file with -f")
    session = open_session(args.target, record=args.record)
    writer = None
    if args.xentrace:
        from .session.xentrace import attach_xentrace
        writer = attach_xentrace(session.machine, args.xentrace)
    try:
        return run_script(session, lines, sys.stdout)
    finally:
        _finish_recording(session)
        if writer is not None:
            writer.close()
            writer.fp.close()


# --------------------------------------------------------------------- replay
def cmd_replay(args: argparse.Namespace) -> int:
    from .session.recording import load_recording
    from .session.replay import go_to, replay, write_cast, write_trace
    rec = load_recording(args.file)
    if rec.warning:
        print(rec.warning, file=sys.stderr)
    headless = args.verify or args.to or args.trace or args.export_cast
    if not headless:
        from .tui.replay_app import make_replay_app     # Textual only loads for the screen
        make_replay_app(rec).run()
        return 0
    result = replay(rec, verify=args.verify)
    if args.to:
        print(go_to(result, args.to))
        from .session.commands import execute
        print(execute(result.session, "regs"))
    if args.trace:
        write_trace(result, args.trace)
    if args.export_cast:
        write_cast(result, args.export_cast)
    if args.verify:
        print(result.summary())
        return 1 if result.divergence is not None else 0
    return 0


# --------------------------------------------------------------------- open
def cmd_open(args: argparse.Namespace) -> int:
    target = getattr(args, "target", None)
    if target is not None:
        # Check the file before the screen takes over the terminal, so a typo is one line.
        from .session.targets import check_kind, resolve_target
        path = resolve_target(target)
        check_kind(path)
        target = str(path)
    return run_screen(target, no_record=getattr(args, "no_record", False))


def run_screen(target: str | None = None, lesson=None, seed: int = 0, no_record: bool = False) -> int:
    """The lab on screen; choosing a lesson there (or restarting one) opens it on a fresh machine."""
    from .lessons.progress import Progress
    from .tui.launch import await_boot, start_runner
    while True:
        from .session.live import default_recording_path
        record = None if no_record else default_recording_path()
        progress = Progress()
        # The machine boots from here (in a process of its own, XENLAB_SIM_THREAD=1: on a thread),
        # while the screen's code loads.
        runner = start_runner(target, lesson=lesson, seed=seed, progress=progress, record=record)
        from .tui.app import make_app     # Textual only loads for the screen, never for headless commands
        await_boot(runner)
        result = make_app(target, lesson=lesson, seed=seed, progress=progress, first_run_hint=True,
                          record=record, runner=runner, freeze_after_start=True).run()
        if record is not None and record.exists():
            from .paths import display
            print(f"this session is recorded in {display(record)} (xenlab replay FILE plays it)",
                  file=sys.stderr)
        if not (isinstance(result, tuple) and result[0] == "lesson"):
            return 0
        from .lessons.model import find_lesson
        lesson = find_lesson(result[1])


# --------------------------------------------------------------------- lessons
def cmd_lessons(args: argparse.Namespace) -> int:
    from .lessons.model import load_course
    from .lessons.progress import Progress
    progress = Progress()
    if progress.notice:
        print(progress.notice, file=sys.stderr)
    if args.reset:
        progress.reset()
        print(f"progress cleared ({progress.path})")
        return 0
    lessons = load_course()
    if args.json:
        print(json.dumps([{"id": lesson.id, "title": lesson.title, "steps": len(lesson.steps),
                           "status": progress.status(lesson.id, len(lesson.steps)), "summary": lesson.summary}
                          for lesson in lessons], indent=2))
        return 0
    width = max((len(lesson.id) for lesson in lessons), default=4)
    for n, lesson in enumerate(lessons, 1):
        status = progress.status(lesson.id, len(lesson.steps))
        print(f"{n:>2}. {lesson.id:<{width}}  {status:<5}  {lesson.title}")
    print("\nxenlab lesson ID opens one (xenlab lesson tour to begin)")
    return 0


def cmd_lesson(args: argparse.Namespace) -> int:
    from .lessons.model import course, find_lesson, load_lesson
    if args.lesson == "validate":
        paths = [Path(f) for f in args.files] or course()
        if not paths:
            raise UserError("lesson validate: no lesson files given and none in lessons/")
        failed = False
        for p in paths:
            lesson = load_lesson(p)       # a broken file raises: file:line: problem, exit 2
            if not args.run:
                print(f"{display_path(p)}: ok ({len(lesson.steps)} steps)")
                continue
            from .session.lesson_play import open_lesson, rehearse, solve
            unmet = [f"step {r.index + 1}: the solution does not meet the check: {r.missing}"
                     for r in solve(open_lesson(lesson, seed=args.seed)) if not r.met]
            problems = unmet + rehearse(open_lesson(lesson, seed=args.seed))
            failed = failed or bool(problems)
            print(f"{display_path(p)}: " + ("ok, solved and rehearsed" if not problems else "PROBLEMS"))
            for problem in problems:
                print(f"    {problem}")
        return 1 if failed else 0
    if args.files:
        raise UserError(f"lesson: unexpected '{args.files[0]}' (only 'lesson validate' takes files)")
    lesson = find_lesson(args.lesson)
    if args.solve or args.check:
        from .lessons.progress import Progress
        from .session.lesson_play import check_script, format_results, open_lesson, solve
        progress = None
        if args.check:
            try:
                lines = Path(args.check).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"{args.check}: cannot read: {getattr(e, 'strerror', None) or e}") from None
            progress = Progress()
            if progress.notice:
                print(progress.notice, file=sys.stderr)
        tutor = open_lesson(lesson, progress, seed=args.seed)
        print(f"lesson {lesson.id}: {lesson.title} ({len(lesson.steps)} steps)")
        results = check_script(tutor, lines) if args.check else solve(tutor)
        return 0 if format_results(lesson, results, sys.stdout) else 1
    return run_screen(lesson=lesson, seed=args.seed)


def display_path(p: Path) -> str:
    from .paths import display
    return display(p)


# --------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    import shlex

    from textual_serve.server import Server
    target = None
    if args.target is not None:
        from .session.targets import check_kind, resolve_target
        path = resolve_target(args.target)
        check_kind(path)
        target = str(path.resolve())
    # textual-serve starts this command once per visitor: every browser tab gets its own lab.
    command = shlex.join([sys.executable, "-m", "lab.tui", *([target] if target else [])])
    local = args.host in ("localhost", "127.0.0.1", "::1")
    reach = "this computer only" if local else f"every network {args.host} is on; anyone who can reach it gets a lab"
    print(f"xenlab serve: http://{args.host}:{args.port} (listening on {args.host}: {reach}). "
          "Each visitor gets a lab of their own; ctrl+c stops.", flush=True)
    Server(command, host=args.host, port=args.port, title="xenlab").serve()
    return 0


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable]] = []


def _setup_asm(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="assembly source (.s)")
    p.add_argument("-o", "--output", help="write the assembled image here")
    p.add_argument("--listing", action="store_true", help="print address, encoding and source line")


def _setup_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="+",
                   help="a kernel source (.s) for the bare machine, a scenario (.toml), or xl.cfg files")
    p.add_argument("--steps", type=_int, default=None, help="stop after N guest instructions")
    p.add_argument("--until", metavar="KIND[:NAME]", help="stop at the first matching event, e.g. trap:#PF")
    p.add_argument("--trace", metavar="FILE.jsonl", help="write every event as JSON Lines")
    p.add_argument("--xentrace", metavar="FILE", help="write Xen's binary trace (public/trace.h), for xenalyze")
    p.add_argument("--summary", action="store_true", help="count hypercalls, exits, traps per vCPU")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--program", default=None, help="user program (default machines/programs/workload.s)")
    p.add_argument("--arg", type=_int, default=0, help="argument passed to the program in rdi")
    p.add_argument("--costs", default=None, help="cycle cost table (default machines/costs.toml)")
    p.add_argument("--record", metavar="FILE", default=None, help="record the session to FILE (docs/recordings.md)")


def _setup_open(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", default=None,
                   help="a scenario (.toml) of a Xen host and its domains, an xl.cfg, or a kernel source (.s) "
                        "for the bare machine; a path, or a shipped machine by name (five-modes, pv-guest ...); "
                        "default: machines/default.toml")
    p.add_argument("--no-record", action="store_true",
                   help="do not record the session (by default it is, in the lab's data directory)")


def _setup_xl(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=None, help="the host and domains (default machines/default.toml)")
    p.add_argument("--steps", type=_int, default=0, help="run the guests this many instructions first")
    p.add_argument("xl_command", choices=XL_COMMANDS, metavar="COMMAND",
                   help="one of: " + ", ".join(XL_COMMANDS))
    # the rest goes to xl as it is, options included (xl dmesg -c, xl console -t pv DOMAIN)
    p.add_argument("xl_args", nargs=argparse.REMAINDER, metavar="ARG")


def _setup_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", nargs="?", default=None, help="user program (default machines/programs/workload.s)")
    p.add_argument("--workload", metavar="FILE", default=None,
                   help="your own user program (.s) to run in every mode (docs/compare.md)")
    p.add_argument("--modes", default=None, help="comma-separated: native,pv,pv32,hvm,hvm-shadow")
    p.add_argument("--scenario", default=None, metavar="FILE.toml",
                   help="the host to compare on (default machines/default.toml), e.g. machines/no-vtx.toml")
    p.add_argument("--json", action="store_true", help="one object per mode, keys as docs/compare.md")


def _setup_shell(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", default=None, help="a kernel (.s), scenario (.toml) or xl.cfg; "
                   "default machines/default.toml")
    p.add_argument("--record", metavar="FILE", default=None, help="record the session to FILE (docs/recordings.md)")


def _setup_exec(p: argparse.ArgumentParser) -> None:
    _setup_shell(p)
    p.add_argument("-c", "--command", dest="commands", action="append", help="commands separated by ';' (repeatable)")
    p.add_argument("-f", "--script", help="a file of commands, one per line")
    p.add_argument("--xentrace", metavar="FILE", help="write Xen's binary trace (public/trace.h), for xenalyze")


def _setup_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a recording (.jsonl, docs/recordings.md)")
    p.add_argument("--verify", action="store_true", help="re-simulate headless and check every digest "
                   "(exit 1 at a divergence)")
    p.add_argument("--to", metavar="MARKER|INSN", default=None, help="stop there and print the state")
    p.add_argument("--trace", metavar="OUT.jsonl", default=None, help="write the replay's full event trace")
    p.add_argument("--export-cast", metavar="OUT.cast", default=None,
                   help="write the session's narration as an asciicast (asciinema plays it)")


def _setup_serve(p: argparse.ArgumentParser) -> None:
    _setup_shell(p)
    p.add_argument("--host", default="localhost", help="the address to listen on (default localhost: this "
                   "computer only; 0.0.0.0 for every network it is on)")
    p.add_argument("--port", type=_int, default=8000, help="the port to listen on (default 8000)")


def _setup_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--rounds", type=_int, default=12, help="workload rounds (more = longer run)")


def _setup_lessons(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reset", action="store_true", help="forget all progress")
    p.add_argument("--json", action="store_true", help="the course as JSON")


def _setup_lesson(p: argparse.ArgumentParser) -> None:
    p.add_argument("lesson", metavar="ID", help="a lesson's id or number (xenlab lessons lists them), "
                   "or 'validate' to check lesson files")
    p.add_argument("files", nargs="*", metavar="FILE", help="with validate: lesson files (default: all of lessons/)")
    p.add_argument("--solve", action="store_true", help="play the lesson's own solutions headless, step by step")
    p.add_argument("--check", metavar="FILE", help="play your commands from FILE headless and check each step")
    p.add_argument("--seed", type=_int, default=0, help="the seed of a drill (the same seed, the same drill)")
    p.add_argument("--run", action="store_true", help="with validate: also solve each lesson and try each "
                   "step's wrong and right lines (slow)")


COMMANDS += [
    ("asm", "assemble a source file and print its listing", _setup_asm, cmd_asm),
    ("run", "run a machine headless and print what happened", _setup_run, cmd_run),
    ("xl", "run an xl command (list, info, console ...) on a scenario", _setup_xl, cmd_xl),
    ("compare", "run one program in every mode and count it side by side", _setup_compare,
     cmd_compare),
    ("xenstored", "serve the store on a Unix socket to Xen's xenstore-* tools",
     _setup_xenstored, cmd_xenstored),
    ("shell", "the lab's command line without the screen", _setup_shell, cmd_shell),
    ("exec", "run lab commands on a machine and print the answers", _setup_exec, cmd_exec),
    ("bench", "measure simulated guest instructions per second", _setup_bench, cmd_bench),
    ("replay", "replay a recorded session (on screen, or headless)",
     _setup_replay, cmd_replay),
    ("lessons", "list the guided lessons and your progress", _setup_lessons, cmd_lessons),
    ("lesson", "open a lesson, or solve, check or validate it headless", _setup_lesson, cmd_lesson),
    ("open", "open the lab on screen (the default with no command)", _setup_open, cmd_open),
    ("serve", "serve the lab to web browsers, one lab per visitor", _setup_serve, cmd_serve),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xenlab", description="A terminal lab that teaches how Xen virtualises a machine.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"xenlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text, setup, _ in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        setup(p)
    return parser


#: Commands whose process ends as soon as they have printed, their memory bounded by the
#: command itself (a compare: each mode runs a fixed number of instructions).
_RUN_WITHOUT_COLLECTING = frozenset({"compare"})


def _run_without_collecting() -> None:
    """Python's cyclic collector, off for the rest of the process. A compare makes and drops
    some 100,000 objects per mode, nearly all freed by their reference counts; the few
    cycles among them stay until the process ends, with no more memory at its peak (about
    100 MB either way), while each collection walks every young object (15-30 ms each).
    At exit, finalization would still walk every object left, several times (some 150,000:
    the booted host, the kernels, the compiled blocks; about 0.15 s) only to free memory
    the operating system takes back: freezing them in the last exit handler (registered
    first; the caches save theirs before) leaves it nothing to walk. Only for the
    ``xenlab`` process itself: a caller of ``main`` keeps its collector as it was."""
    gc.disable()
    atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    this_process = argv is None          # the ``xenlab`` program itself, not a caller of main
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # 'lesson validate --run A.toml B.toml': files may follow options there
            if args.command == "lesson" and not any(e.startswith("-") for e in extra):
                args.files += extra
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command is None:
            return cmd_open(args)
        if this_process and args.command in _RUN_WITHOUT_COLLECTING:
            _run_without_collecting()
        handler = {name: fn for name, _, _, fn in COMMANDS}[args.command]
        return handler(args)
    except UserError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:           # a bug in the lab, not the learner's input
        if os.environ.get("XENLAB_DEBUG"):
            raise
        print(f"xenlab: internal error: {type(e).__name__}: {e} (a bug in the lab; "
              f"set XENLAB_DEBUG=1 to see where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
