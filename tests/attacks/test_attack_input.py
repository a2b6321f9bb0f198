"""Classes 4 and 5: guest-controlled input parsed strictly, guest text filtered as Xen filters it."""

from __future__ import annotations

import struct

import pytest

from attack_support import GUESTS, Arena
from lab.dom0.xenstore import encode_request, message_type
from lab.dom0.xenstored import GuestRing, format_message
from lab.hw import paging, x86
from lab.hw.memory import MachineMemory
from lab.session.headless import console_section
from lab.xen import abi
from xen_helpers import GuestPage, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

EVTCHNOP_send = 4


@pytest.fixture
def arena(tmp_path):
    return Arena(tmp_path)


def xs_from_guest(arena, g, requests: list[tuple[str, str | None, object]]) -> list[tuple[str, bytes]]:
    """Requests written into the guest's own xenstore ring, the guest's event channel kicked,
    dom0 left to serve them: the (type name, payload) of each reply."""
    ring = GuestRing(GuestPage(arena.host, g.dom.p2m[g.dom.store_pfn]))
    for i, (op, path, value) in enumerate(requests):
        t = message_type(op)
        ring.send(format_message(t, 100 + i, 0, encode_request(t, path, value)))
    g.write(g.buf(), struct.pack("<I", g.dom.store_evtchn))
    assert arena.call(g, "event_channel_op", EVTCHNOP_send, g.buf()) == 0
    arena.host.run(3_000_000)
    return [(m.name, m.payload) for m in ring.receive() if m.type != abi.XS_WATCH_EVENT]


def test_non_ascii_digits_in_xenstore_requests_are_einval_not_a_crash(arena):
    """A domain id or a permission written with a digit that is not ASCII ("\\u0663" is
    ARABIC-INDIC DIGIT THREE, "\\u00b2" SUPERSCRIPT TWO) used to stop the host with a Python
    exception; xenstored answers EINVAL, as it does for any malformed number."""
    g = arena.pv
    home = f"/local/domain/{g.dom.domid}/data"
    replies = xs_from_guest(arena, g, [
        ("WRITE", home, "x"),
        ("SET_PERMS", home, [f"n{g.dom.domid}", "r\u0663"]),
        ("SET_PERMS", home, ["n\u00b2"]),
        ("GET_DOMAIN_PATH", "\u0663", None),
        ("IS_DOMAIN_INTRODUCED", "1\u00b2", None),
        ("DIRECTORY_PART", home, "\u0663"),
        ("READ", home, None),
    ])
    # DIRECTORY_PART's offset is atoi() of its string in xenstored (send_directory_part), so a
    # non-ASCII digit reads as offset 0: an ordinary answer, not an error, and no crash.
    assert [name for name, _ in replies] == ["XS_WRITE"] + ["XS_ERROR"] * 4 + ["XS_DIRECTORY_PART", "XS_READ"], \
        replies
    errors = [p for name, p in replies if name == "XS_ERROR"]
    # IS_DOMAIN_INTRODUCED is the control domain's: EACCES before its argument is even read
    assert errors == [b"EINVAL\0"] * 3 + [b"EACCES\0"], replies
    assert replies[-1][1] == b"x"
    arena.untouched()


def test_hypercall_pointers_into_xens_range_are_efault_never_read(arena):
    """access_ok(): the M2P at 0xffff800000000000 is mapped in every PV guest, read-only, but a
    hypercall argument pointing into Xen's range is -EFAULT before anything is read."""
    g = arena.pv
    m2p = abi.HYPERVISOR_VIRT_START
    for name, args in (("mmu_update", (m2p, 1, 0, abi.DOMID_SELF)), ("mmuext_op", (m2p, 1, 0, abi.DOMID_SELF)),
                       ("multicall", (m2p, 1)), ("event_channel_op", (EVTCHNOP_send, m2p + 8))):
        assert arena.call(g, name, *args) == -abi.ERRNO["EFAULT"], name
    assert arena.call(g, "mmu_update", g.buf(), 1, abi.HYPERVISOR_VIRT_END - 8, abi.DOMID_SELF) \
        == -abi.ERRNO["EFAULT"], "pdone in Xen's range"
    arena.untouched()


