"""Random hostile blkif and netif requests, with the isolation invariants checked after every one.

A PV guest with a connected disk (its blkfront played from Python, as tests/test_blkback.py
plays it) fills its ring with requests drawn to hurt: every operation code (and undefined
ones), 0 to 16 segments (the limit is 11), grant references that are its own, its own page
tables, a victim's (granted to somebody else, or to it read-only), beyond its table, revoked,
or mapped already; first and last sectors in and out of the page, in either order; sector
numbers past the disk's end; ids of every width; and now and then 112 bytes of garbage or a
producer index far past the ring. A second PV guest with a vif (its netfront played as
tests/test_netback.py plays it) sends tx slots with any grant, offset, size, flags and id, and
posts rx buffers whose grants are its page tables, a victim's read-only page or nothing, with
producer indexes now and then far past the ring. After every push, from what it wrote to machine memory: no frame of the victim, of dom0 (but
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
from test_blkback import BLK_RING_SIZE, XVDA, BlkFront, disk_guest
from test_netback import NET_RING_SIZE, NetFront, vif_guest
from xen_helpers import frames_digest, frames_of, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

REQUESTS = 150
EXAMPLES = 4                 # 4 x 150 = 600 hostile ring requests per run
PT_TYPES = (abi.PGT_l1_page_table, abi.PGT_l2_page_table, abi.PGT_l3_page_table, abi.PGT_l4_page_table)
OPS = [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 255]       # READ WRITE WRITE_BARRIER FLUSH (4) DISCARD INDIRECT (7) ...


class RingArena:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tmp = tmp = Path(tempfile.mkdtemp(prefix="xenlab-rings-"))
        self.host, self.xl = host, xl = small_host()
        self.g, _ = disk_guest(tmp, xl, name="evil")
        self.fe = BlkFront(self.g)
        self.fe.connect()
        self.g.xs("WRITE", f"{self.fe.fe}/state", "4")
        self.n = vif_guest(tmp, xl, "evil-net")
        self.nf = NetFront(self.n)
        self.nf.connect()
        self.victim = xl.create(write_cfg(tmp, "victim", "pv", SCRIPT_GUESTS / "pv_script.s", memory=16),
                                paused=True)
        gt = host.grant_tables
        self.victim_table = gt.setup_table(self.victim.domid, 1)[1][0]
        # the victim grants two pages: one to dom0 (not the attacker), one read-only to the attacker
        vpages = [self.victim.p2m[0x300], self.victim.p2m[0x301]]
        for ref, (to, flags, mfn) in enumerate([(0, 1, vpages[0]), (self.g.dom.domid, 5, vpages[1])], start=8):
            host.mem.write((self.victim_table << 12) + 8 * ref, struct.pack("<HHI", flags, to, mfn))
        self.victim_refs = [8, 9]
        self.tables: list[int] = []
        self.refs: dict[int, dict[str, list[int]]] = {}
        self.net_attackers = 0
        self.attackers = [self.g]
        self._refs(self.g)
        self.victim_refs.append(10)
        self._net_refs()
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

    def _refs(self, guest) -> None:
        """Grant references of every kind the attacker's requests will name."""
        pages = self.host.mm.pv.pages
        own = [guest.grant(guest.page()) for _ in range(6)]
        pts = [guest.grant(frame=m) for m in sorted(frames_of(guest.dom)) if pages[m].type in PT_TYPES][:3]
        ro = [guest.grant(guest.page(), readonly=True)]
        revoked = guest.grant(guest.page())
        guest.set_grant(revoked, 0, 0, 0)
        self.refs[guest.dom.domid] = {"own": own, "pt": pts, "ro": ro, "revoked": [revoked]}
        self.tables += [m for m in sorted(frames_of(guest.dom)) if pages[m].type in PT_TYPES]

    def _net_refs(self) -> None:
        """The net attacker's references, and a page of the victim's granted to it read-only."""
        if hasattr(self, "before"):
            self.check()                          # everything held so far, then its tables join in
        self.attackers.append(self.n)
        self._refs(self.n)
        self.host.mem.write((self.victim_table << 12) + 8 * 10, struct.pack("<HHI", 5, self.n.dom.domid,
                                                                            self.victim.p2m[0x302]))
        self.before = self._state()

    def gref(self, guest) -> int:
        r = self.rng
        kind = r.choice(["own"] * 5 + ["pt", "pt", "ro", "victim", "victim", "revoked", "beyond", "huge"])
        if kind in ("beyond", "huge", "victim"):
            return {"beyond": lambda: r.randrange(32, 4096), "huge": lambda: r.choice([0xFFFF_FFFF, 1 << 31, 7]),
                    "victim": lambda: r.choice(self.victim_refs)}[kind]()
        return r.choice(self.refs[guest.dom.domid][kind])

    def net_request(self) -> None:
        """A hostile netif request: tx slots with any offset, size, flags and id; or rx buffers
        whose grants are anything; then a broadcast so netback fills them."""
        r, nf = self.rng, self.nf
        if r.random() < 0.3:
            for _ in range(r.randint(1, 3)):
                nf.g.write(nf.rx, 64 + (nf.rx_prod % NET_RING_SIZE) * 8,
                           struct.pack("<HxxI", r.randrange(1 << 16), self.gref(nf.g)))
                nf.rx_prod += 1
            nf._push(nf.rx, nf.rx_prod if r.random() < 0.9 else nf.rx_prod + r.choice([NET_RING_SIZE + 1, 1 << 31]))
        fatal = r.random() < 0.03                 # a slot netback takes as a broken frontend
        slots = []
        for _ in range(r.randint(1, 2)):
            offset = r.choice([0, 0, 0, 10, 2000])
            size = r.choice([14, 60, 60, 1514, 4096 - offset])
            if fatal:
                offset, size = r.choice([(4000, 200), (0, 0xFFFF), (0xFFFF, 60), (4095, 2)])
            slots.append((self.gref(nf.g), offset, 4 if fatal and r.random() < 0.5 else 0, r.randrange(1 << 16),
                          size))
        nf.send(b"", slots=slots, prod=None if r.random() < 0.98 else nf.tx_prod + NET_RING_SIZE + 1)
        nf.tx_responses()
        vif = self.host.services.backends["netback"].vif(nf.g.dom.domid, 0)
        if vif is None or vif.disabled:
            self.check_step()
            self.net_attackers += 1               # netback gave up on it: the next attacker steps in
            self.n = vif_guest(self.tmp, self.xl, f"evil-net{self.net_attackers}")
            self.nf = NetFront(self.n)
            self.nf.connect()
            self._net_refs()
            self.writes.clear()                   # its builder wrote its page tables, as it should

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
            segs.append((self.gref(self.g), first, last))
        sector = r.choice([0, 1, r.randrange(1 << 16), (1 << 64) - 1, 1 << 40])
        rid = r.choice([0, r.randrange(1 << 64), (1 << 64) - 1])
        fe.request(r.choice(OPS), sector, segs, rid, nseg=nseg if nseg > 11 else None)

    def check_step(self) -> None:
        """From what the step wrote: only the attacker's own data pages, the frames dom0's
        services hold (its rings, netback's bounce page) and Xen's own."""
        host = self.host
        pages = host.mm.pv.pages
        held = {f.mfn for f in host.frames.held()}
        gt = host.grant_tables
        grant_frames = {m for frames in gt.frames.values() for m in frames}
        for mfn in set(self.writes):
            pg = pages.get(mfn)
            owner = pg.owner if pg is not None else None
            assert owner != self.victim.domid or mfn in grant_frames, f"the victim's mfn {mfn:#x} was written"
            assert not (pg is not None and pg.type in PT_TYPES and pg.type_count), f"page table {mfn:#x} written"
            assert owner in [d.dom.domid for d in self.attackers] + [abi.DOMID_XEN, None] or mfn in held \
                or mfn in grant_frames, \
                f"mfn {mfn:#x} of d{owner} was written"
        self.writes.clear()
        assert host.domains[0].alive and self.victim.alive and all(d.dom.alive for d in self.attackers)

    def check(self) -> None:
        host = self.host
        assert self._state() == self.before, "the victim's, dom0's or the attacker's page tables changed"
        gt = host.grant_tables
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
        if a.rng.random() < 0.4:
            a.net_request()
        else:
            for _ in range(a.rng.randint(1, 3)):
                a.request()
            a.fe.push()
            a.fe.responses()
        a.check_step()
        if a.rng.random() < 0.04:
            a.check()
    a.check()
    be = a.host.services.backends["blkback"].vbd(a.g.dom.domid, XVDA)
    a.xl.destroy(a.g.dom.name)
    assert a.host.mm.pv.check_invariants() == []
    assert not [f for f in a.host.frames.held() if f.owner == a.g.dom.domid]
    assert a.victim.alive and a.host.domains[0].alive and be is not None
