"""Fixtures for the exporter's unit tests: a fake host (a v2 cgroup tree plus a copied /proc)."""
import os
import shutil
import subprocess
import sys

import psutil
import pytest

from hubmetrics import procs
from hubmetrics.snapshot import ContainerInfo
from tests.unit.metrics.cgroup_trees import Numbers, proc_cgroup_v2, v2_container, v2_root

ALICE_ID = "a11ce" + "0" * 59
BOB_ID = "b0b" + "1" * 61
ALICE = Numbers(cpu_usec=50_000_000, memory_current=600_000_000, inactive_file=100_000_000, anon=450_000_000,
                memory_max=2 * 1024 ** 3, memory_low=512 * 1024 ** 2, pids=12, oom_kills=0, procs=(7001,))
BOB = Numbers(cpu_usec=7_000_000, memory_current=300_000_000, inactive_file=20_000_000, anon=250_000_000,
              memory_max=4 * 1024 ** 3, memory_low=0, pids=3, oom_kills=4, procs=(7002,))


class StaticDirectory:
    """Stands in for Docker's answer in unit tests (the real API is exercised in integration)."""

    def __init__(self, containers, up=True):
        self.containers = {c.id: c for c in containers}
        self.up = up
        self.invalidated = []

    def current(self):
        return dict(self.containers)

    def invalidate(self, cid=None):
        self.invalidated.append(cid)

    def close(self):
        pass


@pytest.fixture
def sleeper():
    child = subprocess.Popen([sys.executable, "-c", "import time; x=bytearray(8*1024*1024); print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    yield child
    child.kill()
    child.wait()


@pytest.fixture
def own(monkeypatch):
    """own(dir, uid): make a fake /proc/<pid> belong to uid. Root chowns it for real; a normal
    user may not give files away, so the exporter's owner lookup (procs.owner_uid) reads the
    uids recorded here for these directories and the real owner for every other path."""
    if os.geteuid() == 0:
        return lambda d, uid: os.chown(d, uid, uid)
    owners = {}
    real = procs.owner_uid

    def recorded_or_real(path):
        key = os.path.normpath(path)
        return owners[key] if key in owners else real(path)
    monkeypatch.setattr(procs, "owner_uid", recorded_or_real)
    return lambda d, uid: owners.__setitem__(os.path.normpath(d), uid)


@pytest.fixture
def fake_host(tmp_path, sleeper, own):
    """A v2 host with alice's and bob's containers and carol (uid 1500) logged in by SSH."""
    cg = v2_root(tmp_path / "cgroup")
    users = "jupyterhub.slice/jupyterhub-users.slice"
    v2_container(cg, f"{users}/docker-{ALICE_ID}.scope", ALICE)
    v2_container(cg, f"{users}/docker-{BOB_ID}.scope", BOB)
    proc = tmp_path / "proc"
    proc.mkdir()
    shutil.copyfile("/proc/stat", proc / "stat")
    (proc / "meminfo").write_text("MemTotal:       24683380 kB\nMemFree:        20000000 kB\n"
                                  "MemAvailable:   22000000 kB\nBuffers:          100000 kB\n")
    for pid, cid, uid in ((7001, ALICE_ID, 1501), (7002, BOB_ID, 1502)):
        d = proc / str(pid)
        d.mkdir()
        (d / "cgroup").write_text(proc_cgroup_v2(f"{users}/docker-{cid}.scope"))
        own(d, uid)
    d = proc / str(sleeper.pid)
    d.mkdir()
    for name in ("stat", "statm", "status", "smaps_rollup"):
        shutil.copyfile(f"/proc/{sleeper.pid}/{name}", d / name)
    (d / "cgroup").write_text("0::/user.slice/user-1500.slice/session-7.scope\n")
    own(d, 1500)
    containers = [
        ContainerInfo(id=ALICE_ID, name="jupyter-alice", user="alice", init_pid=7001,
                      cgroup_parent="jupyterhub-users.slice", cpu_limit_cores=2.0, mem_limit_bytes=2 * 1024 ** 3,
                      cpu_guarantee_cores=0.5, mem_guarantee_bytes=512 * 1024 ** 2, gpus=("0",)),
        ContainerInfo(id=BOB_ID, name="jupyter-bob", user="bob", init_pid=7002,
                      cgroup_parent="jupyterhub-users.slice", cpu_limit_cores=None, mem_limit_bytes=None),
    ]
    yield {"cgroup": str(cg), "proc": str(proc), "directory": StaticDirectory(containers),
           "sleeper_pid": sleeper.pid}
    psutil.PROCFS_PATH = "/proc"


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory):
    """The fake libnvidia-ml.so.1, compiled once per session."""
    from tests.fakenvml.build import build
    return build(tmp_path_factory.mktemp("fakenvml"))
