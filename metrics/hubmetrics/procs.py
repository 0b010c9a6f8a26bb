"""Users' processes outside containers (SSH sessions, cron jobs) and the host's totals, from /proc:
the path for hosts without systemd (on systemd hosts `slices` reads the same per user).

Reads only under a /proc root (a copied tree stands in); `ProcessTable` holds the state between
samples (open fds, classification, PSS). Processes may exit at any moment while we read them:
such a process is simply not counted in this sample (its earlier CPU seconds stay in the user's
counter).
"""
from __future__ import annotations

import errno
import logging
import os
import resource
from dataclasses import dataclass
from typing import Iterable

import psutil

from .cgroups import container_id_in
from .cgroups import read_file as _read_bytes  # one small file, two syscalls, no file object

NOBODY = 65534


def owner_uid(proc_dir: str) -> int:
    """Who a process is: the owner of its /proc/<pid> directory (its effective uid)."""
    return os.stat(proc_dir).st_uid


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
PSS_IDLE_FACTOR = 10   # an idle process's PSS is re-read every pss_every * this samples


@dataclass
class _Known:
    """What a ProcessTable remembers of one pid between samples (mutable, private)."""
    start: int            # start time in clock ticks: with pid, identifies a process
    uid: int
    fd: int = -1          # /proc/<pid>/stat held open for a user's process outside containers;
                          # -1: not one (system uid, in a container); -2: one, read by path (no fd left)
    pss: int = -1         # -1: not read yet
    pss_cpu: float = -1.0  # CPU seconds when PSS was last read
    pss_sample: int = 0    # sample number of that read


class ProcessTable:
    """The state a /proc scan keeps between samples, so that a steady sample costs one pread per
    user process and little else.

    - A user's process outside containers has its /proc/<pid>/stat held open: re-reading it is a
      pread (no path lookup), and the fd refers to that very process, so a reused pid reads as
      "no such process" instead of as someone else's numbers.
    - Every other process (system uids, processes in containers) is classified once: a sample
      only checks it is still listed, and re-verifies its owner and start time every
      `verify_every` samples, staggered by pid (a pid reused within that window is seen late).
    - PSS (smaps_rollup, the costliest read: the kernel walks the page tables) is re-read every
      `pss_every` samples, staggered by pid, for processes that used CPU since their last PSS
      read; an idle process cannot have touched its memory and is re-read only every
      `pss_every * PSS_IDLE_FACTOR` samples (pages it shares may still change owners meanwhile).
    """

    def __init__(self, proc_root: str = "/proc", min_uid: int = 1000, pss_every: int = 1,
                 verify_every: int = 6):
        self.proc_root, self.min_uid = proc_root, min_uid
        self.pss_every, self.verify_every = max(1, pss_every), max(1, verify_every)
        self.known: dict[int, _Known] = {}
        self.sample_no = 0

    def scan(self, pids: Iterable[int] | None = None) -> list[ProcessSample]:
        """Processes of real users (uid >= min_uid, not nobody) that are in no container's cgroup.
        With `pids`, only those are looked at (and nothing is forgotten)."""
        if psutil.PROCFS_PATH != self.proc_root:
            psutil.PROCFS_PATH = self.proc_root
        listed = list_pids(self.proc_root) if pids is None else list(pids)
        n, verify, known = self.sample_no, self.verify_every, self.known
        samples = []
        for pid in listed:
            k = known.get(pid)
            try:
                if k is not None and (n + pid) % verify:
                    if k.fd == -1:
                        continue  # classified: not a user's process outside containers
                    data = os.pread(k.fd, 4096, 0) if k.fd >= 0 else _read_bytes(f"{self.proc_root}/{pid}/stat")
                else:
                    k, data = self._classify(pid, k)
                    if k is None or k.fd == -1:
                        continue
                fields = data.rpartition(b")")[2].split()
                if k.fd == -2 and int(fields[19]) != k.start:
                    raise ProcessLookupError  # pid reused, read by path
                if fields[0] in (b"Z", b"X"):
                    continue  # exited, waiting to be reaped: no memory, CPU already final
                cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                if k.pss < 0 or self._pss_due(pid, k, cpu):
                    pss = _pss(f"{self.proc_root}/{pid}", pid)
                    if pss is None:
                        continue
                    k.pss, k.pss_cpu, k.pss_sample = pss, cpu, n
            except PermissionError as exc:
                _warn_denied(exc)
                continue
            except (OSError, IndexError, ValueError, psutil.Error):
                self._forget(pid)  # exited mid-sample (ZombieProcess is a NoSuchProcess)
                continue
            samples.append(ProcessSample(pid=pid, start_time=k.start / CLOCK_TICKS, uid=k.uid,
                                         cpu_seconds=cpu, pss_bytes=k.pss))
        if pids is None:
            for pid in known.keys() - set(listed):
                self._forget(pid)  # exited processes
        self.sample_no += 1
        return samples

    def _pss_due(self, pid: int, k: _Known, cpu: float) -> bool:
        age = self.sample_no - k.pss_sample
        if age >= self.pss_every * PSS_IDLE_FACTOR:
            return True
        return cpu != k.pss_cpu and (self.sample_no + pid) % self.pss_every == 0

    def _classify(self, pid: int, old: _Known | None) -> tuple[_Known | None, bytes]:
        """A new pid, or one due for re-verification: who owns it, is it the process we knew."""
        base = f"{self.proc_root}/{pid}"
        uid = owner_uid(base)
        data = _read_bytes(f"{base}/stat")
        start = int(data.rpartition(b")")[2].split()[19])
        if old is not None:
            if old.start == start and old.uid == uid:
                return old, data
            self._forget(pid)
        if uid < self.min_uid or uid == NOBODY or \
                container_id_in(_read_bytes(f"{base}/cgroup").decode()) is not None:
            k = self.known[pid] = _Known(start, uid)
            return k, data
        try:
            fd = os.open(f"{base}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            fd = -2  # out of descriptors: read this one by path, checking its start time
        k = self.known[pid] = _Known(start, uid, fd)
        return k, data

    def _forget(self, pid: int) -> None:
        k = self.known.pop(pid, None)
        if k is not None and k.fd >= 0:
            os.close(k.fd)

    def close(self) -> None:
        for pid in list(self.known):
            self._forget(pid)


def user_processes(proc_root: str = "/proc", min_uid: int = 1000, pids: Iterable[int] | None = None,
                   table: ProcessTable | None = None) -> list[ProcessSample]:
    """One scan; a `table` kept by the caller carries the state from sample to sample (see
    ProcessTable), without one every process is read afresh."""
    if table is not None:
        return table.scan(pids)
    table = ProcessTable(proc_root, min_uid)
    try:
        return table.scan(pids)
    finally:
        table.close()


def raise_fd_limit() -> int:
    """Let the process hold an fd per user process: soft RLIMIT_NOFILE up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            pass
    return soft


_denied_warned = False


def _warn_denied(exc: OSError) -> None:
    """Say once why users' processes are missing: smaps_rollup needs CAP_SYS_PTRACE."""
    global _denied_warned
    if not _denied_warned:
        _denied_warned = True
        log.warning("cannot read %s (%s): processes outside containers are left out; the exporter "
                    "must run as root with CAP_SYS_PTRACE", exc.filename, exc.strerror)


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
