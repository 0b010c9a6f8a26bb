"""Guarantees on the kernel users have: cgroup v2, systemd PID 1, Debian 12's docker.io with the
systemd driver and the docker role's slices, in a real VM (tests/harness/vm.py).

Containers get the spawner's own Docker arguments (dockerargs.host_config, the pure path the
spawner uses), and everything is judged from the containers' own cgroup files and counters:
limits read back, CPU delivered under contention over the guest's own clock, OOM kills.
"""
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
