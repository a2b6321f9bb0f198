r"""xl.cfg: domain configuration files in Xen's own syntax.

Three layers, each following the Xen code that does the same job:

* the lexer and parser of libxlu (``tools/libs/util/libxlu_cfg_l.l`` and
  ``libxlu_cfg_y.y``, helpers in ``libxlu_cfg.c``): ``KEY=VALUE`` settings
  separated by newlines or ``;``, ``#`` comments, quoted strings, numbers,
  nestable lists, ``+=``;
* the reading of each key, as ``tools/xl/xl_parse.c`` does it, into a
  :class:`DomainConfig`;
* the disk and network device specs (``libxlu_disk_l.l``,
  ``docs/man/xl-disk-configuration.5.pod.in``; ``parse_nic_config`` in
  ``xl_parse.c``, ``docs/man/xl-network-configuration.5.pod.in``), with vbd
  device numbers as libxl computes them (``libxl__device_disk_dev_number`` in
  ``tools/libs/light/libxl_device.c``, ``docs/man/xen-vbd-interface.7.pandoc``).

Every problem is a :class:`ConfigError` carrying the file and line; no other
exception escapes :func:`parse_cfg` or :func:`load_config`, whatever the input.

Quoted strings accept the escapes libxlu decodes (``\\ \' \" \a \b \f \n \r \t \v``);
libxlu's numeric escapes (``\x41``, ``\101``) never yield the
character, so the lab refuses them. Without ``memory`` or ``maxmem`` a guest
gets libxl's default of 32 MiB.

Where the lab is stricter than xl it says so: xl only warns about a value it
cannot use (a key holding a list where a string belongs, a number that does
not parse) and goes on with the default; the lab stops with an error, because
a learner's typo should not silently become a default.

Lab-only keys (real xl would ignore them as unknown):

``lab_pv32``
    boolean; run a ``type="pv"`` guest with the 32-bit PV profile (kernel in
    ring 1, hypercalls through ``int 0x82``).
``lab_kernel_mode``
    which of the lab's guest kernels to boot: ``"pv"``, ``"hvm"``,
    ``"hvm-pvdrivers"``, ``"pvhvm"`` or ``"pvh"``. Must fit ``type`` (pv: pv;
    hvm: hvm, hvm-pvdrivers, pvhvm; pvh: pvh). Optional: the default follows
    ``type``.
``lab_program``
    path of the user program the guest kernel runs.
``lab_stock_kernel``
    boolean; boot the lab's stock kernel for the guest's mode when the config
    names neither ``kernel`` nor ``bootloader``. Without it a PV or PVH config
    with neither gets xl's own error, ``Neither kernel nor bootloader
    specified`` (xl_parse.c).

``type`` and the deprecated ``builder`` are matched as xl matches them, by
prefix with ``strncmp(name, value, strlen(value))`` in the order hvm, pv, pvh
(builder: hvm, generic): ``type = "h"`` and even ``type = ""`` are hvm,
``type = "p"`` is pv.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from typing import Iterator, Union

from .. import sources

__all__ = [
    "ConfigError", "CfgValue", "parse_cfg", "parse_settings", "Setting",
    "DiskSpec", "VifSpec", "DomainConfig", "load_config", "parse_disk_spec",
    "parse_vif_spec", "vdev_to_devid", "devid_to_vdev", "generate_mac",
    "ON_SHUTDOWN_ACTIONS", "DOMAIN_TYPES", "KERNEL_MODES", "DEFAULT_MEMORY_MIB",
]


class ConfigError(Exception):
    """A problem in a configuration file, at a line of it."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def __reduce__(self):
        return (ConfigError, (self.file, self.line, self.message))


# ---------------------------------------------------------------------------
# Values and settings
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CfgValue:
    """A parsed VALUE: an atom (``text``) or a list (``items``).

    libxlu keeps every atom as a string, quoted or not (``memory = "512"`` and
    ``memory = 512`` mean the same); ``quoted`` only remembers how it was
    written so that it can be written back the same way.
    """
    text: str | None = None
    items: tuple["CfgValue", ...] | None = None
    quoted: bool = True
    line: int = field(default=0, compare=False)

    @property
    def is_list(self) -> bool:
        return self.items is not None

    def python(self) -> Union[str, list]:
        """The value as plain Python: a str, or a (nested) list of them."""
        if self.items is not None:
            return [v.python() for v in self.items]
        return self.text if self.text is not None else ""

    def to_text(self) -> str:
        if self.items is not None:
            return "[" + ", ".join(v.to_text() for v in self.items) + "]"
        text = self.text or ""
        if not self.quoted and _NUMBER_RE.fullmatch(text):
            return text
        return _quote(text)

    @staticmethod
    def of(value: object) -> "CfgValue":
        """Build a value from Python: str, int, bool, or a list/tuple of those."""
        if isinstance(value, CfgValue):
            return value
        if isinstance(value, bool):
            return CfgValue(text="1" if value else "0", quoted=False)
        if isinstance(value, int):
            if value < 0:
                return CfgValue(text=str(value), quoted=True)
            return CfgValue(text=str(value), quoted=False)
        if isinstance(value, (list, tuple)):
            return CfgValue(items=tuple(CfgValue.of(v) for v in value))
        return CfgValue(text=str(value), quoted=True)


def _quote(text: str) -> str:
    # libxlu's dequote knows \\ \" \' \a \b \f \n \r \t \v; only a newline
    # cannot appear raw inside quotes.
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


ADD = "+="
ASSIGN = "="


@dataclass(frozen=True)
class Setting:
    """One ``KEY=VALUE`` (or ``KEY+=VALUE``) as libxlu stores it."""
    name: str
    value: CfgValue
    op: str
    line: int


# ---------------------------------------------------------------------------
# Lexer: libxlu_cfg_l.l
# ---------------------------------------------------------------------------

_IDENT_RE = re.compile(r"[a-z][._0-9a-z]*")
_NUMBER_RE = re.compile(r"[0-9][0-9a-fx]*")
_STRING_RE = {
    "'": re.compile(r"'(?:[^'\\\n]|\\[^\n])*'"),
    '"': re.compile(r'"(?:[^"\\\n]|\\[^\n])*"'),
}
_LIKELY_PYTHON = set("+-.():")
_SIMPLE_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
                   "n": "\n", "r": "\r", "t": "\t", "v": "\v"}

# Token kinds, named as bison names them in its messages.
T_IDENT, T_NUMBER, T_STRING, T_NEWLINE = "IDENT", "NUMBER", "STRING", "NEWLINE"
T_EOF = "end of file"
_PUNCT = {",": "','", "[": "'['", "]": "']'", "=": "'='", ";": "';'"}
T_ADD = '"+="'


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    value: str = ""


_PYTHON_HINT = (" (the file looks like it contains Python code; arbitrary Python"
                " is no longer supported in xl.cfg)")


def _looks_like_python(s: str) -> bool:
    """Would libxlu's lexer meet one of ``+-.():`` outside a token? (It sets
    likely_python and, if parsing fails, says the file looks like Python.)"""
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in "'\"":
            m = _STRING_RE[c].match(s, i)
            if m is None:
                j = s.find("\n", i)
                i = n if j < 0 else j
            else:
                i = m.end()
        elif c == "#":
            j = s.find("\n", i)
            i = n if j < 0 else j
        elif "a" <= c <= "z":
            i = _IDENT_RE.match(s, i).end()
        elif "0" <= c <= "9":
            i = _NUMBER_RE.match(s, i).end()
        elif c == "+" and s.startswith("+=", i):
            i += 2
        elif c in _LIKELY_PYTHON:
            return True
        else:
            i += 1
    return False


