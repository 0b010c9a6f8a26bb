"""A whole sample over a fake v2 host, and the pure folding of readings into users and GPUs."""
import pwd

import pytest

from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig, attribute_gpus, free_gpus
from hubmetrics.snapshot import ContainerInfo, GpuDevice, GpuProcess
from tests.unit.metrics.conftest import ALICE, BOB


def _carol_name():
    try:
        return pwd.getpwuid(1500).pw_name
    except KeyError:
        return "1500"


def test_a_sample_of_the_fake_host(fake_host):
    sampler = Sampler(SamplerConfig(cgroup_root=fake_host["cgroup"], proc_root=fake_host["proc"]),
                      directory=fake_host["directory"], nvml=Nvml())
    snap = sampler.sample()
    users = {u.name: u for u in snap.users}
    alice, bob, carol = users["alice"], users["bob"], users[_carol_name()]
    assert alice.cpu_seconds_total == pytest.approx(ALICE.cpu_usec / 1e6)
    assert alice.memory_working_set_bytes == ALICE.memory_current - ALICE.inactive_file
    assert alice.memory_rss_bytes == ALICE.anon
    assert alice.memory_limit_bytes == 2 * 1024 ** 3          # from the label
    assert alice.memory_guarantee_bytes == 512 * 1024 ** 2
    assert alice.cpu_limit_cores == 2.0 and alice.cpu_guarantee_cores == 0.5
    assert alice.containers == ("jupyter-alice",)
    # bob's labels say nothing about limits: the cgroup's enforced values stand in
    assert bob.memory_limit_bytes == BOB.memory_max
    assert bob.cpu_limit_cores == pytest.approx(2.0)
    assert bob.cpu_seconds_total == pytest.approx(7.0)
    # carol is only logged in by SSH
    assert carol.containers == () and carol.process_count == 1
    assert carol.process_memory_pss_bytes >= 8 * 1024 * 1024
    assert {c.info.user: c.stats.oom_kills for c in snap.containers} == {"alice": 0, "bob": 4}
    assert snap.host.memory_total_bytes == 24683380 * 1024
    assert snap.host.memory_available_bytes == 22000000 * 1024
    # no NVIDIA library on this machine: GPUs absent, NVML down but not counted as an error
    assert not snap.host.nvml_available and snap.gpus == () and snap.host.gpus_total == 0
    assert snap.host.nvml_absent and snap.to_json()["host"]["nvml_absent"] is True
    assert dict(snap.health.source_up) == {"cgroups": True, "docker": True, "nvml": False}
    assert dict(snap.health.errors_total)["nvml"] == 0
    assert snap.health.cgroup_mode == "v2"


def test_counters_survive_a_container_leaving(fake_host):
    directory = fake_host["directory"]
    sampler = Sampler(SamplerConfig(cgroup_root=fake_host["cgroup"], proc_root=fake_host["proc"]),
                      directory=directory, nvml=Nvml())
    sampler.sample()
    alice = directory.containers["a11ce" + "0" * 59]
    directory.containers = {alice.id: alice}
    snap = sampler.sample()
    assert [u.name for u in snap.users if u.containers] == ["alice"]
    assert [c.info.name for c in snap.containers] == ["jupyter-alice"]


def test_a_removed_cgroup_makes_docker_be_asked_again(fake_host, tmp_path):
    import shutil
    directory = fake_host["directory"]
    sampler = Sampler(SamplerConfig(cgroup_root=fake_host["cgroup"], proc_root=fake_host["proc"]),
                      directory=directory, nvml=Nvml())
    sampler.sample()
    bob = directory.containers["b0b" + "1" * 61]
    shutil.rmtree(f"{fake_host['cgroup']}/jupyterhub.slice/jupyterhub-users.slice/docker-{bob.id}.scope")
    snap = sampler.sample()
    assert [c.info.name for c in snap.containers] == ["jupyter-alice"]
    assert bob.id in directory.invalidated
    assert snap.health.up("cgroups")


