"""GPU allocation from the running containers' labels (survives hub restarts).

exclusive (default): a GPU held by a running server is never handed out again; when too
few are free the spawn fails with a clear error instead of silently sharing.
shared: GPUs may be shared; the least-loaded ones (fewest holders, then configured order)
are chosen. Documented for sites that prefer utilisation over isolation.
"""

from collections import Counter

from .errors import GpuAllocationError  # noqa: F401  (raised here, importable from here)

MODES = ("exclusive", "shared")


def gpu_holders(running, exclude_container=None):
    """GPU id -> number of running servers holding it."""
    return Counter(g for s in running if s.container != exclude_container for g in s.gpus)


def free_gpus(devices, running, exclude_container=None):
    held = gpu_holders(running, exclude_container)
    return [d for d in devices if held[d] == 0]


def choose_gpus(count, devices, running, mode="exclusive", exclude_container=None):
    """Return a tuple of ``count`` GPU ids from ``devices`` or raise GpuAllocationError."""
    if mode not in MODES:
        raise ValueError(f"gpu_sharing: {mode!r} is not a mode; allowed: {', '.join(MODES)}")
    if count <= 0:
        return ()
    devices = list(dict.fromkeys(devices))
    if count > len(devices):
        raise GpuAllocationError(
            f"gpus: {count} GPUs asked but this host has {len(devices)} configured"
            f" ({', '.join(devices) or 'none'}); allowed: 0 to {len(devices)}")
    held = gpu_holders(running, exclude_container)
    if mode == "exclusive":
        free = [d for d in devices if held[d] == 0]
        if len(free) < count:
            busy = ", ".join(f"{d} (held by {', '.join(s.user for s in running if d in s.gpus)})"
                             for d in devices if held[d])
            raise GpuAllocationError(
                f"gpus: {count} GPUs asked but only {len(free)} of {len(devices)} are free"
                f" (in use: {busy}); ask for at most {len(free)} or try later")
        return tuple(free[:count])
    order = sorted(devices, key=lambda d: (held[d], devices.index(d)))
    return tuple(order[:count])
