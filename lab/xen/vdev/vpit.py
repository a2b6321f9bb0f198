"""The 8254 PIT and the speaker port Xen emulates for an HVM domain: arch/x86/emul-i8254.c.

``pit_init()`` registers ports 0x40-0x43 with ``handle_pit_io()`` (byte
accesses only: any other size reads all ones and drops the write; a read of
the mode register 0x43 leaves the all-ones value) and port 0x61 with
``handle_speaker_io()``: bit 0 is channel 2's gate, bit 1 the speaker data
enable, bit 4 the refresh clock that toggles every 2^14 ns of time, bit 5
channel 2's output. Channel 0 is the lab's :class:`~lab.hw.devices.board.Pit8254`
(``dom.devices["vpit"]``), which raises IRQ 0 on the emulated PIC; reading
back a channel's count is not modelled (reads 0xff).
"""

from __future__ import annotations

from .. import timers


class VpitPorts:
    """handle_pit_io() and handle_speaker_io()."""

    name = "vPIT (in Xen: emul-i8254.c)"

    def __init__(self) -> None:
        self.speaker_data_on = 0
        self.gate2 = 0

    def port_read(self, host, v, port: int, size: int) -> int | None:
        if port == 0x61:
            # speaker_ioport_read(): channel 2 is not counting in the lab, so its output is 0
            refresh = ((v.cpu.cycles * 1_000_000_000 // host.cpu_hz) >> 14) & 1 if v.cpu else 0
            return (self.speaker_data_on << 1) | self.gate2 | (refresh << 4)
        pit = v.domain.devices.get("vpit")
        if size != 1 or pit is None or port == 0x43:
            return 0xFFFF_FFFF                  # "PIT bad access", or "PIT: read A1:A0=3!"
        return pit.port_in(port)

    def port_write(self, host, v, port: int, size: int, value: int) -> bool:
        if port == 0x61:
            self.speaker_data_on = (value >> 1) & 1
            self.gate2 = value & 1
            return True
        pit = v.domain.devices.get("vpit")
        if size == 1 and pit is not None:
            pit.port_out(port, value & 0xFF)
            timers.arm_pit(host, v.domain)         # programmed: its next interrupt moves
        return True
