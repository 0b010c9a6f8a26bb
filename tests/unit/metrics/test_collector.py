"""The Prometheus exposition: every promised family, right labels, and `promtool check metrics`
has nothing to say about it."""
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hubmetrics.collector import SnapshotCollector
from hubmetrics.exporter import make_registry
from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig
from hubmetrics.snapshot import (CgroupStats, ContainerInfo, ContainerSample, GpuDevice, Health, HomeUsage, Host,
                                 Node, Snapshot, UserGpu, UserSample)
from tests.harness.exposition import samples

PROMTOOL = shutil.which("promtool")


def gpu_snapshot() -> Snapshot:
    info = ContainerInfo(id="c" * 64, name="jupyter-alice", user="alice", gpus=("0",))
    stats = CgroupStats(cpu_seconds=12.5, memory_usage_bytes=100, memory_working_set_bytes=80, memory_rss_bytes=60,
                        memory_limit_bytes=None, memory_reservation_bytes=0, cpu_limit_cores=None, pids=3, oom_kills=1)
    return Snapshot(
        time=1700000000.0,
        host=Host(cpus=64, memory_total_bytes=512 * 2 ** 30, memory_available_bytes=400 * 2 ** 30,
                  gpus_total=2, gpus_free=1, nvml_available=True),
        containers=(ContainerSample(info, stats),),
        users=(UserSample(name="alice", cpu_seconds_total=12.5, memory_working_set_bytes=80, containers=("jupyter-alice",),
                          gpus=("0",), gpu_memory_used_bytes=2 ** 30, oom_kills_total=3),
               UserSample(name="carol", process_cpu_seconds_total=3.0, process_memory_pss_bytes=5000, process_count=2)),
        gpus=(GpuDevice(0, "GPU-a", "A100", 80 * 2 ** 30, 2 ** 30, 0.5), GpuDevice(1, "GPU-b", "A100", 80 * 2 ** 30, 0, 0.0)),
        user_gpus=(UserGpu("alice", "0", 2 ** 30, 0.5),),
        health=Health(0.01, (("cgroups", True), ("docker", True), ("nvml", True)),
                      (("cgroups", 0), ("docker", 2), ("nvml", 0)), "v2"),
        homes=(HomeUsage("alice", 3 * 2 ** 20, 20 * 2 ** 30), HomeUsage("carol", 4096, 0)),
        node=Node("hub1", 3.5, 20 * 2 ** 30, "users_slice", 0.5, 2 ** 30),
    )


def render(snap) -> str:
    return generate_latest(make_registry(lambda: snap)).decode()


