"""What each kind of reader may see: the one place where per-user filtering happens.

WHY: the exporter's snapshot holds every user's numbers. These pure functions
cut it down to what one requester may read, so the HTTP layer never decides
about visibility itself: a normal user gets only their own entry (chosen by the
name the hub authenticated, never by a request parameter), admins get the table.
"""

import time

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
    "oom_kills_total",
)

HOST_KEYS = (
    "cpus",
    "memory_total_bytes",
    "memory_available_bytes",
    "gpus_total",
    "gpus_free",
    "nvml_available",
    "nvml_absent",
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
    view["oom_events"] = [oom_notice(e) for e in use.get("oom_events", ())]
    return view


def home_view(snapshot, user):
    """The user's files on the homes' filesystem and their quota (0: none), or None when the
    exporter reads no homes' filesystem or knows nothing of the user. Shown with or without a
    running server: the home is there either way."""
    if snapshot is None:
        return None
    home = snapshot.get("homes", {}).get(user)
    if home is None:
        return None
    return {"used_bytes": home.get("used_bytes", 0), "quota_bytes": home.get("quota_bytes", 0)}


def size_text(n):
    """Bytes as people read a limit: 2 GiB, 512 MiB, 1.5 GiB."""
    value, unit = float(n or 0), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def oom_notice(event, localtime=time.localtime):
    """One OOM kill as the user is told it (the exporter's event, plus a sentence)."""
    at = time.strftime("%H:%M", localtime(float(event.get("time", 0))))
    limit = size_text(event.get("limit_bytes"))
    if event.get("limit") == "container":
        why = f"your server reached its {limit} memory limit"
    else:
        why = f"the memory shared by everyone's servers on this machine ({limit}) ran out"
    return {
        "time": event.get("time"),
        "container": event.get("container"),
        "limit": event.get("limit"),
        "limit_bytes": event.get("limit_bytes"),
        "message": f"A process of yours was killed at {at} because {why}.",
    }


def _status(snapshot, error):
    stale = dict(snapshot.get("stale", {})) if snapshot else {}
    if snapshot and snapshot.get("host", {}).get("nvml_absent"):
        stale.pop("nvml", None)  # no NVIDIA driver: no GPUs here, nothing is stale
    return {
        "time": snapshot.get("time") if snapshot else None,
        "stale": stale,
        "exporter_error": error,
    }


def me_view(snapshot, history, user, error=None):
    """Everything the user's own page shows: their use, their history, the host."""
    return {
        "user": user,
        "usage": usage_view(snapshot, history, user),
        "home": home_view(snapshot, user),
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


# --- several nodes (a swarm: one exporter per node) ------------------------------------------

NODE_KEYS = ("capacity_cpus", "capacity_mem_bytes", "guaranteed_cpus", "guaranteed_mem_bytes",
             "free_cpus", "free_mem_bytes")
TOTAL_KEYS = NODE_KEYS + ("gpus_total", "gpus_free")


def node_name(snapshot, url):
    """The node's name as its exporter gives it (snapshot `node.name`), else the URL's host."""
    from urllib.parse import urlparse
    return ((snapshot or {}).get("node") or {}).get("name") or urlparse(url).hostname or url


def node_view(url, snapshot, error):
    """One node's guarantee capacity, what is free of it, and its GPUs. A node whose exporter
    did not answer in the last fetch is `up: false` with the error, and no numbers (its last
    ones would be taken for the present)."""
    up = snapshot is not None and error is None
    node = (snapshot or {}).get("node") or {}
    host = (snapshot or {}).get("host") or {}
    view = {"name": node_name(snapshot, url), "up": up, "error": error}
    view.update({key: node.get(key) if up else None for key in NODE_KEYS})
    gpus = up and host.get("nvml_available")
    view["gpus_total"] = host.get("gpus_total") if gpus else (0 if up else None)
    view["gpus_free"] = host.get("gpus_free") if gpus else (0 if up else None)
    return view


def cluster_view(nodes):
    """Every node (as node_view) and the cluster's totals over the nodes that answered.
    `nodes`: (url, snapshot, error) per node, in the configured order."""
    views = [node_view(url, snapshot, error) for url, snapshot, error in nodes]
    up = [v for v in views if v["up"]]
    total = {key: sum(v[key] or 0 for v in up) for key in TOTAL_KEYS}
    total["capacity_cpus"] = round(total["capacity_cpus"], 9)
    total["free_cpus"] = round(total["free_cpus"], 9)
    total["guaranteed_cpus"] = round(total["guaranteed_cpus"], 9)
    total.update(nodes_up=len(up), nodes_total=len(views))
    return {"nodes": views, "total": total}


def runs_on(snapshot, user):
    """True if the snapshot lists a running server (container) of the user."""
    return bool(((snapshot or {}).get("users", {}).get(user) or {}).get("containers"))


def cluster_admin_view(nodes):
    """admin_view over every node: each user's use with the node it runs on (a user with
    servers on two nodes is listed once per node, as `name@node`)."""
    users, first = {}, None
    for url, snapshot, error, history in nodes:
        view = admin_view(snapshot, history, error)
        first = first or view
        name = node_name(snapshot, url)
        for user, use in view["users"].items():
            if use is None:
                continue
            key = user if user not in users else f"{user}@{name}"
            users[key] = dict(use, node=name)
    out = dict(first or admin_view(None, None))
    out["users"] = dict(sorted(users.items()))
    return out
