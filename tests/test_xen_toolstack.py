"""dom0's toolstack: xl list/info/vcpu-list/console/dmesg, the lifecycle commands, real xl.cfg files."""

from __future__ import annotations

import re
import struct

import pytest

from lab.dom0.xlformat import LIST_HEADER, VCPU_LIST_HEADER
from lab.errors import UserError
from lab.session.xlcommand import run_xl
from xen_helpers import (CHECKSUM_LINE, EXIT_LINE, XLCFG, create, events, script_guest, small_host,
                         stock_guests, write_cfg)

pytestmark = pytest.mark.machine       # every test here boots a whole machine

LIST_ROW = re.compile(r"^(.{40}) +(\d+) +(\d+) +(\d+) +([-rbpscwSd]{6}) +(\d+\.\d)$")


def parse_list(text: str) -> dict[str, tuple]:
    lines = text.splitlines()
    assert lines[0] == LIST_HEADER
    rows = {}
    for line in lines[1:]:
        m = LIST_ROW.match(line)
        assert m, line
        name, domid, mem, vcpus, state, time = m.groups()
        rows[name.strip()] = (int(domid), int(mem), int(vcpus), state, float(time))
    return rows


SHUTDOWN_REASONS = {"poweroff": (0, "---s--"), "reboot": (1, "---sr-"), "suspend": (2, "---ss-"),
                    "crash": (3, "---sc-"), "watchdog": (4, "---sw-"), "soft_reset": (5, "---sS-")}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """One domain in each state xl list can show."""
    d = tmp_path_factory.mktemp("zoo")
    host, xl = small_host(mem_mib=320)
    running = create(xl, d, "runner", "pv", cmdline="rounds=50")    # busy for a long while
    paused = create(xl, d, "sleeper", "hvm", vcpus=2)
    blocked = script_guest(xl, d, "waiter", "pv", memory=16)
    for _ in range(60):
        blocked.add("sched_op", 1, 0)                             # SCHEDOP_block, again after each event
    blocked.install()
    downs = {}
    for reason, (code, _) in SHUTDOWN_REASONS.items():
        g = script_guest(xl, d, f"down-{reason.replace('_', '-')}", "pv", memory=16)
        g.write(g.buf(), struct.pack("<I", code))
        g.add("sched_op", 2, g.buf())                             # SCHEDOP_shutdown
        g.install()
        downs[reason] = g
    crasher = script_guest(xl, d, "crasher", "pv", memory=16)
    crasher.add(0x1003)                                           # ud2, no trap table
    crasher.install()
    run_xl(xl, ["pause", "sleeper"])
    # Run until every short-lived guest has stopped, and stop at a moment when the runner
    # is on a pCPU and dom0 and the waiter are blocked.
    for _ in range(400):
        host.run(2_000)
        if (all(not g.dom.alive for g in list(downs.values()) + [crasher])
                and running.vcpus[0].runstate == "running" and blocked.vcpu.runstate == "blocked"
                and host.domains[0].vcpus[0].runstate == "blocked"):
            break
    return host, xl, running, paused, blocked, downs, crasher


def test_xl_list_columns_and_state_letters(zoo):
    host, xl, running, paused, blocked, downs, crasher = zoo
    rows = parse_list(run_xl(xl, ["list"]))
    assert list(rows) == [d.name for d in sorted(host.domains.values(), key=lambda d: d.domid)]
    assert rows["Domain-0"][:4] == (0, 16, 1, "-b----")
    assert rows["runner"][:4] == (running.domid, 32, 1, "r-----")
    # VCPUs is the online count (xl_info.c: vcpu_online); the second waits for VCPUOP_up
    assert rows["sleeper"][:4] == (paused.domid, 32, 1, "--p---")
    assert rows["waiter"][3] == "-b----"
    for reason, (_, state) in SHUTDOWN_REASONS.items():
        g = downs[reason]
        assert g.dom.shutdown_reason == reason
        assert rows[g.dom.name][3] == state, reason
    assert rows["crasher"][3] == "---sc-"
    assert crasher.dom.state == "crashed"
    assert rows["runner"][4] >= 0.0
    # the Time(s) column is the CPU time the vCPUs ran
    assert abs(rows["runner"][4] - sum(v.run_cycles for v in running.vcpus) / host.cpu_hz) < 0.05


