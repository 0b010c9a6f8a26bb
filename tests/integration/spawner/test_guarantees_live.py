"""Guarantees under contention, through a real hub and the kernel's own counters (cgroup v1 here;
the same checks run on cgroup v2 in the VM tier, tests/vm).

CPU: one server guaranteed 1 core (limit 2) beside three busy best-effort servers (limit 2 each),
all burning 2 threads on this 2-core machine. Before the QoS classes the guaranteed server got
25 % like each neighbour; it must get at least 0.9 of its core, and when it goes idle the
best-effort servers must get the CPU (nothing idle is wasted).

Memory: a users' parent capped at 900M; a server within its memory guarantee and a best-effort
server that keeps allocating. The OOM killer must pick the best-effort process, although the
guaranteed server's process is the larger one (the kernel's default choice).
"""
import subprocess
import time

import docker
import pytest

from profilespawner import labels, qos
from tests.harness import contention
from tests.harness.cgroups import ensure_users_parent

from .support import SCOPE, dexec, inspect, spawn_ready

pytestmark = pytest.mark.integration

M = 1024 ** 2


def profiles(image, cpu_pre=1.0, mem_pre="512M"):
    return {
        "resource_profiles": {"Burst": {"cpu_limit": 2, "mem_limit": "768M"}},
        "image_profiles": {"SingleUser": {"image": image}},
        "user_profiles": {"default": {"allowed_resources": ["Burst"], "allowed_images": ["SingleUser"],
                                      "max_preallocate": {"cpu_guarantee": cpu_pre, "mem_guarantee": mem_pre}}},
    }


def burn(container, threads=2):
    subprocess.run(["docker", "exec", "-d", container, "sh", "-c", contention.BURN.format(threads=threads)],
                   check=True)


def test_cpu_guarantee_holds_beside_busy_best_effort_servers(hub_factory, system_users, singleuser_image):
    users = ["qosg", "qosb1", "qosb2", "qosb3"]
    for user in users:
        system_users(user)
    hub = hub_factory(profiles=profiles(singleuser_image), extra_config=SCOPE, users_cgroup="jbm-qos")
    spawn_ready(hub, "qosg", {"cpu_guarantee": 1})
    for user in users[1:]:
        spawn_ready(hub, user, {})
    names = [f"jupyter-{u}" for u in users]

    # the classes the kernel tells apart: own parents, own weights
    g, *be = [inspect(n) for n in names]
    assert g["Config"]["Labels"][labels.QOS_CLASS] == qos.BURSTABLE
    assert g["HostConfig"]["CgroupParent"] == "/jbm-qos" and g["HostConfig"]["CpuShares"] == 1024
    for info in be:
        assert info["Config"]["Labels"][labels.QOS_CLASS] == qos.BESTEFFORT
        assert info["HostConfig"]["CgroupParent"] == "/jbm-qos/besteffort"

    engine = docker.from_env()
    burners = [contention.Burner(n, None) for n in names]
    contention.locate(contention.local_shell, engine, burners)
    try:
        for name in names:
            burn(name)
        got = contention.cores(contention.local_shell, burners, window=6)
        print("cores under contention:", {k: round(v, 2) for k, v in got.items()})
        assert got["jupyter-qosg"] >= 0.9 * 1.0, got

        # the guaranteed server goes idle: its CPU goes to the best-effort servers
        assert dexec("jupyter-qosg", "pkill", "-f", "while").returncode == 0
        got = contention.cores(contention.local_shell, burners, window=4)
        print("cores with the guaranteed server idle:", {k: round(v, 2) for k, v in got.items()})
        assert got["jupyter-qosg"] < 0.1, got
        assert sum(got[n] for n in names[1:]) >= 1.5, got  # of 2 cores; the hub and dockerd take some
    finally:  # quiet the machine before the hub and the servers are stopped (else a minute's teardown)
        for name in names:
            dexec(name, "pkill", "-f", "while")


def cgroup_counter(container, v1_file, key, v2_file="memory.events"):
    """A `key value` counter of the container's memory cgroup (v1 or v2 layout), read inside it."""
    for path in (f"/sys/fs/cgroup/memory/{v1_file}", f"/sys/fs/cgroup/{v2_file}"):
        r = dexec(container, "cat", path)
        if r.returncode == 0:
            return int(dict(line.split() for line in r.stdout.splitlines())[key])
    raise AssertionError(f"no memory cgroup counter {key} in {container}")


def memory_usage(container):
    for path in ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory.current"):
        r = dexec(container, "cat", path)
        if r.returncode == 0:
            return int(r.stdout)
    raise AssertionError(f"no memory usage file in {container}")


HOLD = "import time; b = b'\\x01' * ({mb} * 1024 * 1024); print('allocated', flush=True); time.sleep(600)"


def test_full_users_parent_oom_kills_the_server_above_its_guarantee(hub_factory, system_users, singleuser_image):
    ensure_users_parent("jbm-memq", memory_max=900 * M)
    for user in ("memg", "memb"):
        system_users(user)
    hub = hub_factory(profiles=profiles(singleuser_image, cpu_pre=0, mem_pre="600M"), users_cgroup="jbm-memq",
                      extra_config=SCOPE + '\nc.DockerSystemProfileSpawner.guarantee_mem_capacity = "900M"\n')
    spawn_ready(hub, "memg", {"mem_guarantee": "600M"})
    spawn_ready(hub, "memb", {})
    assert inspect("jupyter-memg")["HostConfig"]["OomScoreAdj"] == round(1000 * (1 - 600 / 900))
    assert inspect("jupyter-memb")["HostConfig"]["OomScoreAdj"] == 1000

    # the guaranteed server holds 400M (its whole server stays within its 600M guarantee) ...
    holder = subprocess.Popen(["docker", "exec", "jupyter-memg", "python3", "-c", HOLD.format(mb=400)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "allocated"
        assert memory_usage("jupyter-memg") <= 600 * M
        # ... then the best-effort server asks for more than the parent has left
        hog = dexec("jupyter-memb", "python3", "-c", "b = b'\\x01' * (500 * 1024 * 1024); print('survived')")
        assert hog.returncode == 137 and "survived" not in hog.stdout, (hog.returncode, hog.stdout, hog.stderr)
        time.sleep(0.5)
        assert holder.poll() is None, "the guaranteed server's process was killed"
        assert cgroup_counter("jupyter-memg", "memory.oom_control", "oom_kill") == 0
        assert cgroup_counter("jupyter-memb", "memory.oom_control", "oom_kill") >= 1
        assert inspect("jupyter-memg")["State"]["Running"] and inspect("jupyter-memb")["State"]["Running"]
    finally:
        holder.kill()
