"""The immutable value one sample produces: everything a scrape or the panel may ask for.

Scrapes and the JSON API only read a finished Snapshot, so they never wait for a sample and
never see half of one.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContainerInfo:
    """What Docker tells about a user's container (its labels and where its cgroup is)."""
    id: str
    name: str
    user: str
    init_pid: int = 0
    cgroup_parent: str = ""
    cpu_limit_cores: float | None = None
    mem_limit_bytes: int | None = None
    cpu_guarantee_cores: float = 0.0
    mem_guarantee_bytes: int = 0
    gpus: tuple[str, ...] = ()
    resource_profile: str = ""
    image_profile: str = ""


@dataclass(frozen=True)
class CgroupStats:
    """A container's own numbers, read straight from its cgroup files.

    Limits are None when the cgroup has none ("max" / the v1 "unlimited" value)."""
    cpu_seconds: float
    memory_usage_bytes: int
    memory_working_set_bytes: int
    memory_rss_bytes: int
    memory_limit_bytes: int | None
    memory_reservation_bytes: int
    cpu_limit_cores: float | None
    pids: int
    oom_kills: int
    # times the container's own memory limit was hit: v2 memory.events `oom` (an OOM at this
    # limit), v1 memory.failcnt (a charge failed at this limit, with or without an OOM after it)
    own_limit_hits: int = 0


@dataclass(frozen=True)
class ContainerSample:
    info: ContainerInfo
    stats: CgroupStats


@dataclass(frozen=True)
class OomEvent:
    """A process of the user killed by the OOM killer, and at which limit (see hubmetrics.ooms)."""
    time: float          # Unix time of the sample that saw the kill (within one interval of it)
    user: str
    container: str
    limit: str           # "container" or "users' slice or host"
    limit_bytes: int     # that limit (the host's memory when no slice limit applies)
    kills: int = 1


@dataclass(frozen=True)
class UserSample:
    """One user's totals. The unprefixed numbers are their containers (held against the limits);
    process_* are their processes outside any container (e.g. SSH sessions)."""
    name: str
    cpu_seconds_total: float = 0.0
    memory_working_set_bytes: int = 0
    memory_rss_bytes: int = 0
    memory_limit_bytes: int = 0
    memory_guarantee_bytes: int = 0
    cpu_limit_cores: float = 0.0
    cpu_guarantee_cores: float = 0.0
    gpu_memory_used_bytes: int = 0
    gpus: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    process_cpu_seconds_total: float = 0.0
    process_memory_pss_bytes: int = 0
    process_count: int = 0
    oom_kills_total: int = 0
    oom_events: tuple[OomEvent, ...] = ()