def test_docker_down_is_reported(fake_host):
    directory = fake_host["directory"]
    directory.up = False
    sampler = Sampler(SamplerConfig(cgroup_root=fake_host["cgroup"], proc_root=fake_host["proc"]),
                      directory=directory, nvml=Nvml())
    snap = sampler.sample()
    assert not snap.health.up("docker")
    assert snap.to_json()["stale"]["docker"] is True
    assert dict(snap.health.errors_total)["docker"] == 1
    assert {c.info.user for c in snap.containers} == {"alice", "bob"}  # last known still served


GPUS = (GpuDevice(0, "GPU-aaaa", "A100", 80 * 2 ** 30, 30 * 2 ** 30, 0.9),
        GpuDevice(1, "GPU-bbbb", "A100", 80 * 2 ** 30, 0, 0.0),
        GpuDevice(2, "GPU-cccc", "A100", 80 * 2 ** 30, 0, 0.25))


def test_free_gpus_counts_labels_by_index_or_uuid():
    holders = [ContainerInfo(id="1", name="a", user="alice", gpus=("0",)),
               ContainerInfo(id="2", name="b", user="bob", gpus=("GPU-cccc",))]
    assert free_gpus(GPUS, holders) == 1
    assert free_gpus(GPUS, []) == 3
    assert free_gpus((), holders) == 0


def test_gpu_use_is_attributed_to_process_owners():
    procs = [GpuProcess(0, 11, 20 * 2 ** 30), GpuProcess(0, 12, 10 * 2 ** 30), GpuProcess(0, 99, 5)]
    holders = [ContainerInfo(id="2", name="b", user="carol", gpus=("GPU-cccc",))]
    got = {(g.user, g.gpu): g for g in attribute_gpus(GPUS, procs, {11: "alice", 12: "bob"}, holders)}
    assert set(got) == {("alice", "0"), ("bob", "0"), ("carol", "2")}
    assert got[("alice", "0")].memory_used_bytes == 20 * 2 ** 30
    assert got[("alice", "0")].utilization_ratio == pytest.approx(0.6)
    assert got[("bob", "0")].utilization_ratio == pytest.approx(0.3)
    assert got[("carol", "2")].utilization_ratio == pytest.approx(0.25)   # held, no process yet
    assert got[("carol", "2")].memory_used_bytes == 0


# --- the node's guarantee capacity ---------------------------------------------------------------

def test_node_capacity_is_the_users_slice_else_the_host():
    from hubmetrics.cgroups import Limits
    from hubmetrics.sampler import node_capacity
    from hubmetrics.snapshot import Host, UserSample
    host = Host(cpus=8, memory_total_bytes=64 * 2 ** 30, memory_available_bytes=0)
    users = [UserSample("a", cpu_guarantee_cores=0.1, memory_guarantee_bytes=2 ** 30),
             UserSample("b", cpu_guarantee_cores=0.2, memory_guarantee_bytes=2 ** 29), UserSample("ssh-only")]
    node = node_capacity("n1", Limits(20 * 2 ** 30, 0, 3.5), host, users)
    assert (node.name, node.capacity_cpus, node.capacity_mem_bytes, node.capacity_source) == \
        ("n1", 3.5, 20 * 2 ** 30, "users_slice")
    assert (node.guaranteed_cpus, node.guaranteed_mem_bytes) == (0.3, 3 * 2 ** 29)   # 0.1 + 0.2, no float dust
    assert (node.free_cpus, node.free_mem_bytes) == (3.2, 20 * 2 ** 30 - 3 * 2 ** 29)
    only_memory = node_capacity("n1", Limits(2 ** 30, 0, None), host, users)
    assert (only_memory.capacity_cpus, only_memory.capacity_mem_bytes) == (8.0, 2 ** 30)
    assert only_memory.free_mem_bytes == 0   # over-guaranteed: free is 0, never negative
    bare = node_capacity("n1", None, host, ())
    assert (bare.capacity_cpus, bare.capacity_mem_bytes, bare.capacity_source) == (8.0, 64 * 2 ** 30, "host")
