"""One sample: read every source once and fold the readings into an immutable Snapshot.

The folding (`build_users`, `attribute_gpus`, `free_gpus`, `ooms.detect`) is pure; `Sampler` is
the thin shell that owns what must live between samples (the Docker cache, the NVML session, where
each container's cgroup is and its limits, the process table, the counters' and OOM marks).

Users' processes outside containers come from their systemd slices where systemd runs the host
(`slices`: a few files per logged-in user) and from a scan of /proc elsewhere (`procs`).
"""
from __future__ import annotations

import logging
import os
import pwd
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import psutil

from . import cgroups, homes, ooms, procs, slices
from .containers import ContainerDirectory
from .counters import CounterState, advance
from .nvml import Nvml, NvmlReading
from .snapshot import (ContainerInfo, ContainerSample, GpuDevice, GpuProcess, Health, HomeUsage, Host, Node,
                       OomEvent, Snapshot, UserGpu, UserSample)

log = logging.getLogger(__name__)
USER_PROCESSES = ("auto", "slices", "proc")

SOURCES = ("cgroups", "docker", "nvml")
# NVML reporting these means "no NVIDIA driver here": a state to show, not an error to count.
NVML_ABSENT = ("LibraryNotFound", "DriverNotLoaded", "Library Not Found", "Driver Not Loaded")


@dataclass(frozen=True)
class SamplerConfig:
    cgroup_root: str = "/sys/fs/cgroup"
    proc_root: str = "/proc"
    min_uid: int = 1000
    pss_every: int = 1   # re-read each outside process's PSS every N samples (its costliest read)
    run_root: str = "/run"   # where systemd's marker (systemd/system) is looked for
    user_processes: str = "auto"   # "slices" (systemd user slices), "proc", or "auto": slices on systemd
    limits_every: int = 12   # re-read a container's limits every N samples (they change on docker update)
    home_filesystem: str = ""   # mount point whose user quotas are read (hubmetrics.homes); "": none
    homes_every: int = 6     # re-read the homes' use every N samples (a walk of every uid's quota)
    node_name: str = ""      # this node's name, the `node` label of the per-user/per-container series
    users_slice: str = "jupyterhub-users.slice"   # whose limits are the node's guarantee capacity

    def __post_init__(self):
        if self.user_processes not in USER_PROCESSES:
            raise ValueError(f"user_processes {self.user_processes!r}: allowed: {', '.join(USER_PROCESSES)}")


def node_capacity(name: str, users_slice: cgroups.Limits | None, host: Host,
                  users: Iterable[UserSample]) -> Node:
    """The node's guarantee capacity (the users' slice's limits; the host's CPUs or memory where
    the slice sets none) and the guarantees its running containers hold."""
    users = list(users)
    cpus = users_slice.cpu_limit_cores if users_slice else None
    mem = users_slice.memory_limit_bytes if users_slice else None
    return Node(name=name,
                capacity_cpus=float(cpus if cpus is not None else host.cpus),
                capacity_mem_bytes=int(mem if mem is not None else host.memory_total_bytes),
                capacity_source="users_slice" if cpus is not None or mem is not None else "host",
                guaranteed_cpus=round(sum(u.cpu_guarantee_cores for u in users), 9),
                guaranteed_mem_bytes=sum(u.memory_guarantee_bytes for u in users))


def free_gpus(devices: Iterable[GpuDevice], containers: Iterable[ContainerInfo]) -> int:
    """GPUs no running container holds through its gpus label (index or UUID)."""
    held = {g for c in containers for g in c.gpus}
    return sum(1 for d in devices if str(d.index) not in held and d.uuid not in held)


def attribute_gpus(devices: Iterable[GpuDevice], processes: Iterable[GpuProcess],
                   pid_user: dict[int, str], containers: Iterable[ContainerInfo]) -> tuple[UserGpu, ...]:
    """Each user's GPU memory and share of each GPU's utilization.

    NVML has no cheap per-process utilization, so a GPU's utilization is split between the users
    with processes on it in proportion to their memory; a GPU held (label) by one user with no
    processes yet is theirs entirely.
    """
    memory: dict[tuple[str, int], int] = {}
    for p in processes:
        user = pid_user.get(p.pid)
        if user is not None:
            memory[(user, p.gpu)] = memory.get((user, p.gpu), 0) + p.memory_used_bytes
    containers = list(containers)
    result = []
    for d in devices:
        users = {u: m for (u, g), m in memory.items() if g == d.index}
        if not users:
            holders = {c.user for c in containers if str(d.index) in c.gpus or d.uuid in c.gpus}
            users = {u: 0 for u in holders}
        total = sum(users.values())
        for user, used in sorted(users.items()):
            share = used / total if total else 1.0 / len(users)
            result.append(UserGpu(user=user, gpu=str(d.index), memory_used_bytes=used,
                                  utilization_ratio=d.utilization_ratio * share))
    return tuple(result)


