"""A short, bounded, in-memory history of each user's use.

WHY: the panel shows "the last few minutes" without Prometheus. The exporter
only has counters (CPU seconds); the history turns consecutive snapshots into
rates. Memory stays bounded: a fixed number of points per user, and users that
disappear from the snapshots are dropped after they age out.
"""

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One sample of one user: what the panel plots."""

    time: float
    cpu_cores: float | None  # None for the first sample or after a counter reset
    memory_working_set_bytes: int
    gpu_memory_used_bytes: int

    def as_dict(self):
        return {
            "time": self.time,
            "cpu_cores": self.cpu_cores,
            "memory_working_set_bytes": self.memory_working_set_bytes,
            "gpu_memory_used_bytes": self.gpu_memory_used_bytes,
        }


class History:
    """Per-user ring buffers fed with exporter snapshots, oldest point first."""

    def __init__(self, max_points):
        if int(max_points) < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points!r}")
        self.max_points = int(max_points)
        self._points = {}  # user -> deque[Point]
        self._last_cpu = {}  # user -> (time, cpu_seconds_total)
        self._last_time = None
        self._absent = {}  # user -> snapshots since last seen

    def add(self, snapshot):
        """Record one snapshot (the exporter's JSON as a dict).

        A snapshot whose time is not newer than the last one is ignored: the
        exporter re-serves its last sample until the next one, so polling faster
        than it samples must not create zero-length intervals.
        """
        now = float(snapshot["time"])
        if self._last_time is not None and now <= self._last_time:
            return False
        self._last_time = now
        users = snapshot.get("users", {})
        for name, use in users.items():
            cpu_total = float(use.get("cpu_seconds_total", 0.0))
            cpu_cores = None
            last = self._last_cpu.get(name)
            if last is not None:
                dt, dcpu = now - last[0], cpu_total - last[1]
                if dt > 0 and dcpu >= 0:
                    cpu_cores = dcpu / dt
            self._last_cpu[name] = (now, cpu_total)
            points = self._points.get(name)
            if points is None:
                points = self._points[name] = deque(maxlen=self.max_points)
            points.append(
                Point(
                    time=now,
                    cpu_cores=cpu_cores,
                    memory_working_set_bytes=int(use.get("memory_working_set_bytes", 0)),
                    gpu_memory_used_bytes=int(use.get("gpu_memory_used_bytes", 0)),
                )
            )
        self._forget_absent(users)
        return True

    def _forget_absent(self, present):
        """Absent users get no new points; once they have been absent for as many
        snapshots as the buffer holds, their history has aged out and is dropped,
        so memory is bounded by the users seen in the window."""
        for name in list(self._points):
            if name in present:
                self._absent.pop(name, None)
                continue
            self._last_cpu.pop(name, None)  # a returning user starts a new counter
            self._absent[name] = self._absent.get(name, 0) + 1
            if self._absent[name] >= self.max_points:
                del self._points[name]
                del self._absent[name]

    def points(self, user):
        """The user's points, oldest first (an empty list for an unknown user)."""
        return list(self._points.get(user, ()))

    def latest_cpu_cores(self, user):
        """The user's most recent CPU rate, or None while it cannot be computed yet."""
        points = self._points.get(user)
        if not points:
            return None
        return points[-1].cpu_cores

    def users(self):
        return sorted(self._points)
