"""Guarantees on the kernel users have: cgroup v2, systemd PID 1, Debian 12's docker.io with the
systemd driver and the docker role's slices, in a real VM (tests/harness/vm.py).

Containers get the spawner's own Docker arguments (dockerargs.host_config, the pure path the
spawner uses), and everything is judged from the containers' own cgroup files and counters:
limits read back, CPU delivered under contention over the guest's own clock, OOM kills.
"""
import json
from pathlib import Path

import pytest

from profilespawner import dockerargs, qos
from tests.harness import contention
from tests.vm.conftest import DOCKER_VARS

pytestmark = pytest.mark.vm

M = 1024 ** 2
USERS = "/sys/fs/cgroup/jupyterhub.slice/jupyterhub-users.slice"
BESTEFFORT = f"{USERS}/jupyterhub-users-besteffort.slice"
SLICE_MEMORY = 1200 * M                                        # DOCKER_VARS' MemoryMax
SLICE_CPUS = float(DOCKER_VARS["docker_users_slice_cpu_quota"].rstrip("%")) / 100
LABELS = {"jbm-vm-test": "guarantees"}


def shell_of(vm):
    return lambda script: vm.ssh(script, timeout=120).stdout


def read(vm, path):
    return vm.ssh("cat", path).stdout.strip()


@pytest.fixture
def burners(converged_vm, vm_engine):
    made = []

    def start(specs, **kwargs):
        new = [contention.Burner(name, req) for name, req in specs]
        contention.start_burners(vm_engine, "local/debian:bookworm", new, "jupyterhub-users.slice",
                                 labels=LABELS, mem_capacity=SLICE_MEMORY, **kwargs)
        made.extend(new)
        contention.locate(shell_of(converged_vm), vm_engine, new)
        return new

    yield start
    for b in made:
        vm_engine.containers.get(b.name).remove(force=True)