@dataclass(frozen=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_ratio: float


@dataclass(frozen=True)
class GpuProcess:
    gpu: int
    pid: int
    memory_used_bytes: int


@dataclass(frozen=True)
class UserGpu:
    """One user's share of one GPU: memory of their processes and the utilization attributed."""
    user: str
    gpu: str
    memory_used_bytes: int
    utilization_ratio: float


@dataclass(frozen=True)
class HomeUsage:
    """One user's files on the homes' filesystem (its user quota, hubmetrics.homes)."""
    user: str
    used_bytes: int
    quota_bytes: int = 0   # the hard block limit, else the soft one; 0: no quota


@dataclass(frozen=True)
class Host:
    cpus: int
    memory_total_bytes: int
    memory_available_bytes: int
    gpus_total: int = 0
    gpus_free: int = 0
    nvml_available: bool = False
    # no NVIDIA library or driver on this host (not an NVML failure): there are no GPUs here
    nvml_absent: bool = False


@dataclass(frozen=True)
class Node:
    """This node (one server, or one swarm node) and what its users may be guaranteed: the users'
    slice's own limits (its MemoryMax and CPUQuota, which the swarm role also writes as node
    labels), else the host's CPUs and memory, as the spawner's admission counts them on one
    server. `guaranteed_*`: the guarantees (labels) of the containers this node's dockerd runs."""
    name: str = ""
    capacity_cpus: float = 0.0
    capacity_mem_bytes: int = 0
    capacity_source: str = "host"     # "users_slice" (the slice's limits) or "host"
    guaranteed_cpus: float = 0.0
    guaranteed_mem_bytes: int = 0

    @property
    def free_cpus(self) -> float:
        return max(0.0, round(self.capacity_cpus - self.guaranteed_cpus, 9))

    @property
    def free_mem_bytes(self) -> int:
        return max(0, self.capacity_mem_bytes - self.guaranteed_mem_bytes)


@dataclass(frozen=True)
class Health:
    """How the sample went: which sources answered, and the exporter's own cost."""
    sample_duration_seconds: float = 0.0
    source_up: tuple[tuple[str, bool], ...] = ()
    errors_total: tuple[tuple[str, int], ...] = ()
    cgroup_mode: str = ""
    process_source: str = "proc"   # where process_* come from: "proc" or "user_slices" (systemd)

    def up(self, source: str) -> bool:
        return dict(self.source_up).get(source, False)


@dataclass(frozen=True)
class Snapshot:
    time: float
    host: Host
    containers: tuple[ContainerSample, ...] = ()
    users: tuple[UserSample, ...] = ()
    gpus: tuple[GpuDevice, ...] = ()
    user_gpus: tuple[UserGpu, ...] = ()
    health: Health = field(default_factory=Health)
    homes: tuple[HomeUsage, ...] = ()   # empty unless the exporter reads a homes' filesystem
    node: Node = field(default_factory=Node)

    def to_json(self) -> dict:
        """The `/api/snapshot` document, exactly as docs/contracts.md describes it."""
        return {
            "time": self.time,
            "node": {
                "name": self.node.name,
                "capacity_cpus": self.node.capacity_cpus,
                "capacity_mem_bytes": self.node.capacity_mem_bytes,
                "capacity_source": self.node.capacity_source,
                "guaranteed_cpus": self.node.guaranteed_cpus,
                "guaranteed_mem_bytes": self.node.guaranteed_mem_bytes,
                "free_cpus": self.node.free_cpus,
                "free_mem_bytes": self.node.free_mem_bytes,
            },
            "host": {
                "cpus": self.host.cpus,
                "memory_total_bytes": self.host.memory_total_bytes,
                "memory_available_bytes": self.host.memory_available_bytes,
                "gpus_total": self.host.gpus_total,
                "gpus_free": self.host.gpus_free,
                "nvml_available": self.host.nvml_available,
                "nvml_absent": self.host.nvml_absent,
            },
            "users": {u.name: _user_json(u) for u in self.users},
            "gpus": [
                {"index": g.index, "uuid": g.uuid, "name": g.name,
                 "memory_total_bytes": g.memory_total_bytes,
                 "memory_used_bytes": g.memory_used_bytes,
                 "utilization_ratio": g.utilization_ratio}
                for g in self.gpus
            ],
            "homes": {h.user: {"used_bytes": h.used_bytes, "quota_bytes": h.quota_bytes} for h in self.homes},
            "stale": {source: not up for source, up in self.health.source_up},
            "process_source": self.health.process_source,
        }


def _user_json(u: UserSample) -> dict:
    return {
        "cpu_seconds_total": u.cpu_seconds_total,
        "memory_working_set_bytes": u.memory_working_set_bytes,
        "memory_rss_bytes": u.memory_rss_bytes,
        "memory_limit_bytes": u.memory_limit_bytes,
        "memory_guarantee_bytes": u.memory_guarantee_bytes,
        "cpu_limit_cores": u.cpu_limit_cores,
        "cpu_guarantee_cores": u.cpu_guarantee_cores,
        "gpu_memory_used_bytes": u.gpu_memory_used_bytes,
        "gpus": list(u.gpus),
        "containers": list(u.containers),
        "process_cpu_seconds_total": u.process_cpu_seconds_total,
        "process_memory_pss_bytes": u.process_memory_pss_bytes,
        "oom_kills_total": u.oom_kills_total,
        "oom_events": [{"time": e.time, "container": e.container, "limit": e.limit,
                        "limit_bytes": e.limit_bytes} for e in u.oom_events],
    }