def test_xl_vcpu_list(zoo):
    host, xl, running, paused, blocked, _, _ = zoo
    lines = run_xl(xl, ["vcpu-list"]).splitlines()
    assert lines[0] == VCPU_LIST_HEADER
    rows = {}
    for line in lines[1:]:
        f = line.split()
        rows[(f[0], int(f[2]))] = f
    assert len(rows) == sum(len(d.vcpus) for d in host.domains.values())
    assert rows[("runner", 0)][4] == "r--" and rows[("runner", 0)][-3:] == ["all", "/", "all"]
    assert rows[("waiter", 0)][4] == "-b-"
    assert rows[("sleeper", 1)][3:5] == ["-", "--p"]              # the second vCPU waits for VCPUOP_up
    assert rows[("Domain-0", 0)][1] == "0"


def test_xl_info_keys_in_xens_order():
    host, xl = small_host(mem_mib=192, pcpus=3)
    text = run_xl(xl, ["info"])
    keys = [line.split(":", 1)[0].strip() for line in text.splitlines()]
    assert keys == [
        "host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes", "cores_per_socket",
        "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps", "total_memory", "free_memory",
        "sharing_freed_memory", "sharing_used_memory", "outstanding_claims", "free_cpus", "xen_major",
        "xen_minor", "xen_extra", "xen_version", "xen_caps", "xen_scheduler", "xen_pagesize",
        "platform_params", "xen_changeset", "xen_commandline", "cc_compiler", "cc_compile_by",
        "cc_compile_domain", "cc_compile_date", "build_id", "xend_config_format"]
    info = {k: line.split(":", 1)[1].strip() for k, line in zip(keys, text.splitlines())}
    assert (info["nr_cpus"], info["max_cpu_id"], info["total_memory"]) == ("3", "2", "192")
    assert int(info["free_memory"]) == host.free_pages >> 8
    assert (info["xen_major"], info["xen_minor"], info["xen_version"]) == ("4", "23", "4.23-dev")
    assert info["xen_caps"] == "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
    assert info["xen_pagesize"] == "4096" and info["xend_config_format"] == "4"
    assert "hap" in info["virt_caps"].split() and "pv" in info["virt_caps"].split()
    assert run_xl(xl, ["info", "nr_cpus"]).strip() == "3"
    _, xl2 = small_host(ept=False)
    assert "hap" not in xl2.info("virt_caps").split()


def test_pause_unpause_destroy_shutdown(tmp_path):
    host, xl = small_host()
    pv, hvm = stock_guests(xl, tmp_path)
    free0 = host.free_pages
    run_xl(xl, ["pause", "hvm-guest"])
    before = hvm.vcpus[0].cpu.icount
    host.run(100_000)
    assert hvm.vcpus[0].cpu.icount == before and pv.vcpus[0].cpu.icount > 0
    run_xl(xl, ["unpause", "hvm-guest"])
    host.run(100_000)
    assert hvm.vcpus[0].cpu.icount > before
    calls = [(e.dom, e.data["name"], e.data["args"][0]) for e in events(host, "hypercall", dom=0)]
    assert (0, "domctl", "pausedomain") in calls and (0, "domctl", "unpausedomain") in calls
    # shutdown: the guest stops, its state shows it
    run_xl(xl, ["shutdown", "pv-guest"])
    assert pv.state == "shutdown" and pv.shutdown_reason == "poweroff"
    assert parse_list(xl.list())["pv-guest"][3] == "---s--"
    assert events(host, "hypercall", dom=0, name="sched_op")
    # destroy: the domain is gone and its memory is back in Xen's heap
    run_xl(xl, ["destroy", "pv-guest"])
    assert "pv-guest" not in parse_list(xl.list())
    assert events(host, "hypercall", dom=0, name="domctl")[-1].data["args"][0] == "destroydomain"
    host.run()
    assert CHECKSUM_LINE in hvm.console_output
    pool = len(hvm.extra["paging_pool"].frames)
    run_xl(xl, ["destroy", "hvm-guest"])
    # + both shared_info pages, + the HVM guest's paging pool (its EPT tables, paging_teardown())
    assert host.free_pages == free0 + (pv.mem_pages + hvm.mem_pages) + 2 + pool
    assert host.mm.pv.check_invariants() == []
    with pytest.raises(UserError, match="Domain-0"):
        run_xl(xl, ["destroy", "Domain-0"])
    with pytest.raises(UserError, match="invalid domain identifier 'nobody'"):
        run_xl(xl, ["pause", "nobody"])
    with pytest.raises(UserError, match="usage"):
        run_xl(xl, ["console"])