class _Lexer:
    def __init__(self, text: str, filename: str) -> None:
        self.s = text
        self.f = filename
        self.i = 0
        self.line = 1

    def _error(self, near: str, msg: str, likely_python: bool = False) -> ConfigError:
        near = near.rstrip(" \t")
        where = f"near `{near}'" if near else "near <newline>"
        full = f"config parsing error {where}: {msg}"
        if likely_python:
            full += _PYTHON_HINT
        return ConfigError(self.f, self.line, full)

    def _lexerr(self, start: int, likely_python: bool) -> ConfigError:
        # flex's lexerr state: the bad character plus the rest up to white space.
        j = start + 1
        n = len(self.s)
        while j < n and self.s[j] not in " \t\n":
            j += 1
        near = self.s[start:j]
        hint = ""
        if self.s[start] == "\r":
            hint = " (carriage return: the file has DOS line endings)"
            near = near.replace("\r", "")
        elif "A" <= self.s[start] <= "Z" and (start == 0 or self.s[start - 1] in " \t\n;"):
            hint = " (keys are lower case)"
        err = self._error(near, "lexical error" + hint, likely_python)
        return err

    def tokens(self) -> Iterator[_Tok]:
        s = self.s
        n = len(s)
        while True:
            i = self.i
            if i >= n:
                yield _Tok(T_EOF, "", self.line)
                return
            c = s[i]
            if c in " \t":
                self.i = i + 1
                continue
            if "a" <= c <= "z":
                m = _IDENT_RE.match(s, i)
                self.i = m.end()
                yield _Tok(T_IDENT, m.group(), self.line, m.group())
                continue
            if "0" <= c <= "9":
                m = _NUMBER_RE.match(s, i)
                self.i = m.end()
                yield _Tok(T_NUMBER, m.group(), self.line, m.group())
                continue
            if c == "\n":
                self.i = i + 1
                tok = _Tok(T_NEWLINE, "\n", self.line)
                self.line += 1
                yield tok
                continue
            if c == "#":
                j = s.find("\n", i)
                if j < 0:
                    raise self._error(s[i:], "lexical error (a comment must end with a"
                                      " newline, and this one ends the file)")
                self.i = j + 1
                tok = _Tok(T_NEWLINE, "\n", self.line)
                self.line += 1
                yield tok
                continue
            if c in "'\"":
                m = _STRING_RE[c].match(s, i)
                if m is None:
                    raise self._error(s[i:].split("\n", 1)[0],
                                      "lexical error (unterminated quoted string)")
                self.i = m.end()
                yield _Tok(T_STRING, m.group(), self.line, self._dequote(m.group()))
                continue
            if c == "+" and s.startswith("+=", i):
                self.i = i + 2
                yield _Tok(T_ADD, "+=", self.line)
                continue
            if c in _PUNCT:
                self.i = i + 1
                yield _Tok(_PUNCT[c], c, self.line)
                continue
            raise self._lexerr(i, c in _LIKELY_PYTHON)

    def _dequote(self, quoted: str) -> str:
        body = quoted[1:-1]
        if "\\" not in body:
            return body
        out: list[str] = []
        k = 0
        n = len(body)
        while k < n:
            ch = body[k]
            if ch != "\\":
                out.append(ch)
                k += 1
                continue
            nc = body[k + 1]          # the lexer guarantees a character follows
            k += 2
            if nc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[nc])
            elif nc == "x" or "0" <= nc <= "7":
                # libxlu_cfg.c's numeric escapes never yield the character
                # (and \x always fails); the lab refuses them outright.
                raise self._error(quoted, "numerical character escape in quoted string"
                                  " is not supported by xl")
            else:
                raise self._error(quoted, "invalid character after backslash in quoted string")
        return "".join(out)


# ---------------------------------------------------------------------------
# Parser: libxlu_cfg_y.y
# ---------------------------------------------------------------------------

_MAX_LIST_DEPTH = 200


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.f = filename
        self.lexer = _Lexer(text, filename)
        self.toks = self.lexer.tokens()
        self.tok = next(self.toks)
        self.settings: dict[str, Setting] = {}
        self.order: list[Setting] = []

    def _advance(self) -> _Tok:
        t = self.tok
        if t.kind != T_EOF:
            self.tok = next(self.toks)
        return t

    def _syntax(self, expecting: tuple[str, ...] = ()) -> ConfigError:
        t = self.tok
        if t.kind == T_NEWLINE:
            near = "near <newline>"
        elif t.kind == T_EOF:
            near = "at end of file"
        else:
            near = f"near `{t.text}'"
        msg = f"config parsing error {near}: syntax error, unexpected {t.kind}"
        if expecting:
            msg += ", expecting " + " or ".join(expecting)
        if _looks_like_python(self.lexer.s):
            msg += _PYTHON_HINT
        return ConfigError(self.f, t.line, msg)

    def _skip_newlines(self) -> None:
        while self.tok.kind == T_NEWLINE:
            self._advance()

    def parse(self) -> list[Setting]:
        while True:
            while self.tok.kind in (T_NEWLINE, "';'"):
                self._advance()
            if self.tok.kind == T_EOF:
                return self.order
            if self.tok.kind != T_IDENT:
                raise self._syntax()
            key = self._advance()
            if self.tok.kind not in ("'='", T_ADD):
                raise self._syntax(("'='", T_ADD))
            op = ADD if self._advance().kind == T_ADD else ASSIGN
            value = self._value(0)
            self._store(key.value, op, value)
            if self.tok.kind not in (T_NEWLINE, "';'", T_EOF):
                raise self._syntax((T_NEWLINE, "';'"))

    def _value(self, depth: int) -> CfgValue:
        t = self.tok
        if t.kind == T_STRING:
            self._advance()
            return CfgValue(text=t.value, quoted=True, line=t.line)
        if t.kind == T_NUMBER:
            self._advance()
            return CfgValue(text=t.value, quoted=False, line=t.line)
        if t.kind == "'['":
            if depth >= _MAX_LIST_DEPTH:
                raise ConfigError(self.f, t.line, "config parsing error near `[': lists"
                                  " nested too deeply")
            self._advance()
            self._skip_newlines()
            items: list[CfgValue] = []
            if self.tok.kind == "']'":
                self._advance()
                return CfgValue(items=(), line=t.line)
            while True:
                items.append(self._value(depth + 1))
                self._skip_newlines()
                if self.tok.kind == "']'":
                    self._advance()
                    break
                if self.tok.kind != "','":
                    raise self._syntax(("','", "']'"))
                self._advance()
                self._skip_newlines()
                if self.tok.kind == "']'":       # trailing comma
                    self._advance()
                    break
            return CfgValue(items=tuple(items), line=t.line)
        raise self._syntax((T_STRING, T_NUMBER, "'['"))

    def _store(self, name: str, op: str, value: CfgValue) -> None:
        # xlu__cfg_set_store: += concatenates with the newest earlier setting
        # of the same name; the newest setting of a name is the one that counts.
        if op == ADD and name in self.settings:
            prev = self.settings[name].value
            if prev.is_list != value.is_list:
                raise ConfigError(self.f, value.line, "config parsing error: can't add"
                                  " [list] to \"string\" or vice versa")
            if value.is_list:
                value = CfgValue(items=prev.items + value.items, line=value.line)
            else:
                value = CfgValue(text=(prev.text or "") + (value.text or ""),
                                 quoted=prev.quoted or value.quoted, line=value.line)
        s = Setting(name, value, op, value.line)
        self.settings[name] = s
        self.order.append(s)


def parse_settings(text: str, filename: str = "<string>") -> dict[str, Setting]:
    """Parse xl.cfg text into its settings: the newest one of each name, in
    the order the names first appear."""
    p = _Parser(_as_text(text), filename)
    order = p.parse()
    out: dict[str, Setting] = {}
    for s in order:
        out.setdefault(s.name, s)
    for name in out:
        out[name] = p.settings[name]
    return out


def parse_cfg(text: str, filename: str = "<string>") -> dict[str, Union[str, list]]:
    """Parse xl.cfg text into plain Python: key -> str or (nested) list of str."""
    return {k: s.value.python() for k, s in parse_settings(text, filename).items()}


def _as_text(text: object) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="surrogateescape")
    return str(text)


