"""Read a container's CPU, memory, pids and OOM numbers straight from its cgroup files.

Everything here is a pure function of a cgroup root directory (normally /sys/fs/cgroup), so a
recorded cgroup v2 tree or a hand-made v1 tree stands in for the real one in tests. The work is a
handful of small file reads per container: the cost grows with containers, never with processes.
OOM kills: `oom_kills` counts kills of the container's processes whatever limit was hit;
`own_limit_hits` tells whether the container's own limit was (v2 memory.events `oom`, v1
memory.failcnt), so a kill without one was caused by an ancestor's limit or the host.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property

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
    if v1_controller_dir(root, "memory"):
        return HYBRID if os.path.exists(os.path.join(root, "unified", "cgroup.controllers")) else V1
    return NONE


def v1_controller_dir(root: str, controller: str) -> str | None:
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

    @cached_property
    def _by_controller(self) -> dict[str, str]:
        return dict(self.dirs)

    def dir(self, controller: str) -> str | None:
        return self._by_controller.get("" if self.mode == V2 else controller)


def locate(root: str, mode: str, container_id: str, proc_cgroup: dict[str, str] | None = None,
           cgroup_parent: str = "", search_depth: int = 4) -> ContainerCgroup | None:
    """Find a container's cgroup directories.

    The init process's /proc/<pid>/cgroup (proc_cgroup) is the truth whatever the cgroup driver;
    without it (process gone, pid unknown) we try Docker's known layouts, then search
    `search_depth` levels.
    """
    def find(base: str, controller: str) -> str | None:
        rel = (proc_cgroup or {}).get(controller)
        return _first_dir(base, [rel] if rel and container_id in rel else []) \
            or _first_dir(base, candidate_paths(container_id, cgroup_parent)) \
            or _search(base, container_id, search_depth)
    return _locate(root, mode, find)


def _locate(root: str, mode: str, find) -> ContainerCgroup | None:
    """The directories `find(base, controller)` gives under each hierarchy: v2's one (controller
    ""), or every v1 controller's (the memory one required); None when there are none."""
    if mode == V2:
        found = find(root, "")
        return ContainerCgroup(V2, (("", found),)) if found else None
    if mode not in (V1, HYBRID):
        return None
    dirs = []
    for controller in V1_CONTROLLERS:
        base = v1_controller_dir(root, controller)
        found = find(base, controller) if base else None
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
# A sample re-reads only the files whose numbers move (usage, CPU, pids, OOM counters); the limits
# (memory.max, cpu.max, ...) are read by `read_limits` when the container is first seen and then
# every few samples (the Sampler's `limits_every`), as they change only on `docker update`.
# Files are read with os.open/os.read into bytes and only the needed keys are parsed: per-file
# Python overhead, not the kernel, is most of what a cgroup read costs.

def read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def int_file(path: str, default: int | None = None) -> int | None:
    try:
        return int(read_file(path))
    except (OSError, ValueError):
        return default


def keyed_value(data: bytes, key: bytes, default: int = 0) -> int:
    """The value of `key value` line `key` in a keyed file's bytes (memory.stat, cpu.stat, ...)."""
    at = data.find(key + b" ")
    while at > 0 and data[at - 1] != 10:  # not at a line start: e.g. `total_rss` when asking `rss`
        at = data.find(key + b" ", at + 1)
    if at < 0:
        return default
    end = data.find(b"\n", at)
    return int(data[at + len(key) + 1:end if end >= 0 else len(data)])


def read_or_empty(path: str) -> bytes:
    try:
        return read_file(path)
    except OSError:
        return b""


@dataclass(frozen=True)
class Limits:
    """What a container is held to; None: no limit ("max" / the v1 "unlimited" value)."""
    memory_limit_bytes: int | None
    memory_reservation_bytes: int
    cpu_limit_cores: float | None


