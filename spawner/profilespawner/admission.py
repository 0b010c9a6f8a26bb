"""Admission control: guarantees mean something only if they are never overcommitted.

The sum of the guarantees of the running user containers (from their labels) plus the
new request must stay within the capacity the users' slice may hold.
"""

from dataclasses import dataclass

from .errors import AdmissionError  # noqa: F401  (raised here, importable from here)
from .sizes import format_size


@dataclass(frozen=True)
class Capacity:
    """What the guarantees of all user containers together may add up to."""

    cpus: float
    mem_bytes: int


def guaranteed(running, exclude_container=None):
    """(cpu, mem) already guaranteed to running servers, optionally ignoring one container
    (the one being replaced by this spawn)."""
    servers = [s for s in running if s.container != exclude_container]
    return sum(s.cpu_guarantee for s in servers), sum(s.mem_guarantee for s in servers)


def check_admission(cpu_guarantee, mem_guarantee, running, capacity: Capacity, exclude_container=None):
    """Raise AdmissionError if the new guarantees do not fit next to the running ones."""
    cpu_used, mem_used = guaranteed(running, exclude_container)
    cpu_free = max(0.0, capacity.cpus - cpu_used)
    mem_free = max(0, capacity.mem_bytes - mem_used)
    # a tiny epsilon so 0.1+0.2 style float sums do not refuse an exact fit
    if cpu_guarantee > cpu_free + 1e-9:
        raise AdmissionError("cpu_guarantee", (
            f"cpu_guarantee: cannot guarantee {cpu_guarantee:g} CPUs: {cpu_used:g} of {capacity.cpus:g} CPUs are "
            f"already guaranteed to running servers, {cpu_free:g} free; ask for at most {cpu_free:g} or try later"))
    if mem_guarantee > mem_free:
        raise AdmissionError("mem_guarantee", (
            f"mem_guarantee: cannot guarantee {format_size(mem_guarantee)}: {format_size(mem_used)} of "
            f"{format_size(capacity.mem_bytes)} are already guaranteed to running servers, {format_size(mem_free)} "
            f"free; ask for at most {format_size(mem_free)} or try later"))


def free_capacity(running, capacity: Capacity):
    """(cpu, mem) that could still be guaranteed now: shown in the options form."""
    cpu_used, mem_used = guaranteed(running)
    return max(0.0, capacity.cpus - cpu_used), max(0, capacity.mem_bytes - mem_used)
