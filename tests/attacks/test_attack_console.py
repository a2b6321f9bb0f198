"""Console output a guest can make grow: each domain's console state stays bounded, as Xen bounds it.

A hostile guest prints for ever and never a newline, through every way out it has: the debug
port 0xE9 (hvm_print_line), console_io (dom0), COM1 of the device model and the PV console ring
xenconsoled drains. What the host holds for it stays under the bounds (Xen's per-domain line
buffer, struct domain_console ``buf[256]``; xenconsoled's ``console/limit``, 1 MiB), the host keeps
running, and a byte costs the same after a megabyte as at first (appends are O(1) amortised;
``+=`` on a string was quadratic). Times are CPU time, compared loosely (a quadratic log makes the
tenth 100 KB tens of times dearer than the first).
"""

from __future__ import annotations

import struct
import time

import pytest

from attack_support import GUESTS
from lab.dom0.xenconsoled import ConsoleDaemon
from lab.hw.consolelog import XENCONSOLE_LIMIT, ConsoleLog
from lab.hw.devices.serial import OUTPUT_LIMIT, Uart16550
from lab.xen import abi
from lab.xen.console import CONSOLE_LINE_MAX, OUT_CONS, OUT_OFF, OUT_PROD, OUT_SIZE, guest_console_write
from lab.xen.vdev.debugcon import DebugConsolePort
from xen_helpers import GuestPage, events, hypercall, script_guest, small_host, write_cfg

pytestmark = pytest.mark.machine       # every test here boots a whole machine

CHUNK = 100_000
LETTERS = bytes(range(0x41, 0x5B))


def first_and_tenth(write) -> tuple[float, float]:
    """CPU seconds of the first and of the tenth CHUNK bytes that ``write(n)`` sends."""
    costs = []
    for _ in range(10):
        t = time.process_time()
        write(CHUNK)
        costs.append(time.process_time() - t)
    return costs[0], costs[-1]


def assert_flat(first: float, tenth: float) -> None:
    assert tenth < 3 * first + 0.05, f"the tenth 100 KB cost {tenth:.3f} s, the first {first:.3f} s"


def assert_held_bounded(dom, limit: int = XENCONSOLE_LIMIT) -> None:
    assert len(dom.console_log) <= limit and len(dom.console_output) <= limit
    assert len(dom.extra.get("console_partial", "")) < CONSOLE_LINE_MAX


def console_lines(host, dom) -> list[str]:
    """The flood's console lines in the trace (the firmware's greeting left out)."""
    return [e.data["text"] for e in events(host, "console", dom.domid) if not e.data["text"].startswith("hvmloader")]


# ------------------------------------------------------------------ HVM: the debug port 0xE9
def test_an_hvm_guest_writing_port_e9_without_newlines_is_held_to_xens_line_buffer(tmp_path):
    """The hostile kernel loops on ``out 0xE9`` with no newline. Xen prints its line each time the
    255 characters of struct domain_console's buffer fill (hvm_print_line()), so the held line never
    passes that, xl dmesg gets 255-character lines, and the console log keeps its newest part."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "e9flood", "hvm", GUESTS / "hvm_debugcon_flood.s", memory=16, hap=1))
    dom.console_log = ConsoleLog(limit=4096)              # a small console/limit, to pass it quickly
    host.run(60_000)
    mid = dom.console_log.total
    host.run(60_000)
    assert dom.console_log.total > mid > 8192, "the guest did not flood its console"
    assert_held_bounded(dom, 4096)
    assert dom.console_log.dropped > 0 and dom.alive and host.domains[0].alive
    lines = console_lines(host, dom)
    assert lines and all(len(line) == CONSOLE_LINE_MAX for line in lines)
    assert f"(d{dom.domid}) " + lines[-1] in host.dmesg
    # what is kept is the newest output, and the flushed lines and the held line are all of it
    greeting = sum(len(e.data["text"]) + 1 for e in events(host, "console", dom.domid)) - len(lines) * (CONSOLE_LINE_MAX + 1)
    assert dom.console_output.endswith(dom.extra["console_partial"])
    assert dom.console_log.total == greeting + CONSOLE_LINE_MAX * len(lines) + len(dom.extra["console_partial"])


def test_port_e9_costs_the_same_per_byte_after_a_megabyte(tmp_path):
    """A megabyte through Xen's 0xE9 handler, as a guest's ``out`` instructions deliver it: the held
    state stays bounded and the tenth 100 KB costs about what the first did."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "e9", "hvm", GUESTS / "hvm_debugcon_flood.s", memory=16, hap=1),
                    paused=True)
    port, v = DebugConsolePort(), dom.vcpus[0]

    def write(n: int) -> None:
        for i in range(n):
            port.port_write(host, v, 0xE9, 1, LETTERS[i % 26])

    first, tenth = first_and_tenth(write)
    assert dom.console_log.total == 10 * CHUNK
    assert_held_bounded(dom)
    assert_flat(first, tenth)


