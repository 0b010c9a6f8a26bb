"""The cgroup samplers against v1 and v2 file trees: layout detection, finding a container's
cgroup under both Docker cgroup drivers, and every number they read."""
import shutil

import pytest

from hubmetrics import cgroups
from tests.unit.metrics.recorded import load
from tests.unit.metrics.cgroup_trees import (Numbers, proc_cgroup_v1, proc_cgroup_v2, v1_container, v1_root,
                                             v2_container, v2_root)

CID = "3f1c0b7a9d2e4f56" * 4
CID2 = "a0b1c2d3e4f5a6b7" * 4



def read_and_compare(where, n):
    """Read a located cgroup and check the counters both cgroup versions report alike."""
    s = cgroups.read_stats(where)
    assert s.cpu_seconds == pytest.approx(n.cpu_usec / 1e6)
    assert s.memory_usage_bytes == n.memory_current
    assert s.memory_working_set_bytes == n.memory_current - n.inactive_file
    assert s.memory_rss_bytes == n.anon
    assert s.memory_limit_bytes == n.memory_max
    assert s.memory_reservation_bytes == n.memory_low
    return s

def test_detects_each_layout(tmp_path):
    assert cgroups.detect_mode(str(v2_root(tmp_path / "v2"))) == cgroups.V2
    assert cgroups.detect_mode(str(v1_root(tmp_path / "hybrid"))) == cgroups.HYBRID
    assert cgroups.detect_mode(str(v1_root(tmp_path / "v1", hybrid=False))) == cgroups.V1
    assert cgroups.detect_mode(str(v1_root(tmp_path / "co", comounted=True, hybrid=False))) == cgroups.V1
    (tmp_path / "empty").mkdir()
    assert cgroups.detect_mode(str(tmp_path / "empty")) == cgroups.NONE


def test_systemd_slice_paths_nest_at_dashes():
    assert cgroups.systemd_slice_path("jupyterhub-users.slice") == "jupyterhub.slice/jupyterhub-users.slice"
    assert cgroups.systemd_slice_path("system.slice") == "system.slice"
    assert cgroups.systemd_slice_path("a-b-c.slice") == "a.slice/a-b.slice/a-b-c.slice"


def test_parses_proc_cgroup_and_finds_the_container_id():
    text = proc_cgroup_v1(f"docker/{CID}", comounted=True)
    parsed = cgroups.parse_proc_cgroup(text)
    assert parsed["memory"] == f"/docker/{CID}"
    assert parsed["cpu"] == parsed["cpuacct"] == f"/docker/{CID}"
    assert parsed["systemd"] == f"/docker/{CID}"
    assert parsed[""] == "/"
    assert cgroups.container_id_in(text) == CID
    assert cgroups.container_id_in(proc_cgroup_v2(f"system.slice/docker-{CID}.scope")) == CID
    assert cgroups.container_id_in("0::/user.slice/user-1000.slice/session-3.scope\n") is None


@pytest.mark.parametrize("rel", [
    "system.slice/docker-{cid}.scope",                               # systemd driver, default parent
    "jupyterhub.slice/jupyterhub-users.slice/docker-{cid}.scope",    # systemd driver, our slice
    "jupyterhub-users.slice/docker-{cid}.scope",                     # a flat (non-nested) slice dir
])
def test_v2_reads_a_containers_numbers(tmp_path, rel):
    """A container's files as recorded on a real systemd host (recorded.py), moved to each layout
    Docker may use; the numbers are those the recorder parsed from the same files."""
    rec = load(tmp_path)
    alice = rec.container("jupyter-alice")
    moved = rec.cgroup / rel.format(cid=CID)
    moved.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(rec.cgroup / alice["cgroup"], moved)
    other = rec.container("jupyter-alice-lab")
    where = cgroups.locate(str(rec.cgroup), cgroups.V2, CID, cgroup_parent="jupyterhub-users.slice")
    assert where is not None and where.dir("memory").endswith(rel.format(cid=CID))
    n = alice["numbers"]
    s = cgroups.read_stats(where)
    assert s.cpu_seconds == n["cpu_usec"] / 1e6
    assert s.memory_usage_bytes == n["memory_current"]
    assert s.memory_working_set_bytes == n["memory_current"] - n["inactive_file"] < n["memory_current"]
    assert s.memory_rss_bytes == n["anon"]
    assert (s.memory_limit_bytes, s.memory_reservation_bytes) == (n["memory_max"], n["memory_low"])
    assert s.cpu_limit_cores == n["cpu_quota"] / n["cpu_period"] == 0.5
    assert (s.pids, s.oom_kills) == (n["pids"], n["oom_kill"])
    assert cgroups.locate(str(rec.cgroup), cgroups.V2, other["id"]).dir("").endswith(other["cgroup"])


def test_v2_without_limits(tmp_path):
    """user.slice as recorded has no limits ("max"); the same files in a container's place."""
    rec = load(tmp_path)
    scope = rec.cgroup / f"system.slice/docker-{CID}.scope"
    shutil.copytree(rec.cgroup / "user.slice", scope, ignore=lambda d, names: [n for n in names if n.startswith("user-")])
    s = cgroups.read_stats(cgroups.locate(str(rec.cgroup), cgroups.V2, CID))
    assert s.memory_limit_bytes is None and rec.expected["ancestors"]["user.slice"]["memory_max"] is None
    assert s.cpu_limit_cores is None
    assert s.memory_reservation_bytes == 0


