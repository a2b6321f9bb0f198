"""dom0's xenstore clients: the ``xenstore-*`` tools, and what the toolstack writes.

Everything here talks to a *target*: the daemon (:class:`~lab.dom0.xenstored.Xenstored`,
whose requests are traced and cost dom0 cycles) or a bare
:class:`~lab.dom0.xenstore.XenStore`; both answer ``dom0_request(op, path,
value, tx)``. The requests are the ones Xen's own clients send.

The tools print what ``tools/xenstore/xenstore_client.c`` prints: ``xenstore-ls``
indents one space per level and shows ``name = "value"``, escaping bytes as
``xs_sanitise_value`` does and cutting lines at 80 columns (its width when
stdout is not a terminal). A failure raises :class:`XsToolError` carrying the
tool's own message (``xenstore-read: couldn't read path /x``).

The toolstack helpers write a domain's nodes in libxl's order and with
libxl's permissions (``tools/libs/light/libxl_create.c`` libxl__domain_make
and ``libxl_dom.c`` libxl__build_post for the home; ``libxl_device.c``
libxl__device_generic_add, ``libxl_disk.c`` and ``libxl_nic.c`` for devices):

* ``/local/domain/<D>`` is owned by dom0, readable by D (``n0 r<D>``); so are
  ``cpu``, ``memory``, ``device`` and ``control``, so the guest can read its
  memory target but not change it.
* ``control/shutdown`` (and the ``feature-*``, ``sysrq`` nodes), ``data``,
  ``drivers``, ``feature``, ``attr``, ``error`` are owned by D (``n<D>``):
  the guest may write them.
* A device's frontend directory is owned by the guest, readable by the
  backend (``n<D> r<B>``); its backend directory is owned by the backend
  domain, readable by the guest (``n<B> r<D>``). Both start in state 1
  (XenbusStateInitialising), written in one transaction.
"""

from __future__ import annotations

import uuid as _uuid
from typing import Any, Callable, Protocol

from ..errors import UserError
from ..xen import abi
from .xenstore import XenStoreError, encode_value, decode_value

SCRIPT_DIR = "/etc/xen/scripts"            # libxl__xen_script_dir_path()
#: A fixed namespace, so a domain's uuid is a pure function of its domid and name.
UUID_NAMESPACE = _uuid.uuid5(_uuid.NAMESPACE_URL, "xenlab:vm")

STRERROR = {
    "EPERM": "Operation not permitted", "ENOENT": "No such file or directory", "EIO": "Input/output error",
    "E2BIG": "Argument list too long", "EAGAIN": "Resource temporarily unavailable",
    "ENOMEM": "Cannot allocate memory", "EACCES": "Permission denied", "EBUSY": "Device or resource busy",
    "EEXIST": "File exists", "EISDIR": "Is a directory", "EINVAL": "Invalid argument",
    "ENOSPC": "No space left on device", "EROFS": "Read-only file system", "ENOSYS": "Function not implemented",
    "ENOTEMPTY": "Directory not empty", "EISCONN": "Transport endpoint is already connected",
}


class Target(Protocol):
    def dom0_request(self, op: str | int, path: str | None = None, value: Any = None, tx: int = 0) -> Any: ...


class XsToolError(UserError):
    """A xenstore tool failed; ``str()`` is its message, ``stdout`` what it printed before."""

    def __init__(self, message: str, stdout: str = "") -> None:
        super().__init__(message)
        self.stdout = stdout


# ---------------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------------

def run_transaction(target: Target, body: Callable[[int], Any], attempts: int = 16) -> Any:
    """Run ``body(tx)`` in a transaction, again from the start while the commit says EAGAIN."""
    for _ in range(attempts):
        tx = target.dom0_request("TRANSACTION_START")
        try:
            result = body(tx)
        except BaseException:
            target.dom0_request("TRANSACTION_END", value="F", tx=tx)
            raise
        try:
            target.dom0_request("TRANSACTION_END", value="T", tx=tx)
            return result
        except XenStoreError as e:
            if e.errno != "EAGAIN":
                raise
    raise XenStoreError("EAGAIN", f"transaction still conflicting after {attempts} attempts")


