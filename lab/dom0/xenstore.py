"""XenStore: the tree xenstored keeps, with permissions, watches and transactions.

This module is the store alone, pure Python with no host: the daemon that
speaks the wire protocol over each domain's ring page is
:mod:`lab.dom0.xenstored`. The semantics follow ``docs/misc/xenstore.txt``
and the C daemon, cxenstored (``tools/xenstored/``):

* A node has a value (bytes; the lab keeps them as ``str`` decoded as UTF-8
  with ``surrogateescape``, so any bytes survive) and a permission list in
  Xen's order: the first entry names the owner and gives everyone else's
  default access; later entries give named domains their access. Letters are
  ``n`` (none), ``r`` (read), ``w`` (write), ``b`` (both).
* The owner and privileged domains (dom0) may do anything. Anyone else gets
  the first later entry naming them, or the default (``perm_for_conn``).
* A node that does not exist answers ``ENOENT`` only to a caller the nearest
  existing ancestor would let in; anyone else gets ``EACCES``, so a domU
  cannot even probe another domain's subtree (``errno_from_parents``).
* New nodes (and missing parents) copy their parent's permissions; a domU
  becomes the owner of what it creates.
* Watches fire for the path and everything below it, once when set, and for
  the special events ``@introduceDomain`` and ``@releaseDomain``; an event
  reaches a watcher only if it may read the node (or its parent).
* A transaction works on a snapshot taken at its start. Each node it touches
  has its generation count recorded; the commit fails with ``EAGAIN`` if any
  of them changed meanwhile. Watches for its changes fire at the commit.

Children are listed in the order they were created, as cxenstored does
(oxenstored sorts them); the order is deterministic either way.

Errors are Xen's errno *names* (``ENOENT``), as they travel on the wire.
Quotas are cxenstored's defaults and bind domUs only, checked as Xen master's
``domain_quota_val_exceeds()`` checks them: a new count or size *reaching* the
quota is refused, so a domain may hold at most 999 nodes, 127 watches and 9
open transactions, and a node must stay below 2048 bytes (its header, its
permissions, its value and its children's names: a parent whose list of
children grows is checked too). Exceeding one gives ``ENOSPC`` (cxenstored)
rather than oxenstored's ``EQUOTA``. ``docs/xenstore.md`` says where this
follows master rather than Xen 4.17.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from ..isa.bits import M32
from ..xen import abi

# Permission bits (xenstore_lib.h: XS_PERM_*).
PERM_NONE, PERM_READ, PERM_WRITE, PERM_OWNER = 0x00, 0x01, 0x02, 0x08
PERM_BITS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}

#: The errno names xenstored sends (xs_wire.h, xsd_errors[]); EPERM was added last.
XSD_ERRORS = ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY",
              "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM")

#: cxenstored's default hard quotas (tools/xenstored/domain.c, quotas[]), applied to domUs
#: only. A value that reaches the quota exceeds it (domain_quota_val_exceeds: val >= quota).
QUOTA_NODES = 1000           # nodes a domain may own
QUOTA_WATCHES = 128          # watches per domain
QUOTA_TRANSACTIONS = 10      # open transactions per domain
QUOTA_NODE_PERMS = 5         # permission entries per node
QUOTA_NODE_SIZE = 2048       # bytes of one node as stored (calc_node_acc_size)
QUOTA_PATH_LENGTH = abi.XENSTORE_REL_PATH_MAX   # below /local/domain/<domid>/
#: sizeof(struct node_hdr) (tools/xenstored/core.h): u64 generation, u16 num_perms,
#: u16 datalen, u32 childlen; and sizeof(struct xs_permissions), two 32-bit fields.
NODE_HDR_SIZE = 16
XS_PERMISSIONS_SIZE = 8


def exceeds(value: int, quota: int) -> bool:
    """domain_quota_val_exceeds(): reaching the quota is exceeding it."""
    return value >= quota

SPECIAL_NODES = ("@releaseDomain", "@introduceDomain")
_VALID = re.compile(r"[A-Za-z0-9\-/_@]*\Z")
_LOCAL = re.compile(r"/local/domain/(\d{1,5})/")

Perm = tuple[str, int]


class XenStoreError(Exception):
    """A request xenstored refuses; ``errno`` is the name sent on the wire."""

    def __init__(self, errno: str, detail: str = "") -> None:
        super().__init__(f"{errno}: {detail}" if detail else errno)
        self.errno = errno
        self.detail = detail


def _err(name: str, detail: str = "") -> XenStoreError:
    return XenStoreError(name, detail)


@dataclass(frozen=True)
class Node:
    """One node. Immutable: a change makes a new Node, so snapshots are cheap."""
    value: str
    perms: tuple[Perm, ...]
    children: tuple[str, ...] = ()
    gen: int = 0

    @property
    def owner(self) -> int:
        return self.perms[0][1]

    def size(self) -> int:
        """calc_node_acc_size(): header, permissions, value and nul-terminated child names."""
        return (NODE_HDR_SIZE + XS_PERMISSIONS_SIZE * len(self.perms) + len(encode_value(self.value))
                + sum(len(c.encode("utf-8", "surrogateescape")) + 1 for c in self.children))


@dataclass
class Watch:
    domid: int
    path: str            # canonical: absolute, or @special
    token: str
    prefix_len: int      # registered relative: events drop "/local/domain/<domid>/"


@dataclass
class Transaction:
    id: int
    domid: int
    nodes: dict[str, Node]                                       # the snapshot, then our changes
    accessed: dict[str, int | None] = field(default_factory=dict)  # path -> generation first seen
    first_perms: dict[str, tuple[Perm, ...] | None] = field(default_factory=dict)
    modified: set[str] = field(default_factory=set)
    fire: dict[str, bool] = field(default_factory=dict)          # path -> exact (queued events)


def encode_value(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def decode_value(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def perm_string(perm: Perm) -> str:
    return f"{perm[0]}{perm[1]}"


def is_decimal(text: str) -> bool:
    """ASCII digits only: a guest's "\u0663" or "\u00b2" passes str.isdigit() but is no number."""
    return text.isascii() and text.isdigit()


