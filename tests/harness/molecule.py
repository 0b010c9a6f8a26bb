"""Molecule's platforms for the roles' scenarios (roles/<role>/molecule/default): the project's own
throwaway servers, created and destroyed by tests/molecule/{create,destroy}.yml through this module.

A platform in a scenario's molecule.yml is `{name, kind}`, kind one of
- `systemd`: a systemd host container from the local image (systemd_host.py);
- `systemd-docker`: the same with what a dockerd inside needs (the hub's own engine); with
  `docker_preinstalled: true`, from the image with Debian's docker.io already in (swarm.py's
  node image), for scenarios whose role is not the docker role;
- `vm`: the Debian 12 VM (vm.py: Debian's kernel, cgroup v2), for what this machine's kernel
  lacks (NFS, quota formats). It is launched detached, so it outlives the create step; destroy
  quits it through its monitor.

    python -m tests.harness.molecule create PLATFORMS_JSON INSTANCE_CONFIG
    python -m tests.harness.molecule destroy PLATFORMS_JSON INSTANCE_CONFIG

create writes Molecule's instance config (the delegated driver's connection facts: the docker
connection for containers, SSH on a loopback port for VMs); destroy removes the servers and
empties it. Both are idempotent.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import yaml

from . import swarm
from . import vm as vms
from .systemd_host import SystemdHost, start_systemd_host

KINDS = ("systemd", "systemd-docker", "vm")
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
# Scenarios at once. They run beside the other system tests (tests/system/conftest.py starts
# them with the tier), which already take about one core; a CPython build or an emulated VM takes
# both.
PARALLEL = 2
TIMEOUT = 2400
# The longest first (measured), so the short ones fill in beside them; python last: by then the
# site's CPython build (tests/system/site) has filled the compiler cache it builds through.
LONGEST_FIRST = ("jupyterhub", "metrics", "swarm", "quotas", "nfs_server", "nfs_client", "node",
                 "hub", "docker", "prometheus", "firewall", "ldap_client", "sshd", "apt_cache", "python")
VM_STATE = "molecule-vm.json"  # in the VM's run directory: pid and ports, for destroy


def scenario(role: str) -> Path:
    return ROLES_DIR / role / "molecule" / "default" / "molecule.yml"


def run_scenario(role: str, env: dict) -> tuple[int, str, float]:
    """`molecule test` in the role's directory: exit code, output, seconds."""
    started = time.monotonic()
    try:
        proc = subprocess.run(["molecule", "test"], cwd=ROLES_DIR / role, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = -1, f"{expired.stdout or ''}{expired.stderr or ''}\n[killed after {TIMEOUT}s]"
        subprocess.run(["molecule", "destroy"], cwd=ROLES_DIR / role, env=env, capture_output=True,
                       timeout=300)
    return code, output, time.monotonic() - started


def start_scenarios(roles, env: dict, pool: ThreadPoolExecutor) -> dict[str, Future]:
    """Every role's scenario submitted to the pool, the longest first: {role: future}."""
    order = sorted((role for role in roles if scenario(role).exists()),
                   key=lambda role: LONGEST_FIRST.index(role) if role in LONGEST_FIRST else len(LONGEST_FIRST) - 1.5)
    return {role: pool.submit(run_scenario, role, env) for role in order}


def _vm_state_files(name: str) -> list[Path]:
    return sorted(vms.RUN_ROOT.glob(f"{name}-*/{VM_STATE}")) if vms.RUN_ROOT.is_dir() else []


def start_detached_vm(name: str) -> vms.VM:
    """A VM from the booted snapshot whose qemu outlives this process, with its pid and port
    recorded for stop_detached_vm."""
    vm = vms.start_vm(name, detached=True)
    (vm.run_dir / VM_STATE).write_text(json.dumps({"pid": vm.process.pid, "port": vm.port}))
    return vm


def stop_detached_vm(name: str) -> None:
    """Quit every VM of that name started by start_detached_vm and remove its disk."""
    for state_file in _vm_state_files(name):
        run_dir = state_file.parent
        pid = json.loads(state_file.read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):  # up to 15 s
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        for disk in run_dir.glob("*.qcow2"):
            disk.unlink()
        state_file.unlink()


def create(platform: dict) -> dict:
    """Start one platform (replacing a leftover of its name); its instance-config entry."""
    name, kind = platform["name"], platform.get("kind", "systemd")
    if kind not in KINDS:
        raise SystemExit(f"platform {name}: kind={kind!r} is not one of {', '.join(KINDS)}")
    if kind == "vm":
        stop_detached_vm(name)
        vm = start_detached_vm(name)
        return {"instance": name, "address": "127.0.0.1", "port": vm.port, "user": "root",
                "identity_file": str(vm.key)}
    image = swarm.ensure_node_image() if platform.get("docker_preinstalled") else None
    start_systemd_host(name, docker_inside=kind == "systemd-docker", image=image)
    return {"instance": name, "address": name, "user": "root",
            "connection": "community.docker.docker"}


def destroy(platform: dict) -> None:
    if platform.get("kind", "systemd") == "vm":
        stop_detached_vm(platform["name"])
    else:
        SystemdHost(platform["name"]).remove()


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in ("create", "destroy"):
        raise SystemExit(__doc__)
    action, platforms, instance_config = argv[0], json.loads(argv[1]), Path(argv[2])
    if action == "create":
        entries = [create(platform) for platform in platforms]
    else:
        for platform in platforms:
            destroy(platform)
        entries = []
    instance_config.parent.mkdir(parents=True, exist_ok=True)
    instance_config.write_text("# Molecule managed\n\n" + yaml.safe_dump(entries))
    print(json.dumps(entries))


if __name__ == "__main__":
    main(sys.argv[1:])