def _mknod(target: Target, tx: int, path: str, perms: list[str]) -> None:
    """libxl__xs_mknod(): an empty node with exactly these permissions."""
    target.dom0_request("WRITE", path, "", tx=tx)
    target.dom0_request("SET_PERMS", path, perms, tx=tx)


def _rm(target: Target, tx: int, path: str) -> None:
    """xs_rm() whose result libxl ignores."""
    try:
        target.dom0_request("RM", path, tx=tx)
    except XenStoreError:
        pass


def _write(target: Target, tx: int, path: str, value: Any) -> None:
    target.dom0_request("WRITE", path, str(value), tx=tx)


# ---------------------------------------------------------------------------------------------------
# The domain's home (libxl__domain_make, libxl__build_post)
# ---------------------------------------------------------------------------------------------------

def domain_uuid(domid: int, name: str) -> str:
    """The lab's stand-in for the uuid xl generates: deterministic from domid and name."""
    return str(_uuid.uuid5(UUID_NAMESPACE, f"{domid}/{name}"))


def _domid(dom: Any) -> int:
    return dom if isinstance(dom, int) else dom.domid


def _dom_type(dom: Any) -> str:
    t = getattr(dom, "type", None) or getattr(dom, "mode", "pv")
    return {"pv32": "pv", "hvm-pvdrivers": "hvm", "pvhvm": "hvm"}.get(t, t)


def init_dom0(target: Target) -> None:
    """xen-init-dom0: dom0's domid and name."""
    target.dom0_request("WRITE", "/local/domain/0/domid", "0")
    target.dom0_request("WRITE", "/local/domain/0/name", "Domain-0")


def write_domain_home(target: Target, dom: Any, uuid: str | None = None) -> str:
    """Write ``/local/domain/<D>``, ``/vm/<uuid>`` and ``/libxl/<D>`` as libxl does; the home path.

    ``dom`` needs ``domid`` and ``name``; ``mem_pages``, ``max_pages``, ``vcpus``,
    ``type``, ``store_evtchn`` and ``store_pfn``/``p2m`` are used when present.
    ``memory/videoram`` is 0: the lab emulates no graphics card.
    """
    domid = _domid(dom)
    name = getattr(dom, "name", f"domain-{domid}")
    dtype = _dom_type(dom)
    uid = uuid or domain_uuid(domid, name)
    dom_path = f"/local/domain/{domid}"
    vm_path = f"/vm/{uid}"
    libxl_path = f"/libxl/{domid}"
    roperm = ["n0", f"r{domid}"]
    rwperm = [f"n{domid}"]
    noperm = ["n0"]

    def make(tx: int) -> None:
        _rm(target, tx, dom_path)
        _mknod(target, tx, dom_path, roperm)
        _rm(target, tx, vm_path)
        _mknod(target, tx, vm_path, roperm)
        _rm(target, tx, libxl_path)
        _mknod(target, tx, libxl_path, noperm)
        _mknod(target, tx, f"{libxl_path}/device", noperm)
        _write(target, tx, f"{dom_path}/vm", vm_path)
        _write(target, tx, f"{dom_path}/name", name)            # libxl__domain_rename
        for sub in ("cpu", "memory", "device", "control") + (("hvmloader",) if dtype == "hvm" else ()):
            _mknod(target, tx, f"{dom_path}/{sub}", roperm)
        rw = ["control/shutdown", "control/feature-poweroff", "control/feature-reboot",
              "control/feature-suspend"]
        if dtype == "hvm":
            rw += ["control/feature-s3", "control/feature-s4"]
        rw += ["control/sysrq", "device/suspend/event-channel", "data", "drivers", "feature", "attr", "error"]
        for sub in rw:
            _mknod(target, tx, f"{dom_path}/{sub}", rwperm)
        _write(target, tx, f"{vm_path}/uuid", uid)
        _write(target, tx, f"{vm_path}/name", name)
        _write(target, tx, f"{dom_path}/control/platform-feature-multiprocessor-suspend", "1")
        _write(target, tx, f"{dom_path}/control/platform-feature-xs_reset_watches", "1")
        _write(target, tx, f"{libxl_path}/type", dtype)

    run_transaction(target, make)

    mem_kb = getattr(dom, "mem_pages", 0) * 4
    max_kb = (getattr(dom, "max_pages", 0) or getattr(dom, "mem_pages", 0)) * 4
    nvcpus = len(getattr(dom, "vcpus", ()) or ()) or 1
    entries: list[tuple[str, Any]] = [("memory/static-max", max_kb), ("memory/target", mem_kb),
                                      ("memory/videoram", 0), ("domid", domid)]
    port = getattr(dom, "store_evtchn", 0)
    if port:
        pfn = getattr(dom, "store_pfn", 0)
        p2m = getattr(dom, "p2m", None)
        ring_ref = p2m[pfn] if dtype == "pv" and p2m else pfn     # PV: store_mfn; HVM: the gfn
        entries += [("store/port", port), ("store/ring-ref", ring_ref)]
    entries += [(f"cpu/{i}/availability", "online") for i in range(nvcpus)]

    def post(tx: int) -> None:
        for key, value in entries:
            _write(target, tx, f"{dom_path}/{key}", value)

    run_transaction(target, post)
    return dom_path


