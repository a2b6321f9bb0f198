"""Snapshots of the whole machine: a restored machine continues exactly as it did.

Each check runs on from a point, restores the snapshot taken there and runs on
again: the trace (byte for byte), the digest, every console and the full state
(compared component by component) must be the same, in every mode, in the
middle of disk and network I/O and after console input.
"""

from __future__ import annotations

import collections
import gc
import pickle
import random
import types
import weakref

import pytest

from lab.hw.snapshot import StateError, _is_frozen_value, is_constant, keeper_of, snapshot_diff, snapshot_nbytes
from lab.paths import MACHINES
from lab.session.build import native_machine
from lab.session.scenario import load_scenario, start_scenario
from test_guest_net import HVM_MAC, PV_MAC, net_host, shell_guest, type_line, wait_prompt
from xen_helpers import write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

IO_KINDS = {"ring", "ioreq", "grant", "ioport"}


def observe(machine, n: int):
    """Run ``n`` instructions; what they did: trace lines, consoles, digest, and the state after."""
    start = machine.trace.seq
    machine.run(n)
    lines = [e.to_json() for e in machine.trace.since(start)]
    consoles = {ref[1]: machine.console_of(ref[1]) for ref in machine.vcpu_refs()}
    return lines, consoles, machine.digest(), machine.snapshot()


def state_diff(a, b) -> list[str]:
    """What differs between two snapshots, but the TLB's hit and miss counts: they count
    the simulator's lookups, which its page caches (empty after a restore) save."""
    return [d for d in snapshot_diff(a, b, limit=50) if not any(f"].{k}:" in d for k in ("hits", "misses"))]


def continues_identically(machine, n: int) -> list[str]:
    """Snapshot here, run ``n``, restore, run ``n`` again: the same in every respect.
    Returns the trace lines of the run."""
    snap = machine.snapshot()
    digest = machine.digest()
    lines, consoles, after, state = observe(machine, n)
    machine.restore(snap)
    assert machine.digest() == digest
    lines2, consoles2, after2, state2 = observe(machine, n)
    assert lines2 == lines
    assert consoles2 == consoles
    assert after2 == after
    assert state_diff(state, state2) == []
    machine.restore(snap)                       # a snapshot restores any number of times
    assert machine.digest() == digest
    machine.restore(state2)
    return lines


def kinds(lines: list[str]) -> set[str]:
    return {line.split('"kind":"', 1)[1].split('"', 1)[0] for line in lines}


# ------------------------------------------------------------------ the bare machine
def test_bare_machine_continues_identically_and_so_does_its_disk():
    m = native_machine()
    m.run(30_000)
    continues_identically(m, 40_000)
    snap = m.snapshot()
    m.pc.ide.drives()[0][1].image.write(7, b"x" * 512)
    m.restore(snap)
    assert m.pc.ide.drives()[0][1].image.read(7) == bytes(512)


def test_bare_machine_shell_after_console_input_and_during_disk_and_network_io():
    m = native_machine(arg=1 << 63)
    m.run(400_000)
    assert "xenlab shell" in m.console.output
    m.pc.serial.feed(b"disk write 2 native\n")
    continues_identically(m, 20_000)            # right after the input, through the disk write
    m.run(300_000)
    m.pc.serial.feed(b"ping 10.0.0.1\n")
    m.run(2_000)
    lines = continues_identically(m, 60_000)    # in the middle of the ping
    assert "ne2k" in "".join(lines)
    assert "sector 2 written" in m.console.output and "echo reply" in m.console.output


# ------------------------------------------------------------------ every Xen guest mode
MODES = ["pv", "pv32", "hvm", "hvm-shadow", "hvm-pvdrivers", "pvhvm", "pvh"]