def build_users(containers: Iterable[ContainerSample], container_cpu: dict[str, float],
                outside: Iterable[tuple[str, int, int]], process_cpu: dict[str, float],
                user_gpus: Iterable[UserGpu], oom_kills: dict[str, float] | None = None,
                oom_events: dict[str, tuple[OomEvent, ...]] | None = None) -> tuple[UserSample, ...]:
    """Per-user totals. Container numbers (what the user's server uses, held against its limits)
    and processes outside containers (SSH sessions) are kept apart. `outside` holds
    (user, memory bytes, processes) per process (/proc) or per user slice (systemd)."""
    users: dict[str, UserSample] = {}

    def get(name: str) -> UserSample:
        return users.setdefault(name, UserSample(name=name))

    for c in containers:
        u, s, i = get(c.info.user), c.stats, c.info
        mem_limit = i.mem_limit_bytes if i.mem_limit_bytes is not None else (s.memory_limit_bytes or 0)
        cpu_limit = i.cpu_limit_cores if i.cpu_limit_cores is not None else (s.cpu_limit_cores or 0.0)
        users[u.name] = replace(
            u,
            cpu_seconds_total=container_cpu.get(u.name, 0.0),
            memory_working_set_bytes=u.memory_working_set_bytes + s.memory_working_set_bytes,
            memory_rss_bytes=u.memory_rss_bytes + s.memory_rss_bytes,
            memory_limit_bytes=u.memory_limit_bytes + mem_limit,
            memory_guarantee_bytes=u.memory_guarantee_bytes + (i.mem_guarantee_bytes or s.memory_reservation_bytes),
            cpu_limit_cores=u.cpu_limit_cores + cpu_limit,
            cpu_guarantee_cores=u.cpu_guarantee_cores + i.cpu_guarantee_cores,
            gpus=tuple(sorted(set(u.gpus) | set(i.gpus))),
            containers=u.containers + (i.name,),
            oom_kills_total=int((oom_kills or {}).get(u.name, 0)),
            oom_events=(oom_events or {}).get(u.name, ()),
        )
    for name, memory, count in outside:
        u = get(name)
        users[name] = replace(u, process_cpu_seconds_total=process_cpu.get(name, 0.0),
                              process_memory_pss_bytes=u.process_memory_pss_bytes + memory,
                              process_count=u.process_count + count)
    for g in user_gpus:
        u = get(g.user)
        users[g.user] = replace(u, gpu_memory_used_bytes=u.gpu_memory_used_bytes + g.memory_used_bytes,
                                gpus=tuple(sorted(set(u.gpus) | {g.gpu})))
    return tuple(users[name] for name in sorted(users))


def _username(uid: int, cache: dict[int, str]) -> str:
    name = cache.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        cache[uid] = name
    return name