# ---------------------------------------------------------------------------------------------------
# Devices (libxl__device_generic_add)
# ---------------------------------------------------------------------------------------------------

def vbd_name(devid: int) -> str:
    """xvda for 51712: the vdev a xen-vbd-interface number stands for (xvd, hd, sd majors)."""
    major, minor = devid >> 8, devid & 0xFF
    if major == 202:
        disk, part = minor >> 4, minor & 15
        prefix = "xvd"
    elif major == 3:
        disk, part = minor >> 6, minor & 63
        prefix = "hd"
    elif major == 8:
        disk, part = minor >> 4, minor & 15
        prefix = "sd"
    else:
        return str(devid)
    return f"{prefix}{chr(ord('a') + disk)}{part or ''}"


def device_paths(kind: str, domid: int, devid: int, backend_domid: int = 0) -> tuple[str, str]:
    """(frontend, backend) directories of a device."""
    return (f"/local/domain/{domid}/device/{kind}/{devid}",
            f"/local/domain/{backend_domid}/backend/{kind}/{domid}/{devid}")


def _generic_add(target: Target, tx: int, kind: str, domid: int, devid: int, backend_domid: int,
                 back: list[tuple[str, Any]], front: list[tuple[str, Any]]) -> tuple[str, str]:
    fe, be = device_paths(kind, domid, devid, backend_domid)
    libxl_path = f"/libxl/{domid}/device/{kind}/{devid}"
    frontend_perms = [f"n{domid}", f"r{backend_domid}"]
    backend_perms = [f"n{backend_domid}", f"r{domid}"]
    _rm(target, tx, libxl_path)
    _write(target, tx, f"{libxl_path}/frontend", fe)
    _write(target, tx, f"{libxl_path}/backend", be)
    _rm(target, tx, fe)
    target.dom0_request("MKDIR", fe, tx=tx)
    target.dom0_request("SET_PERMS", fe, frontend_perms, tx=tx)
    _write(target, tx, f"{fe}/backend", be)
    for key, value in front:                                 # libxl__xs_writev_perms
        _write(target, tx, f"{fe}/{key}", value)
        target.dom0_request("SET_PERMS", f"{fe}/{key}", frontend_perms, tx=tx)
    _rm(target, tx, be)
    target.dom0_request("MKDIR", be, tx=tx)
    target.dom0_request("SET_PERMS", be, backend_perms, tx=tx)
    _write(target, tx, f"{be}/frontend", fe)
    for key, value in back:
        _write(target, tx, f"{be}/{key}", value)
    return fe, be


