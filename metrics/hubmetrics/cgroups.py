"""Read a container's CPU, memory, pids and OOM numbers straight from its cgroup files.

Everything here is a pure function of a cgroup root directory (normally /sys/fs/cgroup), so a
recorded cgroup v2 tree or a hand-made v1 tree stands in for the real one in tests. The work is a
handful of small file reads per container: the cost grows with containers, never with processes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .snapshot import CgroupStats

V1 = "v1"            # legacy: one hierarchy per controller
HYBRID = "hybrid"    # v1 controllers plus an empty v2 hierarchy at <root>/unified (Debian 11/12 option)
V2 = "v2"            # unified: one hierarchy, all controllers
NONE = "none"

V1_CONTROLLERS = ("cpuacct", "cpu", "memory", "pids")
# Above this the v1 kernel reports "no limit" (PAGE_COUNTER_MAX rounded to pages).
V1_UNLIMITED = 1 << 62

CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def detect_mode(root: str) -> str:
    """Which cgroup layout lives under root: the v2 root has cgroup.controllers itself."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return V2
    if _v1_controller_dir(root, "memory"):
        return HYBRID if os.path.exists(os.path.join(root, "unified", "cgroup.controllers")) else V1
    return NONE


def _v1_controller_dir(root: str, controller: str) -> str | None:
    """The mount of one v1 controller, also when co-mounted (e.g. `cpu,cpuacct`)."""
    direct = os.path.join(root, controller)
    if os.path.isdir(direct):
        return direct
    try:
        for name in os.listdir(root):
            if controller in name.split(","):
                return os.path.join(root, name)
    except OSError:
        pass
    return None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/<pid>/cgroup` as {controller: path}; the v2 line ("0::/path") has controller ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller.removeprefix("name=")] = path
    return paths


def container_id_in(cgroup_text: str) -> str | None:
    """The Docker container id a process belongs to, from its /proc/<pid>/cgroup text."""
    match = CONTAINER_ID.search(cgroup_text)
    return match.group(1) if match else None


def read_proc_cgroup(proc_root: str, pid: int) -> str | None:
    try:
        with open(f"{proc_root}/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return None


def systemd_slice_path(slice_name: str) -> str:
    """systemd nests dashed slices: `a-b.slice` lives at `a.slice/a-b.slice`."""
    if not slice_name.endswith(".slice") or slice_name == "-.slice":
        return slice_name
    parts = slice_name[: -len(".slice")].split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def candidate_paths(container_id: str, cgroup_parent: str = "") -> list[str]:
    """Where Docker puts a container's cgroup (relative to a hierarchy root), most likely first.

    cgroupfs driver: `<parent or docker>/<id>`; systemd driver: `<slice path>/docker-<id>.scope`.
    """
    parent = cgroup_parent.strip("/")
    scope = f"docker-{container_id}.scope"
    paths = []
    if parent.endswith(".slice"):
        paths += [f"{systemd_slice_path(parent)}/{scope}", f"{parent}/{scope}"]
    elif parent:
        paths.append(f"{parent}/{container_id}")
    paths += [f"docker/{container_id}", f"system.slice/{scope}"]
    return paths


@dataclass(frozen=True)
class ContainerCgroup:
    """The directories holding one container's cgroup files, per controller ("" for v2)."""
    mode: str
    dirs: tuple[tuple[str, str], ...]

    def dir(self, controller: str) -> str | None:
        return dict(self.dirs).get("" if self.mode == V2 else controller)


def locate(root: str, mode: str, container_id: str, proc_cgroup: dict[str, str] | None = None,
           cgroup_parent: str = "") -> ContainerCgroup | None:
    """Find a container's cgroup directories.

    The init process's /proc/<pid>/cgroup (proc_cgroup) is the truth whatever the cgroup driver;
    without it (process gone, pid unknown) we try Docker's known layouts, then search.
    """
    if mode == V2:
        rel = (proc_cgroup or {}).get("")
        found = _first_dir(root, [rel] if rel and container_id in rel else []) \
            or _first_dir(root, candidate_paths(container_id, cgroup_parent)) \
            or _search(root, container_id)
        return ContainerCgroup(V2, (("", found),)) if found else None
    if mode not in (V1, HYBRID):
        return None
    dirs = []
    for controller in V1_CONTROLLERS:
        base = _v1_controller_dir(root, controller)
        if base is None:
            continue
        rel = (proc_cgroup or {}).get(controller)
        found = _first_dir(base, [rel] if rel and container_id in rel else []) \
            or _first_dir(base, candidate_paths(container_id, cgroup_parent)) \
            or _search(base, container_id)
        if found:
            dirs.append((controller, found))
    return ContainerCgroup(mode, tuple(dirs)) if dict(dirs).get("memory") else None


def _first_dir(base: str, rels: list[str]) -> str | None:
    for rel in rels:
        path = os.path.join(base, rel.strip("/"))
        if os.path.isdir(path):
            return path
    return None


def _search(base: str, container_id: str, depth: int = 4) -> str | None:
    """Last resort: walk a few levels for `<id>` or `docker-<id>.scope` (e.g. a custom parent)."""
    wanted = (container_id, f"docker-{container_id}.scope")
    level = [base]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if e.name in wanted:
                        return e.path
                    nxt.append(e.path)
        level = nxt
    return None


# --- reading the files -------------------------------------------------------------------------

def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _int_file(path: str, default: int | None = None) -> int | None:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return default


def _keyed(path: str) -> dict[str, int]:
    """Files of `key value` lines: memory.stat, cpu.stat, memory.events, memory.oom_control."""
    out = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            pass
    return out


def read_stats(cg: ContainerCgroup) -> CgroupStats:
    """One container's numbers. Raises OSError when the cgroup is gone (container removed)."""
    return _read_v2(cg.dir("")) if cg.mode == V2 else _read_v1(cg)


def _read_v1(cg: ContainerCgroup) -> CgroupStats:
    mem = cg.dir("memory")
    usage = int(_read(f"{mem}/memory.usage_in_bytes").strip())  # raises if the container is gone
    stat = _keyed(f"{mem}/memory.stat")
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    limit = _int_file(f"{mem}/memory.limit_in_bytes")
    soft = _int_file(f"{mem}/memory.soft_limit_in_bytes")
    cpuacct = cg.dir("cpuacct")
    cpu_ns = _int_file(f"{cpuacct}/cpuacct.usage", 0) if cpuacct else 0
    cpu = cg.dir("cpu")
    cpu_limit = None
    if cpu:
        quota = _int_file(f"{cpu}/cpu.cfs_quota_us", -1)
        period = _int_file(f"{cpu}/cpu.cfs_period_us", 0)
        if quota and quota > 0 and period:
            cpu_limit = quota / period
    pids = cg.dir("pids")
    return CgroupStats(
        cpu_seconds=cpu_ns / 1e9,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_rss_bytes=stat.get("total_rss", stat.get("rss", 0)),
        memory_limit_bytes=limit if limit is not None and limit < V1_UNLIMITED else None,
        memory_reservation_bytes=soft if soft is not None and soft < V1_UNLIMITED else 0,
        cpu_limit_cores=cpu_limit,
        pids=_int_file(f"{pids}/pids.current", 0) if pids else 0,
        oom_kills=_keyed(f"{mem}/memory.oom_control").get("oom_kill", 0),
    )


def _max_or_none(path: str) -> int | None:
    try:
        text = _read(path).strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _read_v2(d: str) -> CgroupStats:
    usage = int(_read(f"{d}/memory.current").strip())  # raises if the container is gone
    stat = _keyed(f"{d}/memory.stat")
    cpu_limit = None
    try:
        quota, _, period = _read(f"{d}/cpu.max").strip().partition(" ")
        if quota != "max" and int(period or 0) > 0:
            cpu_limit = int(quota) / int(period)
    except (OSError, ValueError):
        pass
    return CgroupStats(
        cpu_seconds=_keyed(f"{d}/cpu.stat").get("usage_usec", 0) / 1e6,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - stat.get("inactive_file", 0)),
        memory_rss_bytes=stat.get("anon", 0),
        memory_limit_bytes=_max_or_none(f"{d}/memory.max"),
        memory_reservation_bytes=_max_or_none(f"{d}/memory.low") or 0,
        cpu_limit_cores=cpu_limit,
        pids=_int_file(f"{d}/pids.current", 0) or 0,
        oom_kills=_keyed(f"{d}/memory.events").get("oom_kill", 0),
    )