class Sampler:
    """Owns the state kept between samples; `sample()` returns a new Snapshot each call."""

    def __init__(self, config: SamplerConfig = SamplerConfig(), directory: ContainerDirectory | None = None,
                 nvml: Nvml | None = None, clock: Callable[[], float] = time.time,
                 read_homes: Callable[[str], dict] = homes.read_home_quotas):
        self.config = config
        self.directory = directory if directory is not None else ContainerDirectory()
        self.nvml = nvml if nvml is not None else Nvml()
        self._clock = clock
        self._mode = cgroups.detect_mode(config.cgroup_root)
        self._where: dict[str, cgroups.ContainerCgroup] = {}
        self._limits: dict[str, tuple[cgroups.Limits, int]] = {}   # id -> (limits, sample read)
        self._container_counters = CounterState()
        self._process_counters = CounterState()
        self._oom_counters = CounterState()
        self._oom_marks: dict[str, ooms.OomMark] = {}
        self._recent_ooms: dict[str, tuple[OomEvent, ...]] = {}
        self._errors = {source: 0 for source in SOURCES + (("homes",) if config.home_filesystem else ())}
        self._read_homes = read_homes
        self._homes: tuple[tuple[HomeUsage, ...], bool] = ((), False)
        self._names: dict[int, str] = {}
        self._slice_limits: cgroups.Limits | None = None
        self._sample_no = 0
        self._host_memory = 0
        self._slices = self._slice_layout()
        if self._slices is None:
            procs.raise_fd_limit()  # the process table holds a /proc/<pid>/stat per user process
        self._table = procs.ProcessTable(config.proc_root, config.min_uid, config.pss_every)

    def _slice_layout(self) -> slices.SliceLayout | None:
        cfg = self.config
        if cfg.user_processes == "proc":
            return None
        if cfg.user_processes == "auto" and not slices.is_systemd_host(cfg.cgroup_root, self._mode, cfg.run_root):
            return None
        found = slices.layout(cfg.cgroup_root, self._mode)
        if found is None:
            log.warning("user_processes %s: %s has no user.slice with CPU and memory accounting; reading "
                        "users' processes from %s", cfg.user_processes, cfg.cgroup_root, cfg.proc_root)
        return found

    @property
    def process_source(self) -> str:
        return "user_slices" if self._slices is not None else "proc"

    def sample(self) -> Snapshot:
        started = time.perf_counter()
        cfg = self.config
        known = self.directory.current()
        mem = procs.meminfo(cfg.proc_root)
        self._host_memory = mem.get("MemTotal", 0)
        containers, cgroups_ok = self._read_containers(known)
        self._container_counters, container_cpu = advance(
            self._container_counters, {c.info.id: (c.info.user, c.stats.cpu_seconds) for c in containers})
        self._oom_marks, events = ooms.detect(self._oom_marks, containers, self._clock(), self._shared_limit,
                                              first=self._sample_no == 0, reached_own_limit=self._reached_own_limit)
        self._recent_ooms = ooms.keep_recent(self._recent_ooms, events)
        self._oom_counters, oom_kills = advance(
            self._oom_counters, {c.info.id: (c.info.user, c.stats.oom_kills) for c in containers})

        outside, observed = self._outside_processes()
        self._sample_no += 1
        self._process_counters, process_cpu = advance(self._process_counters, observed)

        gpu = self.nvml.read()
        nvml_absent = not gpu.up and any(s in gpu.error for s in NVML_ABSENT)
        if not gpu.up and not nvml_absent:
            self._errors["nvml"] += 1
        user_gpus = attribute_gpus(gpu.devices, gpu.processes, self._gpu_pid_users(gpu, known),
                                   known.values())
        if not self.directory.up:
            self._errors["docker"] += 1
        if not cgroups_ok:
            self._errors["cgroups"] += 1

        home_usage, homes_ok = self._home_usage()
        host = Host(cpus=psutil.cpu_count() or os.cpu_count() or 0,
                    memory_total_bytes=mem.get("MemTotal", 0),
                    memory_available_bytes=mem.get("MemAvailable", mem.get("MemFree", 0)),
                    gpus_total=len(gpu.devices), gpus_free=free_gpus(gpu.devices, known.values()),
                    nvml_available=gpu.up, nvml_absent=nvml_absent)
        health = Health(
            sample_duration_seconds=time.perf_counter() - started,
            source_up=(("cgroups", cgroups_ok), ("docker", self.directory.up), ("nvml", gpu.up))
            + ((("homes", homes_ok),) if cfg.home_filesystem else ()),
            errors_total=tuple(sorted(self._errors.items())),
            cgroup_mode=self._mode,
            process_source=self.process_source,
        )
        users = build_users(containers, container_cpu, outside, process_cpu, user_gpus, oom_kills, self._recent_ooms)
        return Snapshot(time=self._clock(), host=host, containers=tuple(containers), users=users,
                        gpus=gpu.devices, user_gpus=user_gpus, health=health, homes=home_usage,
                        node=node_capacity(cfg.node_name, self._users_slice_limits(), host, users))

    def _users_slice_limits(self) -> cgroups.Limits | None:
        """The users' slice's limits, re-read every limits_every samples (they change only when
        the slice unit does)."""
        cfg = self.config
        if (self._sample_no - 1) % max(1, cfg.limits_every) == 0:
            init = cgroups.read_proc_cgroup(cfg.proc_root, 1)
            where = cgroups.locate_slice(cfg.cgroup_root, self._mode, cfg.users_slice,
                                         cgroups.parse_proc_cgroup(init) if init else None)
            self._slice_limits = cgroups.read_limits(where) if where else None
        return self._slice_limits

    def _home_usage(self) -> tuple[tuple[HomeUsage, ...], bool]:
        """Users' (uid >= min_uid) use and quota on home_filesystem, re-read every homes_every
        samples (the last reading in between); ((), True) when no filesystem is configured."""
        cfg = self.config
        if not cfg.home_filesystem:
            return (), True
        if (self._sample_no - 1) % max(1, cfg.homes_every) == 0:
            try:
                found = self._read_homes(cfg.home_filesystem)
            except OSError as e:
                log.warning("homes: %s", e)
                self._errors["homes"] += 1
                self._homes = ((), False)
            else:
                self._homes = (tuple(sorted((HomeUsage(_username(uid, self._names), used, quota)
                                             for uid, (used, quota) in found.items() if uid >= cfg.min_uid),
                                            key=lambda h: h.user)), True)
        return self._homes

    def _outside_processes(self) -> tuple[list[tuple[str, int, int]], dict]:
        """Users' processes outside containers: (user, memory, count) rows and the CPU counters'
        observations, from the user slices on systemd hosts, else from /proc."""
        if self._slices is not None:
            found = slices.user_slices(self._slices, self.config.min_uid)
            named = [(_username(s.uid, self._names), s) for s in found]
            return ([(name, s.memory_bytes, max(1, s.tasks)) for name, s in named],
                    {("slice", s.uid, s.ident): (name, s.cpu_seconds) for name, s in named})
        named = [(_username(p.uid, self._names), p) for p in self._table.scan()]
        return ([(name, p.pss_bytes, 1) for name, p in named],
                {(p.pid, p.start_time): (name, p.cpu_seconds) for name, p in named})

    def _shared_limit(self, c: ContainerSample) -> int:
        """The limit above a container: its slices' tightest, else the host's memory."""
        where = self._where.get(c.info.id)
        limit = cgroups.ancestor_memory_limit(where, self.config.cgroup_root) if where else None
        return limit if limit is not None else self._host_memory

    def _reached_own_limit(self, c: ContainerSample) -> bool:
        where = self._where.get(c.info.id)
        return cgroups.reached_own_limit(where) if where else False

    def _read_containers(self, known: dict[str, ContainerInfo]) -> tuple[list[ContainerSample], bool]:
        """Read each container's cgroup; a vanished one makes Docker be asked again."""
        samples, ok = [], self._mode != cgroups.NONE
        for cid in list(self._where):
            if cid not in known:
                del self._where[cid]
                self._limits.pop(cid, None)
        n, every = self._sample_no, self.config.limits_every
        for cid, info in sorted(known.items(), key=lambda kv: kv[1].name):
            where = self._where.get(cid)
            if where is None:
                text = cgroups.read_proc_cgroup(self.config.proc_root, info.init_pid) if info.init_pid else None
                where = cgroups.locate(self.config.cgroup_root, self._mode, cid,
                                       cgroups.parse_proc_cgroup(text) if text else None, info.cgroup_parent)
                if where is None:
                    ok = False
                    self.directory.invalidate(cid)
                    continue
                self._where[cid] = where
            try:
                limits = self._limits.get(cid)
                if limits is None or n - limits[1] >= every:
                    limits = self._limits[cid] = (cgroups.read_limits(where), n)
                samples.append(ContainerSample(info=info, stats=cgroups.read_stats(where, limits[0])))
            except (OSError, ValueError):
                del self._where[cid]
                self._limits.pop(cid, None)
                self.directory.invalidate(cid)  # removed since Docker last told us: not an error
        return samples, ok

    def _gpu_pid_users(self, reading: NvmlReading, known: dict[str, ContainerInfo]) -> dict[int, str]:
        """pid -> cgroup -> container -> user; a pid outside containers belongs to its uid."""
        owners = {}
        for p in reading.processes:
            text = cgroups.read_proc_cgroup(self.config.proc_root, p.pid)
            if text is None:
                continue
            cid = cgroups.container_id_in(text)
            if cid is not None:
                if cid in known:
                    owners[p.pid] = known[cid].user
                continue
            try:
                uid = procs.owner_uid(f"{self.config.proc_root}/{p.pid}")
            except OSError:
                continue
            if uid >= self.config.min_uid and uid != procs.NOBODY:
                owners[p.pid] = _username(uid, self._names)
        return owners

    def close(self) -> None:
        self._table.close()
        self.directory.close()
        self.nvml.close()
