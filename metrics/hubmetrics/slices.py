"""Users' processes outside containers on a systemd host, read per user from their slices.

systemd puts every login session (SSH, console, cron with pam_systemd) and each user's
`user@<uid>.service` into `user.slice/user-<uid>.slice`, and keeps CPU and memory accounting
for that slice. Reading those few files per user replaces the scan of every /proc process: the
cost grows with logged-in users, not with their processes. Docker's containers live elsewhere
(system.slice or the hub's slice), so a user slice is exactly "their processes outside
containers". Pure over a cgroup root (and the /run root for the systemd marker), so a recorded or
synthetic tree stands in.

Memory differs from the /proc path: a slice reports the memory charged to it (anon + page cache +
kernel memory), minus inactive file cache, i.e. the working set as for containers. Shared pages
count once, in the slice that first touched them, not split proportionally as PSS is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .cgroups import HYBRID, V1, V2, keyed_value, read_file, read_or_empty, v1_controller_dir

NOBODY = 65534
PREFIX, SUFFIX = "user-", ".slice"


@dataclass(frozen=True)
class SliceSample:
    uid: int
    ident: int           # the slice directory's inode: a login after a full logout is a new slice
    cpu_seconds: float
    memory_bytes: int    # charged memory minus inactive file cache
    tasks: int           # processes and threads in the slice (pids.current; 0 if not accounted)


@dataclass(frozen=True)
class SliceLayout:
    """Where user.slice is in each hierarchy the numbers come from ("" for v2)."""
    mode: str
    cpu: str
    memory: str
    pids: str | None


def is_systemd_host(cgroup_root: str, mode: str, run_root: str = "/run") -> bool:
    """systemd runs the host: its runtime marker exists, or the cgroup tree has user.slice."""
    if os.path.isdir(os.path.join(run_root, "systemd", "system")):
        return True
    if mode == V2:
        return os.path.isdir(os.path.join(cgroup_root, "user.slice"))
    if mode in (V1, HYBRID):
        for controller in ("systemd", "memory"):
            base = os.path.join(cgroup_root, controller) if controller == "systemd" else \
                v1_controller_dir(cgroup_root, controller)
            if base and os.path.isdir(os.path.join(base, "user.slice")):
                return True
    return False


def layout(cgroup_root: str, mode: str) -> SliceLayout | None:
    """The user.slice directories to read, or None when CPU or memory accounting is missing for
    it (then users' processes must come from /proc)."""
    if mode == V2:
        base = os.path.join(cgroup_root, "user.slice")
        if os.path.exists(os.path.join(base, "memory.current")) and os.path.exists(os.path.join(base, "cpu.stat")):
            return SliceLayout(V2, base, base, base if os.path.exists(os.path.join(base, "pids.current")) else None)
        return None
    if mode not in (V1, HYBRID):
        return None
    dirs = {}
    for controller in ("cpuacct", "memory", "pids"):
        base = v1_controller_dir(cgroup_root, controller)
        path = os.path.join(base, "user.slice") if base else None
        dirs[controller] = path if path and os.path.isdir(path) else None
    if dirs["cpuacct"] is None or dirs["memory"] is None:
        return None
    return SliceLayout(mode, dirs["cpuacct"], dirs["memory"], dirs["pids"])


def user_slices(where: SliceLayout, min_uid: int = 1000) -> list[SliceSample]:
    """One sample per `user-<uid>.slice` of a real user (uid >= min_uid, not nobody). A user who
    logs out while we read is left out of this sample."""
    out = []
    try:
        entries = list(os.scandir(where.memory))
    except OSError:
        return out
    for entry in entries:
        name = entry.name
        if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
            continue
        try:
            uid = int(name[len(PREFIX):-len(SUFFIX)])
        except ValueError:
            continue
        if uid < min_uid or uid == NOBODY:
            continue
        try:
            out.append(_read_one(where, name, uid, entry.inode()))
        except (OSError, ValueError):
            continue  # logged out mid-sample
    return out


def _read_one(where: SliceLayout, name: str, uid: int, ident: int) -> SliceSample:
    mem = f"{where.memory}/{name}"
    if where.mode == V2:
        usage = int(read_file(f"{mem}/memory.current"))
        inactive = keyed_value(read_or_empty(f"{mem}/memory.stat"), b"inactive_file")
        cpu = keyed_value(read_file(f"{mem}/cpu.stat"), b"usage_usec") / 1e6
        tasks_file = f"{mem}/pids.current"
    else:
        usage = int(read_file(f"{mem}/memory.usage_in_bytes"))
        stat = read_or_empty(f"{mem}/memory.stat")
        inactive = keyed_value(stat, b"total_inactive_file", keyed_value(stat, b"inactive_file"))
        cpu = int(read_file(f"{where.cpu}/{name}/cpuacct.usage")) / 1e9
        tasks_file = f"{where.pids}/{name}/pids.current"
    try:
        tasks = int(read_file(tasks_file)) if where.pids else 0
    except (OSError, ValueError):
        tasks = 0
    return SliceSample(uid=uid, ident=ident, cpu_seconds=cpu, memory_bytes=max(0, usage - inactive), tasks=tasks)