def test_every_promised_series_is_there():
    got = samples(render(gpu_snapshot()))
    names = {name for name, _ in got}
    for name in [
        "jupyterhub_user_cpu_seconds_total", "jupyterhub_user_memory_working_set_bytes",
        "jupyterhub_user_memory_rss_bytes", "jupyterhub_user_memory_limit_bytes",
        "jupyterhub_user_memory_guarantee_bytes", "jupyterhub_user_cpu_limit_cores",
        "jupyterhub_user_cpu_guarantee_cores", "jupyterhub_user_gpu_memory_used_bytes",
        "jupyterhub_user_gpu_utilization_ratio", "jupyterhub_user_process_cpu_seconds_total",
        "jupyterhub_user_process_memory_pss_bytes", "jupyterhub_container_cpu_seconds_total",
        "jupyterhub_container_memory_working_set_bytes", "jupyterhub_container_memory_rss_bytes",
        "jupyterhub_container_memory_reservation_bytes", "jupyterhub_container_pids",
        "jupyterhub_container_oom_kills_total", "jupyterhub_user_oom_kills_total", "jupyterhub_host_cpus", "jupyterhub_host_memory_total_bytes",
        "jupyterhub_host_memory_available_bytes", "jupyterhub_host_gpus", "jupyterhub_host_gpus_free",
        "jupyterhub_gpu_utilization_ratio", "jupyterhub_gpu_memory_used_bytes", "jupyterhub_gpu_memory_total_bytes",
        "hubmetrics_sample_duration_seconds", "hubmetrics_sample_errors_total", "hubmetrics_source_up",
        "hubmetrics_nvml_up", "hubmetrics_last_sample_timestamp_seconds",
        "jupyterhub_user_home_bytes", "jupyterhub_user_home_quota_bytes",
    ]:
        assert name in names, name
    assert got[("jupyterhub_user_cpu_seconds_total", (("node", "hub1"), ("user", "alice")))] == 12.5
    assert got[("jupyterhub_container_oom_kills_total", (("container", "jupyter-alice"), ("node", "hub1"), ("user", "alice")))] == 1
    assert got[("jupyterhub_user_oom_kills_total", (("node", "hub1"), ("user", "alice")))] == 3
    assert got[("jupyterhub_user_gpu_utilization_ratio", (("gpu", "0"), ("node", "hub1"), ("user", "alice")))] == 0.5
    assert got[("jupyterhub_user_process_cpu_seconds_total", (("node", "hub1"), ("user", "carol")))] == 3.0
    assert ("jupyterhub_user_cpu_seconds_total", (("node", "hub1"), ("user", "carol"))) not in got  # carol has no container
    assert got[("jupyterhub_host_gpus_free", ())] == 1
    assert got[("hubmetrics_sample_errors_total", (("source", "docker"),))] == 2
    assert got[("hubmetrics_nvml_up", ())] == 1
    assert got[("jupyterhub_user_home_bytes", (("node", "hub1"), ("user", "alice")))] == 3 * 2 ** 20
    assert got[("jupyterhub_user_home_quota_bytes", (("node", "hub1"), ("user", "alice")))] == 20 * 2 ** 30
    assert got[("jupyterhub_user_home_bytes", (("node", "hub1"), ("user", "carol")))] == 4096
    assert ("jupyterhub_user_home_quota_bytes", (("node", "hub1"), ("user", "carol"))) not in got  # no quota: absent, not 0
    assert got[("jupyterhub_node_cpu_guarantee_capacity_cores", (("node", "hub1"),))] == 3.5
    assert got[("jupyterhub_node_memory_guarantee_capacity_bytes", (("node", "hub1"),))] == 20 * 2 ** 30
    assert got[("jupyterhub_node_cpu_guaranteed_cores", (("node", "hub1"),))] == 0.5
    assert got[("jupyterhub_node_memory_guaranteed_bytes", (("node", "hub1"),))] == 2 ** 30
    # every per-user, per-container and per-GPU series names the node (a swarm's exporters share names)
    for name, labels in got:
        if name.startswith(("jupyterhub_user_", "jupyterhub_container_", "jupyterhub_gpu_", "jupyterhub_node_")):
            assert ("node", "hub1") in labels, (name, labels)
    # no limit in the cgroup: the series is absent rather than a made-up number
    assert not any(name == "jupyterhub_container_memory_limit_bytes" for name, _ in got)


def test_without_nvml_gpu_series_are_absent_and_a_gauge_says_so():
    snap = gpu_snapshot()
    from dataclasses import replace
    snap = replace(snap, host=replace(snap.host, nvml_available=False, gpus_total=0, gpus_free=0), gpus=(), user_gpus=())
    got = samples(render(snap))
    assert not any("gpu" in name and not name.startswith("hubmetrics") for name, _ in got)
    assert got[("hubmetrics_nvml_up", ())] == 0


def test_nothing_before_the_first_sample():
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: None))
    assert generate_latest(registry) == b""


@pytest.mark.parametrize("which", ["gpus", "live"])
def test_promtool_check_metrics_is_silent(which, fake_host):
    assert PROMTOOL, "promtool is missing: `make deps` installs the Debian package prometheus"
    if which == "gpus":
        snap = gpu_snapshot()
    else:
        snap = Sampler(SamplerConfig(cgroup_root=fake_host["cgroup"], proc_root=fake_host["proc"]),
                       directory=fake_host["directory"], nvml=Nvml()).sample()
    text = render(snap)
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # and promtool is not blind: a badly named counter is reported
    bad = subprocess.run([PROMTOOL, "check", "metrics"], capture_output=True, text=True,
                         input="# HELP x_bytes_count a\n# TYPE x_bytes_count counter\nx_bytes_count 1\n")
    assert bad.returncode != 0 or bad.stdout or bad.stderr
