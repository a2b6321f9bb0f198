"""The ``xl`` command line, shared by ``xenlab xl``, the TUI and the shell."""

from __future__ import annotations

from ..dom0.toolstack import Toolstack
from ..errors import UserError

USAGE = {
    "list": "xl list", "info": "xl info [KEY]", "dmesg": "xl dmesg [-c]", "console": "xl console [-t pv|serial] DOMAIN",
    "vcpu-list": "xl vcpu-list", "create": "xl create CFG", "destroy": "xl destroy DOMAIN",
    "pause": "xl pause DOMAIN", "unpause": "xl unpause DOMAIN", "shutdown": "xl shutdown DOMAIN",
    "block-list": "xl block-list DOMAIN...", "network-list": "xl network-list DOMAIN...",
    "resume": "xl resume DOMAIN",
}


def run_xl(xl: Toolstack, words: list[str]) -> str:
    if not words:
        raise UserError("xl: which command? (" + ", ".join(USAGE) + ")")
    cmd, args = words[0], words[1:]
    if cmd not in USAGE:
        raise UserError(f"xl: unknown command '{cmd}' (known: {', '.join(USAGE)})")
    if cmd == "console" and args[:1] == ["-t"]:
        # xl console -t pv|serial DOMAIN (tools/xl/xl_console.c)
        if len(args) != 3:
            raise UserError("usage: xl console [-t pv|serial] DOMAIN")
        if args[1] not in ("pv", "serial"):
            raise UserError("console type supported are: pv, serial")
        return xl.console(args[2], args[1]) or f"(no console output from {args[2]} yet)"
    needs_one = cmd in ("console", "create", "destroy", "pause", "unpause", "shutdown", "resume")
    if needs_one and len(args) != 1:
        raise UserError(f"usage: {USAGE[cmd]}")
    if cmd in ("block-list", "network-list"):
        if not args:
            raise UserError(f"usage: {USAGE[cmd]}")
        return xl.block_list(args) if cmd == "block-list" else xl.network_list(args)
    if cmd == "list":
        return xl.list()
    if cmd == "info":
        return xl.info(args[0] if args else None)
    if cmd == "dmesg":
        # main_dmesg (tools/xl/xl_info.c): -c / --clear clears the ring after printing it
        if any(a not in ("-c", "--clear") for a in args):
            raise UserError(f"usage: {USAGE[cmd]}")
        return xl.dmesg(clear=bool(args))
    if cmd == "vcpu-list":
        return xl.vcpu_list()
    if cmd == "console":
        return xl.console(args[0]) or f"(no console output from {args[0]} yet)"
    if cmd == "create":
        dom = xl.create(args[0])
        return f"Parsing config from {args[0]}\ncreated {dom.name} (d{dom.domid})"
    if cmd == "resume" and not hasattr(xl, "resume"):
        raise UserError("xl resume: the lab resumes Arm guests suspended to RAM (PSCI SYSTEM_SUSPEND) only")
    getattr(xl, cmd)(args[0])
    return ""