# ------------------------------------------------------------------ console_io
def test_console_io_without_newlines_stays_bounded_and_flat(tmp_path):
    """A domU's CONSOLEIO_write is refused (-EPERM) and leaves nothing held. Dom0's text goes the
    way do_console_io() sends it, guest_console_write(), 4000 bytes at a time with no newline, a
    megabyte in all: printed as Xen's buffer fills, its log keeps its newest megabyte, the cost
    stays flat."""
    host, xl = small_host()
    g = script_guest(xl, tmp_path, "domu", "pv")
    g.write(g.buf(), bytes(LETTERS) * 100)
    assert hypercall(host, g.vcpu, "console_io", abi.CONSOLEIO_write, 2600, g.buf()) == -1      # EPERM
    assert g.dom.console_log.total == 0 and not g.dom.extra.get("console_partial")
    dom0 = host.domains[0]
    text = (LETTERS.decode() * 200)[:4000]

    def write(n: int) -> None:
        for _ in range(n // len(text)):
            guest_console_write(host, dom0, text)

    start = dom0.console_log.total
    first, tenth = first_and_tenth(write)
    assert dom0.console_log.total - start == 10 * CHUNK
    assert_held_bounded(dom0)
    assert all(len(line) == CONSOLE_LINE_MAX for line in console_lines(host, dom0)[-100:])
    assert_flat(first, tenth)


# ------------------------------------------------------------------ HVM: COM1 of the device model
def test_an_hvm_guest_writing_com1_without_newlines_stays_bounded(tmp_path):
    """The hostile kernel loops on ``out 0x3F8``. The line the device model holds for the trace is
    cut at CONSOLE_LINE_MAX, and the UART's serial log and the domain's console log keep their
    newest bytes."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "comflood", "hvm", GUESTS / "hvm_serial_flood.s", memory=16, hap=1))
    q = host.services.device_model.instance(dom)
    dom.console_log = ConsoleLog(limit=2048)
    q.serial.output_limit = 2048
    host.run(40_000)
    assert dom.console_log.total > 6000, "the guest did not flood COM1"
    assert len(dom.console_log) <= 2048 and len(q.serial.output) <= 2048
    assert len(q._serial_line) < CONSOLE_LINE_MAX
    lines = console_lines(host, dom)
    assert lines and all(len(line) == CONSOLE_LINE_MAX for line in lines)
    assert host.services.device_model.serial_output(dom).endswith(q._serial_line)
    assert dom.alive and host.domains[0].alive


class _Quiet:
    """A device context that keeps nothing: the UART on its own."""

    def note(self, text: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def set_irq_level(self, line: int, level: bool) -> None:
        pass


def test_com1_costs_the_same_per_byte_after_a_megabyte(tmp_path):
    """A megabyte through the UART's transmit register and the device model's serial sink: the
    UART keeps OUTPUT_LIMIT bytes, the domain its console bound, and the cost stays flat."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "com", "hvm", GUESTS / "hvm_serial_flood.s", memory=16, hap=1),
                    paused=True)
    q = host.services.device_model.instance(dom)
    uart = Uart16550(_Quiet(), on_output=q.serial.on_output)   # the device model's serial sink

    def write(n: int) -> None:
        for i in range(n):
            uart.io_write(0x3F8, 1, LETTERS[i % 26])

    first, tenth = first_and_tenth(write)
    assert dom.console_log.total == 10 * CHUNK
    assert len(uart.output) <= OUTPUT_LIMIT and len(q._serial_line) < CONSOLE_LINE_MAX
    assert_held_bounded(dom)
    assert_flat(first, tenth)