def files(cg: ContainerCgroup) -> tuple[str, ...]:
    """Every file `read_limits` and `read_stats` read for one container (the benchmark's floor)."""
    if cg.mode == V2:
        d = cg.dir("")
        return tuple(f"{d}/{n}" for n in ("memory.current", "memory.stat", "cpu.stat", "pids.current",
                                          "memory.events", "memory.max", "memory.low", "cpu.max"))
    mem, cpuacct, cpu, pids = (cg.dir(c) for c in ("memory", "cpuacct", "cpu", "pids"))
    out = [f"{mem}/memory.usage_in_bytes", f"{mem}/memory.stat", f"{mem}/memory.oom_control",
           f"{mem}/memory.failcnt", f"{mem}/memory.limit_in_bytes", f"{mem}/memory.soft_limit_in_bytes"]
    out += [f"{cpuacct}/cpuacct.usage"] if cpuacct else []
    out += [f"{cpu}/cpu.cfs_quota_us", f"{cpu}/cpu.cfs_period_us"] if cpu else []
    out += [f"{pids}/pids.current"] if pids else []
    return tuple(out)


def read_limits(cg: ContainerCgroup) -> Limits:
    return _limits_v2(cg.dir("")) if cg.mode == V2 else _limits_v1(cg)


def read_stats(cg: ContainerCgroup, limits: Limits | None = None) -> CgroupStats:
    """One container's numbers (limits read too unless given). Raises OSError when the cgroup is
    gone (container removed)."""
    return _read_v2(cg.dir(""), limits) if cg.mode == V2 else _read_v1(cg, limits)


def _limits_v1(cg: ContainerCgroup) -> Limits:
    mem = cg.dir("memory")
    limit = int_file(f"{mem}/memory.limit_in_bytes")
    soft = int_file(f"{mem}/memory.soft_limit_in_bytes")
    cpu = cg.dir("cpu")
    cpu_limit = None
    if cpu:
        quota = int_file(f"{cpu}/cpu.cfs_quota_us", -1)
        period = int_file(f"{cpu}/cpu.cfs_period_us", 0)
        if quota and quota > 0 and period:
            cpu_limit = quota / period
    return Limits(memory_limit_bytes=limit if limit is not None and limit < V1_UNLIMITED else None,
                  memory_reservation_bytes=soft if soft is not None and soft < V1_UNLIMITED else 0,
                  cpu_limit_cores=cpu_limit)


def _read_v1(cg: ContainerCgroup, limits: Limits | None) -> CgroupStats:
    mem = cg.dir("memory")
    usage = int(read_file(f"{mem}/memory.usage_in_bytes"))  # raises if the container is gone
    stat = read_or_empty(f"{mem}/memory.stat")
    inactive = keyed_value(stat, b"total_inactive_file", keyed_value(stat, b"inactive_file"))
    limits = limits or _limits_v1(cg)
    cpuacct, pids = cg.dir("cpuacct"), cg.dir("pids")
    return CgroupStats(
        cpu_seconds=(int_file(f"{cpuacct}/cpuacct.usage", 0) if cpuacct else 0) / 1e9,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_rss_bytes=keyed_value(stat, b"total_rss", keyed_value(stat, b"rss")),
        memory_limit_bytes=limits.memory_limit_bytes,
        memory_reservation_bytes=limits.memory_reservation_bytes,
        cpu_limit_cores=limits.cpu_limit_cores,
        pids=int_file(f"{pids}/pids.current", 0) if pids else 0,
        oom_kills=keyed_value(read_or_empty(f"{mem}/memory.oom_control"), b"oom_kill"),
        own_limit_hits=int_file(f"{mem}/memory.failcnt", 0) or 0,
    )


def _max_or_none(path: str) -> int | None:
    try:
        text = read_file(path).strip()
    except OSError:
        return None
    return None if text == b"max" else int(text)


