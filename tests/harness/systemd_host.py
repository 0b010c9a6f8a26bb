"""Throwaway "servers": containers with systemd as PID 1 (TESTBED.md recipe), for the roles.

Never --privileged (the VM lacks CAP_SYS_RESOURCE). On a cgroup v1 machine, per-controller
cgroup binds so unit limits are enforced without touching the host's cgroup tmpfs; on a cgroup v2
machine (unified, e.g. the VM tier) the one cgroup2 mount is bound read-write instead. `docker_inside=True` adds what the hub's
own dockerd needs inside (every capability but SYS_RESOURCE, seccomp off, all devices, an
anonymous /var/lib/docker volume).
"""
import os
import subprocess
import time
from dataclasses import dataclass

from .images import CACHE_DIR, SYSTEMD_IMAGE, ensure_systemd_image

CCACHE_DIR = CACHE_DIR / "ccache"


def keep_hosts() -> bool:
    """JBM_KEEP_HOSTS=1 leaves the system-test containers running for inspection."""
    return os.environ.get("JBM_KEEP_HOSTS", "") not in ("", "0")


def reuse_hosts() -> bool:
    """JBM_REUSE_HOSTS=1 (with JBM_KEEP_HOSTS=1, to iterate on tests) takes a running host
    container of the same name as it is instead of starting a fresh one: its converges are
    re-runs then, so a "first converge changes something" check does not hold."""
    return os.environ.get("JBM_REUSE_HOSTS", "") not in ("", "0")


CGROUP_CONTROLLERS = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory",
                      "pids", "systemd", "unified")


def is_cgroup_v2() -> bool:
    """True on a unified (cgroup v2) machine: /sys/fs/cgroup is a cgroup2 mount."""
    fs_type = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True,
                             text=True, check=True).stdout.strip()
    return fs_type == "cgroup2fs"


def run_args(name: str, docker_inside: bool = False, image: str = SYSTEMD_IMAGE,
             cgroup_v2: bool | None = None) -> list[str]:
    """The `docker run` command line for a systemd host container (cgroup_v2: None = detect)."""
    if cgroup_v2 is None:
        cgroup_v2 = is_cgroup_v2()
    args = ["docker", "run", "-d", "--name", name, "--hostname", name, "--cgroupns=host",
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            # one compiler cache for every host's CPython build (CC="ccache gcc" where the tests
            # build it): the second build of the same source and flags compiles nothing again
            # (docker run makes the directory when it is missing)
            "-v", f"{CCACHE_DIR}:/root/.cache/ccache"]
    if cgroup_v2:
        args += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    else:
        args += ["--tmpfs", "/sys/fs/cgroup"]
        for controller in CGROUP_CONTROLLERS:
            args += ["-v", f"/sys/fs/cgroup/{controller}:/sys/fs/cgroup/{controller}:rw"]
    if docker_inside:
        args += ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
                 "--security-opt", "seccomp=unconfined", "--device-cgroup-rule", "a *:* rwm",
                 "-v", "/var/lib/docker"]
    else:
        args += ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN"]
    return args + [image]


@dataclass
class SystemdHost:
    """A running systemd host container; `exec` runs a command inside it."""
    name: str

    def exec(self, *cmd: str, check: bool = True, input: str | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-i", self.name, *cmd], capture_output=True,
                              text=True, check=check, input=input, timeout=timeout)

    @property
    def ip(self) -> str:
        return subprocess.run(
            ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", self.name],
            capture_output=True, text=True, check=True).stdout.strip()

    def wait_booted(self, timeout: float = 90.0) -> None:
        """Wait until systemd reports the boot finished (running or degraded)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.exec("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(1)
        raise RuntimeError(f"{self.name}: systemd did not finish booting (state {state!r})")

    def load_image(self, image: str) -> None:
        """Copy an image from the machine's engine into the host's own dockerd."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "exec", "-i", self.name, "docker", "load"], stdin=save.stdout,
                       check=True, stdout=subprocess.DEVNULL)
        if save.wait() != 0:
            raise RuntimeError(f"docker save {image} failed")

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True)


def start_systemd_host(name: str, docker_inside: bool = False, image: str | None = None) -> SystemdHost:
    """Start (replacing any leftover of the same name) and wait for boot; `image`: one built
    FROM the systemd image (default: that image)."""
    image = image or ensure_systemd_image()
    host = SystemdHost(name)
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                             capture_output=True, text=True).stdout.strip() == "true"
    if reuse_hosts() and running:
        host.wait_booted()
        return host
    host.remove()
    subprocess.run(run_args(name, docker_inside, image), check=True, capture_output=True)
    host.wait_booted()
    return host