def shell_host(tmp_path, mode: str):
    host, xl = net_host()
    keys = {"hap": 0} if mode == "hvm-shadow" else {}
    kind = "hvm" if mode == "hvm-shadow" else mode
    dom = shell_guest(xl, tmp_path, "g", kind, mac=HVM_MAC if kind == "hvm" else PV_MAC, disk=True, **keys)
    wait_prompt(host, dom)
    return host, xl, dom


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_continues_identically_after_input_and_in_the_middle_of_io(tmp_path, mode):
    host, _xl, dom = shell_host(tmp_path, mode)
    if mode == "hvm-shadow":
        assert "shadow" in dom.extra
    seen: set[str] = set()
    for line, into in (("disk write 3 snapshot", 1_500), ("ping 0", 2_500)):
        start = len(dom.console_output)
        type_line(host, dom, line)
        if line.startswith("disk"):
            # just after the input (it waits in the console ring or the UART) ...
            seen |= kinds(continues_identically(host, 500))
        # ... and in the middle of the command's disk or network I/O
        host.run(into)
        seen |= kinds(continues_identically(host, 8_000))
        wait_prompt(host, dom, start + len(line))
    out = dom.console_output
    assert "sector 3 written" in out and "echo reply" in out
    assert seen & IO_KINDS, seen