_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def parse_perm(text: str) -> Perm:
    """``r1`` -> ("r", 1); EINVAL for anything else (xenstore_strings_to_perms).

    The domid is read as C's ``strtol(p, &end, 0)`` reads it (so ``r0x10`` is domain 16)
    into an unsigned int; a domid no domain has is not a syntax error (see set_perms)."""
    m = _STRTOL.match(text[1:]) if text[:1] in PERM_BITS else None
    if m is None:
        raise _err("EINVAL", f"bad permission {text!r}")
    digits = m.group(2)
    value = int(digits, 16 if digits[1:2] in ("x", "X") else 8 if digits[:1] == "0" else 10)
    if m.group(1) == "-":
        value = -value
    return (text[0], value & M32)


def parse_perms(items: Iterable[str] | str) -> tuple[Perm, ...]:
    if isinstance(items, str):
        items = items.split()
    return tuple(parse_perm(p) for p in items)


def parent_of(path: str) -> str:
    """get_parent(): "/" for a top-level node and for "@special" names."""
    i = path.rfind("/", 1)
    return path[:i] if i > 0 else "/"


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def is_child(child: str, parent: str) -> bool:
    """xenstore.txt: identical, or parent is /, or parent/ is a prefix of child."""
    if parent == "/":
        return True
    return child == parent or child.startswith(parent + "/")


def domain_path(domid: int) -> str:
    return f"/local/domain/{domid}"


class _View:
    """Where an operation reads and writes: the store itself or one transaction."""

    def __init__(self, store: "XenStore", tx: Transaction | None) -> None:
        self.store = store
        self.tx = tx
        self.nodes = tx.nodes if tx is not None else store.nodes

    def get(self, path: str) -> Node | None:
        node = self.nodes.get(path)
        tx = self.tx
        if tx is not None and path not in tx.accessed:
            tx.accessed[path] = node.gen if node is not None else None
            tx.first_perms[path] = node.perms if node is not None else None
        return node

    def put(self, path: str, node: Node) -> Node:
        self.get(path)
        if self.tx is not None:
            self.tx.modified.add(path)
        else:
            self.store.generation += 1
            node = replace(node, gen=self.store.generation)
        self.nodes[path] = node
        return node

    def delete(self, path: str) -> None:
        self.get(path)
        if self.tx is not None:
            self.tx.modified.add(path)
        self.nodes.pop(path, None)


