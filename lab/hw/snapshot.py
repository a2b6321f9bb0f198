"""Machine snapshots: every component saves and loads its own state.

The discipline (PyBoy's): a component that holds machine state either has its
own ``save_state()`` / ``load_state(state)`` pair, or is saved field by field
by :class:`StateKeeper`, which leaves out the fields its class lists in
``NOT_STATE`` (wiring to other parts, caches, configuration). Nothing else is
needed for a new component to be covered: whatever the machine's objects
reach is saved, so a snapshot covers everything by construction.

A :class:`Snapshot` is plain data (ints, strings, bytes, tuples, lists, dicts,
frozen values) that shares nothing mutable with the live machine. Components
and callbacks appear in it as tokens (:class:`Ref`); the keeper of the
machine that took the snapshot maps tokens back to its objects, so
``restore`` updates the live objects in place, and whoever holds a domain, a
vCPU or a service keeps holding the right one. A component that a snapshot
names stays known to the keeper even after the machine drops it (a destroyed
domain), so restoring to before ``xl destroy`` brings the same object back.

Snapshots are incremental: a container of plain values (a list of frame
numbers, the M2P) that equals what the previous snapshot saved is shared with
it, and so are memory frames and the frame table's chunks (see
``MachineMemory.save_state`` and ``PvMM.save_state``).

What is not state: trace listeners and events (the trace keeps only its
position), translated code (the code cache keeps blocks whose page did not
change), per-CPU translation caches, assembled images and cost tables.
"""

from __future__ import annotations

import enum
import itertools
from array import array
import pathlib
from collections import defaultdict, deque
from typing import Any

#: Immutable scalars, saved as themselves.
ATOMS = frozenset({int, str, bytes, float, bool, type(None), complex, range, slice})

_keeper_ids = itertools.count(1)


class StateError(Exception):
    """A snapshot that does not belong to this machine."""