def test_timers_and_their_heap_save_and_load(tmp_path):
    # A ping nobody answers waits for its reply on a one-shot deadline of 1 s.
    host, xl = net_host()
    dom = shell_guest(xl, tmp_path, "t", "pv", mac=PV_MAC)
    wait_prompt(host, dom)
    v = dom.vcpus[0]
    type_line(host, dom, "ping 7")
    host.run(100_000, stop=lambda: v.singleshot_timer is not None)
    armed, top, heap = v.singleshot_timer, host.next_deadline(), list(host.timers.heap)
    assert armed is not None and top == armed[0]
    snap = host.snapshot()
    host.run(3_000_000, stop=lambda: max(host.clock) > armed[0] + host.cpu_hz // 50)
    assert v.singleshot_timer != armed and host.timers.heap != heap
    host.restore(snap)
    assert v.singleshot_timer == armed and host.next_deadline() == top and host.timers.heap == heap
    continues_identically(host, 300_000)


# ------------------------------------------------------------------ shipped scenarios
@pytest.mark.parametrize("name", ["default.toml", "five-modes.toml", "shadow.toml", "amd.toml"])
def test_shipped_scenarios_continue_identically(name):
    host, _xl = start_scenario(load_scenario(MACHINES / name))
    host.run(50_000)
    continues_identically(host, 20_000)


def test_seeded_random_points_of_the_default_scenario():
    rng = random.Random(20261206)
    host, _xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    for _ in range(4):
        host.run(rng.randrange(1, 50_000))
        continues_identically(host, rng.randrange(1, 20_000))


# ------------------------------------------------------------------ domains come and go
def test_restore_across_xl_create_and_xl_destroy(tmp_path):
    host, xl = net_host()
    first = xl.create(write_cfg(tmp_path, "first", "pv", memory=16))
    host.run(20_000)
    before = host.snapshot()
    free, digest = host.free_pages, host.digest()
    second = xl.create(write_cfg(tmp_path, "second", "hvm", memory=16))
    host.run(20_000)
    with_second = host.snapshot()
    host.restore(before)                                     # back across the create
    assert host.digest() == digest and host.free_pages == free
    assert sorted(host.domains) == [0, first.domid]
    continues_identically(host, 10_000)
    host.restore(with_second)                                # forward again: the same objects
    assert host.domains[second.domid] is second
    continues_identically(host, 10_000)
    xl.destroy(str(first.domid))
    host.run(5_000)
    assert first.domid not in host.domains
    assert first.vcpus[0].cpu not in host.code.cpus           # the code cache lets go of it
    host.restore(with_second)                                # back across the destroy
    assert host.domains[first.domid] is first and first.vcpus[0].cpu is not None
    assert first.vcpus[0].cpu in host.code.cpus               # ... and hears of its pages again
    continues_identically(host, 10_000)


def test_a_destroyed_domain_is_freed(tmp_path):
    # A lab that creates and destroys guests all day must not keep them: nothing of the host
    # (the code cache's list of CPUs included) holds a destroyed domain.
    host, xl = net_host()
    dom = xl.create(write_cfg(tmp_path, "gone", "pv", memory=16))
    host.run(50_000)
    xl.destroy("gone")
    host.run(5_000)
    gone = weakref.ref(dom)
    del dom
    gc.collect()
    assert gone() is None


GUEST_MODES = ("pv", "pv32", "hvm", "hvm-pvdrivers", "pvhvm", "pvh")
#: What a lab object may outlive its domain in: the trace's window (bounded), the code cache
#: (bounded, by code), a disk image (the disk's content, kept by target for the next guest that
#: names it), a dom0 event channel (closed, its number free for the next bind) and the memory
#: manager's record of its last call (plain numbers, replaced by the next call).
OUTLIVES_ITS_DOMAIN = {"lab.trace.Event", "lab.hw.translate.Block", "lab.hw.diskimage.DiskImage", "lab.xen.evtchn.Port",
                       "lab.xen.mm.MmuAction"}


def lab_objects() -> list:
    gc.collect()
    return [o for o in gc.get_objects() if type(o).__module__.startswith("lab.")]


def count_by_type() -> collections.Counter:
    """Lab objects by type, and bound methods by function (a service's callback kept for a port)."""
    gc.collect()
    out: collections.Counter = collections.Counter()
    for o in gc.get_objects():
        if isinstance(o, types.MethodType):
            out["method " + o.__func__.__qualname__] += 1
        elif type(o).__module__.startswith("lab.") and type(o).__qualname__ != "Event":
            out[type(o).__qualname__] += 1
    return out


def test_every_kind_of_guest_created_and_destroyed_again_and_again_leaves_nothing(tmp_path):
    # Each guest type with its disk and network card, created, booted and destroyed again and
    # again: nothing of a destroyed domain stays alive (domain_kill() and the dom0 daemons let go
    # of all of it) and no kind of object grows in number from one round to the next.
    host, _xl = net_host()
    xl = _xl

    def round_(watch: bool = False) -> list:
        survivors: list = []
        for k, mode in enumerate(GUEST_MODES):
            held = lab_objects() if watch else []          # held, so that no new object takes an id of theirs
            before = {id(o) for o in held}
            dom = shell_guest(xl, tmp_path, f"g-{mode}", mode, mac=f"00:16:3e:00:01:{k:02x}", disk=True)
            host.run(40_000)
            refs = [weakref.ref(o) for o in lab_objects() if id(o) not in before
                    and hasattr(type(o), "__weakref__")
                    and f"{type(o).__module__}.{type(o).__qualname__}" not in OUTLIVES_ITS_DOMAIN] if watch else []
            del held
            domid = dom.domid
            xl.destroy(dom.name)
            host.run(5_000)
            del dom
            gc.collect()
            survivors += [type(r()).__qualname__ for r in refs if r() is not None]
            dom0_ports = host.evtchn.ports[0].values()
            assert not [p for p in dom0_ports if p.remote_dom == domid and p.state != "closed"]
            assert not [p for p in dom0_ports if p.state == "closed" and p.handler is not None]
        return survivors

    round_()
    round_()
    assert round_(watch=True) == []
    counts = count_by_type()
    round_()
    after = count_by_type()
    assert {t: after[t] - counts[t] for t in after | counts if after[t] != counts[t]} == {}


def test_a_snapshot_is_independent_plain_data_and_restores_after_pickling():
    host, _xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    host.run(50_000)
    snap = host.snapshot()
    data = pickle.dumps(snap)
    host.run(30_000)
    later = host.digest()
    copy = pickle.loads(data)
    host.run(10_000)                                         # live mutation leaves the snapshot alone
    host.restore(copy)
    host.run(30_000)
    assert host.digest() == later
    host.restore(snap)
    host.run(30_000)
    assert host.digest() == later


def test_another_machines_snapshot_is_refused():
    a, b = native_machine(disk=None), native_machine(disk=None)
    with pytest.raises(StateError):
        b.restore(a.snapshot())
    with pytest.raises(StateError):
        a.restore({"mem": {}})


def test_consecutive_snapshots_share_unchanged_memory_and_frame_table():
    host, _xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    host.run(50_000)
    a = host.snapshot()
    host.run(20_000)
    b = host.snapshot()
    fa, fb = a.frames(), b.frames()
    shared = sum(1 for m, data in fb.items() if fa.get(m) is data)
    assert shared > 0.8 * len(fb)
    changed = [m for m, data in fb.items() if fa.get(m) != data]
    assert changed and all(fa.get(m) is not fb[m] for m in changed)
    both = snapshot_nbytes([a, b])
    assert both < 1.3 * snapshot_nbytes([a])


def test_translated_code_survives_a_restore_where_its_page_is_unchanged():
    host, _xl = start_scenario(load_scenario(MACHINES / "default.toml"))
    host.run(50_000)
    snap = host.snapshot()
    host.run(20_000)
    host.restore(snap)
    kept = len(host.code.blocks)
    before = host.code.translations
    host.run(20_000)
    assert kept > 0
    assert host.code.translations - before < kept


def test_diff_names_what_differs():
    m = native_machine(disk=None)
    m.run(10_000)
    a = m.snapshot()
    m.cpu.regs[3] ^= 1
    m.mem.frame(0x200)[5] ^= 0xFF
    diffs = snapshot_diff(a, m.snapshot())
    assert "Machine.cpu Cpu.arch.regs[3]: 268435456 != 268435457" in diffs, diffs
    assert "Machine.mem MachineMemory.frames[512]: bytes differ from offset 0x5" in diffs, diffs


# ------------------------------------------------------------------ covered by construction
#: Saved inside their owner's own state: the frame table's pages, a CPU's TLB and VMCS.
SAVED_BY_OWNER = {"PageInfo", "Tlb", "Vmcs"}
#: Not state: the trace's events (its window, those not yet spilled, the spill file, those
#: a snapshot kept aside) and listeners, translated code and the CPUs' page caches (with the
#: guest's, set aside during a VM exit, and its cached EPT translations).
NOT_STATE = {"_window", "_pending", "_spill", "_kept", "listeners", "blocks", "by_frame", "_keeper", "_sup", "_usr",
             "_parked", "_ept_cache", "rc", "wc", "xc", "bc"}


def reachable_lab_objects(root):
    """Every object of the lab's own classes that the machine reaches through its
    attributes, containers, bound methods and closures (but not inside configuration
    and assembled code, which never change): (object, path)."""
    seen, out, stack = set(), [], [(root, type(root).__name__)]
    while stack:
        o, path = stack.pop()
        if id(o) in seen or type(o) in (int, str, bytes, float, bool, type(None), bytearray, range):
            continue
        seen.add(id(o))
        if isinstance(o, types.MethodType):
            stack.append((o.__self__, path))
        elif isinstance(o, types.FunctionType):
            stack.extend((c.cell_contents, f"{path} <{name}>")
                         for c, name in zip(o.__closure__ or (), o.__code__.co_freevars))
        elif isinstance(o, dict):
            stack.extend((v, f"{path}[{k!r}]") for k, v in o.items())
        elif isinstance(o, (list, tuple, set, frozenset, collections.deque)):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(o))
        elif type(o).__module__.startswith("lab.") and not isinstance(o, type) and not is_constant(o):
            out.append((o, path))
            fields = vars(o).items() if hasattr(o, "__dict__") else \
                [(s, getattr(o, s)) for c in type(o).__mro__ for s in getattr(c, "__slots__", ()) if hasattr(o, s)]
            stack.extend((v, f"{path}.{k}") for k, v in fields if k not in NOT_STATE)
    return out


