"""Fixtures of the cgroup v2 tier: a real Debian 12 VM per test module (tests/harness/vm.py).

`vm` is a VM as booted (the docker role NOT converged); `converged_vm` is a VM of its own with
the docker role converged over SSH (the users' slice in place) and local/debian:bookworm loaded.
"""
import time
from pathlib import Path

import docker
import pytest

from tests.harness import playbooks
from tests.harness.vm import start_vm

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "docker.yml"
# Small enough for the 2 GiB, 2-vCPU VM; read back from the cgroup files by the tests.
DOCKER_VARS = {
    "docker_users_slice_memory_max": "1200M",
    "docker_users_slice_cpu_quota": "100%",
    "docker_users_slice_tasks_max": 2048,
}


def converge_docker(vm, workdir: Path, extra_vars: dict | None = None):
    """The docker role over real SSH; the finished ansible-playbook run."""
    inventory = vm.inventory(workdir / "inventory.ini")
    return playbooks.run_playbook(workdir, inventory, {**DOCKER_VARS, **(extra_vars or {})},
                                  PLAYBOOK, timeout=900)


def _module_vm_name(request, suffix: str) -> str:
    return f"{request.module.__name__.rsplit('.', 1)[-1].replace('_', '-')}-{suffix}"


@pytest.fixture(scope="module")
def vm(request):
    """A VM of this test module's own, resumed from the booted snapshot."""
    with start_vm(_module_vm_name(request, "vm")) as machine:
        yield machine


@pytest.fixture(scope="session")
def converged_vm(tmp_path_factory, base_image):
    """A VM with the docker role converged and local/debian:bookworm loaded, shared by the
    modules of this tier (converging costs minutes in the emulated guest); tests remove the
    containers they make. `converged_vm.first_converge` keeps the ansible-playbook run.
    """
    workdir = tmp_path_factory.mktemp("vm-docker-role")
    with start_vm("tier-docker") as machine:
        started = time.monotonic()
        first = converge_docker(machine, workdir)
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
        converged = time.monotonic()
        machine.load_image(base_image)
        print(f"{machine.name}: docker role converged in {converged - started:.0f}s, "
              f"{base_image} loaded in {time.monotonic() - converged:.0f}s")
        machine.first_converge = first
        yield machine


@pytest.fixture(scope="session")
def vm_engine(converged_vm):
    """docker-py on the converged VM's engine (through an ssh-forwarded socket)."""
    # the emulated guest is ~12x slower than the host, more on a loaded machine: generous timeouts
    client = docker.DockerClient(base_url=f"unix://{converged_vm.docker_socket()}", timeout=600)
    yield client
    for container in client.containers.list(all=True, filters={"label": "jbm-vm-test"}):
        container.remove(force=True)
    client.close()
