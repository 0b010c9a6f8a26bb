"""The samplers over the cgroup v2 tree recorded from a real systemd host (recorded.py): every
number they produce equals what the recorder parsed from the same files (expected.json)."""
import pwd

import pytest

from hubmetrics import cgroups, ooms, slices
from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig
from tests.unit.metrics.conftest import StaticDirectory
from tests.unit.metrics.recorded import load

M = 1024 ** 2


@pytest.fixture
def rec(tmp_path):
    return load(tmp_path)


def _name(uid, recorded):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_stats(s, n):
    assert s.cpu_seconds == n["cpu_usec"] / 1e6
    assert s.memory_usage_bytes == n["memory_current"]
    assert s.memory_working_set_bytes == n["memory_current"] - n["inactive_file"]
    assert s.memory_rss_bytes == n["anon"]
    assert s.memory_limit_bytes == n["memory_max"]
    assert s.memory_reservation_bytes == n["memory_low"]
    assert s.cpu_limit_cores == (n["cpu_quota"] / n["cpu_period"] if n["cpu_quota"] else None)
    assert s.pids == n["pids"]
    assert s.oom_kills == n["oom_kill"]
    assert s.own_limit_hits == n["oom"]


def test_the_recording_is_what_the_tier_set_up(rec):
    """Guards the fixture itself: a re-recording must keep the cases the tests rely on."""
    assert rec.expected["recorded_on"][0].startswith("Linux 6.1.")
    assert "Debian GNU/Linux 12" in rec.expected["recorded_on"][1]
    names = {c["name"]: c for c in rec.containers()}
    assert set(names) == {"jupyter-alice", "jupyter-alice-lab", "jupyter-bob"}
    assert names["jupyter-alice-lab"]["cgroup"].startswith(
        "jupyterhub.slice/jupyterhub-users.slice/jupyterhub-users-besteffort.slice/docker-")
    assert names["jupyter-bob"]["numbers"]["oom_kill"] == 1
    assert names["jupyter-alice"]["numbers"]["cpu_usec"] > 0
    assert {s["uid"] for s in rec.slices()} >= {0, 1501}
    assert rec.expected["ancestors"]["jupyterhub.slice/jupyterhub-users.slice"]["memory_max"] == 1200 * M


def test_detects_v2_and_a_systemd_host(rec, tmp_path):
    assert cgroups.detect_mode(str(rec.cgroup)) == cgroups.V2
    assert slices.is_systemd_host(str(rec.cgroup), cgroups.V2, str(tmp_path / "no-run"))  # by user.slice


@pytest.mark.parametrize("with_proc", [True, False])
def test_each_recorded_container_is_found_and_read_exactly(rec, with_proc):
    for c in rec.containers():
        text = (rec.proc / str(c["init_pid"]) / "cgroup").read_text()
        assert cgroups.container_id_in(text) == c["id"]
        where = cgroups.locate(str(rec.cgroup), cgroups.V2, c["id"],
                               cgroups.parse_proc_cgroup(text) if with_proc else None, c["cgroup_parent"])
        assert where is not None and where.dir("") == str(rec.cgroup / c["cgroup"]), c["name"]
        check_stats(cgroups.read_stats(where), c["numbers"])
        check_stats(cgroups.read_stats(where, cgroups.read_limits(where)), c["numbers"])


def test_the_limit_above_each_container_is_the_users_slice(rec):
    ancestors = rec.expected["ancestors"]
    for c in rec.containers():
        where = cgroups.locate(str(rec.cgroup), cgroups.V2, c["id"], cgroup_parent=c["cgroup_parent"])
        above = [n["memory_max"] for rel, n in ancestors.items()
                 if c["cgroup"].startswith(rel + "/") and n["memory_max"] is not None]
        assert cgroups.ancestor_memory_limit(where, str(rec.cgroup)) == min(above) == 1200 * M


def test_each_users_slice_reads_exactly(rec):
    where = slices.layout(str(rec.cgroup), cgroups.V2)
    assert where is not None
    got = {s.uid: s for s in slices.user_slices(where, min_uid=0)}
    assert set(got) == {s["uid"] for s in rec.slices()}
    for s in rec.slices():
        n = got[s["uid"]]
        assert n.cpu_seconds == s["numbers"]["cpu_usec"] / 1e6
        assert n.memory_bytes == s["numbers"]["memory_current"] - s["numbers"]["inactive_file"]
        assert n.tasks == s["numbers"]["pids"]
    assert {s.uid for s in slices.user_slices(where, min_uid=1000)} == {1501}   # not root's


