"""What this host has: the ceiling for limits, the default capacity for guarantees."""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class HostCapacity:
    cpus: float
    mem_bytes: int


def detect_host() -> HostCapacity:
    """CPUs this process may run on and physical memory (what a container could ever get)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return HostCapacity(float(cpus), int(mem))
