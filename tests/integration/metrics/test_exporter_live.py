"""The exporter against the real thing: live cgroup v1 files of real containers run as real users,
the real Docker API, the real pynvml loading a fake libnvidia-ml.so.1, and the daemon over HTTP.

Tolerances: CPU seconds must lie between the cgroup's own counter read just before and just
after the exporter sampled (no tolerance needed); memory working set within 5 % of the cgroup's
own usage - total_inactive_file read around the sample (the bash loops hold their memory still).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.fakenvml.build import FakeGpu, nvml_env, write_config
from tests.integration.metrics.conftest import DockerSocketProxy, cgroup_file, free_port
from tests.harness.exposition import samples as series

pytestmark = pytest.mark.integration
NODE = ("node", socket.gethostname())   # the exporter's default --node-name
EXPORTER = shutil.which("hubmetrics-exporter") or os.path.join(os.path.dirname(sys.executable), "hubmetrics-exporter")


def cgroup_cpu(cid: str) -> float:
    return int(cgroup_file(cid, "cpuacct", "cpuacct.usage")) / 1e9


def cgroup_working_set(cid: str) -> int:
    stat = dict(line.split() for line in cgroup_file(cid, "memory", "memory.stat").splitlines())
    return int(cgroup_file(cid, "memory", "memory.usage_in_bytes")) - int(stat["total_inactive_file"])


@pytest.fixture(scope="module")
def nvml_config(tmp_path_factory, burning_containers):
    """Two GPUs, each with one process that lives in one user's container (host pids)."""
    alice, bob = burning_containers
    return write_config(tmp_path_factory.mktemp("nvml") / "nvml.conf",
                        [FakeGpu("GPU-0000aaaa", memory_used=3 * 2 ** 30, utilization_percent=80),
                         FakeGpu("GPU-1111bbbb", memory_used=5 * 2 ** 30, utilization_percent=40),
                         FakeGpu("GPU-2222cccc")],
                        [(0, alice.init_pid, 3 * 2 ** 30), (1, bob.init_pid, 5 * 2 ** 30)])