def test_a_sample_of_the_recorded_host(rec, tmp_path):
    sampler = Sampler(SamplerConfig(cgroup_root=str(rec.cgroup), proc_root=str(rec.proc),
                                    run_root=str(tmp_path / "no-run")),
                      directory=StaticDirectory(rec.infos()), nvml=Nvml())
    snap = sampler.sample()
    assert snap.health.cgroup_mode == "v2" and snap.health.process_source == "user_slices"
    assert dict(snap.health.source_up) == {"cgroups": True, "docker": True, "nvml": False}
    for c in snap.containers:
        check_stats(c.stats, rec.container(c.info.name)["numbers"])
    users = {u.name: u for u in snap.users}
    carol_uid = 1501
    assert set(users) == {"alice", "bob", _name(carol_uid, rec)}
    for name in ("alice", "bob"):
        mine = [c for c in rec.containers() if c["user"] == name]
        u = users[name]
        assert u.cpu_seconds_total == pytest.approx(sum(c["numbers"]["cpu_usec"] for c in mine) / 1e6, abs=1e-9)
        assert u.memory_working_set_bytes == sum(c["numbers"]["memory_current"] - c["numbers"]["inactive_file"]
                                                 for c in mine)
        assert u.memory_limit_bytes == sum(int(c["labels"]["org.jupyterhub-baremetal.mem-limit"]) for c in mine)
        assert u.memory_guarantee_bytes == sum(int(c["labels"]["org.jupyterhub-baremetal.mem-guarantee"])
                                               for c in mine)
        assert u.cpu_limit_cores == pytest.approx(sum(float(c["labels"]["org.jupyterhub-baremetal.cpu-limit"])
                                                      for c in mine))
        assert u.cpu_guarantee_cores == pytest.approx(
            sum(float(c["labels"]["org.jupyterhub-baremetal.cpu-guarantee"]) for c in mine))
        assert u.oom_kills_total == sum(c["numbers"]["oom_kill"] for c in mine)
        assert sorted(u.containers) == sorted(c["name"] for c in mine)
    carol = users[_name(carol_uid, rec)]
    (cs,) = [s for s in rec.slices() if s["uid"] == carol_uid]
    assert carol.containers == ()
    assert carol.process_cpu_seconds_total == cs["numbers"]["cpu_usec"] / 1e6
    assert carol.process_memory_pss_bytes == cs["numbers"]["memory_current"] - cs["numbers"]["inactive_file"]
    assert carol.process_count == cs["numbers"]["pids"]
    meminfo = dict(line.split(":") for line in (rec.proc / "meminfo").read_text().splitlines())
    assert snap.host.memory_total_bytes == int(meminfo["MemTotal"].split()[0]) * 1024
    assert snap.host.memory_available_bytes == int(meminfo["MemAvailable"].split()[0]) * 1024


def test_a_new_kill_in_the_recorded_tree_is_put_on_the_right_limit(rec, tmp_path):
    """bob's recorded kill happened before the first sample (counted, no event); one more at his own
    limit, then one with only oom_kill rising (the users' slice was full), each told apart."""
    sampler = Sampler(SamplerConfig(cgroup_root=str(rec.cgroup), proc_root=str(rec.proc),
                                    run_root=str(tmp_path / "no-run")),
                      directory=StaticDirectory(rec.infos()), nvml=Nvml())
    bob = {u.name: u for u in sampler.sample().users}["bob"]
    assert bob.oom_kills_total == 1 and bob.oom_events == ()
    events = rec.cgroup / rec.container("jupyter-bob")["cgroup"] / "memory.events"
    text = events.read_text()
    n = rec.container("jupyter-bob")["numbers"]

    def bump(oom, kill):
        events.write_text(text.replace(f"oom {n['oom']}\n", f"oom {oom}\n")
                          .replace(f"oom_kill {n['oom_kill']}\n", f"oom_kill {kill}\n"))
    bump(n["oom"] + 1, 2)
    bob = {u.name: u for u in sampler.sample().users}["bob"]
    assert bob.oom_kills_total == 2 and [e.limit for e in bob.oom_events] == [ooms.CONTAINER]
    assert bob.oom_events[-1].limit_bytes == n["memory_max"]
    bump(n["oom"] + 1, 3)
    bob = {u.name: u for u in sampler.sample().users}["bob"]
    assert [e.limit for e in bob.oom_events] == [ooms.CONTAINER, ooms.SHARED]
    assert bob.oom_events[-1].limit_bytes == 1200 * M