class Plain:
    """Wraps a component's saved state that is already plain data (no components,
    no shared mutable containers), so the keeper stores it as it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Ref:
    """A component, constant or callback of the machine, by identity."""

    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token

    def __eq__(self, other: object) -> bool:
        return type(other) is Ref and other.token == self.token

    def __hash__(self) -> int:
        return hash(("ref", self.token))

    def __getstate__(self) -> int:
        return self.token

    def __setstate__(self, token: int) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Ref({self.token})"


class FrameRef:
    """A machine-memory frame held by a component (a page it maps): restored as the
    live frame, never as a copy, so the component keeps seeing guest memory."""

    __slots__ = ("mfn",)

    def __init__(self, mfn: int) -> None:
        self.mfn = mfn

    def __getstate__(self) -> int:
        return self.mfn

    def __setstate__(self, mfn: int) -> None:
        self.mfn = mfn


# Saved containers. The Atom* kinds hold plain values only and may be shared between
# snapshots; the others hold saved values that must be rebuilt one by one.
class AtomList(list):
    __slots__ = ()


class AtomDict(dict):
    __slots__ = ()


class SavedList(list):
    __slots__ = ()


class SavedDict(dict):
    __slots__ = ()


class SavedTuple(tuple):
    __slots__ = ()


class SavedSet(frozenset):
    __slots__ = ()


class AtomSet(frozenset):
    __slots__ = ()


class SavedBytearray(bytes):
    __slots__ = ()


class SavedOther:
    """A container of another type (deque, defaultdict, a dict subclass): its kind and items."""

    __slots__ = ("kind", "items", "extra")

    def __init__(self, kind: type, items: Any, extra: Any = None) -> None:
        self.kind, self.items, self.extra = kind, items, extra


def _all_atoms(values: Any) -> bool:
    """Is this list all plain values? Lists of machine numbers (free frames, a p2m) are
    by far the most common, and an array of them is checked in C."""
    try:
        array("q", values)
        return True
    except (TypeError, OverflowError):
        return set(map(type, values)) <= ATOMS


def is_constant(obj: Any) -> bool:
    """Configuration and code that never change while the machine runs: kept by identity."""
    cls = type(obj)
    if getattr(cls, "STATE_CONSTANT", False):
        return True
    if isinstance(obj, (type, type(enum))):
        return True
    return callable(obj) and not hasattr(cls, "NOT_STATE") and not hasattr(cls, "save_state")


def _is_frozen_value(obj: Any) -> bool:
    cls = type(obj)
    if isinstance(obj, (enum.Enum, pathlib.PurePath)):
        return True
    params = getattr(cls, "__dataclass_params__", None)
    return params is not None and params.frozen


def state_fields(obj: Any) -> dict[str, Any]:
    """A component's fields that are state: its attributes minus its class's ``NOT_STATE``."""
    skip = getattr(type(obj), "NOT_STATE", ())
    d = getattr(obj, "__dict__", None)
    if d is not None:
        return {k: v for k, v in d.items() if k not in skip}
    out = {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in skip and name != "__weakref__" and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return out


class Snapshot:
    """The whole machine at one instant: plain, picklable data.

    ``states`` maps each component's token to (class name, saved state); the
    root is the machine itself. ``icount`` and ``cycles`` say when it was taken.
    """

    __slots__ = ("keeper", "root", "states", "icount", "cycles", "seq")

    def __init__(self, keeper: int, root: int, states: dict[int, tuple[str, Any]], icount: int, cycles: int,
                 seq: int) -> None:
        self.keeper, self.root, self.states = keeper, root, states
        self.icount, self.cycles, self.seq = icount, cycles, seq

    def __getstate__(self) -> tuple:
        return (self.keeper, self.root, self.states, self.icount, self.cycles, self.seq)

    def __setstate__(self, s: tuple) -> None:
        self.keeper, self.root, self.states, self.icount, self.cycles, self.seq = s

    def __repr__(self) -> str:
        return f"<Snapshot at instruction {self.icount}, cycle {self.cycles}, {len(self.states)} components>"

    def frames(self) -> dict[int, bytes]:
        """The machine memory saved in this snapshot (frame number -> bytes)."""
        for cls_name, state in self.states.values():
            if cls_name == "MachineMemory":
                return state["frames"].value
        return {}


def snapshot_nbytes(snaps: list[Snapshot]) -> int:
    """Memory the snapshots take together, counting what they share once (for benchmarks)."""
    import sys
    seen: set[int] = set()
    total = 0
    stack: list[Any] = [s.states for s in snaps]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        t = type(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif t is Plain:
            stack.append(o.value)
        elif t is SavedOther:
            stack.extend((o.items, o.extra))
    return total


class StateKeeper:
    """Takes and restores the snapshots of one machine (not part of its state).

    It knows every component a snapshot ever named (by token), and the state it
    last saved for each, so that unchanged plain containers are shared.
    """

    def __init__(self, mem: Any = None) -> None:
        self.id = next(_keeper_ids)
        self.mem = mem
        self._objs: list[Any] = []
        self._token_of: dict[int, int] = {}
        self._last: dict[int, Any] = {}
        self._memo: dict[int, Any] = {}
        self._filled: set[int] = set()
        self._frame_of: dict[int, int] = {}
        self._pending: list[Any] = []
        self._queued: set[int] = set()

    # -- tokens -------------------------------------------------------------
    def token(self, obj: Any) -> int:
        t = self._token_of.get(id(obj))
        if t is None:
            t = len(self._objs)
            self._objs.append(obj)
            self._token_of[id(obj)] = t
        return t

    def obj(self, token: int) -> Any:
        return self._objs[token]

    # -- saving -------------------------------------------------------------
    def save(self, root: Any, icount: int = 0, cycles: int = 0, seq: int = 0) -> Snapshot:
        frames = self.mem.frames if self.mem is not None else {}
        self._frame_of = {id(f): mfn for mfn, f in frames.items()}
        self._memo = {}
        self._pending = [root]
        self._queued = {id(root)}
        states: dict[int, tuple[str, Any]] = {}
        root_token = self.token(root)
        pending = self._pending
        i = 0
        while i < len(pending):
            obj = pending[i]
            i += 1
            tok = self.token(obj)
            states[tok] = (type(obj).__qualname__, self._save_component(obj, tok))
        self._memo = {}
        self._frame_of = {}
        self._last = {tok: st for tok, (_name, st) in states.items()}
        return Snapshot(self.id, root_token, states, icount, cycles, seq)

    def _save_component(self, obj: Any, tok: int) -> Any:
        custom = getattr(obj, "save_state", None)
        if custom is not None:
            state = custom()
            if type(state) is Plain:
                return state
            return self.capture(state, self._last.get(tok))
        prev = self._last.get(tok)
        if type(prev) is not dict:
            prev = {}
        return {k: self.capture(v, prev.get(k)) for k, v in state_fields(obj).items()}

    def _ref(self, obj: Any) -> Ref:
        if id(obj) not in self._queued and not is_constant(obj):
            self._queued.add(id(obj))
            self._pending.append(obj)
        return Ref(self.token(obj))

    def capture(self, v: Any, prev: Any = None) -> Any:
        """A saved copy of ``v``: plain data, with components as :class:`Ref`.

        The memo (container id -> (container, saved)) keeps one saved copy of a
        container that two components share, and holds the container so that its
        id is not reused while the snapshot is taken."""
        t = type(v)
        if t in ATOMS or t is Plain:
            return v
        if t is list:
            if type(prev) is AtomList and prev == v:
                return prev
            m = self._memo.get(id(v))
            if m is not None:
                return m[1]
            if not v or _all_atoms(v):
                out: Any = AtomList(v)
            else:
                out = SavedList()
                self._memo[id(v)] = (v, out)
                out.extend(self.capture(x) for x in v)
                return out
            self._memo[id(v)] = (v, out)
            return out
        if t is dict:
            if type(prev) is AtomDict and prev == v:
                return prev
            m = self._memo.get(id(v))
            if m is not None:
                return m[1]
            if not v or (set(map(type, v)) <= ATOMS and set(map(type, v.values())) <= ATOMS):
                out = AtomDict(v)
            else:
                out = SavedDict()
                for k, x in v.items():
                    out[self.capture(k)] = self.capture(x, prev.get(k) if type(prev) is SavedDict else None)
            self._memo[id(v)] = (v, out)
            return out
        if t is tuple:
            captured = tuple(self.capture(x) for x in v)
            if all(a is b for a, b in zip(captured, v)):
                return v
            return SavedTuple(captured)
        if t is set or t is frozenset:
            if set(map(type, v)) <= ATOMS:
                if t is frozenset:
                    return v
                return prev if type(prev) is AtomSet and prev == v else AtomSet(v)
            return SavedOther(t, SavedSet(self.capture(x) for x in v))
        if t is bytearray:
            mfn = self._frame_of.get(id(v))
            if mfn is not None:
                return FrameRef(mfn)
            m = self._memo.get(id(v))
            if m is None:
                m = self._memo[id(v)] = (v, SavedBytearray(v))
            return m[1]
        if t is memoryview:
            raise StateError("a component holds a memoryview, which a snapshot cannot save")
        if isinstance(v, (dict, list, deque)):                       # subclasses and friends
            m = self._memo.get(id(v))
            if m is not None:
                return m[1]
            extra = self._ref(v.default_factory) if isinstance(v, defaultdict) and v.default_factory else None
            if isinstance(v, dict):
                items: Any = [(self.capture(k), self.capture(x)) for k, x in v.items()]
            else:
                items = [self.capture(x) for x in v]
            out = SavedOther(t, items, (extra, getattr(v, "maxlen", None)))
            self._memo[id(v)] = (v, out)
            return out
        if _is_frozen_value(v):
            return v
        return self._ref(v)

    # -- loading ------------------------------------------------------------
    def load(self, snap: Snapshot) -> None:
        if not isinstance(snap, Snapshot):
            raise StateError(f"not a snapshot: {type(snap).__name__}")
        if snap.keeper != self.id:
            raise StateError("this snapshot was taken of another machine")
        for tok, (name, _state) in snap.states.items():
            if tok >= len(self._objs) or type(self._objs[tok]).__qualname__ != name:
                raise StateError(f"snapshot component {tok} ({name}) is not this machine's")
        self._memo, self._filled = {}, set()
        try:
            for tok, (_name, state) in snap.states.items():
                self._load_component(self._objs[tok], state)
        finally:
            self._memo, self._filled = {}, set()
        # The next snapshot shares with this one: it is what the machine now holds.
        self._last = {tok: st for tok, (_name, st) in snap.states.items()}

    def _load_component(self, obj: Any, state: Any) -> None:
        custom = getattr(obj, "load_state", None)
        if custom is not None:
            custom(state.value if type(state) is Plain else self.rebuild(state))
            return
        live = getattr(obj, "__dict__", None)
        if live is not None:
            skip = getattr(type(obj), "NOT_STATE", ())
            for k in [k for k in live if k not in skip and k not in state]:
                del live[k]                     # an attribute that appeared after the snapshot
            for k, v in state.items():
                live[k] = self.rebuild(v, live.get(k))
        else:
            for k, v in state.items():
                object.__setattr__(obj, k, self.rebuild(v, getattr(obj, k, None)))

    def rebuild(self, v: Any, into: Any = None) -> Any:
        """A live value from a saved one; ``into`` is the live container it may refill in place."""
        t = type(v)
        if t in ATOMS:
            return v
        if t is Ref:
            return self._objs[v.token]
        if t is Plain:
            return v.value
        if t is AtomList or t is SavedList:
            m = self._memo.get(id(v))
            if m is not None:
                return m
            out: Any = into if type(into) is list and id(into) not in self._filled else []
            self._memo[id(v)] = out
            items: Any = list(v) if t is AtomList else [self.rebuild(x) for x in v]
            out[:] = items
            self._filled.add(id(out))
            return out
        if t is AtomDict or t is SavedDict:
            m = self._memo.get(id(v))
            if m is not None:
                return m
            out = into if type(into) is dict and id(into) not in self._filled else {}
            self._memo[id(v)] = out
            pairs = dict(v) if t is AtomDict else {self.rebuild(k): self.rebuild(x) for k, x in v.items()}
            out.clear()
            out.update(pairs)
            self._filled.add(id(out))
            return out
        if t is tuple or t is frozenset:
            return v
        if t is AtomSet:
            return set(v)
        if t is SavedTuple:
            return tuple(self.rebuild(x) for x in v)
        if t is SavedBytearray:
            m = self._memo.get(id(v))
            if m is None:
                m = self._memo[id(v)] = bytearray(v)
            return m
        if t is FrameRef:
            if self.mem is None:
                raise StateError("a snapshot names a memory frame, but the machine has no memory")
            return self.mem.frame(v.mfn)
        if t is SavedOther:
            m = self._memo.get(id(v))
            if m is not None:
                return m
            kind = v.kind
            if kind is set or kind is frozenset:
                return kind(self.rebuild(x) for x in v.items)
            factory, maxlen = v.extra if v.extra is not None else (None, None)
            if issubclass(kind, defaultdict):
                out = kind(self.rebuild(factory) if factory is not None else None)
            elif issubclass(kind, deque):
                out = kind(maxlen=maxlen)
            else:
                out = kind()
            self._memo[id(v)] = out
            if isinstance(out, dict):
                for k, x in v.items:
                    out[self.rebuild(k)] = self.rebuild(x)
            else:
                out.extend(self.rebuild(x) for x in v.items)
            return out
        return v                                 # a frozen value



def keeper_of(machine: Any) -> StateKeeper:
    """The machine's keeper, made on its first snapshot (machines list ``_keeper`` in NOT_STATE)."""
    k = machine.__dict__.get("_keeper")
    if k is None:
        k = machine._keeper = StateKeeper(machine.mem)
    return k


