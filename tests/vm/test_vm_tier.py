"""The cgroup v2 tier itself: a real Debian 12 VM (systemd PID 1, unified cgroups, Debian's
kernel), its Docker engine on the systemd cgroup driver, then the project's `docker` role
converged over real SSH and its users' slice read back from the cgroup files.
"""
import json
import time

import docker
import pytest

from tests.harness.playbooks import recap
from tests.vm.conftest import DOCKER_VARS

pytestmark = pytest.mark.vm

SLICE_DIR = "/sys/fs/cgroup/jupyterhub.slice/jupyterhub-users.slice"
M = 1024 ** 2


def read(vm, path: str) -> str:
    return vm.ssh("cat", path).stdout.strip()


def test_cgroup2_unified_with_the_controllers(vm):
    assert vm.ssh("stat", "-fc", "%T", "/sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    controllers = read(vm, "/sys/fs/cgroup/cgroup.controllers").split()
    assert {"cpu", "memory", "pids", "io"} <= set(controllers), controllers
    assert vm.ssh("test", "-e", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  check=False).returncode != 0  # no v1 hierarchy next to it


def test_systemd_is_pid_1_and_the_boot_finished(vm):
    assert read(vm, "/proc/1/comm") == "systemd"
    state = vm.ssh("systemctl", "is-system-running", check=False).stdout.strip()
    assert state in ("running", "degraded"), vm.ssh("systemctl --failed", check=False).stdout
    assert vm.ssh("uname", "-r").stdout.strip().endswith("-amd64")  # Debian's own kernel


def test_guest_clock_follows_the_host_after_loadvm(vm):
    assert abs(float(vm.ssh("date", "+%s").stdout) - time.time()) < 30


def test_docker_answers_through_the_forwarded_socket(vm):
    client = docker.DockerClient(base_url=f"unix://{vm.docker_socket()}", timeout=60)
    try:
        info = client.info()
    finally:
        client.close()
    assert info["CgroupDriver"] == "systemd"
    assert info["CgroupVersion"] == "2"
    assert info["Name"] == "jbm-vm"


def test_docker_role_configures_the_systemd_driver(converged_vm):
    daemon = json.loads(read(converged_vm, "/etc/docker/daemon.json"))
    assert "native.cgroupdriver=systemd" in daemon["exec-opts"]
    assert converged_vm.ssh("systemctl", "is-active", "docker").stdout.strip() == "active"
    assert recap(converged_vm.first_converge.stdout, converged_vm.name)["changed"] > 0


def test_users_slice_is_active_with_the_asked_limits(converged_vm):
    state = converged_vm.ssh("systemctl", "is-active", "jupyterhub-users.slice", check=False)
    assert state.stdout.strip() == "active", state.stdout + state.stderr
    assert int(read(converged_vm, f"{SLICE_DIR}/memory.max")) == 1200 * M
    assert read(converged_vm, f"{SLICE_DIR}/cpu.max") == "100000 100000"
    tasks_max = DOCKER_VARS["docker_users_slice_tasks_max"]
    assert read(converged_vm, f"{SLICE_DIR}/pids.max") == str(tasks_max)


def test_container_in_the_users_slice_reads_back_its_limits(converged_vm, vm_engine):
    container = vm_engine.containers.run(
        "local/debian:bookworm", ["sleep", "600"], detach=True, labels={"jbm-vm-test": "1"},
        cgroup_parent="jupyterhub-users.slice", mem_limit="256m", nano_cpus=500_000_000,
        pids_limit=64)
    scope = f"{SLICE_DIR}/docker-{container.id}.scope"
    container.reload()
    pid = container.attrs["State"]["Pid"]
    assert read(converged_vm, f"/proc/{pid}/cgroup") == \
        f"0::/jupyterhub.slice/jupyterhub-users.slice/docker-{container.id}.scope"
    assert int(read(converged_vm, f"{scope}/memory.max")) == 256 * M
    assert read(converged_vm, f"{scope}/cpu.max") == "50000 100000"
    assert read(converged_vm, f"{scope}/pids.max") == "64"


def test_container_memory_limit_oom_kills_inside_the_slice(converged_vm, vm_engine):
    """Enforcement, judged by the scope's memory.events: perl asks 3x the limit."""
    container = vm_engine.containers.run(
        "local/debian:bookworm",
        ["sh", "-c", "perl -e '$x = \"x\" x (192 * 1024 * 1024)'; echo perl=$?; sleep 600"],
        detach=True, labels={"jbm-vm-test": "1"}, cgroup_parent="jupyterhub-users.slice",
        mem_limit="64m", memswap_limit="64m")
    events_file = f"{SLICE_DIR}/docker-{container.id}.scope/memory.events"
    waited = converged_vm.ssh(  # at most 120 checks, a second apart
        f"for i in $(seq 120); do grep -q '^oom_kill [1-9]' {events_file} && break; sleep 1; "
        f"done; cat {events_file}", timeout=200)
    events = dict(line.split() for line in waited.stdout.splitlines())
    assert int(events["oom_kill"]) >= 1, events
    container.reload()
    assert container.status == "running"  # the kernel killed perl, not the container's sleep
    assert "perl=137" in container.logs().decode()