class XenStore:
    """The tree, the watches, the transactions and the introduced domains."""

    def __init__(self, privileged: Iterable[int] = (0,),
                 domain_exists: Callable[[int], bool] | None = None) -> None:
        self.privileged: set[int] = set(privileged)
        #: Does a domain with this id exist? xenstored asks Xen (xenmanage_get_domain_info);
        #: a store with no hypervisor behind it takes every ordinary domid as existing.
        self.domain_exists: Callable[[int], bool] = domain_exists or (lambda d: 0 <= d < abi.DOMID_FIRST_RESERVED)
        self.nodes: dict[str, Node] = {}
        self.generation = 0
        self.watches: list[Watch] = []
        self.transactions: dict[tuple[int, int], Transaction] = {}
        self.next_tx: dict[int, int] = {}
        self.pending: dict[int, list[tuple[str, str]]] = {}     # domid -> watch events not yet taken
        self.introduced: dict[int, tuple[int, int]] = {0: (0, 0)}
        self.shut_down: set[int] = set()
        self.targets: dict[int, int] = {}
        root = (("n", 0),)
        # cxenstored's initial nodes (setup_structure), all owned by dom0 with no access for others.
        self.nodes["/"] = Node("", root, ("tool",), self._gen())
        self.nodes["/tool"] = Node("", root, ("xenstored",), self._gen())
        self.nodes["/tool/xenstored"] = Node("", root, (), self._gen())
        for special in SPECIAL_NODES:
            self.nodes[special] = Node("", root, (), self._gen())

    def _gen(self) -> int:
        self.generation += 1
        return self.generation

    # -- permissions ----------------------------------------------------------------
    def is_privileged(self, domid: int) -> bool:
        return domid in self.privileged

    def perm_for(self, domid: int, perms: tuple[Perm, ...]) -> int:
        """cxenstored's perm_for_conn: owners and privileged domains get everything."""
        target = self.targets.get(domid)
        if self.is_privileged(domid) or perms[0][1] == domid or (target is not None and perms[0][1] == target):
            return PERM_READ | PERM_WRITE | PERM_OWNER
        for letter, who in perms[1:]:
            if not self.domain_exists(who):
                continue                 # XS_PERM_IGNORE: an entry for a domain that does not exist
            if who == domid or (target is not None and who == target):
                return PERM_BITS[letter]
        return PERM_BITS[perms[0][0]]

    def canonical(self, caller: int, path: str | None, allow_special: bool = False) -> str:
        """canonicalize(): a valid absolute path (or @special name), else EINVAL."""
        if not path or not _VALID.match(path) or (path[0] == "@" and not allow_special):
            raise _err("EINVAL", f"invalid path {path!r}")
        name = path if path[0] in "/@" else f"{domain_path(caller)}/{path}"
        if (name.endswith("/") and name != "/") or "//" in name:
            raise _err("EINVAL", f"invalid path {path!r}")
        if len(name) > abi.XENSTORE_ABS_PATH_MAX:
            raise _err("EINVAL", "path longer than XENSTORE_ABS_PATH_MAX")
        if not self.is_privileged(caller):
            m = _LOCAL.match(name)
            if exceeds(len(name) - (m.end() if m else 0), QUOTA_PATH_LENGTH):
                raise _err("EINVAL", "path longer than the path-length quota")
        return name

    def _ancestor_perm(self, view: _View, caller: int, path: str) -> int:
        """ask_parents(): the caller's access to the nearest existing ancestor."""
        p = path
        while p != "/":
            p = parent_of(p)
            node = view.get(p)
            if node is not None:
                return self.perm_for(caller, node.perms)
        return PERM_NONE

    def _node(self, view: _View, caller: int, path: str, need: int) -> Node:
        """get_node(): the node if the caller has ``need`` on it; ENOENT or EACCES otherwise."""
        node = view.get(path)
        if node is not None:
            if self.perm_for(caller, node.perms) & need == need:
                return node
            raise _err("EACCES", path)
        # Nonexistent: say so only to a caller the parents would let in.
        if self._ancestor_perm(view, caller, path) & need:
            raise _err("ENOENT", path)
        raise _err("EACCES", path)

    # -- transactions -----------------------------------------------------------------
    def _view(self, caller: int, tx: int) -> _View:
        if tx == 0:
            return _View(self, None)
        t = self.transactions.get((caller, tx))
        if t is None:
            raise _err("ENOENT", f"no transaction {tx}")
        return _View(self, t)

    def transaction_start(self, caller: int) -> int:
        if not self.is_privileged(caller) and \
                exceeds(sum(1 for (d, _) in self.transactions if d == caller) + 1, QUOTA_TRANSACTIONS):
            raise _err("ENOSPC", "too many transactions")
        tid = self.next_tx.get(caller, 1)
        while (caller, tid) in self.transactions or tid == 0:
            tid = (tid + 1) & M32
        self.next_tx[caller] = (tid + 1) & M32 or 1
        self.transactions[(caller, tid)] = Transaction(tid, caller, dict(self.nodes))
        return tid

    def transaction_end(self, caller: int, tx: int, commit: bool) -> None:
        t = self.transactions.pop((caller, tx), None) if tx else None
        if t is None:
            raise _err("ENOENT", f"no transaction {tx}")
        if not commit:
            return
        for path, gen in t.accessed.items():
            cur = self.nodes.get(path)
            if (cur.gen if cur is not None else None) != gen:
                raise _err("EAGAIN", f"{path} changed during the transaction")
        for path in t.accessed:
            if path not in t.modified:
                continue
            node = t.nodes.get(path)
            if node is None:
                self.nodes.pop(path, None)
            else:
                self.nodes[path] = replace(node, gen=self._gen())
        for path in t.accessed:
            if path in t.fire:
                node = self.nodes.get(path)
                parent = self.nodes.get(parent_of(path))
                self._fire_now(path, t.fire[path], node, parent, t.first_perms.get(path))

    # -- watches ----------------------------------------------------------------------
    def _readable(self, domid: int, perms: tuple[Perm, ...] | None) -> bool:
        return perms is not None and bool(self.perm_for(domid, perms) & PERM_READ)

    def _fire(self, view: _View, path: str, exact: bool, node: Node | None, parent: Node | None,
              old_perms: tuple[Perm, ...] | None = None) -> None:
        if view.tx is not None:
            # queue_watches(): fired when (and if) the transaction commits; a recursive
            # event replaces an exact one, not the other way round.
            view.tx.fire[path] = view.tx.fire.get(path, True) and exact
            return
        self._fire_now(path, exact, node, parent, old_perms)

    def _fire_now(self, path: str, exact: bool, node: Node | None, parent: Node | None,
                  old_perms: tuple[Perm, ...] | None) -> None:
        for w in list(self.watches):
            if not (path == w.path if exact else is_child(path, w.path)):
                continue
            # watch_permitted(): the node or its parent must be readable (or the node was, before).
            if not (self.is_privileged(w.domid) or self._readable(w.domid, old_perms)
                    or (node is not None and (self._readable(w.domid, node.perms)
                                              or (parent is not None and self._readable(w.domid, parent.perms))))):
                continue
            self._queue_event(w.domid, path[w.prefix_len:], w.token)

    def _queue_event(self, domid: int, path: str, token: str) -> None:
        if len(encode_value(path)) + len(encode_value(token)) + 2 > abi.XENSTORE_PAYLOAD_MAX:
            return                                  # send_event(): over-long events are dropped
        q = self.pending.setdefault(domid, [])
        if path[:1] != "@" and (path, token) in q:
            return                                  # an identical event is already pending
        q.append((path, token))

    def watch(self, caller: int, path: str, token: str) -> None:
        relative = not path.startswith(("/", "@"))
        wpath = self.canonical(caller, path, allow_special=True)
        for w in self.watches:
            if w.domid == caller and w.path == wpath and w.token == token:
                raise _err("EEXIST", f"already watching {wpath} with token {token!r}")
        if not self.is_privileged(caller) and \
                exceeds(sum(1 for w in self.watches if w.domid == caller) + 1, QUOTA_WATCHES):
            raise _err("ENOSPC", "too many watches")          # do_watch(), tools/xenstored/watch.c
        w = Watch(caller, wpath, token, len(domain_path(caller)) + 1 if relative else 0)
        self.watches.append(w)
        self._queue_event(caller, wpath[w.prefix_len:], token)      # fires once, straight away

    def unwatch(self, caller: int, path: str, token: str) -> None:
        wpath = self.canonical(caller, path, allow_special=True)
        for i, w in enumerate(self.watches):
            if w.domid == caller and w.path == wpath and w.token == token:
                del self.watches[i]
                return
        raise _err("ENOENT", f"no watch on {wpath} with token {token!r}")

    def reset_watches(self, caller: int) -> None:
        """RESET_WATCHES: drop the caller's watches and transactions."""
        self.watches = [w for w in self.watches if w.domid != caller]
        for key in sorted(k for k in self.transactions if k[0] == caller):
            del self.transactions[key]
        self.pending.pop(caller, None)

    def take_events(self, domid: int) -> list[tuple[str, str]]:
        """The watch events waiting for ``domid``, oldest first, as (path, token)."""
        return self.pending.pop(domid, [])

    def domains_with_events(self) -> list[int]:
        return sorted(d for d, q in self.pending.items() if q)

    def _fire_special(self, name: str) -> None:
        self._fire_now(name, True, self.nodes.get(name), self.nodes.get("/"), None)

    # -- the operations -------------------------------------------------------------------
    def read(self, caller: int, path: str, tx: int = 0) -> str:
        view = self._view(caller, tx)
        return self._node(view, caller, self.canonical(caller, path), PERM_READ).value

    def directory(self, caller: int, path: str, tx: int = 0) -> list[str]:
        view = self._view(caller, tx)
        return list(self._node(view, caller, self.canonical(caller, path), PERM_READ).children)

    def directory_part(self, caller: int, path: str, offset: int, tx: int = 0) -> bytes:
        """DIRECTORY_PART: <gencnt>|<children from byte offset>, within the payload limit."""
        view = self._view(caller, tx)
        node = self._node(view, caller, self.canonical(caller, path), PERM_READ)
        gen = f"{node.gen}".encode() + b"\0"
        blob = b"".join(c.encode() + b"\0" for c in node.children)
        if offset >= len(blob):
            return gen + b"\0"
        maxlen = abi.XENSTORE_PAYLOAD_MAX - len(gen) - 1
        end = offset
        for name in blob[offset:].split(b"\0")[:-1]:
            if end - offset + len(name) >= maxlen:
                break
            end += len(name) + 1
        out = gen + blob[offset:end]
        return out + b"\0" if end == len(blob) else out

    def get_perms(self, caller: int, path: str, tx: int = 0) -> list[str]:
        view = self._view(caller, tx)
        node = self._node(view, caller, self.canonical(caller, path, allow_special=True), PERM_READ)
        return [perm_string(p) for p in node.perms]

    def write(self, caller: int, path: str, value: str, tx: int = 0) -> None:
        view = self._view(caller, tx)
        name = self.canonical(caller, path)
        try:
            node = self._node(view, caller, name, PERM_WRITE)
        except XenStoreError as e:
            if e.errno != "ENOENT":
                raise
            node = self._create(view, caller, name, value)
        else:
            node = replace(node, value=value)
            self._check_size(caller, node)
            node = view.put(name, node)
        self._fire(view, name, False, node, view.nodes.get(parent_of(name)))

    def mkdir(self, caller: int, path: str, tx: int = 0) -> None:
        view = self._view(caller, tx)
        name = self.canonical(caller, path)
        try:
            self._node(view, caller, name, PERM_WRITE)
        except XenStoreError as e:
            if e.errno != "ENOENT":
                raise
            node = self._create(view, caller, name, "")
            self._fire(view, name, False, node, view.nodes.get(parent_of(name)))

    def _check_size(self, caller: int, node: Node) -> None:
        """write_node_raw(): every node written, new or changed, parent included."""
        if not self.is_privileged(caller) and exceeds(node.size(), QUOTA_NODE_SIZE):
            raise _err("ENOSPC", "node larger than the node-size quota")

    def _create(self, view: _View, caller: int, name: str, value: str) -> Node:
        """construct_node() and create_node(): the node and any missing parents."""
        missing = [name]
        parent_name = parent_of(name)
        parent = view.get(parent_name)
        while parent is None:
            missing.append(parent_name)
            parent_name = parent_of(parent_name)
            parent = view.get(parent_name)
        if not self.is_privileged(caller):
            owned = sum(1 for n in view.nodes.values() if n.owner == caller)
            if exceeds(owned + len(missing), QUOTA_NODES):
                raise _err("ENOSPC", "too many nodes")
        new: list[tuple[str, Node]] = []
        for path in reversed(missing):
            perms = parent.perms
            if not self.is_privileged(caller):
                perms = ((perms[0][0], caller),) + perms[1:]
            node = Node(value if path == name else "", perms)
            new.append((path, node))
            parent = node
        for i, (path, node) in enumerate(new):
            if i + 1 < len(new):
                new[i] = (path, replace(node, children=(basename(new[i + 1][0]),)))
        # create_node() writes bottom up and checks the size of each node written, the
        # existing parent whose list of children grows included; any refusal undoes it all.
        top = view.get(parent_of(missing[-1]))
        assert top is not None
        grown = replace(top, children=top.children + (basename(missing[-1]),))
        for _path, node in new:
            self._check_size(caller, node)
        self._check_size(caller, grown)
        view.put(parent_of(missing[-1]), grown)
        for path, node in new:
            view.put(path, node)
        return view.nodes[name]

    def rm(self, caller: int, path: str, tx: int = 0) -> None:
        view = self._view(caller, tx)
        name = self.canonical(caller, path)
        try:
            self._node(view, caller, name, PERM_WRITE)
        except XenStoreError as e:
            if e.errno == "ENOENT" and view.get(parent_of(name)) is not None:
                return                       # already gone: fine, if the parent exists
            raise
        if name == "/":
            raise _err("EINVAL", "cannot remove /")
        parent_name = parent_of(name)
        parent = view.get(parent_name)
        assert parent is not None
        # Depth-first, children before parents, as walk_node_tree's exit callback runs.
        order: list[str] = []

        def walk(p: str) -> None:
            n = view.get(p)
            if n is None:
                return
            for c in n.children:
                walk(p.rstrip("/") + "/" + c)
            order.append(p)
        walk(name)
        old = {p: view.nodes[p] for p in order}
        for p in order:
            view.delete(p)
            up = old.get(parent_of(p)) or view.nodes.get(parent_of(p))
            self._fire(view, p, p != name, old[p], up, old[p].perms)
        base = basename(name)
        view.put(parent_name, replace(parent, children=tuple(c for c in parent.children if c != base)))

    def set_perms(self, caller: int, path: str, perms: Iterable[str] | str, tx: int = 0) -> None:
        parsed = parse_perms(perms)
        if not parsed:
            raise _err("EINVAL", "no permissions given")
        if not self.is_privileged(caller) and exceeds(len(parsed), QUOTA_NODE_PERMS):
            raise _err("ENOSPC", "too many permissions")
        # domain_alloc_permrefs(): an owner no domain is (a domid above 65535 included) is
        # ENOENT; a later entry for one is kept but ignored (XS_PERM_IGNORE).
        if not (parsed[0][1] < abi.DOMID_FIRST_RESERVED and self.domain_exists(parsed[0][1])):
            raise _err("ENOENT", f"no domain {parsed[0][1]}")
        view = self._view(caller, tx)
        name = self.canonical(caller, path, allow_special=True)
        node = self._node(view, caller, name, PERM_WRITE | PERM_OWNER)
        if not self.is_privileged(caller) and parsed[0][1] != node.owner:
            raise _err("EPERM", "only a privileged domain may change a node's owner")
        changed = replace(node, perms=parsed)
        self._check_size(caller, changed)
        new = view.put(name, changed)
        self._fire(view, name, False, new, view.nodes.get(parent_of(name)), node.perms)

    # -- domains ----------------------------------------------------------------------------
    def get_domain_path(self, domid: int) -> str:
        return domain_path(domid)

    def introduce(self, domid: int, mfn: int, port: int) -> bool:
        """INTRODUCE; True if the domain is new (and @introduceDomain fired).

        do_introduce() (tools/xenstored/domain.c): a port that is not positive is EINVAL;
        a domain already introduced, dom0 included, is re-bound to the port given and its
        connection reset (domain_conn_reset: its watches and transactions go), and the
        answer is OK."""
        if not 0 <= domid < abi.DOMID_FIRST_RESERVED or port <= 0:
            raise _err("EINVAL", f"cannot introduce domain {domid} on port {port}")
        if domid in self.introduced:
            self.introduced[domid] = (self.introduced[domid][0], port)
            self.reset_watches(domid)
            return False
        self.introduced[domid] = (mfn, port)
        self.shut_down.discard(domid)
        self._fire_special("@introduceDomain")
        return True

    def release(self, domid: int) -> None:
        if domid == 0 or domid not in self.introduced:
            raise _err("ENOENT" if domid else "EINVAL", f"domain {domid} is not introduced")
        self._forget(domid)
        self._fire_special("@releaseDomain")

    def _forget(self, domid: int) -> None:
        del self.introduced[domid]
        self.reset_watches(domid)
        self.targets.pop(domid, None)
        self.shut_down.discard(domid)

    def is_domain_introduced(self, domid: int) -> bool:
        return domid in self.introduced

    def resume(self, domid: int) -> None:
        if domid not in self.introduced:
            raise _err("ENOENT", f"domain {domid} is not introduced")
        self.shut_down.discard(domid)

    def set_target(self, domid: int, target: int) -> None:
        if domid not in self.introduced or target not in self.introduced:
            raise _err("ENOENT", "both domains must be introduced")
        self.targets[domid] = target

    def domain_shutdown(self, domid: int) -> None:
        """The domain shut down or crashed: @releaseDomain, once per shutdown."""
        if domid in self.introduced and domid not in self.shut_down:
            self.shut_down.add(domid)
            self._fire_special("@releaseDomain")

    def domain_gone(self, domid: int) -> None:
        """The domain was destroyed: forget its connection and fire @releaseDomain."""
        if domid in self.introduced and domid != 0:
            self._forget(domid)
            self._fire_special("@releaseDomain")

    # -- inspection (privileged, never traced) ---------------------------------------------------
    def node(self, path: str, domid: int = 0, tx: int = 0) -> Node | None:
        """The node at ``path`` as ``domid``'s transaction ``tx`` sees it (no checks, no recording)."""
        t = self.transactions.get((domid, tx)) if tx else None
        return (t.nodes if t is not None else self.nodes).get(path)

    def check(self) -> list[str]:
        """CONTROL check: what is inconsistent in the tree (nothing, normally)."""
        problems = []
        for path, node in self.nodes.items():
            if path[0] == "@":
                continue
            for c in node.children:
                child = (path.rstrip("/") + "/" + c)
                if child not in self.nodes:
                    problems.append(f"{path} lists missing child {c}")
            if path != "/":
                parent = self.nodes.get(parent_of(path))
                if parent is None or basename(path) not in parent.children:
                    problems.append(f"{path} is not listed by its parent")
            if len(set(node.children)) != len(node.children):
                problems.append(f"{path} lists a child twice")
        return sorted(problems)

    # -- the wire form of each request -------------------------------------------------------------
    def request(self, caller: int, msg_type: int, payload: bytes, tx_id: int = 0) -> tuple[int, bytes]:
        """Execute one message as ``caller``; the reply's (type, payload). Never raises."""
        try:
            out = self._dispatch(caller, msg_type, payload, tx_id)
        except XenStoreError as e:
            name = e.errno if e.errno in XSD_ERRORS else "EINVAL"
            return abi.XS_ERROR, name.encode() + b"\0"
        if len(out) > abi.XENSTORE_PAYLOAD_MAX:
            return abi.XS_ERROR, b"E2BIG\0"
        return msg_type, out

    def _dispatch(self, caller: int, t: int, payload: bytes, tx: int) -> bytes:
        handler = _HANDLERS.get(t)
        if handler is None:
            raise _err("ENOSYS", f"unknown message type {t}")
        fn, flags = handler
        if "priv" in flags and not self.is_privileged(caller):
            raise _err("EACCES", f"{abi.XS_NAMES[t]} is for the control domain only")
        if "notid" in flags:
            tx = 0
        elif tx and (caller, tx) not in self.transactions:
            raise _err("ENOENT", f"no transaction {tx}")
        return fn(self, caller, payload, tx)

    def call(self, caller: int, op: str | int, path: str | None = None, value: Any = None, tx: int = 0) -> Any:
        """A request in Python terms, through the same wire parsing; raises XenStoreError."""
        t = message_type(op)
        rtype, rpayload = self.request(caller, t, encode_request(t, path, value), tx)
        return decode_reply(t, rtype, rpayload)

    def dom0_request(self, op: str | int, path: str | None = None, value: Any = None, tx: int = 0) -> Any:
        """What dom0's tools send (over xenstored's socket): :meth:`call` as domain 0."""
        return self.call(0, op, path, value, tx)


