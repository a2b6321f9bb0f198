"""Class 6: opening a config never creates, changes or truncates a file outside the lab's data
directory. Every shipped config and configs written for real hosts (``phy:`` devices, absolute
and relative targets, existing and missing images, a vif script) run side by side in a
temporary home; afterwards every file outside the data directory is byte for byte as before."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lab.paths import MACHINES
from xen_helpers import private_image_bytes, small_host

pytestmark = pytest.mark.machine       # every test here boots a whole machine

#: Enough for the fourteen guests' workloads to reach their disks: the scheduler shares the
#: pCPUs round robin, and the HVM guests, which no longer wake on a tick, wait their turn.
WORKLOAD_RUN = 4_000_000


def snapshot(*roots: Path, skip: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if Path(dirpath).resolve().is_relative_to(skip.resolve()):
                dirnames[:] = []
                continue
            for name in filenames:
                p = Path(dirpath) / name
                out[str(p)] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            out[dirpath] = (-1, "dir")
    return out


def real_host_configs(learner: Path) -> list[Path]:
    """Configs as they come from real hosts, each naming disks the learner really has (or not)."""
    (learner / "images").mkdir()
    existing = learner / "images" / "web.img"
    existing.write_bytes(b"the learner's own data " * 5000)
    (learner / "rel-existing.img").write_bytes(b"\x5a" * 65536)
    pv = 'kernel = "{k}"\nvif = [\'mac=00:16:3e:00:00:{m}, bridge=xenbr0, script=/etc/xen/scripts/vif-bridge\']\n'
    specs = {
        "phy": "disk = ['phy:/dev/vg0/web,xvda,w']",
        "absolute-missing": "disk = ['/var/images/guest.img,raw,xvda,w']",
        "absolute-existing": f"disk = ['format=raw, vdev=xvda, access=rw, target={existing}']",
        "relative-missing": "disk = ['format=raw, vdev=xvda, access=rw, target=rel-missing.img']",
        "relative-existing": "disk = ['file:rel-existing.img,xvda,w']",
    }
    out = []
    for i, (name, disk) in enumerate(sorted(specs.items())):
        cfg = learner / f"{name}.cfg"
        cfg.write_text(f'name = "{name}"\ntype = "pv"\nmemory = 16\nvcpus = 1\n{disk}\n'
                       + pv.format(k=MACHINES / "kernels" / "pv.s", m=f"{0x40 + i:02x}")
                       + 'on_poweroff = "preserve"\non_crash = "preserve"\n')
        out.append(cfg)
    return out


def test_no_config_changes_a_file_outside_the_lab_data_directory(tmp_path, monkeypatch):
    home = tmp_path / "home"
    learner = home / "guests"
    learner.mkdir(parents=True)
    data = home / ".local" / "share" / "xenlab"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XENLAB_DATA", str(data))
    monkeypatch.delenv("XENLAB_READ_HOST_IMAGES", raising=False)
    data.parent.mkdir(parents=True)          # where the data directory goes is the lab's to make
    configs = real_host_configs(learner)
    shipped = sorted(MACHINES.glob("*.cfg"))
    before = snapshot(tmp_path, MACHINES, skip=data)
    var_images_existed = Path("/var/images").exists()

    host, xl = small_host(mem_mib=512)
    doms = [xl.create(cfg) for cfg in shipped + configs]
    host.run(WORKLOAD_RUN)
    assert host.domains[0].alive
    wrote = [d for d in doms if "workload: disk ok" in d.console_output]
    assert wrote, "some guest wrote its disk"
    for d in doms:
        assert d.alive or d.state == "shutdown", (d.name, d.crash_reason)

    assert snapshot(tmp_path, MACHINES, skip=data) == before
    assert Path("/var/images").exists() == var_images_existed
    # what the guests wrote is in their private images, not in the learner's files
    web = private_image_bytes(host, learner / "images" / "web.img")
    assert len(web) == (len(b"the learner's own data ") * 5000) // 512 * 512, "sized from the real one"
    # a changed private image was written by its own guest's blkfront (a write may still be in flight)
    writers = {e.dom for e in host.trace.iter_all() if e.kind == "ring_io" and e.get("op") == "request WRITE"}
    assert web.count(0) == len(web) or "absolute-existing" in {d.name for d in doms if d.domid in writers}
