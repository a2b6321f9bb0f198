"""Random hostile blkif requests, with the isolation invariants checked after every one.

A PV guest with a connected disk (its blkfront played from Python, as tests/test_blkback.py
plays it) fills its ring with requests drawn to hurt: every operation code (and undefined
ones), 0 to 16 segments (the limit is 11), grant references that are its own, its own page
tables, a victim's (granted to somebody else, or to it read-only), beyond its table, revoked,
or mapped already; first and last sectors in and out of the page, in either order; sector
numbers past the disk's end; ids of every width; and now and then 112 bytes of garbage or a
producer index far past the ring. After every push, from what it wrote to machine memory: no frame of the victim, of dom0 (but
the pages its services hold) or of page-table type was written, dom0 and the victim are alive,
and no Python exception left the simulator. Now and then and at the end, over the whole
machine: the victim's and dom0's memory and the attacker's page tables are byte for byte what
they were (blkback never writes disk data into a page table: map_grant_ref() refuses it,
GNTST_general_error), blkback maps none of the victim's frames, Xen's bookkeeping is
consistent.

Each example is one seed of a deterministic generator; ``REQUESTS`` requests per example.
"""

from __future__ import annotations

import random
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attack_support import SCRIPT_GUESTS
from lab.xen import abi
from lab.xen.grant import _tables
from test_blkback import BLK_RING_SIZE, XVDA, BlkFront, disk_guest
from xen_helpers import frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

REQUESTS = 150
EXAMPLES = 4                 # 4 x 150 = 600 hostile ring requests per run
PT_TYPES = (abi.PGT_l1_page_table, abi.PGT_l2_page_table, abi.PGT_l3_page_table, abi.PGT_l4_page_table)
OPS = [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 255]       # READ WRITE WRITE_BARRIER FLUSH (4) DISCARD INDIRECT (7) ...