def test_on_poweroff_destroy_removes_the_domain(tmp_path):
    host, xl = small_host()
    path = tmp_path / "goner.cfg"
    path.write_text('name = "goner"\ntype = "pv"\nmemory = 32\non_poweroff = "destroy"\nlab_stock_kernel = 1\n')
    g = xl.create(path)
    host.run()
    assert g.state == "dying" and host.domain_by_name("goner") is None
    assert "goner" not in xl.list()
    assert CHECKSUM_LINE in g.console_output


def test_xl_console_and_dmesg(tmp_path):
    host, xl = small_host()
    stock_guests(xl, tmp_path)
    host.run()
    pv_out = run_xl(xl, ["console", "pv-guest"])
    hvm_out = run_xl(xl, ["console", "hvm-guest"])
    for out in (pv_out, hvm_out):
        assert CHECKSUM_LINE in out and EXIT_LINE in out
    assert "xenlab kernel (PV guest, 64-bit, kernel in ring 3)" in pv_out
    assert hvm_out.startswith("hvmloader: lab firmware")
    log = run_xl(xl, ["dmesg"]).splitlines()
    assert log[0].startswith("(XEN) Xen version 4.23")
    assert all(line.startswith(("(XEN) ", "(d")) for line in log)
    assert "(XEN) d0: created Domain-0 (pv, 16 MiB, 1 vCPU)" in log
    assert any(line.startswith("(XEN) d1: PV kernel entry") for line in log)
    assert f"(d2) {CHECKSUM_LINE}" in log                          # HVM debug-port output
    assert not any(line.startswith("(d1) ") for line in log)      # a domU's ring goes to xenconsoled
    assert "(XEN) d1: shutdown: poweroff" in log
    assert run_xl(xl, ["console", "Domain-0"]).startswith("(no console output")


# ---------------------------------------------------------------- xl.cfg files
def test_example_configs_load_with_warnings_not_errors():
    host, xl = small_host(mem_mib=256)
    expect = {"builder_hvm.cfg": "deprecated", "disk_keywords.cfg": None, "host_only.cfg": "host-only key",
              "hvm.cfg": "host-only key 'boot'", "pv.cfg": None, "pv_bootloader.cfg": "bootloader",
              "pvh.cfg": None}
    modes = {}
    for path in sorted(XLCFG.glob("*.cfg")):
        before = len(xl.warnings)
        conf = xl.load(path)
        assert conf.name
        modes[path.name] = conf.kernel_mode
        new = xl.warnings[before:]
        want = expect.get(path.name)
        if want is not None:
            assert any(want in w for w in new), (path.name, new)
    assert modes["builder_hvm.cfg"] in ("hvm", "pvhvm") and modes["pv.cfg"] == "pv"


