"""Users' processes outside containers on systemd hosts: read per user from their user slices
(v2 and v1 layouts), in place of the /proc scan, with the same series and snapshot keys."""

import pytest

from hubmetrics import cgroups, slices
from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig
from tests.unit.metrics.cgroup_trees import Numbers, v1_root, v1_user_slice, v2_root, v2_user_slice
from tests.unit.metrics.conftest import StaticDirectory
from tests.unit.metrics.recorded import load

DAVE = Numbers(cpu_usec=41_000_000, memory_current=300_000_000, inactive_file=20_000_000, pids=9)
ERIN = Numbers(cpu_usec=5_000_000, memory_current=90_000_000, inactive_file=10_000_000, pids=2)


def proc_root(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:       24683380 kB\nMemAvailable:   22000000 kB\n")
    return proc


def test_a_systemd_host_is_told_by_its_marker_or_its_user_slice(tmp_path):
    bare = v2_root(tmp_path / "cg")
    run = tmp_path / "run"
    assert slices.is_systemd_host(str(bare), cgroups.V2, str(run))          # user.slice in the tree
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "cgroup.controllers").write_text("cpu memory\n")
    assert not slices.is_systemd_host(str(tmp_path / "plain"), cgroups.V2, str(run))
    (run / "systemd" / "system").mkdir(parents=True)
    assert slices.is_systemd_host(str(tmp_path / "plain"), cgroups.V2, str(run))
    v1 = v1_root(tmp_path / "v1")
    assert not slices.is_systemd_host(str(v1), cgroups.HYBRID, str(tmp_path / "norun"))
    (v1 / "systemd" / "user.slice").mkdir()
    assert slices.is_systemd_host(str(v1), cgroups.HYBRID, str(tmp_path / "norun"))


def test_each_users_slice_gives_their_cpu_memory_and_tasks_v2_recorded(tmp_path):
    """user.slice as recorded on a real systemd host (recorded.py): carol's SSH login and root's."""
    import shutil
    rec = load(tmp_path)
    (carol,) = [s for s in rec.slices() if s["uid"] == 1501]
    shutil.copytree(rec.cgroup / carol["cgroup"], rec.cgroup / "user.slice/user-65534.slice")  # nobody's
    where = slices.layout(str(rec.cgroup), cgroups.V2)
    got = {s.uid: s for s in slices.user_slices(where, min_uid=1000)}
    assert set(got) == {1501}   # root's and nobody's slices are not users'
    n = carol["numbers"]
    assert got[1501].cpu_seconds == n["cpu_usec"] / 1e6
    assert got[1501].memory_bytes == n["memory_current"] - n["inactive_file"]
    assert got[1501].tasks == n["pids"]


def test_each_users_slice_gives_their_cpu_memory_and_tasks_v1(tmp_path):
    root, mode = v1_root(tmp_path / "cg"), cgroups.HYBRID
    for uid, n in ((1600, DAVE), (1601, ERIN), (0, Numbers()), (65534, Numbers())):
        v1_user_slice(root, uid, n)
    where = slices.layout(str(root), mode)
    assert where is not None
    got = {s.uid: s for s in slices.user_slices(where, min_uid=1000)}
    assert set(got) == {1600, 1601}   # root's and nobody's slices are not users'
    for uid, n in ((1600, DAVE), (1601, ERIN)):
        assert got[uid].cpu_seconds == pytest.approx(n.cpu_usec / 1e6)
        assert got[uid].memory_bytes == n.memory_current - n.inactive_file
        assert got[uid].tasks == n.pids


def test_without_memory_accounting_there_is_no_slice_layout(tmp_path):
    root = v2_root(tmp_path / "cg")   # user.slice without memory.current: accounting off
    assert slices.layout(str(root), cgroups.V2) is None
    v1 = v1_root(tmp_path / "v1")
    (v1 / "memory" / "user.slice").mkdir()   # memory yes, cpuacct no
    assert slices.layout(str(v1), cgroups.HYBRID) is None


def sampler(root, proc, run, **kw):
    return Sampler(SamplerConfig(cgroup_root=str(root), proc_root=str(proc), run_root=str(run), **kw),
                   directory=StaticDirectory([]), nvml=Nvml())


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_the_sampler_reads_slices_instead_of_proc_on_systemd(tmp_path, version):
    if version == "v2":
        root = v2_root(tmp_path / "cg")
        v2_user_slice(root, 1600, DAVE)
    else:
        root = v1_root(tmp_path / "cg")
        v1_user_slice(root, 1600, DAVE)
    run = tmp_path / "run"
    (run / "systemd" / "system").mkdir(parents=True)
    s = sampler(root, proc_root(tmp_path), run)
    snap = s.sample()
    users = {u.name: u for u in snap.users}
    (dave,) = users.values()
    assert dave.process_cpu_seconds_total == pytest.approx(DAVE.cpu_usec / 1e6)
    assert dave.process_memory_pss_bytes == DAVE.memory_current - DAVE.inactive_file
    assert dave.process_count == DAVE.pids
    assert snap.health.process_source == "user_slices"
    assert snap.to_json()["process_source"] == "user_slices"
    assert "process_memory_pss_bytes" in snap.to_json()["users"][dave.name]
    forced = sampler(root, proc_root(tmp_path / "other"), tmp_path / "norun", user_processes="proc").sample()
    assert forced.users == () and forced.health.process_source == "proc"


def test_a_logout_and_login_keeps_the_users_counter(tmp_path):
    """The slice is removed at the last logout; the next login's slice counts from zero again."""
    import shutil
    root = v2_root(tmp_path / "cg")
    v2_user_slice(root, 1600, DAVE)
    run = tmp_path / "run"
    (run / "systemd" / "system").mkdir(parents=True)
    s = sampler(root, proc_root(tmp_path), run)
    first = s.sample().users[0].process_cpu_seconds_total
    shutil.rmtree(root / "user.slice" / "user-1600.slice")
    assert s.sample().users == ()
    v2_user_slice(root, 1600, Numbers(cpu_usec=2_000_000, memory_current=1000, inactive_file=0, pids=1))
    assert s.sample().users[0].process_cpu_seconds_total == pytest.approx(first + 2.0)


def test_an_unknown_user_processes_setting_is_named():
    with pytest.raises(ValueError, match="user_processes 'cgroups': allowed: auto, slices, proc"):
        SamplerConfig(user_processes="cgroups")
