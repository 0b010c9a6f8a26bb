"""What each kind of reader may see: the one place where per-user filtering happens.

WHY: the exporter's snapshot holds every user's numbers. These pure functions
cut it down to what one requester may read, so the HTTP layer never decides
about visibility itself: a normal user gets only their own entry (chosen by the
name the hub authenticated, never by a request parameter), admins get the table.
"""

USAGE_KEYS = (
    "cpu_seconds_total",
    "cpu_limit_cores",
    "cpu_guarantee_cores",
    "memory_working_set_bytes",
    "memory_limit_bytes",
    "memory_guarantee_bytes",
    "gpu_memory_used_bytes",
    "gpus",
    "containers",
)

HOST_KEYS = (
    "cpus",
    "memory_total_bytes",
    "memory_available_bytes",
    "gpus_total",
    "gpus_free",
    "nvml_available",
)


def host_view(snapshot):
    """The machine's capacity and what is free: the same for every logged-in user."""
    if snapshot is None:
        return None
    host = snapshot.get("host", {})
    return {key: host.get(key) for key in HOST_KEYS}


def usage_view(snapshot, history, user):
    """One user's current numbers (None if they run nothing), plus their CPU rate."""
    if snapshot is None:
        return None
    use = snapshot.get("users", {}).get(user)
    if use is None:
        return None
    view = {key: use.get(key) for key in USAGE_KEYS}
    view["cpu_cores"] = history.latest_cpu_cores(user)
    return view


def _status(snapshot, error):
    return {
        "time": snapshot.get("time") if snapshot else None,
        "stale": dict(snapshot.get("stale", {})) if snapshot else {},
        "exporter_error": error,
    }


def me_view(snapshot, history, user, error=None):
    """Everything the user's own page shows: their use, their history, the host."""
    return {
        "user": user,
        "usage": usage_view(snapshot, history, user),
        "history": [p.as_dict() for p in history.points(user)],
        "host": host_view(snapshot),
        **_status(snapshot, error),
    }


def admin_view(snapshot, history, error=None):
    """Every user's current use, for admins only (the caller checks the role)."""
    names = sorted(snapshot.get("users", {})) if snapshot else []
    return {
        "users": {name: usage_view(snapshot, history, name) for name in names},
        "host": host_view(snapshot),
        **_status(snapshot, error),
    }


def capacity_view(snapshot, error=None):
    """Only the machine's free capacity (for the spawn page), no user numbers."""
    return {"host": host_view(snapshot), **_status(snapshot, error)}
