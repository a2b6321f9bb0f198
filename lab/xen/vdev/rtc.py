"""The MC146818 real-time clock Xen emulates for an HVM domain: arch/x86/hvm/rtc.c.

``rtc_init()`` registers ports 0x70-0x71 with ``handle_rtc_io()``: byte
accesses only (another size reads all ones and drops the write); a write to
0x70 selects a CMOS register (bit 7, the NMI mask, dropped); a read of 0x70
is 0xff. Xen keeps the clock's 14 registers (RTC_CMOS_SIZE): the time and
date in BCD, 24-hour mode (register B = RTC_24H after reset), register A
(32 kHz base, rate 6), C and D (RTC_VRT: valid RAM and time). A register
index of 14 or more is the CMOS memory beyond the clock, which is QEMU's:
``handle_rtc_io()`` answers X86EMUL_UNHANDLEABLE and the access goes on to the
device model (the lab's QEMU does not claim these ports, so they read all
ones). The lab's host has no wall clock: the clock starts at 1970-01-01
00:00:00 at the host's boot and runs with the guest's time. Not modelled:
the alarm, periodic and update interrupts (register C stays 0) and setting
the time (register B's SET bit holds the registers as the guest wrote them).
"""

from __future__ import annotations

import datetime

RTC_CMOS_SIZE = 14
RTC_SECONDS, RTC_SECONDS_ALARM, RTC_MINUTES, RTC_MINUTES_ALARM, RTC_HOURS, RTC_HOURS_ALARM = 0, 1, 2, 3, 4, 5
RTC_DAY_OF_WEEK, RTC_DAY_OF_MONTH, RTC_MONTH, RTC_YEAR = 6, 7, 8, 9
RTC_REG_A, RTC_REG_B, RTC_REG_C, RTC_REG_D = 10, 11, 12, 13
RTC_REF_CLCK_32KHZ, RTC_24H, RTC_DM_BINARY, RTC_SET, RTC_VRT = 0x20, 0x02, 0x04, 0x80, 0x80
_TIME_REGS = (RTC_SECONDS, RTC_MINUTES, RTC_HOURS, RTC_DAY_OF_WEEK, RTC_DAY_OF_MONTH, RTC_MONTH, RTC_YEAR)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


class Rtc:
    """One domain's RTC: the CMOS index and the clock's registers."""

    name = "vRTC (in Xen: rtc.c)"

    def __init__(self) -> None:
        self.cmos_index = 0
        self.cmos = [0] * RTC_CMOS_SIZE
        self.cmos[RTC_REG_A] = RTC_REF_CLCK_32KHZ | 6
        self.cmos[RTC_REG_B] = RTC_24H
        self.cmos[RTC_REG_D] = RTC_VRT

    def _copy_date(self, host, v) -> None:
        """rtc_copy_date(): the guest's time into the time and date registers."""
        seconds = (v.cpu.cycles // host.cpu_hz) if v.cpu else 0
        t = _EPOCH + datetime.timedelta(seconds=seconds)
        binary = self.cmos[RTC_REG_B] & RTC_DM_BINARY
        conv = (lambda x: x) if binary else _bcd
        hour = t.hour
        if not self.cmos[RTC_REG_B] & RTC_24H:
            hour = (hour % 12 or 12) | (0x80 if t.hour >= 12 else 0)
            hour = conv(hour & 0x7F) | (hour & 0x80)
        else:
            hour = conv(hour)
        values = {RTC_SECONDS: conv(t.second), RTC_MINUTES: conv(t.minute), RTC_HOURS: hour,
                  RTC_DAY_OF_WEEK: conv((t.isoweekday() % 7) + 1), RTC_DAY_OF_MONTH: conv(t.day),
                  RTC_MONTH: conv(t.month), RTC_YEAR: conv(t.year % 100)}
        for reg, val in values.items():
            self.cmos[reg] = val

    def port_read(self, host, v, port: int, size: int) -> int | None:
        if size != 1:
            return 0xFFFF_FFFF                  # "HVM_RTC bad access"
        if not port & 1:
            return 0xFF
        idx = self.cmos_index
        if idx >= RTC_CMOS_SIZE:
            return None                         # X86EMUL_UNHANDLEABLE: the device model's CMOS
        if idx in _TIME_REGS and not self.cmos[RTC_REG_B] & RTC_SET:
            self._copy_date(host, v)
        value = self.cmos[idx]
        if idx == RTC_REG_C:
            self.cmos[RTC_REG_C] = 0            # reading C acknowledges its flags
        return value

    def port_write(self, host, v, port: int, size: int, value: int) -> bool:
        if size != 1:
            return True
        if not port & 1:
            self.cmos_index = value & 0x7F
            return self.cmos_index < RTC_CMOS_SIZE
        idx = self.cmos_index
        if idx >= RTC_CMOS_SIZE:
            return False                        # the device model's CMOS memory
        if idx in (RTC_REG_C, RTC_REG_D):
            return True                         # read-only
        if idx == RTC_REG_A:
            value = (value & ~0x80) | (self.cmos[RTC_REG_A] & 0x80)   # UIP is read-only
        self.cmos[idx] = value & 0xFF
        return True