def test_v2_prefers_the_init_process_cgroup(tmp_path):
    """A custom cgroup parent Docker's defaults would not guess: /proc/<pid>/cgroup finds it."""
    root = v2_root(tmp_path)
    rel = f"machine.slice/odd/docker-{CID}.scope"
    v2_container(root, rel)
    where = cgroups.locate(str(root), cgroups.V2, CID, cgroups.parse_proc_cgroup(proc_cgroup_v2(rel)))
    assert where.dir("") == str(root / rel)


@pytest.mark.parametrize("comounted", [False, True])
@pytest.mark.parametrize("rel,parent", [
    ("docker/{cid}", ""),                       # cgroupfs driver, default parent
    ("jupyterhub-users/{cid}", "jupyterhub-users"),   # cgroupfs driver, --cgroup-parent
])
def test_v1_reads_a_containers_numbers(tmp_path, comounted, rel, parent):
    root = v1_root(tmp_path, comounted=comounted)
    n = Numbers(cpu_usec=98_765_432, memory_current=300_000_000, inactive_file=50_000_000, anon=200_000_000,
                memory_max=512 * 1024 ** 2, memory_low=256 * 1024 ** 2, cpu_quota_us=50_000, pids=7, oom_kills=1)
    v1_container(root, rel.format(cid=CID), n)
    v1_container(root, f"docker/{CID2}", Numbers())
    for proc in (None, cgroups.parse_proc_cgroup(proc_cgroup_v1(rel.format(cid=CID), comounted))):
        where = cgroups.locate(str(root), cgroups.HYBRID, CID, proc, cgroup_parent=parent)
        assert where is not None
        s = read_and_compare(where, n)
        assert s.cpu_limit_cores == pytest.approx(0.5)
        assert s.pids == 7
        assert s.oom_kills == 1


def test_v1_unlimited_and_old_kernels(tmp_path):
    """v1 says "no limit" with a huge number; kernels before 4.13 have no oom_kill line."""
    root = v1_root(tmp_path)
    v1_container(root, f"docker/{CID}", Numbers(memory_max=None, memory_low=0, cpu_quota_us=None), oom_kill_line=False)
    s = cgroups.read_stats(cgroups.locate(str(root), cgroups.V1, CID))
    assert s.memory_limit_bytes is None
    assert s.memory_reservation_bytes == 0
    assert s.cpu_limit_cores is None
    assert s.oom_kills == 0


def test_v1_search_finds_an_unusual_parent(tmp_path):
    root = v1_root(tmp_path)
    v1_container(root, f"custom/deeper/{CID}")
    where = cgroups.locate(str(root), cgroups.V1, CID)
    assert where.dir("memory") == str(root / "memory" / "custom" / "deeper" / CID)


def test_unknown_container_and_removed_cgroup(tmp_path):
    root = v2_root(tmp_path)
    assert cgroups.locate(str(root), cgroups.V2, CID) is None
    d = v2_container(root, f"system.slice/docker-{CID}.scope")
    where = cgroups.locate(str(root), cgroups.V2, CID)
    shutil.rmtree(d)
    with pytest.raises(OSError):
        cgroups.read_stats(where)


# --- the users' slice: the node's guarantee capacity (hubmetrics.sampler.node_capacity) ---------

def test_v2_users_slice_limits_are_read_like_a_containers(tmp_path):
    root = v2_root(tmp_path)
    v2_container(root, "jupyterhub.slice/jupyterhub-users.slice",
                 Numbers(memory_max=20 * 1024 ** 3, cpu_quota_us=350_000))
    where = cgroups.locate_slice(str(root), cgroups.V2, "jupyterhub-users.slice")
    limits = cgroups.read_limits(where)
    assert (limits.memory_limit_bytes, limits.cpu_limit_cores) == (20 * 1024 ** 3, 3.5)
    assert cgroups.locate_slice(str(root), cgroups.V2, "other-users.slice") is None


@pytest.mark.parametrize("nested", [False, True])
def test_v1_users_slice_also_under_a_containers_systemd(tmp_path, nested):
    """A systemd host container with the host's cgroup namespace (the test swarm's nodes): its
    systemd's tree, the users' slice included, is below PID 1's own cgroup's parent."""
    root = v1_root(tmp_path)
    base = "docker/" + CID + "/" if nested else ""
    v1_container(root, base + "jupyterhub.slice/jupyterhub-users.slice",
                 Numbers(memory_max=3 * 1024 ** 3, cpu_quota_us=150_000))
    init = cgroups.parse_proc_cgroup(proc_cgroup_v1(base + "init.scope"))
    where = cgroups.locate_slice(str(root), cgroups.HYBRID, "jupyterhub-users.slice", init)
    limits = cgroups.read_limits(where)
    assert (limits.memory_limit_bytes, limits.cpu_limit_cores) == (3 * 1024 ** 3, 1.5)


def test_v1_users_slice_without_limits_reads_none(tmp_path):
    root = v1_root(tmp_path)
    v1_container(root, "jupyterhub.slice/jupyterhub-users.slice", Numbers(memory_max=None, cpu_quota_us=None))
    limits = cgroups.read_limits(cgroups.locate_slice(str(root), cgroups.V1, "jupyterhub-users.slice"))
    assert (limits.memory_limit_bytes, limits.cpu_limit_cores) == (None, None)