# ---------------------------------------------------------------------------
# Typed access, as xlu_cfg_get_* do it (libxlu_cfg.c)
# ---------------------------------------------------------------------------

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MAX = (1 << 31) - 1
_STRTOL_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _strtol(text: str) -> int | None:
    """strtol(text, &ep, 0) that must consume the whole string; None if not."""
    m = _STRTOL_RE.fullmatch(text)
    if m is None:
        return None
    sign, digits = m.groups()
    if len(digits.lstrip("0")) > 40:     # far beyond a long either way
        return _LONG_MAX + 1
    if digits[:2] in ("0x", "0X"):
        v = int(digits[2:], 16)
    elif digits.startswith("0"):
        v = int(digits, 8)
    else:
        v = int(digits, 10)
    return -v if sign == "-" else v


class _Reader:
    """Typed reads of settings, reporting problems with file and line."""

    def __init__(self, settings: dict[str, Setting], filename: str, eof_line: int) -> None:
        self.s = settings
        self.f = filename
        self.eof_line = eof_line
        self.used: set[str] = set()

    def err(self, line: int, msg: str) -> ConfigError:
        return ConfigError(self.f, line, msg)

    def has(self, key: str) -> bool:
        return key in self.s

    def line(self, key: str) -> int:
        return self.s[key].line if key in self.s else self.eof_line

    def string(self, key: str) -> str | None:
        self.used.add(key)
        st = self.s.get(key)
        if st is None:
            return None
        if st.value.is_list:
            raise self.err(st.line, f"parameter `{key}' is a list but should be a single value")
        return st.value.text or ""

    def long(self, key: str) -> int | None:
        text = self.string(key)
        if text is None:
            return None
        st = self.s[key]
        if st.op == ADD:
            raise self.err(st.line, f"can't use += with numbers for parameter `{key}'")
        v = _strtol(text)
        if v is None:
            raise self.err(st.line, f"parameter `{key}' is not a valid number")
        if not _LONG_MIN <= v <= _LONG_MAX:
            raise self.err(st.line, f"parameter `{key}' could not be parsed as a number:"
                           " Numerical result out of range")
        return v

    def boolean(self, key: str) -> bool | None:
        v = self.long(key)
        return None if v is None else v != 0

    def value(self, key: str) -> CfgValue | None:
        self.used.add(key)
        st = self.s.get(key)
        return None if st is None else st.value

    def string_items(self, key: str) -> list[tuple[str, int]] | None:
        """A list of strings, each with the line it is written on."""
        self.used.add(key)
        st = self.s.get(key)
        if st is None:
            return None
        if not st.value.is_list:
            raise self.err(st.line, f"parameter `{key}' is a single value but should be a list")
        out = []
        for i, item in enumerate(st.value.items or ()):
            if item.is_list:
                raise self.err(item.line or st.line,
                               f"{key} entry {i} is a list but should be a string")
            out.append((item.text or "", item.line or st.line))
        return out


# ---------------------------------------------------------------------------
# vbd device numbers: libxl__device_disk_dev_number (libxl_device.c)
# ---------------------------------------------------------------------------

_DP_RE = re.compile(r"d([0-9]+)p([0-9]+)")


def _virtdisk_matches(vdev: str, prefix: str, max_index: int,
                      max_partition: int) -> tuple[int, int] | None:
    """device_virtdisk_matches: letters decode as bijective base 26."""
    if not vdev.startswith(prefix):
        return None
    p = len(prefix)
    index = -1
    while p < len(vdev) and "a" <= vdev[p] <= "z":
        index = (index + 1) * 26 + (ord(vdev[p]) - ord("a"))
        p += 1
        if index > max_index:
            return None
    if index < 0:
        return None      # no drive letter (libxl would compute a negative number)
    rest = vdev[p:]
    if not rest:
        return index, 0
    if rest[0] == "0" or not rest.isascii() or not rest.isdigit() or len(rest) > 6:
        return None      # no leading zeroes; partition must be decimal
    part = int(rest)
    if part > max_partition:
        return None
    return index, part


def vdev_to_devid(vdev: str) -> int | None:
    """The vbd device number of a virtual device name, or None if libxl would
    reject it. ``xvda`` -> 51712, ``xvdb`` -> 51728, ``hda`` -> 768,
    ``sda`` -> 2048, ``xvdq`` (disk 16) -> ``(1<<28) | (16<<8)``."""
    m = _DP_RE.fullmatch(vdev)
    dp = None
    if m is not None and len(m.group(1)) < 12 and len(m.group(2)) < 12:
        disk, part = int(m.group(1)), int(m.group(2))
        if disk < (1 << 20) and part < 256:
            dp = (disk, part)
    if dp is None:
        dp = _virtdisk_matches(vdev, "xvd", (1 << 20) - 1, 255)
    if dp is not None:
        disk, part = dp
        if disk <= 15 and part <= 15:
            return (202 << 8) | (disk << 4) | part
        return (1 << 28) | (disk << 8) | part
    num = _strtoul0(vdev)
    if num is not None:
        return num if num <= 0x7FFFFFFF else None
    dp = _virtdisk_matches(vdev, "hd", 3, 63)
    if dp is not None:
        disk, part = dp
        return ((3 if disk < 2 else 22) << 8) | ((disk & 1) << 6) | part
    dp = _virtdisk_matches(vdev, "sd", 15, 15)
    if dp is not None:
        disk, part = dp
        return (8 << 8) | (disk << 4) | part
    return None


