"""Users' processes outside containers (SSH sessions, cron jobs) and the host's totals.

Pure over a /proc root. Processes may exit at any moment while we read them: such a process is
simply not counted in this sample (its earlier CPU seconds stay in the user's counter).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable

import psutil

from .cgroups import container_id_in

NOBODY = 65534
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    start_time: float     # seconds after boot; with pid, identifies a process (pids get reused)
    uid: int
    cpu_seconds: float
    pss_bytes: int


def list_pids(proc_root: str) -> list[int]:
    return [int(name) for name in os.listdir(proc_root) if name.isdigit()]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


INSIDE = -1  # memo value of a process that lives in a container's cgroup


def user_processes(proc_root: str = "/proc", min_uid: int = 1000, pids: Iterable[int] | None = None,
                   memo: dict[tuple[int, int], int] | None = None, sample_no: int = 0,
                   pss_every: int = 1) -> list[ProcessSample]:
    """Processes of real users (uid >= min_uid, not nobody) that are in no container's cgroup.

    The uid comes from one stat() of /proc/<pid>, so system daemons cost almost nothing. For a
    user's process we read /proc/<pid>/stat (CPU, start time) and smaps_rollup (PSS): the same
    files psutil reads, without its per-process objects (which cost 4x the reading itself).

    `memo` ({(pid, start ticks): PSS or INSIDE}, kept by the caller between samples) makes
    /proc/<pid>/cgroup be read once per process (a process does not leave its container), and
    lets PSS be re-read only every `pss_every` samples, staggered by pid: smaps_rollup makes the
    kernel walk the page tables and costs more than all the other reads together.
    """
    if psutil.PROCFS_PATH != proc_root:
        psutil.PROCFS_PATH = proc_root
    memo = {} if memo is None else memo
    samples, present = [], set()
    for pid in list_pids(proc_root) if pids is None else pids:
        base = f"{proc_root}/{pid}"
        try:
            uid = os.stat(base).st_uid
            if uid < min_uid or uid == NOBODY:
                continue
            fields = _read_bytes(f"{base}/stat").rpartition(b")")[2].split()
            if fields[0] in (b"Z", b"X"):
                continue  # exited, waiting to be reaped: no memory, CPU already final
            start = int(fields[19])
            key = (pid, start)
            present.add(key)
            pss = memo.get(key)
            if pss is None and container_id_in(_read_bytes(f"{base}/cgroup").decode()) is not None:
                pss = memo[key] = INSIDE
            if pss == INSIDE:
                continue
            if pss is None or (sample_no + pid) % pss_every == 0:
                pss = _pss(base, pid)
                if pss is None:
                    continue
                memo[key] = pss
        except PermissionError as exc:
            _warn_denied(exc)
            continue
        except (OSError, IndexError, ValueError, psutil.Error):
            continue  # exited mid-sample (ZombieProcess is a NoSuchProcess)
        samples.append(ProcessSample(pid=pid, start_time=start / CLOCK_TICKS, uid=uid,
                                     cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                                     pss_bytes=pss))
    if pids is None:
        for key in memo.keys() - present:
            del memo[key]  # exited processes
    return samples


_denied_warned = False


def _warn_denied(exc: OSError) -> None:
    """Say once why users' processes are missing: smaps_rollup needs CAP_SYS_PTRACE."""
    global _denied_warned
    if not _denied_warned:
        _denied_warned = True
        log.warning("cannot read %s (%s): processes outside containers are left out; the exporter "
                    "must run as root with CAP_SYS_PTRACE", exc.filename, exc.strerror)


def _read_bytes(path: str) -> bytes:
    """One small /proc file with two syscalls and no Python file object (the hot path)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _pss(base: str, pid: int) -> int | None:
    """PSS in bytes from smaps_rollup (Linux >= 4.14); psutil's full smaps walk before that."""
    try:
        data = _read_bytes(f"{base}/smaps_rollup")
    except FileNotFoundError:
        if not os.path.exists(base):
            return None
        return psutil.Process(pid).memory_full_info().pss
    at = data.find(b"\nPss:")
    if at < 0:
        return 0 if not data else None  # kernel threads / exited: empty file
    return int(data[at + 5:data.index(b"kB", at)]) * 1024


def meminfo(proc_root: str = "/proc") -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    with open(f"{proc_root}/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields:
                out[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return out