# ------------------------------------------------------------------ PV: the console ring
def fill_ring(host, dom, cons: ConsoleDaemon, port: int, data: bytes) -> None:
    """The guest's side of struct xencons_interface: ``data`` into out[], out_prod advanced, the
    event sent (xenconsoled's handler run, as the event channel runs it)."""
    page = GuestPage(host, dom.p2m[dom.console_pfn])
    prod = struct.unpack("<I", page.read(OUT_PROD, 4))[0]
    start = prod % OUT_SIZE
    first = min(len(data), OUT_SIZE - start)
    page.write(OUT_OFF + start, data[:first])
    page.write(OUT_OFF, data[first:])
    page.write(OUT_PROD, struct.pack("<I", (prod + len(data)) & 0xFFFFFFFF))
    cons.notified(port)
    assert page.read(OUT_CONS, 4) == page.read(OUT_PROD, 4)


def test_a_pv_guest_filling_its_console_ring_stays_bounded_and_flat(tmp_path):
    """A PV guest fills out[] again and again with no newline: xenconsoled's log (``xl console -t
    pv``) and the domain's console log keep their newest megabyte, the trace's lines are cut at
    CONSOLE_LINE_MAX, and the tenth 100 KB costs what the first did."""
    host, xl = small_host()
    g = script_guest(xl, tmp_path, "ringflood", "pv")
    dom = g.dom
    cons = host.services.xenconsoled
    port = cons._port_of(dom.domid)
    block = bytes(LETTERS[i % 26] for i in range(2000))

    def write(n: int) -> None:
        for _ in range(n // len(block)):
            fill_ring(host, dom, cons, port, block)

    first, tenth = first_and_tenth(write)
    assert dom.console_log.total == 10 * CHUNK
    assert_held_bounded(dom)
    assert len(cons.output(dom)) <= XENCONSOLE_LIMIT and cons.output(dom) == dom.console_output
    assert all(len(line) == CONSOLE_LINE_MAX for line in console_lines(host, dom))
    assert_flat(first, tenth)
    assert host.domains[0].alive


# ------------------------------------------------------------------ snapshots and digests
def test_the_bounded_console_state_saves_and_restores(tmp_path):
    """Past its bound, a domain's console log, held line and serial log restore to what they were,
    and the same output after the restore gives the same state and the same digest."""
    host, xl = small_host()
    dom = xl.create(write_cfg(tmp_path, "comflood", "hvm", GUESTS / "hvm_serial_flood.s", memory=16, hap=1))
    q = host.services.device_model.instance(dom)
    dom.console_log = ConsoleLog(limit=1024)
    q.serial.output_limit = 1024
    host.run(30_000)
    assert dom.console_log.dropped > 0
    snap = host.snapshot()
    saved = (dom.console_log.save_state(), dom.extra["console_partial"], bytes(q.serial.output), q._serial_line)
    host.run(15_000)
    after, digest = (dom.console_log.save_state(), dom.extra["console_partial"]), host.digest()
    host.restore(snap)
    assert (dom.console_log.save_state(), dom.extra["console_partial"], bytes(q.serial.output),
            q._serial_line) == saved
    host.run(15_000)
    assert (dom.console_log.save_state(), dom.extra["console_partial"]) == after
    assert host.digest() == digest