def test_a_page_table_beyond_the_end_of_ram_faults_instead_of_raising():
    """A forged entry naming a table past the end of memory: the read returns all ones (nothing
    answers on the bus) and the walk ends in a reserved-bit #PF, never an exception."""
    mem = MachineMemory(64 << 12)
    mem.write_u64(0, ((1 << 30) << 12) | 7)                  # L4[0] -> a table 4 TiB up
    res = paging.walk(mem, 0, 0x1000, access="r", cpl=0)
    assert res.fault is not None and res.fault.error_code & x86.PFEC_reserved_bit
    assert "beyond the end of memory" in res.fault.reason
    res = paging.walk(mem, 1 << 40, 0x1000, access="r", cpl=0)      # CR3 itself beyond RAM
    assert res.fault is not None and res.fault.error_code & x86.PFEC_reserved_bit


def test_a_guest_cannot_print_lines_that_pass_for_xens_own(tmp_path):
    """hvm_print_line() drops what is_console_printable() refuses (xen/include/xen/console.h):
    the hostile kernel's carriage return, escape and bell never reach xl dmesg, so its text stays
    on its own "(dN)" line; headless output marks every console line with its domain."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "forger", "hvm", GUESTS / "hvm_fake_xen_line.s", memory=16, hap=1))
    host.run(2_000_000)
    lines = [line for line in host.dmesg if line.startswith(f"(d{dom.domid}) ")]
    assert lines[-1] == f"(d{dom.domid}) ok(XEN) d0 Xen is crashing[2K"
    assert not any(c in "".join(host.dmesg) for c in "\r\x1b\x07")
    section = console_section(dom)
    assert section.splitlines()[0] == f"--- forger (d{dom.domid}, hvm) ---"
    assert all(line.startswith(f"d{dom.domid}| ") for line in section.splitlines()[1:])
    assert "\\x0d" in section and "\\x1b" in section and "\r" not in section and "\x1b" not in section
    assert host.domains[0].alive


HOSTILE = [0, 1, 0xFFFF_FFFF, 1 << 31, (1 << 64) - 1, abi.HYPERVISOR_VIRT_START, "last page",
           abi.DOMID_SELF, abi.DOMID_XEN, 0x7FF3]


def test_every_hypercall_with_hostile_arguments_leaves_the_host_running(arena):
    """Every hypercall number, from a PV and an HVM guest, with arguments that are pointers into
    Xen's range, unmapped or huge counts and foreign domain ids: each returns (an errno, or the
    caller's own domain crashed), nothing raises, and nobody else is touched."""
    host = arena.host
    iret = 23
    for g in (arena.pv, arena.hvm):
        # the guest's last page: a real pointer, with at most a page of entries after it
        last = 0xFFFF_8880_0000_0000 + ((g.dom.mem_pages - 1) << 12) if g.dom.is_pv else (g.dom.mem_pages - 1) << 12
        hostile = [last if a == "last page" else a for a in HOSTILE]
        for nr in range(64):
            if nr == iret:
                continue                          # HYPERVISOR_iret has its own test
            for i in range(len(hostile)):
                args = [hostile[(i + k) % len(hostile)] for k in range(5)]
                args[0] = i % 12                  # most calls take a sub-command first
                if nr == 13:
                    # a multicall's entries are whole hypercalls: a huge count over all of memory
                    # is a quarter of a million of them (paid for, preempted); start near the end
                    args[0] = last
                if g.dom.alive:
                    arena.call(g, nr, *args)
    assert host.domains[0].alive and arena.victim.dom.alive
    arena.untouched()