def _limits_v2(d: str) -> Limits:
    cpu_limit = None
    try:
        quota, _, period = read_file(f"{d}/cpu.max").strip().partition(b" ")
        if quota != b"max" and int(period or 0) > 0:
            cpu_limit = int(quota) / int(period)
    except (OSError, ValueError):
        pass
    return Limits(memory_limit_bytes=_max_or_none(f"{d}/memory.max"),
                  memory_reservation_bytes=_max_or_none(f"{d}/memory.low") or 0,
                  cpu_limit_cores=cpu_limit)


def _read_v2(d: str, limits: Limits | None) -> CgroupStats:
    usage = int(read_file(f"{d}/memory.current"))  # raises if the container is gone
    stat = read_or_empty(f"{d}/memory.stat")
    events = read_or_empty(f"{d}/memory.events")
    limits = limits or _limits_v2(d)
    return CgroupStats(
        cpu_seconds=keyed_value(read_or_empty(f"{d}/cpu.stat"), b"usage_usec") / 1e6,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - keyed_value(stat, b"inactive_file")),
        memory_rss_bytes=keyed_value(stat, b"anon"),
        memory_limit_bytes=limits.memory_limit_bytes,
        memory_reservation_bytes=limits.memory_reservation_bytes,
        cpu_limit_cores=limits.cpu_limit_cores,
        pids=int_file(f"{d}/pids.current", 0) or 0,
        oom_kills=keyed_value(events, b"oom_kill"),
        own_limit_hits=keyed_value(events, b"oom"),
    )


def ancestor_memory_limit(cg: ContainerCgroup, root: str) -> int | None:
    """The tightest memory limit above the container (its slice, the users' slice...), None if
    only the host's memory bounds it. Read only when an OOM kill needs explaining."""
    d = cg.dir("" if cg.mode == V2 else "memory")
    tightest = None
    root = os.path.normpath(root)
    d = os.path.dirname(os.path.normpath(d))
    while d.startswith(root) and len(d) > len(root):
        if cg.mode == V2:
            limit = _max_or_none(f"{d}/memory.max")
        else:
            limit = int_file(f"{d}/memory.limit_in_bytes")
            limit = limit if limit is not None and limit < V1_UNLIMITED else None
        if limit is not None and (tightest is None or limit < tightest):
            tightest = limit
        d = os.path.dirname(d)
    return tightest


def locate_slice(root: str, mode: str, slice_name: str, proc_cgroup: dict[str, str] | None = None
                 ) -> ContainerCgroup | None:
    """A systemd slice's cgroup directories (e.g. the users' slice), as a ContainerCgroup so that
    `read_limits` reads its MemoryMax and CPUQuota the way it reads a container's limits.

    The slice is at `systemd_slice_path(slice_name)` under each hierarchy, or under systemd's own
    root when systemd runs in a container with the host's cgroup namespace (proc_cgroup: PID 1's
    /proc/1/cgroup, whose init.scope's parent is that root). None when there is no such slice."""
    rel = systemd_slice_path(slice_name)

    def under(base: str, controller: str) -> str | None:
        own = (proc_cgroup or {}).get(controller, "")
        prefixes = [os.path.dirname(own.rstrip("/"))] if own.rstrip("/").endswith("init.scope") else []
        return _first_dir(base, [f"{p.strip('/')}/{rel}".lstrip("/") for p in prefixes] + [rel])
    return _locate(root, mode, under)


def reached_own_limit(cg: ContainerCgroup) -> bool:
    """v1: the container's usage high watermark reached its own limit (some time in its life).
    v2 needs no such guess (memory.events `oom`)."""
    if cg.mode == V2:
        return False
    mem = cg.dir("memory")
    limit = int_file(f"{mem}/memory.limit_in_bytes")
    peak = int_file(f"{mem}/memory.max_usage_in_bytes")
    return limit is not None and limit < V1_UNLIMITED and peak is not None and peak >= limit - 4096
