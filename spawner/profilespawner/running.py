"""Running user servers as seen by Docker: the source of truth for guarantees and GPUs.

Read from container labels, so admission control and GPU allocation survive a hub
restart (nothing is kept in the hub's memory or database).
"""

import math
from dataclasses import dataclass
from typing import Tuple

from . import labels


@dataclass(frozen=True)
class RunningServer:
    container: str
    user: str
    cpu_guarantee: float = 0.0
    mem_guarantee: int = 0
    gpus: Tuple[str, ...] = ()


def _number(text, cast):
    try:
        value = cast(text)
    except (TypeError, ValueError):
        return 0
    return value if math.isfinite(value) and value > 0 else 0


def running_servers(containers) -> Tuple[RunningServer, ...]:
    """From docker API container summaries (``client.containers(filters=...)``) or inspect
    results; containers without our user label are ignored."""
    servers = []
    for c in containers:
        lab = c.get("Labels") or (c.get("Config") or {}).get("Labels") or {}
        if labels.USER not in lab:
            continue
        names = c.get("Names") or [c.get("Name", "")]
        servers.append(RunningServer(
            container=(names[0] if names else "").lstrip("/"),
            user=lab[labels.USER],
            cpu_guarantee=float(_number(lab.get(labels.CPU_GUARANTEE), float)),
            mem_guarantee=int(_number(lab.get(labels.MEM_GUARANTEE), int)),
            gpus=tuple(g for g in (lab.get(labels.GPUS) or "").split(",") if g),
        ))
    return tuple(servers)
