"""Xen's console ring (``xl dmesg``): a fixed number of bytes, the newest kept, as
xen/drivers/char/console.c keeps them; its count of lines, snapshots and ``xl dmesg [-c]``."""

from __future__ import annotations

import pytest

from lab.dom0.arm.toolstack import boot_arm_host
from lab.errors import UserError
from lab.session.scenario import boot_host
from lab.session.xlcommand import run_xl
from lab.xen.arm.host import ArmHostConfig
from lab.xen.conring import BOOT_CONRING_SIZE, ConsoleRing, conring_size
from lab.xen.host import HostConfig
from xen_helpers import write_cfg


def stream(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------- the ring's size
@pytest.mark.parametrize("pcpus, size", [(1, 16384), (2, 16384), (3, 32768), (4, 32768), (5, 65536), (8, 65536)])
def test_size_is_8_kib_a_cpu_in_a_debug_build_never_below_16_kib_in_whole_pages(pcpus, size):
    # console_init_postirq(): num_present_cpus() << (9 + 4); console_init_ring(): a power of two
    # of pages, at least the 16 KiB boot ring
    assert conring_size(pcpus) == size


def test_size_of_a_release_build_and_the_conring_size_parameter():
    assert conring_size(8, lower_thresh=3) == 32768             # 4 KiB a CPU without debug
    assert conring_size(1, opt_conring_size=1000) == BOOT_CONRING_SIZE   # never smaller than the boot ring
    assert conring_size(1, opt_conring_size=100_000) == 131072  # rounded up to 2^n pages
    assert conring_size(8, opt_conring_size=20_000) == 32768    # the parameter wins over the CPUs


def test_the_host_sizes_its_ring_from_its_pcpus_or_the_parameter():
    host, _ = boot_host(HostConfig(pcpus=4, mem_mib=64), dom0_memory=16)
    assert host.dmesg.size == 32768
    host, _ = boot_host(HostConfig(pcpus=1, mem_mib=64, conring_size=1 << 20), dom0_memory=16)
    assert host.dmesg.size == 1 << 20


# ---------------------------------------------------------------- bytes in, the newest kept
def test_the_ring_keeps_exactly_the_newest_bytes_of_what_was_logged():
    ring = ConsoleRing(256)
    logged = [f"(XEN) line {i} " + "x" * (i % 37) for i in range(100)]
    for n, line in enumerate(logged, 1):
        ring.append(line)
        whole = stream(logged[:n])
        assert ring.used == min(len(whole), 256) and ring.logged == n and ring.written == len(whole)
        # what Xen's reader copies out: conring from conringc (= conringp - size once full) to conringp
        assert stream(ring.lines()) == whole[-256:]
    assert ring.lines()[-1] == logged[-1]


def test_the_oldest_line_shows_only_its_tail_once_its_head_is_overwritten():
    ring = ConsoleRing(16)
    ring.append("0123456789")                   # 11 bytes with the newline
    ring.append("abcd")                         # 16 bytes: full, nothing lost
    assert ring.lines() == ["0123456789", "abcd"]
    ring.append("ef")                           # 3 bytes more: "012" is overwritten
    assert ring.lines() == ["3456789", "abcd", "ef"] and ring.used == 16
    ring.append("ghijkl")                       # 7 more: the first line is gone but its newline
    assert ring.lines() == ["", "abcd", "ef", "ghijkl"]
    ring.append("x" * 40)                       # longer than the ring: only its last 16 bytes
    assert ring.lines() == ["x" * 15] and ring.used == 16 and ring.logged == 5


def test_lines_since_a_mark_counts_lines_ever_logged():
    ring = ConsoleRing(64)
    for i in range(5):
        ring.append(f"early {i}")
    mark = ring.logged
    ring.append("late 0")
    ring.append("late 1")
    assert ring.since(mark) == ["late 0", "late 1"]
    for i in range(20):
        ring.append(f"later {i:02}")
    assert ring.since(mark) == ring.lines()             # older than the ring: what it still holds
    assert ring.since(ring.logged) == []
    assert ring[-1] == "later 19" and "later 19" in ring and len(ring) == len(ring.lines())


def test_clear_empties_what_is_read_but_not_the_count():
    ring = ConsoleRing(64)
    ring.append("one")
    ring.append("two")
    assert ring.read(clear=True) == ["one", "two"]
    assert ring.read() == [] and ring.used == 0 and ring.logged == 2 and ring.written == 8
    ring.append("three")
    assert ring.read() == ["three"]


# ---------------------------------------------------------------- a host all day
def cycle_guests(host, xl, cfg, times: int) -> None:
    for _ in range(times):
        xl.create(cfg)
        xl.destroy("cycle")


def test_a_host_creating_and_destroying_guests_keeps_its_log_in_the_ring(tmp_path):
    # The same host twice, with Xen's default ring (16 KiB for 2 pCPUs) and with a ring large
    # enough to keep everything: the default one holds the newest 16 KiB of the same bytes, and
    # the digest (which hashes the count of lines logged) is the same.
    cfg = write_cfg(tmp_path, "cycle", "pv", None, 12)
    runs = []
    for size in (0, 1 << 20):
        host, xl = boot_host(HostConfig(pcpus=2, mem_mib=128, conring_size=size), dom0_memory=16)
        for i in range(BOOT_CONRING_SIZE // 64 - 2):      # Xen's log nearly full before the guests
            host.log(f"filler line {i:03} " + "." * 42)
        cycle_guests(host, xl, cfg, 12)
        runs.append(host)
    small, large = runs
    assert small.dmesg.size == BOOT_CONRING_SIZE and small.dmesg.written > BOOT_CONRING_SIZE
    assert small.dmesg.used == BOOT_CONRING_SIZE                           # bounded
    assert stream(small.dmesg.lines()) == stream(large.dmesg.lines())[-BOOT_CONRING_SIZE:]
    assert small.dmesg.lines()[-1] == large.dmesg.lines()[-1] == f"(XEN) d{12}: destroyed"
    assert small.dmesg.logged == large.dmesg.logged == len(large.dmesg.lines())
    assert small.digest() == large.digest()


def test_snapshot_and_restore_bring_the_ring_and_its_count_back():
    host, _ = boot_host(HostConfig(pcpus=1, mem_mib=64), dom0_memory=16)
    for i in range(200):
        host.log(f"before the snapshot {i:03} " + "-" * 50)
    snap = host.snapshot()
    lines, logged, digest = host.dmesg.lines(), host.dmesg.logged, host.digest()
    assert lines[0] != f"(XEN) before the snapshot 000 {'-' * 50}"       # wrapped, the head cut
    for i in range(300):
        host.log(f"after it {i}")
    run_xl(host.toolstack, ["dmesg", "-c"])
    assert host.digest() != digest
    host.restore(snap)
    assert host.dmesg.lines() == lines and host.dmesg.logged == logged and host.digest() == digest
    host.log("on again")
    assert host.dmesg.lines()[-1] == "(XEN) on again" and host.dmesg.used <= host.dmesg.size


# ---------------------------------------------------------------- xl dmesg [-c]
def test_xl_dmesg_prints_the_ring_and_dash_c_clears_it():
    host, xl = boot_host(HostConfig(pcpus=2, mem_mib=64), dom0_memory=16)
    out = run_xl(xl, ["dmesg"])
    assert out == stream(host.dmesg.lines()) and out.startswith("(XEN) Xen version 4.23")
    assert run_xl(xl, ["dmesg"]) == out                       # reading does not consume
    assert run_xl(xl, ["dmesg", "-c"]) == out                 # printed, then cleared
    assert run_xl(xl, ["dmesg"]) == ""
    host.log("after the clear")
    assert run_xl(xl, ["dmesg", "--clear"]) == "(XEN) after the clear\n"
    with pytest.raises(UserError, match=r"usage: xl dmesg \[-c\]"):
        run_xl(xl, ["dmesg", "-x"])


def test_xl_dmesg_shows_a_wrapped_rings_cut_line_first():
    host, xl = boot_host(HostConfig(pcpus=2, mem_mib=64), dom0_memory=16)
    boot = host.dmesg.lines()
    mine = [f"(XEN) line {i:03} of a long day, {'.' * (i % 7)}" for i in range(700)]
    for line in mine:
        host.log(line[6:])
    out = run_xl(xl, ["dmesg"])
    assert out == stream(boot + mine)[-BOOT_CONRING_SIZE:]         # the newest 16 KiB, byte for byte
    first = out.split("\n", 1)[0]
    assert not first.startswith("(XEN)") and any(line.endswith(first) for line in mine)   # a line's tail


def test_arm_xl_dmesg_reads_and_clears_the_same_ring():
    host, xl = boot_arm_host(ArmHostConfig(mem_mib=256))
    out = run_xl(xl, ["dmesg"])
    assert out == stream(host.dmesg.lines()) and "(XEN) " in out
    assert run_xl(xl, ["dmesg", "-c"]) == out and run_xl(xl, ["dmesg"]) == ""
    assert host.dmesg.logged == out.count("\n")
