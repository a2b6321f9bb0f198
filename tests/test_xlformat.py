"""xl's output formats, byte for byte against xl's own printf formats."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from lab.dom0.xlformat import (
    LIST_HEADER, VCPU_LIST_HEADER, DomainRow, HostInfo, VcpuRow, cpu_seconds_from_ns,
    format_bitmap, format_dmesg, format_info, format_list, format_vcpu_list, info_lines,
    state_string,
)

# The C formats from tools/xl/xl_info.c and xl_vcpu.c. Python's % operator
# ignores the "l" length modifier, so it renders them exactly as printf does.
XL_LIST_ROW = "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f\n"
XL_VCPU_HEADER = "%-32s %5s %5s %5s %5s %9s %s\n"


def test_list_header():
    assert LIST_HEADER == ("Name                                        ID   Mem VCPUs"
                           "\tState\tTime(s)")
    assert format_list([]) == LIST_HEADER + "\n"


def test_list_rows_literal():
    rows = [
        DomainRow("Domain-0", 0, 750, 4, "r-----", 11794.3),
        DomainRow("pv-demo", 1, 128, 1, "-b----", 0.0),
        DomainRow("hvm-demo", 12, 256, 2, "--p---", 3.25),
        DomainRow("crashed", 7, 64, 1, "---sc-", 99999.96),
    ]
    expected = (
        LIST_HEADER + "\n"
        + "Domain-0" + " " * 37 + "0" + "   750" + "     4" + "     r-----" + "  " + " 11794.3\n"
        + "pv-demo" + " " * 38 + "1" + "   128" + "     1" + "     -b----" + "  " + "     0.0\n"
        + "hvm-demo" + " " * 36 + "12" + "   256" + "     2" + "     --p---" + "  " + "     3.2\n"
        + "crashed" + " " * 38 + "7" + "    64" + "     1" + "     ---sc-" + "  " + "100000.0\n"
    )
    assert format_list(rows) == expected


def test_list_rows_match_the_printf_format():
    rows = [
        DomainRow("Domain-0", 0, 750, 4, "r-----", 11794.3),
        DomainRow("a-domain-name-that-is-longer-than-forty-characters", 32767, 123456, 128,
                  "-b-sr-", 1234567.891),
        DomainRow("x", 5, 0, 0, "------", 0.05),
    ]
    out = format_list(rows).split("\n", 1)[1]
    want = "".join(XL_LIST_ROW % (r.name, r.domid, r.mem_mib, r.vcpus, *r.state_flags,
                                  r.cpu_time_s) for r in rows)
    assert out == want


@settings(derandomize=True)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_.0123456789", min_size=1, max_size=50),
       st.integers(0, 0x7FEF), st.integers(0, 10 ** 7), st.integers(0, 512),
       st.floats(0, 1e7, allow_nan=False))
def test_list_row_property(name, domid, mem, vcpus, t):
    row = DomainRow(name, domid, mem, vcpus, "r-----", t)
    assert format_list([row]).split("\n", 1)[1] == XL_LIST_ROW % (
        name, domid, mem, vcpus, *"r-----", t)


def test_state_string():
    assert state_string() == "------"
    assert state_string(running=True) == "r-----"
    assert state_string(blocked=True) == "-b----"
    assert state_string(paused=True) == "--p---"
    assert state_string(dying=True) == "-----d"
    letters = {0: "-", 1: "r", 2: "s", 3: "c", 4: "w", 5: "S"}
    for reason, letter in letters.items():
        assert state_string(shutdown=True, shutdown_reason=reason) == "---s" + letter + "-"
    assert state_string(shutdown=True, shutdown_reason=9) == "---s?-"
    # The reason shows only once the domain has shut down.
    assert state_string(shutdown=False, shutdown_reason=3) == "------"
    assert state_string(True, True, True, True, 3, True) == "rbpscd"


def test_cpu_time_goes_through_a_c_float():
    assert cpu_seconds_from_ns(1_500_000_000) == 1.5
    # 2^24 + 1 ns is not representable in single precision.
    assert cpu_seconds_from_ns(16_777_217) == 16_777_216 / 1e9


def test_vcpu_list():
    assert VCPU_LIST_HEADER + "\n" == XL_VCPU_HEADER % (
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)")
    assert VCPU_LIST_HEADER == ("Name                                ID  VCPU   CPU State   "
                                "Time(s) Affinity (Hard / Soft)")
    rows = [
        VcpuRow("Domain-0", 0, 0, 0, running=True, time_s=12.34),
        VcpuRow("Domain-0", 0, 1, 3, blocked=True, time_s=0.5,
                hard_affinity=frozenset({2, 3}), soft_affinity=frozenset()),
        VcpuRow("guest", 4, 1, 0, online=False, time_s=0.0),
    ]
    out = format_vcpu_list(rows, nr_cpus=4).split("\n")
    assert out[1] == ("%-32s %5u %5u" % ("Domain-0", 0, 0) + "%5u %3c%c- " % (0, "r", "-")
                      + "%9.1f  " % 12.34 + "all / all")
    assert out[2] == ("%-32s %5u %5u" % ("Domain-0", 0, 1) + "%5u %3c%c- " % (3, "-", "b")
                      + "%9.1f  " % 0.5 + "2-3 / none")
    assert out[3] == ("%-32s %5u %5u" % ("guest", 4, 1) + "%5c %3c%cp " % ("-", "-", "-")
                      + "%9.1f  " % 0.0 + "all / all")
    assert out[1] == "Domain-0                             0     0    0   r--      12.3  all / all"


def test_bitmap():
    assert format_bitmap(None, 4) == "all"
    assert format_bitmap({0, 1, 2, 3}, 4) == "all"
    assert format_bitmap(set(), 4) == "none"
    assert format_bitmap({0, 2, 3}, 4) == "0,2-3"
    assert format_bitmap({1, 2, 3}, 4) == "1-3"
    assert format_bitmap({0, 1, 2}, 4) == "0-2"
    assert format_bitmap({5}, 8) == "5"
    assert format_bitmap({0, 1, 4, 5, 7}, 8) == "0-1,4-5,7"


def test_info():
    info = HostInfo(host="lab-host", release="6.1.0", version="#1 SMP", machine="x86_64",
                    nr_cpus=4, max_cpu_id=3, cores_per_socket=4, cpu_khz=2893432,
                    hw_caps=(0x178BFBFF, 0xF6D8320B, 0, 0, 0, 0, 0, 0),
                    virt_caps=("gnttab-v1", "hvm", "pv", "hap", "shadow"),
                    total_memory=4095, free_memory=1023, free_cpus=0, xen_major=4,
                    xen_minor=23, xen_extra="-unstable", xen_scheduler="credit2",
                    xen_commandline="dom0_mem=1024M", build_id="abc")
    text = format_info(info)
    lines = text.splitlines()
    keys = [line.split(":", 1)[0].rstrip() for line in lines]
    assert keys == [
        "host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes",
        "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps",
        "total_memory", "free_memory", "sharing_freed_memory", "sharing_used_memory",
        "outstanding_claims", "free_cpus", "xen_major", "xen_minor", "xen_extra", "xen_version",
        "xen_caps", "xen_scheduler", "xen_pagesize", "platform_params", "xen_changeset",
        "xen_commandline", "cc_compiler", "cc_compile_by", "cc_compile_domain",
        "cc_compile_date", "build_id", "xend_config_format",
    ]
    assert lines[0] == "host                   : lab-host"
    assert "cpu_mhz                : 2893.432" in lines
    assert "hw_caps                : 178bfbff:f6d8320b:00000000:00000000:00000000:00000000:" \
           "00000000:00000000" in lines
    assert "virt_caps              : pv hvm hap shadow gnttab-v1" in lines
    assert "xen_version            : 4.23-unstable" in lines
    assert "platform_params        : virt_start=0xffff800000000000" in lines
    assert lines[-1] == "xend_config_format     : 4"
    assert text.endswith("\n")
    assert format_info(HostInfo(virt_caps=())).count("virt_caps              :\n") == 1


def test_info_single_key_is_a_prefix_match():
    info = HostInfo(xen_major=4, xen_minor=23, xen_extra="-rc")
    assert format_info(info, "free_memory") == "0\n"
    assert format_info(info, "xen_version") == "4.23-rc\n"
    assert format_info(info, "xen_m") == "4\n23\n"
    assert format_info(info, "nothing") == ""


def test_info_xenstore_features_only_when_asked():
    assert not any(line.startswith("xenstore_features") for line in info_lines(HostInfo()))
    lines = info_lines(HostInfo(xenstore_features=5))
    assert lines[-2] == "xenstore_features      : 0x00000005\n"


def test_dmesg():
    assert format_dmesg(["(XEN) Xen version 4.23", "(XEN) done\n"]) == \
        "(XEN) Xen version 4.23\n(XEN) done\n"
    assert format_dmesg([]) == ""