# ---------------------------------------------------------------------------------------------------
# Payloads (docs/misc/xenstore.txt, "Xenstore protocol details")
# ---------------------------------------------------------------------------------------------------

def split_strings(payload: bytes) -> list[bytes]:
    """The nul-terminated strings of a payload (get_strings: trailing unterminated bytes ignored)."""
    parts = payload.split(b"\0")
    return parts[:-1]


def onearg(payload: bytes) -> str | None:
    """The payload's one string, when it holds exactly one nul, at the end."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return decode_value(payload[:-1])


def _str(b: bytes) -> str:
    return decode_value(b)


def _ok() -> bytes:
    return b"OK\0"


def _domid(text: str | None) -> int:
    if text is None or not is_decimal(text):
        raise _err("EINVAL", f"bad domid {text!r}")
    return int(text)


def _h_directory(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    return b"".join(n.encode() + b"\0" for n in s.directory(c, onearg(p), tx))


def c_atoi(text: bytes) -> int:
    """C's atoi(): leading white space, a sign, the digits that follow; 0 if none."""
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def _h_directory_part(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = split_strings(p)
    if len(args) != 2:
        raise _err("EINVAL", "DIRECTORY_PART takes a path and an offset")
    # send_directory_part(): the offset is atoi() of the second string, into an unsigned int
    return s.directory_part(c, _str(args[0]), c_atoi(args[1]) & M32, tx)


def _h_read(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    return encode_value(s.read(c, onearg(p), tx))


def _h_get_perms(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    return b"".join(x.encode() + b"\0" for x in s.get_perms(c, onearg(p), tx))


def _h_watch(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = split_strings(p)
    if len(args) != 2:
        raise _err("EINVAL", "WATCH takes a path and a token")
    s.watch(c, _str(args[0]), _str(args[1]))
    return _ok()


def _h_unwatch(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = split_strings(p)
    if len(args) != 2:
        raise _err("EINVAL", "UNWATCH takes a path and a token")
    s.unwatch(c, _str(args[0]), _str(args[1]))
    return _ok()


def _h_transaction_start(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    if tx:
        raise _err("EBUSY", "transactions do not nest")
    return f"{s.transaction_start(c)}\0".encode()


def _h_transaction_end(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    arg = onearg(p)
    if arg not in ("T", "F"):
        raise _err("EINVAL", "TRANSACTION_END takes T or F")
    s.transaction_end(c, tx, arg == "T")
    return _ok()


def _h_introduce(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = [_str(a) for a in split_strings(p)]
    if len(args) < 3:
        raise _err("EINVAL", "INTRODUCE takes domid, mfn and event channel")
    if not is_decimal(args[1]):
        raise _err("EINVAL", "INTRODUCE: the mfn is a number")
    s.introduce(_domid(args[0]), int(args[1]), c_atoi(args[2].encode()))     # do_introduce: port = atoi()
    return _ok()


def _h_release(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    s.release(_domid(onearg(p)))
    return _ok()


def _h_get_domain_path(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    return s.get_domain_path(_domid(onearg(p))).encode() + b"\0"


def _h_write(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    if b"\0" not in p:
        raise _err("EINVAL", "WRITE takes a path and a value")
    i = p.index(b"\0")
    s.write(c, _str(p[:i]), decode_value(p[i + 1:]), tx)
    return _ok()


def _h_mkdir(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    s.mkdir(c, onearg(p), tx)
    return _ok()


def _h_rm(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    s.rm(c, onearg(p), tx)
    return _ok()


def _h_set_perms(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = split_strings(p)
    if len(args) < 2:
        raise _err("EINVAL", "SET_PERMS takes a path and at least one permission")
    s.set_perms(c, _str(args[0]), [_str(a) for a in args[1:]], tx)
    return _ok()


def _h_is_domain_introduced(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    return b"T\0" if s.is_domain_introduced(_domid(onearg(p))) else b"F\0"


def _h_resume(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    s.resume(_domid(onearg(p)))
    return _ok()


def _h_set_target(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = [_str(a) for a in split_strings(p)]
    if len(args) != 2:
        raise _err("EINVAL", "SET_TARGET takes two domids")
    s.set_target(_domid(args[0]), _domid(args[1]))
    return _ok()


def _h_reset_watches(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    s.reset_watches(c)
    return _ok()


CONTROL_COMMANDS = ("check", "help", "print")


def _h_control(s: XenStore, c: int, p: bytes, tx: int) -> bytes:
    args = [_str(a) for a in split_strings(p)]
    if not args or args[0] not in CONTROL_COMMANDS:
        raise _err("EINVAL", "unknown control command")
    if args[0] == "help":
        return "".join(f"{cmd}\n" for cmd in CONTROL_COMMANDS).encode() + b"\0"
    if args[0] == "check" and s.check():
        raise _err("EIO", "; ".join(s.check()))
    return _ok()


#: Message type -> (handler, flags): "priv" for dom0 only, "notid" ignores the transaction id.
_HANDLERS = {
    abi.XS_CONTROL: (_h_control, ("priv",)),
    abi.XS_DIRECTORY: (_h_directory, ()),
    abi.XS_READ: (_h_read, ()),
    abi.XS_GET_PERMS: (_h_get_perms, ()),
    abi.XS_WATCH: (_h_watch, ("notid",)),
    abi.XS_UNWATCH: (_h_unwatch, ("notid",)),
    abi.XS_TRANSACTION_START: (_h_transaction_start, ()),
    abi.XS_TRANSACTION_END: (_h_transaction_end, ()),
    abi.XS_INTRODUCE: (_h_introduce, ("priv",)),
    abi.XS_RELEASE: (_h_release, ("priv",)),
    abi.XS_GET_DOMAIN_PATH: (_h_get_domain_path, ()),
    abi.XS_WRITE: (_h_write, ()),
    abi.XS_MKDIR: (_h_mkdir, ()),
    abi.XS_RM: (_h_rm, ()),
    abi.XS_SET_PERMS: (_h_set_perms, ()),
    abi.XS_IS_DOMAIN_INTRODUCED: (_h_is_domain_introduced, ("priv",)),
    abi.XS_RESUME: (_h_resume, ("priv",)),
    abi.XS_SET_TARGET: (_h_set_target, ("priv",)),
    abi.XS_RESET_WATCHES: (_h_reset_watches, ()),
    abi.XS_DIRECTORY_PART: (_h_directory_part, ()),
}


def message_type(op: str | int) -> int:
    """``XS_READ``, ``READ``, ``read`` or 2 -> 2."""
    if isinstance(op, int):
        return op
    name = op.upper()
    name = name if name.startswith("XS_") else "XS_" + name
    if name not in abi.XS_BY_NAME:
        raise ValueError(f"no xenstore message type {op!r}")
    return abi.XS_BY_NAME[name]


def encode_request(t: int, path: str | None = None, value: Any = None) -> bytes:
    """The payload a client library sends for message type ``t``.

    ``value`` is the data for WRITE (no nul added), the token for WATCH and
    UNWATCH, ``T``/``F`` for TRANSACTION_END, and a list (or space-separated
    string) of permissions for SET_PERMS; a list for any other message is
    sent as further strings after the path.
    """
    if t == abi.XS_WRITE:
        return encode_value(path or "") + b"\0" + encode_value("" if value is None else str(value))
    strings: list[str] = []
    if path is not None:
        strings.append(path)
    if t == abi.XS_SET_PERMS and isinstance(value, str):
        value = value.split()
    if isinstance(value, (list, tuple)):
        strings += [str(v) for v in value]
    elif value is not None:
        strings.append(str(value))
    if not strings:
        strings.append("")          # e.g. TRANSACTION_START and RESET_WATCHES send one empty string
    return b"".join(encode_value(s) + b"\0" for s in strings)


def decode_reply(t: int, rtype: int, payload: bytes) -> Any:
    """A reply in Python terms; an ERROR reply raises :class:`XenStoreError`."""
    if rtype == abi.XS_ERROR:
        raise XenStoreError(payload.rstrip(b"\0").decode("ascii", "replace"))
    if t == abi.XS_READ:
        return decode_value(payload)
    if t in (abi.XS_DIRECTORY, abi.XS_GET_PERMS):
        return [decode_value(x) for x in split_strings(payload)]
    if t == abi.XS_TRANSACTION_START:
        return int(payload.rstrip(b"\0"))
    if t == abi.XS_IS_DOMAIN_INTRODUCED:
        return payload.rstrip(b"\0") == b"T"
    if t == abi.XS_DIRECTORY_PART:
        return payload
    return decode_value(payload.rstrip(b"\0"))