def add_vbd(target: Target, dom: Any, devid: int, *, backend_domid: int = 0, params: str = "",
            mode: str = "w", vdev: str | None = None, device_type: str = "disk", removable: bool = False,
            bootable: bool = True, backend_type: str = "phy", discard_enable: bool = True,
            trusted: bool = True) -> tuple[str, str]:
    """A virtual block device's frontend and backend directories, in one transaction.

    The keys are those libxl's device_disk_add writes (xen-facts section 7),
    in its order; both ends start in XenbusStateInitialising. Returns
    (frontend path, backend path).
    """
    domid = _domid(dom)
    init = int(abi.XenbusStateInitialising)
    back = [("params", params), ("frontend-id", domid), ("online", 1), ("removable", int(removable)),
            ("bootable", int(bootable)), ("state", init), ("dev", vdev or vbd_name(devid)),
            ("type", backend_type), ("mode", mode), ("device-type", device_type),
            ("discard-enable", int(discard_enable))]
    front = [("backend-id", backend_domid), ("state", init), ("virtual-device", devid),
             ("device-type", device_type), ("trusted", int(trusted))]
    return run_transaction(target, lambda tx: _generic_add(target, tx, "vbd", domid, devid, backend_domid,
                                                           back, front))


def add_vif(target: Target, dom: Any, devid: int, *, mac: str, backend_domid: int = 0, bridge: str = "xenbr0",
            script: str = "vif-bridge", nictype: str = "vif", trusted: bool = True) -> tuple[str, str]:
    """A virtual NIC's frontend and backend directories, in one transaction (libxl_nic.c keys)."""
    domid = _domid(dom)
    init = int(abi.XenbusStateInitialising)
    script_path = script if script.startswith("/") else f"{SCRIPT_DIR}/{script}"
    back = [("frontend-id", domid), ("online", 1), ("state", init), ("script", script_path), ("mac", mac),
            ("bridge", bridge), ("handle", devid), ("type", nictype)]
    front = [("backend-id", backend_domid), ("state", init), ("handle", devid), ("mac", mac),
             ("trusted", int(trusted))]
    return run_transaction(target, lambda tx: _generic_add(target, tx, "vif", domid, devid, backend_domid,
                                                           back, front))


def add_disk(target: Target, dom: Any, disk: Any, backend_domid: int = 0) -> tuple[str, str]:
    """add_vbd() from an xl.cfg disk spec (:class:`lab.dom0.xlcfg.DiskSpec`)."""
    backend_type = {"qdisk": "qdisk"}.get(disk.backendtype or "phy", "phy")
    discard = disk.discard if disk.discard is not None else disk.readwrite
    trusted = disk.trusted if disk.trusted is not None else True
    return add_vbd(target, dom, disk.devid, backend_domid=backend_domid, params=disk.target or "",
                   mode=disk.mode, vdev=disk.vdev, device_type=disk.devtype, removable=disk.removable,
                   backend_type=backend_type, discard_enable=discard, trusted=trusted)


def add_nic(target: Target, dom: Any, vif: Any, backend_domid: int = 0) -> tuple[str, str]:
    """add_vif() from an xl.cfg vif spec (:class:`lab.dom0.xlcfg.VifSpec`)."""
    nictype = "vif_ioemu" if vif.type == "ioemu" else "vif"
    return add_vif(target, dom, vif.devid, mac=vif.mac, backend_domid=backend_domid, bridge=vif.bridge,
                   script=vif.script, nictype=nictype)


def _path_cleanup(target: Target, tx: int, path: str) -> None:
    """libxl__xs_path_cleanup(): remove ``path``, then each parent left empty."""
    _rm(target, tx, path)
    p = path
    while True:
        p = p[:p.rfind("/")]
        if not p:
            return
        try:
            if target.dom0_request("READ", p, tx=tx) != "" or target.dom0_request("DIRECTORY", p, tx=tx):
                return
        except XenStoreError:
            return
        _rm(target, tx, p)


def remove_domain(target: Target, domid: int) -> None:
    """What ``xl destroy`` removes: each device's backend and the domain's own directories."""
    dom_path = f"/local/domain/{domid}"
    libxl_path = f"/libxl/{domid}"

    def body(tx: int) -> None:
        try:
            kinds = target.dom0_request("DIRECTORY", f"{libxl_path}/device", tx=tx)
        except XenStoreError:
            kinds = []
        for kind in kinds:
            for devid in target.dom0_request("DIRECTORY", f"{libxl_path}/device/{kind}", tx=tx):
                try:
                    be = target.dom0_request("READ", f"{libxl_path}/device/{kind}/{devid}/backend", tx=tx)
                except XenStoreError:
                    continue
                _path_cleanup(target, tx, be)
        try:
            vm_path = target.dom0_request("READ", f"{dom_path}/vm", tx=tx)
        except XenStoreError:
            vm_path = None
        _rm(target, tx, dom_path)
        if vm_path:
            _rm(target, tx, vm_path)
        _rm(target, tx, libxl_path)

    run_transaction(target, body)