def _strtoul0(text: str) -> int | None:
    m = re.fullmatch(r"[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if m is None:
        return None
    d = m.group(1)
    if len(d.lstrip("0")) > 40:
        return 1 << 200
    if d[:2] in ("0x", "0X"):
        return int(d[2:], 16)
    if d.startswith("0"):
        return int(d, 8)
    return int(d)


def _disk_letters(n: int) -> str:
    out = ""
    n += 1
    while n > 0:
        n -= 1
        out = chr(ord("a") + n % 26) + out
        n //= 26
    return out


def devid_to_vdev(devid: int) -> str:
    """The Linux-style name of a vbd device number (inverse of vdev_to_devid
    for the xvd, hd and sd forms); ``d<N>p<M>``-style numbers come back as xvd."""
    if devid & (1 << 28):
        disk, part = (devid >> 8) & 0xFFFFF, devid & 0xFF
        prefix = "xvd"
    else:
        major, minor = devid >> 8, devid & 0xFF
        if major == 202:
            prefix, disk, part = "xvd", minor >> 4, minor & 15
        elif major in (3, 22):
            prefix, disk, part = "hd", (0 if major == 3 else 2) + (minor >> 6), minor & 63
        elif major == 8:
            prefix, disk, part = "sd", minor >> 4, minor & 15
        else:
            return str(devid)
    return prefix + _disk_letters(disk) + (str(part) if part else "")


# ---------------------------------------------------------------------------
# Disk specs: libxlu_disk_l.l, libxlu_disk.c
# ---------------------------------------------------------------------------

DISK_FORMATS = ("raw", "qcow", "qcow2", "vhd", "qed", "empty")
DISK_BACKENDTYPES = ("phy", "tap", "qdisk", "standalone")


@dataclass(frozen=True)
class DiskSpec:
    """One entry of ``disk=[...]``."""
    target: str | None           # pdev_path; None or "" for an empty cdrom drive
    vdev: str
    devid: int                   # vbd device number (xen-vbd-interface)
    format: str = "raw"
    access: str = "rw"           # "rw" or "r"
    devtype: str = "disk"        # "disk" or "cdrom"
    backendtype: str | None = None
    backend: str | None = None   # backend domain name
    script: str | None = None
    specification: str | None = None
    discard: bool | None = None
    trusted: bool | None = None
    direct_io_safe: bool = False
    spec: str = field(default="", compare=False)

    @property
    def readwrite(self) -> bool:
        return self.access == "rw"

    @property
    def mode(self) -> str:
        """The backend's xenstore ``mode`` node: "w" or "r"."""
        return "w" if self.readwrite else "r"

    @property
    def is_cdrom(self) -> bool:
        return self.devtype == "cdrom"

    @property
    def removable(self) -> bool:
        return self.is_cdrom

    def to_spec(self) -> str:
        """The keyword form, target last."""
        parts = [f"format={self.format}", f"vdev={self.vdev}", f"access={self.access}"]
        if self.is_cdrom:
            parts.append("devtype=cdrom")
        if self.backendtype:
            parts.append(f"backendtype={self.backendtype}")
        if self.backend:
            parts.append(f"backend={self.backend}")
        if self.specification:
            parts.append(f"specification={self.specification}")
        if self.script:
            parts.append(f"script={self.script}")
        if self.discard is not None:
            parts.append("discard" if self.discard else "no-discard")
        if self.trusted is not None:
            parts.append("trusted" if self.trusted else "untrusted")
        if self.direct_io_safe:
            parts.append("direct-io-safe")
        if self.target is not None:
            parts.append(f"target={self.target}")
        return ", ".join(parts)


class _DiskError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_DEPR_FORMAT_RE = re.compile(r"(raw|qcow2?|vhd):")
_DEPR_SCRIPT_RE = re.compile(r"(iscsi|e?nbd|drbd):")
_DEPR_PLAIN_RE = re.compile(r"(tapdisk|tap2?|aio|ioemu|file|phy):")
_DEPR_UNKNOWN_RE = re.compile(r"[a-z][a-z0-9]*:(?=$|[^a-z0-9])")
_UNKNOWN_PARAM_RE = re.compile(r"[a-z][-a-z0-9]*=[^,],?")
_POSITIONAL_RE = re.compile(r"[^=,]*,|[^=,]+,?")
_FLAG_WORDS = {
    "cdrom": ("devtype", "cdrom"), "direct-io-safe": ("direct_io_safe", True),
    "discard": ("discard", True), "no-discard": ("discard", False),
    "colo": ("colo", True), "no-colo": ("colo", False),
    "trusted": ("trusted", True), "untrusted": ("trusted", False),
}
_KEYWORDS = ("format", "access", "backend", "backendtype", "specification", "vdev",
             "script", "colo-host", "colo-port", "colo-export", "active-disk", "hidden-disk")


class _DiskParser:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.target: str | None = None
        self.format: str | None = None
        self.vdev: str | None = None
        self.access = "rw"
        self.access_set = False
        self.devtype = "disk"
        self.backendtype: str | None = None
        self.backend: str | None = None
        self.script: str | None = None
        self.specification: str | None = None
        self.discard: bool | None = None
        self.trusted: bool | None = None
        self.direct_io_safe = False
        self.had_depr_prefix = False

    def fail(self, near: str | None, message: str) -> _DiskError:
        where = f": near `{near}'" if near is not None else ""
        return _DiskError(f"config parsing error in disk specification: {message}{where}"
                          f" in `{self.spec}'")

    def savestring(self, what: str, attr: str, value: str) -> None:
        cur = getattr(self, attr)
        if cur:            # an empty earlier value may be overwritten
            raise self.fail(value, f"{what} respecified")
        setattr(self, attr, value)

    def setformat(self, value: str) -> None:
        fmt = "raw" if value == "" else value
        if fmt not in DISK_FORMATS:
            raise self.fail(value, "unknown value for format")
        if self.format is not None and self.format != fmt:
            raise self.fail(value, "format respecified")
        self.format = fmt

    def setaccess(self, value: str) -> None:
        if value in ("r", "ro"):
            self.access = "r"
        elif value in ("rw", "w", ""):
            self.access = "rw"
        else:
            raise self.fail(value, "unknown value for access")

    def vdev_and_devtype(self, value: str) -> bool:
        """A positional ``<vdev>:<devtype>`` (deprecated form)."""
        if ":" not in value:
            return False
        vdev, devtype = value.rsplit(":", 1)
        self.savestring("vdev", "vdev", vdev)
        if devtype == "cdrom":
            self.devtype = "cdrom"
        elif devtype == "disk":
            self.devtype = "disk"
        else:
            raise self.fail(devtype, "unknown deprecated type")
        return True

    def keyword(self, key: str, value: str) -> None:
        if key == "format":
            self.setformat(value)
        elif key == "access":
            self.setaccess(value)
        elif key == "backend":
            self.savestring("backend", "backend", value)
        elif key == "backendtype":
            if value not in DISK_BACKENDTYPES:
                raise self.fail(value, "unknown value for backendtype")
            if self.backendtype is not None and self.backendtype != value:
                raise self.fail(value, "backend respecified")
            self.backendtype = value
        elif key == "specification":
            if value not in ("xen", "virtio"):
                raise self.fail(value, "unknown value for specification")
            self.specification = value
        elif key == "vdev":
            self.savestring("vdev", "vdev", value)
        elif key == "script":
            self.savestring("script", "script", value)
        # colo-* and *-disk: accepted, no effect in the lab.

    def positional(self, value: str) -> None:
        if self.target is None:
            self.target = value
        elif not self.had_depr_prefix and self.format is None:
            if self.target == "" and self.vdev_and_devtype(value):
                self.format = "empty"
            else:
                self.setformat(value)
        elif self.vdev is None:
            if not self.vdev_and_devtype(value):
                self.savestring("vdev", "vdev", value)
        elif not self.access_set:
            self.access_set = True
            self.setaccess(value)
        else:
            raise self.fail(value, "too many positional parameters")

    def run(self) -> None:
        s = self.spec
        i = 0
        n = len(s)
        while i < n:
            c = s[i]
            if c in " \t\n":
                i += 1
                continue
            rest = s[i:]
            # Deprecated prefixes win over everything (their patterns carry
            # trailing context that counts as matching the whole string).
            m = _DEPR_FORMAT_RE.match(rest)
            if m:
                self.had_depr_prefix = True
                self.setformat(m.group(1))
                i += m.end()
                continue
            m = _DEPR_SCRIPT_RE.match(rest)
            if m:
                self.had_depr_prefix = True
                self.savestring("script", "script", "block-" + m.group(1))
                i += m.end()
                continue
            m = _DEPR_PLAIN_RE.match(rest)
            if m:
                self.had_depr_prefix = True
                i += m.end()
                continue
            m = _DEPR_UNKNOWN_RE.match(rest)
            if m:
                raise self.fail(rest, "unknown deprecated disk prefix")
            if rest.startswith("target="):
                value = rest[len("target="):]
                if value.endswith(","):
                    value = value[:-1]
                self.savestring("target", "target", value)
                return
            eq = _match_keyword(rest)
            if eq is not None:
                key, value, length = eq
                self.keyword(key, value)
                i += length
                continue
            flag = _match_flag(rest)
            if flag is not None:
                (attr, val), length = flag
                if attr == "devtype":
                    self.devtype = val
                elif attr != "colo":
                    setattr(self, attr, val)
                i += length
                continue
            if rest.startswith("devtype="):
                value, length = _upto_comma(rest, len("devtype="))
                if value == "cdrom":
                    self.devtype = "cdrom"
                elif value == "disk":
                    self.devtype = "disk"
                else:
                    raise self.fail(rest[:length], "unknown value for type")
                i += length
                continue
            if rest.startswith("grant_usage="):
                value, length = _upto_comma(rest, len("grant_usage="))
                if value in ("0", "1"):
                    i += length
                    continue
            m_unknown = _UNKNOWN_PARAM_RE.match(rest)
            m_pos = _POSITIONAL_RE.match(rest)
            if m_unknown and (m_pos is None or m_unknown.end() > m_pos.end()):
                raise self.fail(m_unknown.group(), "unknown parameter")
            if m_pos is None or m_pos.end() == 0:
                raise self.fail(rest, "bad disk syntax")
            value = m_pos.group()
            if value.endswith(","):
                value = value[:-1]
            self.positional(value)
            i += m_pos.end()

    def result(self) -> DiskSpec:
        fmt = self.format or "raw"
        access = self.access
        if self.devtype == "cdrom":
            access = "r"
            if not self.target:
                fmt = "empty"
        if self.vdev is None:
            raise self.fail(None, "no vdev specified")
        if self.target is None and self.devtype != "cdrom":
            raise self.fail(None, "no target specified (and device not removable)")
        devid = vdev_to_devid(self.vdev)
        if devid is None:
            raise _DiskError(f"Invalid or unsupported virtual disk identifier {self.vdev}")
        return DiskSpec(target=self.target, vdev=self.vdev, devid=devid, format=fmt,
                        access=access, devtype=self.devtype, backendtype=self.backendtype,
                        backend=self.backend or None, script=self.script or None,
                        specification=self.specification, discard=self.discard,
                        trusted=self.trusted, direct_io_safe=self.direct_io_safe,
                        spec=self.spec)


def _upto_comma(rest: str, start: int) -> tuple[str, int]:
    j = rest.find(",", start)
    if j < 0:
        return rest[start:], len(rest)
    return rest[start:j], j + 1


def _match_keyword(rest: str) -> tuple[str, str, int] | None:
    for key in _KEYWORDS:
        if rest.startswith(key + "="):
            value, length = _upto_comma(rest, len(key) + 1)
            return key, value, length
    return None


def _match_flag(rest: str):
    for word, what in _FLAG_WORDS.items():
        if rest.startswith(word):
            after = rest[len(word):]
            # The flag rule must be at least as long as the positional match
            # ("cdrom," or "cdrom" at the end), or the positional one wins.
            if after == "" or after.startswith(","):
                return what, len(word) + (1 if after.startswith(",") else 0)
    return None


def parse_disk_spec(spec: str, file: str = "<string>", line: int = 0) -> DiskSpec:
    """Parse one disk spec string, in either form, into a :class:`DiskSpec`."""
    p = _DiskParser(spec)
    try:
        p.run()
        return p.result()
    except _DiskError as e:
        raise ConfigError(file, line, e.message) from None


# ---------------------------------------------------------------------------
# Network specs: parse_nic_config (xl_parse.c), defaults from libxl_nic.c
# ---------------------------------------------------------------------------

XEN_OUI = (0x00, 0x16, 0x3E)
_MAC_RE = re.compile(r"([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):"
                     r"([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})")
_RATE_RE = re.compile(r"([0-9]+)([GMK]?)([Bb])/s(?:@([0-9]+)(ms|us|s)?)?")
_VIF_STRING_KEYS = ("bridge", "gatewaydev", "ip", "script", "backend", "vifname", "model",
                    "vlan")
_VIF_IGNORED_PREFIXES = ("colo_", "forwarddev")


def generate_mac(domain_name: str, index: int) -> str:
    """A MAC in Xen's OUI 00:16:3e, as libxl makes one, but derived from a hash
    of (domain name, vif index) instead of a random UUID, so that runs repeat.
    libxl clears the top bit of the fourth byte; so does the lab."""
    digest = hashlib.sha256(f"{domain_name}\0{index}".encode("utf-8", "surrogateescape"))
    r = digest.digest()
    octets = (*XEN_OUI, r[0] & 0x7F, r[1], r[2])
    return ":".join(f"{b:02x}" for b in octets)


@dataclass(frozen=True)
class VifSpec:
    """One entry of ``vif=[...]``."""
    devid: int
    mac: str
    bridge: str = "xenbr0"
    type: str = "vif"                  # "vif" (PV only) or "ioemu" (HVM: emulated + PV)
    model: str | None = None           # emulated NIC model (type=ioemu): rtl8139 default
    ip: str | None = None
    script: str = "vif-bridge"
    rate: str | None = None
    backend: str | None = None
    vifname: str | None = None
    gatewaydev: str | None = None
    mtu: int = 1500
    mac_generated: bool = field(default=False, compare=False)
    spec: str = field(default="", compare=False)

    @property
    def mac_bytes(self) -> bytes:
        return bytes(int(x, 16) for x in self.mac.split(":"))

    @property
    def emulated(self) -> bool:
        return self.type == "ioemu"

    def to_spec(self, index: int | None = None) -> str:
        """``key=value,...``; devid is written when it is not the list index."""
        parts = [f"mac={self.mac}", f"bridge={self.bridge}", f"type={self.type}"]
        if self.model:
            parts.append(f"model={self.model}")
        if self.ip:
            parts.append(f"ip={self.ip}")
        if self.script != "vif-bridge":
            parts.append(f"script={self.script}")
        if self.rate:
            parts.append(f"rate={self.rate}")
        if self.backend:
            parts.append(f"backend={self.backend}")
        if self.vifname:
            parts.append(f"vifname={self.vifname}")
        if self.gatewaydev:
            parts.append(f"gatewaydev={self.gatewaydev}")
        if self.mtu != 1500:
            parts.append(f"mtu={self.mtu}")
        if index is None or self.devid != index:
            parts.append(f"devid={self.devid}")
        return ",".join(parts)


def parse_vif_spec(spec: str, index: int, domain_name: str, domain_type: str = "pv",
                   file: str = "<string>", line: int = 0,
                   warnings: list[str] | None = None) -> VifSpec:
    """Parse one vif spec (``key=value,...``). Unrecognised keys are warnings,
    as in xl; a bad mac, type or rate is an error."""
    def warn(text: str) -> None:
        if warnings is not None:
            warnings.append(f"{file}:{line}: {text}")

    def fail(text: str) -> ConfigError:
        return ConfigError(file, line, text)

    vals: dict[str, object] = {}
    for token in spec.split(","):
        token = token.lstrip(" ")
        if not token:
            continue
        key, eq, val = token.partition("=")
        if not eq:
            if token in ("trusted", "untrusted"):
                continue
            warn(f"unrecognized argument `{token}' in vif spec")
            continue
        if key == "type":
            if val not in ("vif", "ioemu"):
                raise fail("Invalid parameter `type'.")
            vals["type"] = val
        elif key == "mac":
            m = _MAC_RE.fullmatch(val)
            if m is None:
                raise fail(f"Invalid parameter `mac'. ({val!r} is not six hex bytes"
                           " separated by colons)")
            vals["mac"] = ":".join(f"{int(g, 16):02x}" for g in m.groups())
        elif key == "netdev":
            warn("the netdev parameter is deprecated, please use gatewaydev instead")
            vals["gatewaydev"] = val
        elif key in _VIF_STRING_KEYS:
            vals[key] = val
        elif key == "rate":
            if _RATE_RE.fullmatch(val) is None:
                raise fail(f"vif rate `{val}' is not RATE/s or RATE/s@INTERVAL"
                           " (e.g. 10Mb/s, 1MB/s@20ms)")
            vals["rate"] = val
        elif key in ("devid", "mtu"):
            n = _strtoul0(val)
            if n is None or n > 0xFFFFFFFF:
                raise fail(f"Invalid parameter `{key}'.")
            vals[key] = n
        elif key == "accel":
            warn("the accel parameter for vifs is currently not supported")
        elif key.startswith(_VIF_IGNORED_PREFIXES):
            warn(f"vif parameter `{key}' has no effect in the lab")
        else:
            warn(f"unrecognized argument `{token}' in vif spec")

    nic_type = vals.get("type")
    if domain_type == "hvm":
        nic_type = nic_type or "ioemu"
    else:
        if nic_type == "ioemu":
            raise fail("trying to create PV or PVH guest with an emulated interface")
        nic_type = "vif"
    model = vals.get("model")
    if nic_type == "ioemu" and model is None:
        model = "rtl8139"
    mac = vals.get("mac")
    generated = mac is None
    devid = vals.get("devid", index)
    if mac is None:
        mac = generate_mac(domain_name, index)
    return VifSpec(
        devid=int(devid), mac=str(mac), bridge=str(vals.get("bridge", "xenbr0")),
        type=nic_type, model=model, ip=vals.get("ip"),
        script=str(vals.get("script", "vif-bridge")), rate=vals.get("rate"),
        backend=vals.get("backend"), vifname=vals.get("vifname"),
        gatewaydev=vals.get("gatewaydev"), mtu=int(vals.get("mtu", 1500)),
        mac_generated=generated, spec=spec,
    )


# ---------------------------------------------------------------------------
# Keys (docs/man/xl.cfg.5.pod.in)
# ---------------------------------------------------------------------------

DOMAIN_TYPES = ("pv", "pvh", "hvm")


def _xl_prefix_match(value: str, names: tuple[tuple[str, str], ...]) -> str | None:
    """xl_parse.c: the first name for which strncmp(name, value, strlen(value)) is 0."""
    for name, result in names:
        if name.startswith(value):
            return result
    return None
#: parse_action_on_shutdown (xl_parse.c).
ON_SHUTDOWN_ACTIONS = ("destroy", "restart", "rename-restart", "preserve",
                       "coredump-destroy", "coredump-restart", "soft-reset")
KERNEL_MODES = ("pv", "hvm", "hvm-pvdrivers", "pvhvm", "pvh")
_MODES_FOR_TYPE = {"pv": ("pv",), "hvm": ("hvm", "hvm-pvdrivers", "pvhvm"), "pvh": ("pvh",)}
#: libxl's default when neither memory nor maxmem is given
#: (libxl__domain_build_info_setdefault, libxl_create.c: 32 * 1024 KiB).
DEFAULT_MEMORY_MIB = 32

#: Keys the lab reads and acts on.
LAB_KEYS = frozenset((
    "name", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "ramdisk",
    "cmdline", "root", "extra", "on_poweroff", "on_reboot", "on_crash", "hap",
    "xen_platform_pci", "viridian", "device_model_version", "disk", "vif", "max_grant_frames",
    "max_event_channels", "hpet",
))
LAB_ONLY_KEYS = frozenset(("lab_pv32", "lab_kernel_mode", "lab_program", "lab_stock_kernel"))

#: Real xl.cfg keys that the lab accepts and keeps, but which change nothing
#: in the simulation (they configure the host, the display, the device model
#: or features the lab does not model).
HOST_ONLY_KEYS = frozenset((
    # general
    "pool", "cpus", "cpus_soft", "cpu_weight", "cap", "vnuma", "on_watchdog",
    "on_soft_reset", "firmware", "pvshim", "pvshim_path", "pvshim_cmdline", "pvshim_extra",
    "uuid", "seclabel", "init_seclabel", "max_maptrack_frames",
    "max_grant_version", "nomigrate", "driver_domain", "device_tree", "passthrough",
    "xend_suspend_evtchn_compat", "vmtrace_buf_kb", "vpmu", "xenstore_feature_mask",
    "xenstore_quota", "claim_mode", "tsc_mode", "cpuid", "nestedhvm", "altp2m",
    "period", "slice", "latency", "extratime", "weight",
    # devices other than disk and vif
    "vtpm", "p9", "pvcalls", "vfb", "channel", "rdm", "usbctrl", "usbdev", "pci",
    "pci_permissive", "pci_msitranslate", "pci_seize", "pci_power_mgmt", "gfx_passthru",
    "rdm_mem_boundary", "dtdev", "ioports", "iomem", "irqs", "vdispl", "dm_restrict",
    "device_model_user", "vsnd", "vkb", "virtio", "tee", "vif2",
    # PV
    "bootloader", "bootloader_args", "bootloader_restrict", "bootloader_user", "e820_host",
    # HVM
    "boot", "hdtype", "oos", "shadow_memory", "bios", "bios_path_override", "pae", "acpi",
    "acpi_s3", "acpi_s4", "acpi_laptop_slate", "apic", "nx", "acpi_firmware",
    "smbios_firmware", "smbios", "ms_vm_genid", "localtime", "rtc_timeoffset", "vpt_align",
    "timer_mode", "mmio_hole", "xen_platform_pci_bar_uc", "hvm_pirq", "videoram", "stdvga",
    "vga", "vnc", "vnclisten", "vncdisplay", "vncunused", "vncpasswd", "vncviewer",
    "keymap", "sdl", "opengl", "display", "xauthority", "nographic", "spice", "spicehost",
    "spiceport", "spicetls_port", "spicedisable_ticketing", "spicepasswd",
    "spiceagent_mouse", "spicevdagent", "spice_clipboard_sharing", "spiceusbredirection",
    "spice_image_compression", "spice_streaming_video", "serial", "soundhw", "vkb_device",
    "usb", "usbversion", "usbdevice", "vendor_device", "altp2mhvm", "msr_relaxed",
    "mca_caps", "firmware_override",
    # device model
    "device_model", "device_model_override", "stubdomain_kernel", "stubdomain_cmdline",
    "stubdomain_ramdisk", "stubdomain_memory", "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel", "device_model_args", "device_model_args_pv",
    "device_model_args_hvm",
    # Arm
    "gic_version", "vuart", "sve", "llc_colors", "nr_spis", "trap_unmapped_accesses",
    "arm_sci",
))

#: Keys xl reads only for HVM guests (the "Fully-virtualised (HVM) Guest
#: Specific Options" of xl.cfg, and the device-model display and platform keys).
HVM_ONLY_KEYS = frozenset((
    "boot", "hdtype", "bios", "bios_path_override", "pae", "acpi_s3", "acpi_s4",
    "acpi_laptop_slate", "apic", "nx", "hpet", "acpi_firmware", "smbios_firmware", "smbios",
    "ms_vm_genid", "localtime", "rtc_timeoffset", "vpt_align", "mmio_hole",
    "xen_platform_pci", "xen_platform_pci_bar_uc", "viridian", "hvm_pirq", "videoram",
    "stdvga", "vga", "vnc", "vnclisten", "vncdisplay", "vncunused", "vncpasswd", "sdl",
    "nographic", "spice", "spicehost", "spiceport", "spicetls_port",
    "spicedisable_ticketing", "spicepasswd", "spiceagent_mouse", "spicevdagent",
    "spice_clipboard_sharing", "spiceusbredirection", "spice_image_compression",
    "spice_streaming_video", "serial", "soundhw", "vkb_device", "usb", "usbversion",
    "usbdevice", "vendor_device", "altp2mhvm", "firmware_override",
))
#: Keys for HVM and PVH (paging and nested virtualisation), not PV.
HVM_PVH_KEYS = frozenset(("hap", "oos", "shadow_memory", "nestedhvm", "timer_mode", "altp2m"))
#: Keys for PV (and PVH: the bootloader), not HVM.
PV_PVH_KEYS = frozenset(("bootloader", "bootloader_args", "bootloader_restrict",
                         "bootloader_user"))
PV_ONLY_KEYS = frozenset(("e820_host",))

ALL_KNOWN_KEYS = LAB_KEYS | LAB_ONLY_KEYS | HOST_ONLY_KEYS


def _type_mismatch(key: str, dtype: str) -> str | None:
    if key in HVM_ONLY_KEYS and dtype != "hvm":
        why = " (a PVH guest has no device model)" if dtype == "pvh" else ""
        return f"HVM-only key '{key}' is ignored for a {dtype} guest{why}"
    if key in HVM_PVH_KEYS and dtype == "pv":
        return f"key '{key}' applies to HVM and PVH guests only; ignored for a pv guest"
    if key in PV_PVH_KEYS and dtype == "hvm":
        return f"key '{key}' applies to PV and PVH guests only; ignored for an hvm guest"
    if key in PV_ONLY_KEYS and dtype != "pv":
        return f"PV-only key '{key}' is ignored for a{'n' if dtype == 'hvm' else ''} {dtype} guest"
    return None


# ---------------------------------------------------------------------------
# The domain configuration
# ---------------------------------------------------------------------------

@dataclass
class DomainConfig:
    """What ``xl create`` would build, as far as the lab models it."""

    STATE_CONSTANT = True       # configuration: snapshots keep it by identity
    name: str
    type: str = "pv"
    memory: int = DEFAULT_MEMORY_MIB       # MiB
    maxmem: int = DEFAULT_MEMORY_MIB       # MiB; > memory means "starts ballooned"
    vcpus: int = 1
    maxvcpus: int = 1
    kernel: str | None = None
    ramdisk: str | None = None
    cmdline: str | None = None             # composed from root/extra as xl does
    root: str | None = None
    extra: str | None = None
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    hap: bool = True
    xen_platform_pci: bool = True
    viridian: Union[bool, tuple[str, ...]] = False
    #: libxl's u.hvm.hpet, true unless set: written to HVM_PARAM_HPET_ENABLED
    hpet: bool = True
    device_model_version: str | None = None
    disks: list[DiskSpec] = field(default_factory=list)
    vifs: list[VifSpec] = field(default_factory=list)
    #: grant-table frames the domain may have; -1 leaves it to the hypervisor's default
    #: (xl.conf's max_grant_frames, then Xen's gnttab_max_frames)
    max_grant_frames: int = -1
    #: libxl's event_channels (uint32): 0 leaves it to libxl's default, 1023
    max_event_channels: int = 0
    # lab-only keys (see the module docstring)
    lab_pv32: bool = False
    lab_kernel_mode: str | None = None
    lab_program: str | None = None
    lab_stock_kernel: bool = False
    #: host-only xl.cfg keys as written (kept so the config survives to_text()).
    host_keys: dict[str, CfgValue] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list, compare=False)
    filename: str = field(default="<string>", compare=False)

    @property
    def kernel_mode(self) -> str:
        """The lab kernel to boot: lab_kernel_mode, else the one ``type`` implies."""
        if self.lab_kernel_mode:
            return self.lab_kernel_mode
        return {"pv": "pv", "hvm": "hvm", "pvh": "pvh"}[self.type]

    @property
    def boots_nothing(self) -> bool:
        """A PV or PVH config naming neither kernel, bootloader nor firmware: what xl
        refuses with "Neither kernel nor bootloader specified" (xl_parse.c), unless the
        lab's stock kernel is asked for (lab_stock_kernel)."""
        return (self.type in ("pv", "pvh") and not self.kernel and not self.lab_stock_kernel
                and "bootloader" not in self.host_keys and "firmware" not in self.host_keys)

    @property
    def is_hvm(self) -> bool:
        return self.type == "hvm"

    @property
    def is_pv(self) -> bool:
        return self.type == "pv"

    @property
    def is_pvh(self) -> bool:
        return self.type == "pvh"

    @property
    def auto_translated(self) -> bool:
        """HVM and PVH guests are auto-translated (XENFEAT_auto_translated_physmap)."""
        return self.type != "pv"

    @property
    def memory_kib(self) -> int:
        return self.memory * 1024

    @property
    def maxmem_kib(self) -> int:
        return self.maxmem * 1024

    def to_text(self) -> str:
        """The configuration in xl.cfg syntax; load_config() of it gives an
        equal DomainConfig (unknown keys and ``builder`` are not written;
        root/extra are written only when cmdline is not what they compose)."""
        lines: list[str] = []

        def put(key: str, value: object) -> None:
            lines.append(f"{key} = {CfgValue.of(value).to_text()}")

        put("name", self.name)
        put("type", self.type)
        put("memory", self.memory)
        if self.maxmem != self.memory:
            put("maxmem", self.maxmem)
        put("vcpus", self.vcpus)
        if self.maxvcpus != self.vcpus:
            put("maxvcpus", self.maxvcpus)
        if self.kernel is not None:
            put("kernel", self.kernel)
        if self.ramdisk is not None:
            put("ramdisk", self.ramdisk)
        if self.root is not None:
            put("root", self.root)
        if self.extra is not None:
            put("extra", self.extra)
        if self.cmdline is not None and self.cmdline != _compose_cmdline(self.root, self.extra):
            put("cmdline", self.cmdline)
        put("on_poweroff", self.on_poweroff)
        put("on_reboot", self.on_reboot)
        put("on_crash", self.on_crash)
        if self.type != "pv" or not self.hap:
            put("hap", self.hap)
        if self.type == "hvm" or not self.xen_platform_pci:
            put("xen_platform_pci", self.xen_platform_pci)
        if self.viridian is not False:
            put("viridian", list(self.viridian) if isinstance(self.viridian, tuple)
                else self.viridian)
        if not self.hpet:
            put("hpet", False)
        if self.device_model_version is not None:
            put("device_model_version", self.device_model_version)
        if self.disks:
            lines.append("disk = [")
            lines.extend(f"    {_quote(d.to_spec())}," for d in self.disks)
            lines.append("]")
        if self.max_grant_frames != -1:
            put("max_grant_frames", self.max_grant_frames)
        if self.max_event_channels:
            put("max_event_channels", self.max_event_channels)
        if self.vifs:
            lines.append("vif = [")
            lines.extend(f"    {_quote(v.to_spec(i))}," for i, v in enumerate(self.vifs))
            lines.append("]")
        for key in sorted(self.host_keys):
            lines.append(f"{key} = {self.host_keys[key].to_text()}")
        if self.lab_pv32:
            put("lab_pv32", True)
        if self.lab_kernel_mode is not None:
            put("lab_kernel_mode", self.lab_kernel_mode)
        if self.lab_program is not None:
            put("lab_program", self.lab_program)
        if self.lab_stock_kernel:
            put("lab_stock_kernel", 1)
        return "\n".join(lines) + "\n"


