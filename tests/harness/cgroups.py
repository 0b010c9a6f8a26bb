"""The users' parent cgroups for the test engine (cgroupfs driver), as the docker role makes them.

On a server the `docker` role installs jupyterhub-users.slice (limits) and
jupyterhub-users-besteffort.slice (CPUWeight=1) and Docker's systemd driver puts containers
under them. The test engine here uses the cgroupfs driver, so the harness makes the same two
levels itself: `/<name>` with the slice's high CPU weight and optional limits, and
`/<name>/besteffort` with the minimum CPU weight, in the v1 controllers or the v2 unified tree,
whichever this machine has.
"""
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
# the users' slice outweighs the rest of the machine (the docker role's docker_users_slice_cpu_weight):
# what guarantees promise must reach the users even while the OS is busy; the slice's CPU quota,
# not its weight, is what keeps the OS its reserve
USERS_CPU_WEIGHT = 10000


def v2_weight(shares: int) -> int:
    """What runc writes to cgroup v2's cpu.weight for Docker's cpu.shares
    (libcontainer/cgroups ConvertCPUSharesToCgroupV2Value)."""
    return 1 + ((shares - 2) * 9999) // 262142


def unified() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def _write(path: Path, value) -> None:
    path.write_text(f"{value}\n")


def ensure_users_parent(name: str, memory_max: int | None = None, cpus: float | None = None) -> str:
    """Create /<name> and /<name>/besteffort (minimum CPU weight); return the cgroup_parent path.

    memory_max (bytes) and cpus (cores) cap the whole parent, like the slice's MemoryMax/CPUQuota;
    None leaves the parent's limit as it is (unlimited when new)."""
    name = name.strip("/")
    if unified():
        parent, be = ROOT / name, ROOT / name / "besteffort"
        for d in (parent, be):
            d.mkdir(exist_ok=True)
            _write(d.parent / "cgroup.subtree_control", "+cpu +memory +pids")
        _write(be / "cpu.weight", 1)
        _write(parent / "cpu.weight", USERS_CPU_WEIGHT)
        if memory_max:
            _write(parent / "memory.max", memory_max)
        if cpus:
            _write(parent / "cpu.max", f"{int(cpus * 100_000)} 100000")
    else:
        for controller in ("cpu", "memory"):
            (ROOT / controller / name / "besteffort").mkdir(parents=True, exist_ok=True)
        _write(ROOT / "cpu" / name / "besteffort" / "cpu.shares", 2)
        _write(ROOT / "cpu" / name / "cpu.shares", USERS_CPU_WEIGHT * 1024 // 100)  # as systemd maps it
        if memory_max:
            _write(ROOT / "memory" / name / "memory.limit_in_bytes", memory_max)
        if cpus:
            _write(ROOT / "cpu" / name / "cpu.cfs_quota_us", int(cpus * 100_000))
    return "/" + name


def cpu_seconds(container_id: str, parent: str) -> float:
    """CPU time a container used, read from its cgroup on this machine (cgroupfs layout)."""
    if unified():
        for line in (ROOT / parent.strip("/") / container_id / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        raise RuntimeError(f"no usage_usec in the cpu.stat of {container_id}")
    for controller in ("cpuacct", "cpu,cpuacct"):
        path = ROOT / controller / parent.strip("/") / container_id / "cpuacct.usage"
        if path.exists():
            return int(path.read_text()) / 1e9
    raise RuntimeError(f"no cpuacct.usage for container {container_id} under {parent}")