def snapshot_diff(a: Snapshot, b: Snapshot, limit: int = 10) -> list[str]:
    """Where two snapshots of the same machine differ, as paths from the machine
    (``XenHost.domains[1] Domain.pause_count``); at most ``limit`` of them.

    Components are matched by where they are reached from the root, not by token,
    so two runs that made new objects (a xenstore watch, a queued callback) compare
    equal when those objects hold the same state. Callbacks and configuration, which
    never change, are not compared.
    """
    out: list[str] = []
    pairs: dict[int, int] = {}

    def same_ref(ta: int, tb: int, path: str) -> None:
        if ta in pairs:
            if pairs[ta] != tb:
                out.append(f"{path}: refers to a different object")
            return
        pairs[ta] = tb
        ina, inb = ta in a.states, tb in b.states
        if ina != inb:
            out.append(f"{path}: a component in one snapshot, a constant in the other")
            return
        if not ina:
            return
        (na, sa), (nb, sb) = a.states[ta], b.states[tb]
        if na != nb:
            out.append(f"{path}: {na} != {nb}")
            return
        walk(sa, sb, f"{path} {na}" if path else na)

    def walk(x: Any, y: Any, path: str) -> None:
        if len(out) >= limit:
            return
        tx, ty = type(x), type(y)
        if tx is Plain and ty is Plain:
            x, y = x.value, y.value
            tx, ty = type(x), type(y)
        if tx is Ref and ty is Ref:
            same_ref(x.token, y.token, path)
            return
        if tx in (dict, AtomDict, SavedDict) and ty in (dict, AtomDict, SavedDict):
            kx = {_key(k): k for k in x}
            ky = {_key(k): k for k in y}
            for k in kx.keys() - ky.keys():
                out.append(f"{path}[{k!r}]: only in the first")
            for k in ky.keys() - kx.keys():
                out.append(f"{path}[{k!r}]: only in the second")
            for k in sorted(kx.keys() & ky.keys(), key=repr):
                walk(x[kx[k]], y[ky[k]], f"{path}.{k}" if isinstance(k, str) and k.isidentifier()
                     else f"{path}[{k!r}]")
            return
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            if len(x) != len(y):
                out.append(f"{path}: {len(x)} items != {len(y)} items")
                return
            for i, (p, q) in enumerate(zip(x, y)):
                walk(p, q, f"{path}[{i}]")
            return
        if tx is AtomSet and ty is AtomSet:
            if x != y:
                out.append(f"{path}: {_short(sorted(x, key=repr))} != {_short(sorted(y, key=repr))}")
            return
        if tx is SavedOther and ty is SavedOther:
            walk(list(x.items), list(y.items), path)
            return
        if tx is FrameRef and ty is FrameRef:
            if x.mfn != y.mfn:
                out.append(f"{path}: frame {x.mfn:#x} != frame {y.mfn:#x}")
            return
        if x != y:
            if isinstance(x, (bytes, bytearray)) and isinstance(y, (bytes, bytearray)) and len(x) == len(y):
                at = next(i for i in range(len(x)) if x[i] != y[i])
                out.append(f"{path}: bytes differ from offset {at:#x}")
            else:
                out.append(f"{path}: {_short(x)} != {_short(y)}")

    same_ref(a.root, b.root, "")
    return out[:limit]


def _key(k: Any) -> Any:
    return ("ref", k.token) if type(k) is Ref else k


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."