def test_example_configs_boot_and_run(tmp_path):
    host, xl = small_host(mem_mib=512)
    doms = {}
    for name in ("disk_keywords.cfg", "hvm.cfg", "pv_bootloader.cfg"):
        doms[name] = xl.create(XLCFG / name)
    assert any("machines/kernels/pv.S" in w and "is not a lab kernel" in w and "pv.s" in w for w in xl.warnings)
    assert doms["pv_bootloader.cfg"].mode == "pv32"
    assert doms["hvm.cfg"].mode == "hvm" and len(doms["hvm.cfg"].vcpus) == 2
    assert doms["hvm.cfg"].mem_mib == 256
    host.run()
    for name, dom in doms.items():
        assert CHECKSUM_LINE in dom.console_output, name
    assert host.mm.pv.check_invariants() == []


def test_a_kernel_path_from_a_real_host_falls_back_to_the_lab_kernel(tmp_path):
    host, xl = small_host()
    cfg = tmp_path / "real.cfg"
    cfg.write_text("# as on a real dom0\nname = 'realistic'\nkernel = '/boot/vmlinuz-6.1.0-13-amd64'\n"
                   "ramdisk = '/boot/initrd.img-6.1.0-13-amd64'\nextra = 'root=/dev/xvda1 ro'\n"
                   "memory = 32\nvcpus = 1\ndisk = ['phy:/dev/vg0/realistic,xvda,w']\n"
                   "vif = ['bridge=xenbr0']\non_poweroff = 'preserve'\n")
    dom = xl.create(cfg)
    assert dom.mode == "pv"
    assert any("'/boot/vmlinuz-6.1.0-13-amd64' is not a lab kernel" in w and "pv.s" in w for w in xl.warnings)
    host.run()
    assert CHECKSUM_LINE in dom.console_output


def test_config_errors_name_the_file_and_line(tmp_path):
    host, xl = small_host()
    bad = tmp_path / "bad.cfg"
    bad.write_text('name = "x"\nmemory = 32\ntype = [oops\n')
    with pytest.raises(UserError, match=r"bad\.cfg:3"):
        xl.create(bad)
    nameless = tmp_path / "nameless.cfg"
    nameless.write_text("memory = 32\n")
    with pytest.raises(UserError, match="nameless.cfg"):
        xl.create(nameless)
    with pytest.raises(UserError, match="no such file"):
        xl.create(tmp_path / "missing.cfg")
    create(xl, tmp_path, "twice", "pv")
    with pytest.raises(UserError, match="already exists"):
        create(xl, tmp_path, "twice", "pv")
    huge = write_cfg(tmp_path, "huge", "pv", memory=4096)
    with pytest.raises(UserError, match="not enough free memory"):
        xl.create(huge)
    assert list(parse_list(xl.list())) == ["Domain-0", "twice"]


def test_xl_create_through_the_command_line(tmp_path):
    host, xl = small_host()
    out = run_xl(xl, ["create", str(write_cfg(tmp_path, "made", "hvm"))])
    assert out.endswith("created made (d1)")
    assert events(host, "hypercall", dom=0, name="domctl")[-1].data["args"][0] == "createdomain"
    with pytest.raises(UserError, match="unknown command"):
        run_xl(xl, ["frobnicate"])


@pytest.mark.parametrize("gtype", ["pv", "pvh"])
def test_pv_or_pvh_config_without_kernel_or_bootloader_gets_xls_error(tmp_path, gtype):
    # xl_parse.c: "Neither kernel nor bootloader specified"; the lab's stock kernel only when asked.
    host, xl = small_host()
    path = tmp_path / "bare.cfg"
    path.write_text(f'name = "bare"\ntype = "{gtype}"\nmemory = 16\n')
    with pytest.raises(UserError, match="bare.cfg: Neither kernel nor bootloader specified"):
        xl.create(path)
    assert host.domain_by_name("bare") is None
    path.write_text(f'name = "bare"\ntype = "{gtype}"\nmemory = 16\nlab_stock_kernel = 1\n')
    assert xl.create(path).mode == gtype
    path2 = tmp_path / "grub.cfg"
    path2.write_text(f'name = "grub"\ntype = "{gtype}"\nmemory = 16\nbootloader = "pygrub"\n')
    assert xl.create(path2).mode == gtype                      # a bootloader finds a kernel