def run_once(env) -> tuple[str, dict]:
    result = subprocess.run([EXPORTER, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout, series(result.stdout)


def test_once_reports_each_user_within_tolerance(burning_containers, ssh_user_process, fake_nvml_dir, nvml_config):
    before = {c.id: (cgroup_cpu(c.id), cgroup_working_set(c.id)) for c in burning_containers}
    text, got = run_once(nvml_env(fake_nvml_dir, nvml_config))
    after = {c.id: (cgroup_cpu(c.id), cgroup_working_set(c.id)) for c in burning_containers}

    for c in burning_containers:
        key = (("container", c.name), NODE, ("user", c.user))
        cpu = got[("jupyterhub_container_cpu_seconds_total", key)]
        assert before[c.id][0] <= cpu <= after[c.id][0]
        assert before[c.id][0] <= got[("jupyterhub_user_cpu_seconds_total", (NODE, ("user", c.user)))] <= after[c.id][0]
        ws = got[("jupyterhub_container_memory_working_set_bytes", key)]
        low, high = sorted((before[c.id][1], after[c.id][1]))
        assert low * 0.95 <= ws <= high * 1.05
        assert ws >= c.mib * 2 ** 20  # the bash variable is really there
        assert got[("jupyterhub_user_memory_working_set_bytes", (NODE, ("user", c.user)))] == ws
        assert got[("jupyterhub_container_memory_limit_bytes", key)] == 512 * 2 ** 20
        assert got[("jupyterhub_container_memory_reservation_bytes", key)] == 128 * 2 ** 20
        assert got[("jupyterhub_user_memory_limit_bytes", (NODE, ("user", c.user)))] == 512 * 2 ** 20
        assert got[("jupyterhub_user_cpu_limit_cores", (NODE, ("user", c.user)))] == 0.5
        assert got[("jupyterhub_user_cpu_guarantee_cores", (NODE, ("user", c.user)))] == 0.25
        assert got[("jupyterhub_container_pids", key)] >= 1
        # the container's own processes run as the user's uid but are not "outside" processes
        assert ("jupyterhub_user_process_cpu_seconds_total", (NODE, ("user", c.user))) not in got
        # GPU: the fake NVML's process pid -> /proc/<pid>/cgroup -> container -> user
        assert got[("jupyterhub_user_gpu_memory_used_bytes", (("gpu", c.gpu), NODE, ("user", c.user)))] == \
            (3 if c.gpu == "0" else 5) * 2 ** 30
    alice, bob = burning_containers
    assert got[("jupyterhub_user_gpu_utilization_ratio", (("gpu", "0"), NODE, ("user", alice.user)))] == pytest.approx(0.8)
    assert got[("jupyterhub_user_gpu_utilization_ratio", (("gpu", "1"), NODE, ("user", bob.user)))] == pytest.approx(0.4)
    assert not any(name.startswith("jupyterhub_user_gpu") and ("user", alice.user) in labels and ("gpu", "1") in labels
                   for name, labels in got)
    assert got[("jupyterhub_host_gpus", ())] == 3
    assert got[("jupyterhub_host_gpus_free", ())] == 1      # GPUs 0 and 1 are held by the labels
    assert got[("hubmetrics_nvml_up", ())] == 1
    # the SSH user's process outside containers
    carol, _ = ssh_user_process
    assert got[("jupyterhub_user_process_memory_pss_bytes", (NODE, ("user", carol.pw_name)))] >= 40 * 2 ** 20
    # and promtool has nothing to say about the live exposition
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


def test_once_without_docker_keeps_the_rest(burning_containers, tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    _, got = run_once(env)
    assert got[("hubmetrics_source_up", (("source", "docker"),))] == 0
    assert got[("hubmetrics_sample_errors_total", (("source", "docker"),))] >= 1
    assert got[("hubmetrics_nvml_up", ())] == 0        # no NVIDIA library on this machine
    assert not any(name.startswith("jupyterhub_gpu") for name, _ in got)
    assert got[("jupyterhub_host_memory_total_bytes", ())] > 0


def fetch(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read()


def wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_daemon_serves_and_marks_docker_stale_when_it_goes_away(burning_containers, fake_nvml_dir, nvml_config,
                                                                tmp_path):
    proxy = DockerSocketProxy(str(tmp_path / "docker.sock"))
    port = free_port()
    env = nvml_env(fake_nvml_dir, nvml_config, dict(os.environ, DOCKER_HOST=f"unix://{proxy.path}"))
    daemon = subprocess.Popen([EXPORTER, "--listen", f"127.0.0.1:{port}", "--interval", "0.5"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        snap = wait_for(lambda: _snapshot(port), "the first snapshot")
        names = {c.user for c in burning_containers}
        assert names <= set(snap["users"])
        assert snap["stale"] == {"cgroups": False, "docker": False, "nvml": False}
        for c in burning_containers:
            u = snap["users"][c.user]
            assert u["containers"] == [c.name]
            assert u["gpus"] == [c.gpu]
            assert u["memory_limit_bytes"] == 512 * 2 ** 20
        assert snap["host"]["nvml_available"] is True and snap["host"]["gpus_free"] == 1
        assert b"jupyterhub_user_cpu_seconds_total" in fetch(port, "/metrics")

        proxy.cut()
        stale = wait_for(lambda: (s := _snapshot(port)) and s["stale"]["docker"] and s, "docker marked stale")
        # the last known containers are still measured from their cgroups
        first = stale["users"][burning_containers[0].user]["cpu_seconds_total"]
        later = wait_for(lambda: (s := _snapshot(port)) and s["time"] > stale["time"] + 1 and s, "a later sample")
        assert later["users"][burning_containers[0].user]["cpu_seconds_total"] > first
        assert later["stale"]["docker"] is True
        metrics = series(fetch(port, "/metrics").decode())
        assert metrics[("hubmetrics_source_up", (("source", "docker"),))] == 0
        assert daemon.poll() is None
    finally:
        daemon.terminate()
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err


def _snapshot(port):
    try:
        return json.loads(fetch(port, "/api/snapshot"))
    except OSError:
        return None



def test_daemon_follows_containers_coming_and_going(burning_containers, base_image):
    """Docker events make the daemon pick up a new container and drop a removed one."""
    from hubmetrics import labels
    port = free_port()
    daemon = subprocess.Popen([EXPORTER, "--listen", f"127.0.0.1:{port}", "--interval", "0.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name = "hmtest-jupyter-late"
    try:
        wait_for(lambda: _snapshot(port), "the first snapshot")
        subprocess.run(["docker", "run", "-d", "--name", name, "--memory", "64m",
                        "--label", f"{labels.USER}=hmtest-late", base_image, "sleep", "infinity"],
                       check=True, capture_output=True)
        snap = wait_for(lambda: (s := _snapshot(port)) and "hmtest-late" in s["users"] and s, "the new container")
        assert snap["users"]["hmtest-late"]["containers"] == [name]
        assert snap["users"]["hmtest-late"]["memory_limit_bytes"] == 64 * 2 ** 20  # no label: the cgroup's limit
        subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
        wait_for(lambda: (s := _snapshot(port)) and "hmtest-late" not in s["users"], "the container to go")
        assert daemon.poll() is None
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