class RingArena:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        tmp = Path(tempfile.mkdtemp(prefix="xenlab-rings-"))
        self.host, self.xl = host, xl = small_host()
        self.g, _ = disk_guest(tmp, xl, name="evil")
        self.fe = BlkFront(self.g)
        self.fe.connect()
        self.g.xs("WRITE", f"{self.fe.fe}/state", "4")
        self.victim = xl.create(write_cfg(tmp, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16),
                                paused=True)
        gt = _tables(host)
        self.victim_table = gt.setup_table(self.victim.domid, 1)[1][0]
        # the victim grants two pages: one to dom0 (not the attacker), one read-only to the attacker
        vpages = [self.victim.p2m[0x300], self.victim.p2m[0x301]]
        for ref, (to, flags, mfn) in enumerate([(0, 1, vpages[0]), (self.g.dom.domid, 5, vpages[1])], start=8):
            host.mem.write((self.victim_table << 12) + 8 * ref, struct.pack("<HHI", flags, to, mfn))
        self.victim_refs = [8, 9]
        pages = host.mm.pv.pages
        self.tables = sorted(m for m in frames_of(self.g.dom) if pages[m].type in PT_TYPES)
        self.own_pages = [self.g.page() for _ in range(6)]
        self.own_refs = [self.g.grant(p) for p in self.own_pages]
        self.pt_refs = [self.g.grant(frame=m) for m in self.tables[:3]]
        self.ro_refs = [self.g.grant(self.g.page(), readonly=True)]
        self.revoked = self.g.grant(self.g.page())
        self.g.set_grant(self.revoked, 0, 0, 0)
        self.before = self._state()
        self.writes: list[int] = []
        self._track()

    def _track(self) -> None:
        """Record the frame of every write to machine memory, whoever makes it."""
        mem, writes = self.host.mem, self.writes
        plain_write, write_u64 = mem.write, mem.write_u64

        def write(addr: int, data: bytes) -> None:
            writes.append(addr >> 12)
            if len(data) > 4096 - (addr & 4095):
                writes.append((addr + len(data) - 1) >> 12)
            plain_write(addr, data)

        def write_quad(addr: int, value: int) -> None:
            writes.append(addr >> 12)
            write_u64(addr, value)
        mem.write, mem.write_u64 = write, write_quad

    def _state(self):
        host = self.host
        table = {self.victim_table}
        return (frames_digest(host, frames_of(self.victim) - table),
                frames_digest(host, frames_of(host.domains[0]) - self._dom0_io_pages()),
                frames_digest(host, set(self.tables)))

    def _dom0_io_pages(self) -> set[int]:
        """dom0's pages its backends write as part of their work (netback's bounce page)."""
        return {f.mfn for f in self.host.frames.held() if f.owner == 0}

    def gref(self) -> int:
        r = self.rng
        kind = r.choice(["own"] * 5 + ["pt", "pt", "ro", "victim", "victim", "revoked", "beyond", "huge"])
        return {"own": lambda: r.choice(self.own_refs), "pt": lambda: r.choice(self.pt_refs),
                "ro": lambda: r.choice(self.ro_refs), "victim": lambda: r.choice(self.victim_refs),
                "revoked": lambda: self.revoked, "beyond": lambda: r.randrange(32, 4096),
                "huge": lambda: r.choice([0xFFFF_FFFF, 1 << 31, 7])}[kind]()

    def request(self) -> None:
        r, fe = self.rng, self.fe
        x = r.random()
        if x < 0.08:
            fe.request(0, 0, [], 0, raw=bytes(r.randrange(256) for _ in range(112)))
            return
        if x < 0.1:
            fe.req_prod_pvt += r.choice([BLK_RING_SIZE + 1, 1000, 1 << 31])     # indexes past the ring
            return
        nseg = r.choice([0, 1, 1, 1, 2, 3, 11, 12, 16])
        segs = []
        for _ in range(min(nseg, 11)):
            first, last = r.randrange(10), r.randrange(10)
            segs.append((self.gref(), first, last))
        sector = r.choice([0, 1, r.randrange(1 << 16), (1 << 64) - 1, 1 << 40])
        rid = r.choice([0, r.randrange(1 << 64), (1 << 64) - 1])
        fe.request(r.choice(OPS), sector, segs, rid, nseg=nseg if nseg > 11 else None)

    def check_step(self) -> None:
        """From what the step wrote: only the attacker's own data pages, the frames dom0's
        services hold (its rings, netback's bounce page) and Xen's own."""
        host = self.host
        pages = host.mm.pv.pages
        held = {f.mfn for f in host.frames.held()}
        gt = _tables(host)
        grant_frames = {m for frames in gt.frames.values() for m in frames}
        for mfn in set(self.writes):
            pg = pages.get(mfn)
            owner = pg.owner if pg is not None else None
            assert owner != self.victim.domid or mfn in grant_frames, f"the victim's mfn {mfn:#x} was written"
            assert not (pg is not None and pg.type in PT_TYPES and pg.type_count), f"page table {mfn:#x} written"
            assert owner in (self.g.dom.domid, abi.DOMID_XEN, None) or mfn in held or mfn in grant_frames, \
                f"mfn {mfn:#x} of d{owner} was written"
        self.writes.clear()
        assert host.domains[0].alive and self.victim.alive and self.g.dom.alive

    def check(self) -> None:
        host = self.host
        assert self._state() == self.before, "the victim's, dom0's or the attacker's page tables changed"
        gt = _tables(host)
        assert not [m for m in gt.maptrack.get(0, {}).values() if m.mfn in frames_of(self.victim)], \
            "blkback holds a mapping of the victim's frame"
        assert host.mm.pv.check_invariants() == []
        assert host.domains[0].alive and self.victim.alive and self.g.dom.alive


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=7)
def test_random_hostile_ring_requests_touch_nobody_else(seed):
    a = RingArena(random.Random(seed))
    for _ in range(REQUESTS):
        for _ in range(a.rng.randint(1, 3)):
            a.request()
        a.fe.push()
        a.fe.responses()
        a.check_step()
        if a.rng.random() < 0.04:
            a.check()
    a.check()
    be = a.host.services["blkback"].vbd(a.g.dom.domid, XVDA)
    a.xl.destroy(a.g.dom.name)
    assert a.host.mm.pv.check_invariants() == []
    assert not [f for f in a.host.frames.held() if f.owner == a.g.dom.domid]
    assert a.victim.alive and a.host.domains[0].alive and be is not None