@pytest.mark.parametrize("machine", ["five-modes", "native-shell"])
def test_every_object_the_machine_reaches_is_in_its_snapshot(machine):
    if machine == "native-shell":
        m = native_machine(arg=1 << 63)
        m.run(300_000)
        m.pc.serial.feed(b"ping 10.0.0.1\n")
        m.run(3_000)
    else:
        m, _xl = start_scenario(load_scenario(MACHINES / "five-modes.toml"))
        m.run(100_000)
    snap = m.snapshot()
    keeper = keeper_of(m)
    saved = {id(keeper.obj(token)) for token in snap.states}
    missing = {type(o).__qualname__: path for o, path in reachable_lab_objects(m)
               if id(o) not in saved and not is_constant(o) and not _is_frozen_value(o)
               and type(o).__qualname__ not in SAVED_BY_OWNER}
    assert missing == {}


def test_incremental_snapshots_and_restores_hold_what_a_full_snapshot_holds(tmp_path):
    host, xl = net_host()
    xl.create(write_cfg(tmp_path, "g", "pv", memory=16))
    host.run(30_000)
    first = host.snapshot()
    host.run(40_000)
    host.snapshot()
    host.restore(first)
    host.run(25_000)                      # the frame table only notes what it was asked for
    incremental = host.snapshot()
    host.__dict__.pop("_keeper")          # a new keeper knows nothing: it saves every frame
    full = host.snapshot()
    assert snapshot_diff(incremental, full) == []