def _compose_cmdline(root: str | None, extra: str | None) -> str | None:
    """parse_cmdline (xl_parse.c) without an explicit cmdline."""
    if root is not None and extra is not None:
        return f"root={root} {extra}"
    if root is not None:
        return f"root={root}"
    return extra


def _read_source(path_or_text: object, filename: str | None) -> tuple[str, str]:
    if isinstance(path_or_text, os.PathLike):
        path = os.fspath(path_or_text)
        return _as_text(sources.read_bytes(path)), filename or str(path)
    if isinstance(path_or_text, bytes):
        return _as_text(path_or_text), filename or "<string>"
    text = str(path_or_text)
    if "\n" not in text and "=" not in text and text and len(text) < 4096 and (
            sources.is_file(text) or "/" in text or text.endswith((".cfg", ".xl"))):
        # a path (OSError if it is not there)
        return _as_text(sources.read_bytes(text)), filename or text
    return text, filename or "<string>"


def load_config(path_or_text: object, filename: str | None = None) -> DomainConfig:
    """Parse and check an xl.cfg (a path, or the text itself) as xl does.

    Raises :class:`ConfigError` for anything xl would refuse (and for the few
    things the lab is stricter about); everything xl would only ignore is
    listed in ``DomainConfig.warnings`` as ``file:line: text``.
    """
    try:
        text, fname = _read_source(path_or_text, filename)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise ConfigError(filename or str(path_or_text), 0,
                          f"unable to open configuration file: {why}") from None
    settings = parse_settings(text, fname)
    eof_line = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    eof_line = max(eof_line, 1)
    r = _Reader(settings, fname, eof_line)
    warns: list[tuple[int, str]] = []

    def warn(line: int, msg: str) -> None:
        warns.append((line, msg))

    # -- guest type: type=, then the deprecated builder= -------------------------
    dtype: str | None = None
    t = r.string("type")
    if t is not None:
        dtype = _xl_prefix_match(t, (("hvm", "hvm"), ("pv", "pv"), ("pvh", "pvh")))
        if dtype is None:
            raise r.err(r.line("type"), f"Invalid domain type {t}.")
    b = r.string("builder")
    if b is not None:
        btype = _xl_prefix_match(b, (("hvm", "hvm"), ("generic", "pv")))
        if btype is None:
            raise r.err(r.line("builder"), f"Invalid domain type {b}.")
        if dtype is not None and dtype != btype:
            raise r.err(r.line("builder"),
                        'Contradicting "builder" and "type" options specified.')
        warn(r.line("builder"), f'"builder" is deprecated since Xen 4.10; use type="{btype}"')
        dtype = btype
    dtype = dtype or "pv"

    name = r.string("name")
    if name is None:
        raise r.err(eof_line, "Domain name must be specified.")
    if name == "":
        raise r.err(r.line("name"), "Domain name must not be empty.")

    # -- memory and vcpus ----------------------------------------------------------
    memory = r.long("memory")
    maxmem = r.long("maxmem")
    for key, v in (("memory", memory), ("maxmem", maxmem)):
        if v is not None and v < 1:
            raise r.err(r.line(key), f"{key} must be at least 1 MiB (got {v})")
    if memory is None:
        memory = maxmem if maxmem is not None else DEFAULT_MEMORY_MIB
    if maxmem is None:
        maxmem = memory
    if maxmem < memory:
        raise r.err(r.line("maxmem"), f"maxmem ({maxmem}) must be equal to or greater than"
                    f" memory ({memory})")
    vcpus = r.long("vcpus")
    if vcpus is None or vcpus < 1:
        vcpus = 1
    maxvcpus = r.long("maxvcpus")
    max_grant_frames = r.long("max_grant_frames")
    max_event_channels = r.long("max_event_channels")      # xlu_cfg_get_long, no bounds (xl_parse.c)
    if max_grant_frames is not None and not 0 <= max_grant_frames <= _INT_MAX:
        # xl_parse.c reads it with xlu_cfg_get_bounded_long(0, INT_MAX) and exits; libxlu's words
        bound = ("smaller than minimum bound '0'" if max_grant_frames < 0
                 else f"greater than maximum bound '{_INT_MAX}'")
        raise r.err(r.line("max_grant_frames"), f"value `{max_grant_frames}' is {bound}")
    if maxvcpus is None or maxvcpus == 0:
        maxvcpus = vcpus
    if maxvcpus < vcpus:
        raise r.err(r.line("maxvcpus"), "xl: maxvcpus < vcpus")

    # -- kernel and command line -----------------------------------------------------
    kernel = r.string("kernel")
    ramdisk = r.string("ramdisk")
    explicit_cmdline = r.string("cmdline")
    root = r.string("root")
    extra = r.string("extra")
    if explicit_cmdline is not None:
        cmdline: str | None = explicit_cmdline
        if root is not None or extra is not None:
            warn(r.line("cmdline"), "ignoring root= and extra= in favour of cmdline=")
    else:
        cmdline = _compose_cmdline(root, extra)

    # -- event actions -------------------------------------------------------------------
    actions: dict[str, str] = {}
    for key, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                         ("on_crash", "destroy"), ("on_watchdog", "destroy"),
                         ("on_soft_reset", "soft-reset")):
        v = r.string(key)
        if v is None:
            v = default
        elif v not in ON_SHUTDOWN_ACTIONS:
            raise r.err(r.line(key), f'Unknown {key} action "{v}" specified')
        actions[key] = v

    # -- platform ----------------------------------------------------------------------
    hap = r.boolean("hap")
    platform_pci = r.boolean("xen_platform_pci")
    viridian: Union[bool, tuple[str, ...]] = False
    vv = r.value("viridian")
    if vv is not None:
        if vv.is_list:
            groups = []
            for item in vv.items or ():
                if item.is_list:
                    raise r.err(r.line("viridian"), "viridian groups must be strings")
                groups.append(item.text or "")
            viridian = tuple(groups)
        else:
            viridian = bool(r.boolean("viridian"))
    hpet = r.boolean("hpet")
    dmv = r.string("device_model_version")
    if dmv is not None and dmv != "qemu-xen":
        raise r.err(r.line("device_model_version"),
                    f'Unknown device_model_version "{dmv}" specified')

    # -- lab-only keys ---------------------------------------------------------------
    lab_pv32 = bool(r.boolean("lab_pv32"))
    if lab_pv32 and dtype != "pv":
        raise r.err(r.line("lab_pv32"), f"lab_pv32 needs type=\"pv\" (this is a {dtype} guest)")
    mode = r.string("lab_kernel_mode")
    if mode is not None:
        if mode not in KERNEL_MODES:
            raise r.err(r.line("lab_kernel_mode"), f"lab_kernel_mode \"{mode}\" is not one of"
                        f" {', '.join(KERNEL_MODES)}")
        if mode not in _MODES_FOR_TYPE[dtype]:
            raise r.err(r.line("lab_kernel_mode"), f"lab_kernel_mode \"{mode}\" does not fit"
                        f" type=\"{dtype}\" (use {' or '.join(_MODES_FOR_TYPE[dtype])})")
    program = r.string("lab_program")
    stock_kernel = bool(r.boolean("lab_stock_kernel"))
    if platform_pci is False and mode in ("hvm-pvdrivers", "pvhvm"):
        warn(r.line("xen_platform_pci"), "xen_platform_pci=0 hides the Xen platform PCI device:"
             " the guest's PV drivers will not load")

    # -- devices ---------------------------------------------------------------------------
    disks: list[DiskSpec] = []
    seen: dict[int, str] = {}
    for spec, line in r.string_items("disk") or ():
        d = parse_disk_spec(spec, fname, line)
        if d.devid in seen:
            raise r.err(line, f"disk vdev {d.vdev} is the same device as"
                        f" {seen[d.devid]} (devid {d.devid})")
        seen[d.devid] = d.vdev
        disks.append(d)

    vifs: list[VifSpec] = []
    vif_devids: set[int] = set()
    for i, (spec, line) in enumerate(r.string_items("vif") or ()):
        vif_warnings: list[str] = []
        v = parse_vif_spec(spec, i, name, dtype, fname, line, vif_warnings)
        prefix = f"{fname}:{line}: "
        for w in vif_warnings:
            warn(line, w[len(prefix):] if w.startswith(prefix) else w)
        if v.devid in vif_devids:
            raise r.err(line, f"two vifs have devid {v.devid}")
        vif_devids.add(v.devid)
        vifs.append(v)
    if "vif2" in settings:
        warn(r.line("vif2"), "vif2: netchannel2 is deprecated and not supported by xl")

    # -- keys the lab does not act on --------------------------------------------------
    host_keys: dict[str, CfgValue] = {}
    for key, st in settings.items():
        mismatch = _type_mismatch(key, dtype)
        if mismatch is not None:
            warn(st.line, mismatch)
        if key in HOST_ONLY_KEYS:
            host_keys[key] = st.value
            if mismatch is None:
                warn(st.line, f"host-only key '{key}' has no effect in the lab")
        elif key not in LAB_KEYS and key not in LAB_ONLY_KEYS:
            warn(st.line, f"unknown key '{key}' ignored")

    # In line order; within a line, in the order found (sorted() is stable).
    warnings = [f"{fname}:{line}: {msg}" for line, msg in sorted(warns, key=lambda w: w[0])]

    return DomainConfig(
        name=name, type=dtype, memory=memory, maxmem=maxmem, vcpus=vcpus, maxvcpus=maxvcpus,
        kernel=kernel, ramdisk=ramdisk, cmdline=cmdline, root=root, extra=extra,
        on_poweroff=actions["on_poweroff"], on_reboot=actions["on_reboot"],
        on_crash=actions["on_crash"], hap=True if hap is None else hap,
        xen_platform_pci=True if platform_pci is None else platform_pci,
        viridian=viridian, hpet=True if hpet is None else hpet,
        device_model_version=dmv, disks=disks, vifs=vifs,
        max_grant_frames=-1 if max_grant_frames is None else max_grant_frames,
        max_event_channels=max_event_channels or 0,
        lab_pv32=lab_pv32, lab_kernel_mode=mode, lab_program=program, lab_stock_kernel=stock_kernel,
        host_keys=host_keys, warnings=warnings, filename=fname,
    )


def with_warnings_cleared(cfg: DomainConfig) -> DomainConfig:
    """A copy without warnings (handy when comparing configs)."""
    return replace(cfg, warnings=[])