# ---------------------------------------------------------------------------------------------------
# The xenstore-* tools
# ---------------------------------------------------------------------------------------------------

def sanitise_value(value: str | bytes) -> str:
    """xs_sanitise_value(): printable ASCII as is; \\t \\n \\r \\\\; \\ooo below 8; \\xNN otherwise."""
    data = encode_value(value) if isinstance(value, str) else value
    out = []
    for c in data:
        if 0x20 <= c <= 0x7E and c != 0x5C:
            out.append(chr(c))
        elif c in (0x09, 0x0A, 0x0D, 0x5C):
            out.append({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\"}[c])
        elif c < 0o10:
            out.append(f"\\{c:03o}")
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def unsanitise_value(text: str) -> str:
    """xs_unsanitise_value(): the escapes above back to bytes (returned as a store value)."""
    data = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        i += 1
        if c != 0x5C:
            out.append(c)
            continue
        if i >= len(data):
            out.append(c)
            break
        e = data[i]
        i += 1
        if e in b"tnr\\":
            out.append({ord("t"): 9, ord("n"): 10, ord("r"): 13, ord("\\"): 0x5C}[e])
        elif e == ord("x"):
            digits = bytes(d for d in data[i:i + 2])
            n = 0
            while n < len(digits) and chr(digits[n]) in "0123456789abcdefABCDEF":
                n += 1
            out.append(int(digits[:n], 16) if n else e)
            i += n
        elif ord("0") <= e <= ord("7"):
            n = 1
            while n < 3 and i - 1 + n < len(data) and ord("0") <= data[i - 1 + n] <= ord("7"):
                n += 1
            out.append(int(data[i - 1:i - 1 + n], 8) & 0xFF)
            i += n - 1
        else:
            out.append(e)
    return decode_value(bytes(out))


def _fail(tool: str, message: str, stdout: str = "") -> XsToolError:
    return XsToolError(f"{tool}: {message}", stdout)


def xenstore_read(target: Target, *paths: str, prefix: bool = False) -> str:
    """``xenstore-read [-p] PATH...``: each value on its own line."""
    out = []
    for path in paths:
        try:
            value = target.dom0_request("READ", path)
        except XenStoreError:
            raise _fail("xenstore-read", f"couldn't read path {path}", "".join(out)) from None
        out.append(f"{path}: {sanitise_value(value)}\n" if prefix else f"{sanitise_value(value)}\n")
    return "".join(out)


def xenstore_exists(target: Target, path: str) -> bool:
    """``xenstore-exists PATH``: its exit status, as a bool."""
    try:
        target.dom0_request("READ", path)
        return True
    except XenStoreError:
        return False


def xenstore_write(target: Target, path: str, value: str, *more: str) -> str:
    """``xenstore-write PATH VALUE [PATH VALUE...]``: several pairs go in one transaction."""
    pairs = [(path, value)] + list(zip(more[0::2], more[1::2]))
    if len(more) % 2:
        raise _fail("xenstore-write", "Usage: xenstore-write [-h] [-s] key value [...]")

    def body(tx: int) -> None:
        for p, v in pairs:
            try:
                target.dom0_request("WRITE", p, unsanitise_value(v), tx=tx)
            except XenStoreError:
                raise _fail("xenstore-write", f"could not write path {p}") from None

    if len(pairs) > 1:
        run_transaction(target, body)
    else:
        body(0)
    return ""


def xenstore_rm(target: Target, *paths: str, tidy: bool = False) -> str:
    """``xenstore-rm [-t] PATH...``; with -t, parents left empty go too."""
    def remove(tx: int, path: str) -> None:
        try:
            target.dom0_request("RM", path, tx=tx)
        except XenStoreError:
            raise _fail("xenstore-rm", f"could not remove path {path}") from None

    def body(tx: int) -> None:
        for path in paths:
            remove(tx, path)
            p = path
            while tidy and "/" in p:
                p = p[:p.rfind("/")]
                if not p:
                    break
                try:
                    if target.dom0_request("READ", p, tx=tx) != "" or target.dom0_request("DIRECTORY", p, tx=tx):
                        break
                except XenStoreError:
                    break
                remove(tx, p)

    run_transaction(target, body)
    return ""


def xenstore_list(target: Target, path: str, prefix: bool = False) -> str:
    """``xenstore-list [-p] PATH``: the children, one per line."""
    try:
        children = target.dom0_request("DIRECTORY", path)
    except XenStoreError:
        raise _fail("xenstore-list", f"could not list path {path}") from None
    return "".join(f"{path}/{c}\n" if prefix else f"{c}\n" for c in children)


def xenstore_chmod(target: Target, path: str, *perms: str) -> str:
    """``xenstore-chmod PATH PERM...`` (each PERM like ``r1``)."""
    try:
        target.dom0_request("SET_PERMS", path, list(perms))
    except XenStoreError as e:
        raise _fail("xenstore-chmod", f"Error occurred setting permissions on '{path}': "
                                      f"{STRERROR.get(e.errno, e.errno)}") from None
    return ""


TAG_LEN = len(' = "..."')


def xenstore_ls(target: Target, path: str = "/", *, show_perms: bool = False, full_path: bool = False,
                width: int = 80) -> str:
    """``xenstore-ls [-p] [-f] [PATH]``: the tree below PATH, as do_ls() prints it.

    ``width`` is the line width (80 when stdout is not a terminal, the terminal's
    width minus 2 when it is); ``full_path`` is ``-f``, ``show_perms`` is ``-p``.
    """
    out: list[str] = []
    max_width = (1 << 30) if full_path else width
    desired_width = 0 if full_path else 60

    def clip(text: str, n: int) -> str:
        return text if n < 0 else text[:n]

    def ls(p: str, depth: int) -> None:
        try:
            children = target.dom0_request("DIRECTORY", p)
        except XenStoreError as e:
            raise _fail("xenstore-ls", f"xs_directory ({p}): {STRERROR.get(e.errno, e.errno)}",
                        "".join(out)) from None
        for name in children:
            newpath = f"{p}{'' if p.endswith('/') else '/'}{name}"
            line: list[str] = []
            linewid = 0
            if full_path:
                line.append(newpath)
            else:
                line.append(" " * depth)
                linewid = depth
                shown = clip(name, max_width - TAG_LEN - linewid)
                line.append(shown)
                linewid += len(shown)
            try:
                value = target.dom0_request("READ", newpath)
            except XenStoreError:
                value = None
            if value is None:
                line.append(":\n")
            else:
                raw_len = len(encode_value(value))
                shown = sanitise_value(value)
                if max_width < linewid + raw_len + TAG_LEN:
                    line.append(f' = "{clip(shown, max_width - TAG_LEN - linewid)}\\..."')
                else:
                    text = f' = "{shown}"'
                    line.append(text)
                    linewid += len(text)
                    if show_perms:
                        line.append(" ")
                        linewid += 1
                        while linewid < min(desired_width, max_width):
                            line.append("." if linewid & 1 else " ")
                            linewid += 1
            if show_perms:
                try:
                    perms = target.dom0_request("GET_PERMS", newpath)
                    line.append(f"  ({','.join(perms)})")
                except XenStoreError:
                    pass
            line.append("\n")
            out.append("".join(line))
            ls(newpath, depth + 1)

    ls(path, 0)
    return "".join(out)


def tree(target: Target, path: str = "/") -> dict[str, str]:
    """Every node below ``path`` (inclusive) and its value, in listing order (for lessons and tests)."""
    out = {path: target.dom0_request("READ", path)}

    def walk(p: str) -> None:
        for c in target.dom0_request("DIRECTORY", p):
            child = f"{p}{'' if p.endswith('/') else '/'}{c}"
            out[child] = target.dom0_request("READ", child)
            walk(child)

    walk(path)
    return out
