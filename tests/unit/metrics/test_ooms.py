"""OOM kills per user: detected when the counters rise between samples, put on the limit that
was hit (the container's own, or the users' slice / host above it)."""
import json

from hubmetrics import ooms
from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig
from hubmetrics.snapshot import CgroupStats, ContainerInfo, ContainerSample
from tests.unit.metrics.conftest import ALICE_ID

INFO = ContainerInfo(id="c" * 64, name="jupyter-alice", user="alice", mem_limit_bytes=2 * 2 ** 30)


def sample(kills, hits, info=INFO):
    return ContainerSample(info, CgroupStats(1.0, 10, 10, 10, 2 * 2 ** 30, 0, None, 1, kills, hits))


def test_a_kill_at_the_containers_own_limit():
    marks, events = ooms.detect({}, [sample(0, 0)], 100.0, lambda c: 0, first=True)
    marks, events = ooms.detect(marks, [sample(1, 1)], 105.0, lambda c: 0)
    assert [(e.time, e.user, e.container, e.limit, e.limit_bytes) for e in events] == \
        [(105.0, "alice", "jupyter-alice", "container", 2 * 2 ** 30)]
    assert ooms.detect(marks, [sample(1, 1)], 110.0, lambda c: 0)[1] == []   # no rise, no event


def test_a_kill_without_the_own_limit_hit_is_the_shared_limit():
    marks, _ = ooms.detect({}, [sample(2, 5)], 100.0, lambda c: 0, first=True)
    _, events = ooms.detect(marks, [sample(3, 5)], 105.0, lambda c: 24 * 2 ** 30)
    assert [(e.limit, e.limit_bytes, e.kills) for e in events] == [("users' slice or host", 24 * 2 ** 30, 1)]


def test_the_first_sample_only_sets_marks_but_a_new_container_counts_from_zero():
    assert ooms.detect({}, [sample(4, 4)], 100.0, lambda c: 0, first=True)[1] == []
    other = ContainerInfo(id="d" * 64, name="jupyter-bob", user="bob")
    _, events = ooms.detect({INFO.id: ooms.OomMark(4, 4)}, [sample(4, 4), sample(2, 0, other)], 105.0, lambda c: 7)
    assert [(e.user, e.kills, e.limit_bytes) for e in events] == [("bob", 2, 7)]


def test_recent_events_are_bounded_per_user():
    _, events = ooms.detect({}, [sample(1, 1)], 1.0, lambda c: 0)
    recent = {}
    for _ in range(ooms.RECENT + 3):
        recent = ooms.keep_recent(recent, events)
    assert len(recent["alice"]) == ooms.RECENT


def test_the_sampler_reports_a_kill_on_the_users_snapshot(fake_host):
    """alice's container: a process killed at the users' slice limit (oom_kill rises, oom not)."""
    import pathlib
    cg = pathlib.Path(fake_host["cgroup"])
    users_slice = cg / "jupyterhub.slice" / "jupyterhub-users.slice"
    (users_slice / "memory.max").write_text(f"{8 * 2 ** 30}\n")
    events_file = users_slice / f"docker-{ALICE_ID}.scope" / "memory.events"
    s = Sampler(SamplerConfig(cgroup_root=str(cg), proc_root=fake_host["proc"], user_processes="proc"),
                directory=fake_host["directory"], nvml=Nvml(), clock=iter([100.0, 100.0, 105.0, 105.0, 110.0, 110.0]).__next__)
    s.sample()
    events_file.write_text("low 0\nhigh 0\nmax 3\noom 0\noom_kill 1\noom_group_kill 0\n")
    snap = s.sample()
    alice = snap.to_json()["users"]["alice"]
    assert alice["oom_kills_total"] == 1
    assert alice["oom_events"] == [{"time": 105.0, "container": "jupyter-alice", "limit": "users' slice or host",
                                    "limit_bytes": 8 * 2 ** 30}]
    events_file.write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 2\noom_group_kill 0\n")
    alice = s.sample().to_json()["users"]["alice"]
    assert alice["oom_kills_total"] == 2
    assert alice["oom_events"][-1] == {"time": 110.0, "container": "jupyter-alice", "limit": "container",
                                       "limit_bytes": 2 * 1024 ** 3}
    json.dumps(alice)


def test_v1_puts_a_kill_on_the_container_when_its_peak_reached_its_limit(tmp_path):
    """Some v1 kernels leave memory.failcnt at 0: the usage high watermark tells instead."""
    from hubmetrics import cgroups
    from tests.unit.metrics.cgroup_trees import Numbers, v1_container, v1_root
    root = v1_root(tmp_path)
    v1_container(root, f"docker/{INFO.id}", Numbers(memory_max=64 * 2 ** 20))
    where = cgroups.locate(str(root), cgroups.V1, INFO.id)
    peak = root / "memory" / "docker" / INFO.id / "memory.max_usage_in_bytes"
    peak.write_text(f"{64 * 2 ** 20}\n")
    assert cgroups.reached_own_limit(where)
    peak.write_text(f"{32 * 2 ** 20}\n")
    assert not cgroups.reached_own_limit(where)
    marks = {INFO.id: ooms.OomMark(0, 0)}
    _, events = ooms.detect(marks, [sample(1, 0)], 1.0, lambda c: 9, reached_own_limit=lambda c: True)
    assert events[0].limit == "container"
    _, events = ooms.detect(marks, [sample(1, 0)], 1.0, lambda c: 9, reached_own_limit=lambda c: False)
    assert events[0].limit == "users' slice or host"