def test_each_class_lands_in_its_slice_with_its_files(converged_vm, burners):
    g, be = burners([("v2-g", contention.request(2, 0.5, 512 * M, 256 * M)), ("v2-be", contention.request(0.5))],
                    threads=1)
    assert g.cgroup_dir.startswith(f"{USERS}/docker-") and g.cgroup_dir.endswith(".scope")
    assert be.cgroup_dir.startswith(f"{BESTEFFORT}/docker-")
    assert read(converged_vm, f"{BESTEFFORT}/cpu.weight") == "1"
    assert read(converged_vm, f"{USERS}/cpu.weight") == "10000"
    assert read(converged_vm, "/sys/fs/cgroup/jupyterhub.slice/cpu.weight") == "10000"
    # the guaranteed container's own files: what the spawner asked, as the kernel holds it
    assert read(converged_vm, f"{g.cgroup_dir}/memory.max") == str(512 * M)
    assert read(converged_vm, f"{g.cgroup_dir}/memory.low") == str(256 * M)
    assert read(converged_vm, f"{g.cgroup_dir}/memory.swap.max") == "0"  # memswap == mem: no swap escape
    assert read(converged_vm, f"{g.cgroup_dir}/cpu.max") == "200000 100000"
    shares = qos.cpu_shares(qos.BURSTABLE, 0.5)
    assert read(converged_vm, f"{g.cgroup_dir}/cpu.weight") == str(1 + ((shares - 2) * 9999) // 262142)
    assert read(converged_vm, f"{g.cgroup_dir}/pids.max") == "64"
    assert read(converged_vm, f"{be.cgroup_dir}/cpu.max") == "50000 100000"
    assert read(converged_vm, f"{be.cgroup_dir}/memory.low") == "0"
    pid = converged_vm.ssh(f"head -1 {g.cgroup_dir}/cgroup.procs").stdout.strip()
    expected = dockerargs.host_config(g.req, mem_capacity=SLICE_MEMORY)["oom_score_adj"]
    assert read(converged_vm, f"/proc/{pid}/oom_score_adj") == str(expected)


@pytest.mark.parametrize("n_besteffort", [3])
def test_cpu_guarantee_holds_and_idle_cpu_goes_to_best_effort(converged_vm, burners, n_besteffort):
    specs = [("v2-cg", contention.request(2, SLICE_CPUS))]
    specs += [(f"v2-cb{i}", contention.request(2)) for i in range(n_besteffort)]
    running = burners(specs)
    got = contention.cores(shell_of(converged_vm), running, window=8, warmup=2)
    print("v2 cores under contention:", {k: round(v, 2) for k, v in got.items()})
    assert got["v2-cg"] >= 0.9 * SLICE_CPUS, got
    converged_vm.ssh(f"echo 1 > {running[0].cgroup_dir}/cgroup.freeze")  # the guaranteed server goes idle
    got = contention.cores(shell_of(converged_vm), running, window=6, warmup=1)
    print("v2 cores, guaranteed server stopped:", {k: round(v, 2) for k, v in got.items()})
    assert sum(v for k, v in got.items() if k != "v2-cg") >= 0.8 * SLICE_CPUS, got


PROBE = Path(__file__).resolve().parent / "oom_order_probe.py"
G_ANON, OVER, HOG = 640, 120, 800   # MiB; the slice holds 1200


def test_full_users_slice_oom_kills_best_effort_and_spares_the_guarantee(converged_vm, burners):
    """A server guaranteed 800M (memory.low) holds 640M, within its guarantee. A best-effort server
    then asks what leaves the slice 120M over its limit, and a best-effort hog 800M more: nothing
    is reclaimable (no swap, and the servers' images are read-only, so no page cache), and the
    OOM killer kills in the best-effort server every time, never in the guaranteed one, though
    its holder is the largest process (without memory.low and the spawner's oom_score_adj it
    would be the victim). Driven and watched in ONE ssh (oom_order_probe.py, bounded waits);
    judged by memory.events and the processes left in each cgroup, never by time."""
    g, be = burners([("v2-mg", contention.request(1, 0, 900 * M, 800 * M)),
                     ("v2-mb", contention.request(1, 0, 900 * M))], threads=0)
    converged_vm.put(PROBE, "/root/oom_order_probe.py")
    request = {"slice": USERS, "guaranteed": [g.name, g.cgroup_dir], "besteffort": [be.name, be.cgroup_dir],
               "g_anon_mb": G_ANON, "g_cache_mb": 0, "b_cache_mb": 0, "over_mb": OVER,
               "hog_mb": HOG, "timeout": 1200}
    done = converged_vm.ssh("python3 /root/oom_order_probe.py", input=json.dumps(request), timeout=1500)
    got = json.loads(done.stdout)
    before, reclaim, oom = got["before"], got["reclaim"], got["oom"]
    summary = {phase: {k: {"anon_mb": got[phase][k]["anon"] // M if k != "slice" else None,
                           "current_mb": got[phase][k]["current"] // M,
                           "oom": got[phase][k]["events"].get("oom"),
                           "oom_kill": got[phase][k]["events"].get("oom_kill"),
                           "max": got[phase][k]["events"].get("max")} for k in ("g", "b", "slice")}
               for phase in ("before", "reclaim", "oom")}
    print("v2 OOM order:", json.dumps({"b_hold_mb": got["b_hold_mb"], "hog": got["hog"], **summary}))
    assert got["g_held"] and all(s["rc"] == 0 for s in got["steps"]), got["steps"]
    # the guarantee as the kernel holds it, read back from the container's own cgroup file
    assert before["g"]["low"] == 800 * M and before["b"]["low"] == 0, (before["g"]["low"], before["b"]["low"])
    assert before["g"]["current"] <= 800 * M, before["g"]["current"]            # within its guarantee
    holder = [p for p in before["g"]["procs"] if p["comm"] == "perl"]
    assert len(holder) == 1, before["g"]["procs"]
    expected_g = dockerargs.host_config(g.req, mem_capacity=SLICE_MEMORY)["oom_score_adj"]
    expected_b = dockerargs.host_config(be.req, mem_capacity=SLICE_MEMORY)["oom_score_adj"]
    assert holder[0]["oom_score_adj"] == expected_g, holder
    assert {p["oom_score_adj"] for p in before["b"]["procs"]} == {expected_b}, before["b"]["procs"]
    # the slice filled: every kill happened in the best-effort server, at the slice's limit (not its own)
    assert got["hog"]["rc"] == 137 and "survived" not in got["hog"]["out"], got["hog"]
    for phase in (reclaim, oom):
        assert phase["g"]["events"]["oom_kill"] == 0 and phase["g"]["events"]["oom"] == 0, summary
    assert oom["b"]["events"]["oom_kill"] >= 1 and oom["b"]["events"]["oom"] == 0, summary["oom"]
    assert oom["slice"]["events"]["oom"] >= 1 and oom["slice"]["events"]["oom_kill"] >= 1, summary["oom"]
    # every kill in the slice during this test (the session's VM may carry earlier ones) was b's
    slice_kills = oom["slice"]["events"]["oom_kill"] - before["slice"]["events"].get("oom_kill", 0)
    assert slice_kills == oom["b"]["events"]["oom_kill"] - before["b"]["events"].get("oom_kill", 0), summary
    assert holder[0]["pid"] in [p["pid"] for p in oom["g"]["procs"]], oom["g"]["procs"]   # it survived
    assert oom["g"]["anon"] >= G_ANON * M, summary["oom"]                                  # with its memory
    assert [p for p in oom["b"]["procs"] if p["comm"] == "perl"] == [], oom["b"]["procs"]  # none left
