"""Render the latest Snapshot as Prometheus metric families (a custom prometheus_client Collector).

A scrape never samples: it renders whatever the sample loop finished last, so scrapes are cheap
and several scrapers see the same numbers.
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .snapshot import Snapshot


PSS_HELP = {
    "proc": "Proportional set size of the user's processes outside containers.",
    "user_slices": "Memory of the user's processes outside containers: their systemd user slice's charged memory "
                   "minus inactive file cache (this host has systemd; not PSS).",
}


def _gauge(name: str, doc: str, labels=(), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit) if labels else \
        GaugeMetricFamily(name, doc, unit=unit)


def _counter(name: str, doc: str, labels=()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def families(snap: Snapshot) -> list[Metric]:
    """All metric families for one snapshot (pure: same snapshot, same text).

    Every per-user, per-container, per-GPU and per-node series carries `node` (the exporter's
    --node-name): on a swarm each node's exporter is scraped with the same names, and the node
    tells them apart. Host and exporter series get it from the scrape target's label."""
    out: list[Metric] = []
    node = snap.node.name
    U, UC, UG, N = ("node", "user"), ("node", "user", "container"), ("node", "user", "gpu"), ("node",)

    # --- per user: their containers ---
    user_families = [
        (_counter("jupyterhub_user_cpu_seconds", "CPU time used by the user's containers, kept across container restarts.", U), "cpu_seconds_total"),
        (_gauge("jupyterhub_user_memory_working_set_bytes",
                "Memory of the user's containers minus inactive page cache (what the OOM killer weighs).", U),
         "memory_working_set_bytes"),
        (_gauge("jupyterhub_user_memory_rss_bytes", "Anonymous resident memory of the user's containers.", U), "memory_rss_bytes"),
        (_gauge("jupyterhub_user_memory_limit_bytes", "Memory limit of the user's containers (0: none).", U), "memory_limit_bytes"),
        (_gauge("jupyterhub_user_memory_guarantee_bytes", "Memory guaranteed (reserved) to the user's containers.", U), "memory_guarantee_bytes"),
        (_gauge("jupyterhub_user_cpu_limit_cores", "CPU limit of the user's containers in cores (0: none).", U), "cpu_limit_cores"),
        (_gauge("jupyterhub_user_cpu_guarantee_cores", "CPU cores guaranteed to the user's containers.", U), "cpu_guarantee_cores"),
    ]
    user_families.append((_counter("jupyterhub_user_oom_kills",
                                   "Processes of the user's containers killed by the OOM killer, kept across container restarts.", U),
                          "oom_kills_total"))
    container_users = [u for u in snap.users if u.containers]
    for family, attr in user_families:
        for u in container_users:
            family.add_metric([node, u.name], getattr(u, attr))
        out.append(family)

    # --- per user: processes outside containers ---
    proc_cpu = _counter("jupyterhub_user_process_cpu_seconds", "CPU time of the user's processes outside containers (e.g. SSH sessions).", U)
    proc_pss = _gauge("jupyterhub_user_process_memory_pss_bytes", PSS_HELP[snap.health.process_source], U)
    for u in snap.users:
        if u.process_count:
            proc_cpu.add_metric([node, u.name], u.process_cpu_seconds_total)
            proc_pss.add_metric([node, u.name], u.process_memory_pss_bytes)
    out += [proc_cpu, proc_pss]

    # --- per user: their home (the homes' filesystem's user quota; absent unless it is read) ---
    if snap.homes:
        home = _gauge("jupyterhub_user_home_bytes", "Bytes of the user's files on the homes' filesystem (its quota accounting).", U)
        quota = _gauge("jupyterhub_user_home_quota_bytes", "The user's quota on the homes' filesystem (absent: none).", U)
        for h in snap.homes:
            home.add_metric([node, h.user], h.used_bytes)
            if h.quota_bytes:
                quota.add_metric([node, h.user], h.quota_bytes)
        out += [home, quota]

    # --- per user per GPU ---
    if snap.host.nvml_available:
        gmem = _gauge("jupyterhub_user_gpu_memory_used_bytes", "GPU memory used by the user's processes.", UG)
        gutil = _gauge("jupyterhub_user_gpu_utilization_ratio", "Share of the GPU's utilization attributed to the user (split by memory when shared).", UG)
        for g in snap.user_gpus:
            gmem.add_metric([node, g.user, g.gpu], g.memory_used_bytes)
            gutil.add_metric([node, g.user, g.gpu], g.utilization_ratio)
        out += [gmem, gutil]

    # --- per container ---
    c_cpu = _counter("jupyterhub_container_cpu_seconds", "CPU time used by the container (its cgroup).", UC)
    c_ws = _gauge("jupyterhub_container_memory_working_set_bytes", "Container memory minus inactive page cache.", UC)
    c_rss = _gauge("jupyterhub_container_memory_rss_bytes", "Container anonymous resident memory.", UC)
    c_limit = _gauge("jupyterhub_container_memory_limit_bytes", "Container memory limit enforced by its cgroup (absent: none).", UC)
    c_res = _gauge("jupyterhub_container_memory_reservation_bytes", "Container memory reservation (v1 soft limit, v2 memory.low).", UC)
    c_pids = _gauge("jupyterhub_container_pids", "Processes and threads in the container.", UC)
    c_oom = _counter("jupyterhub_container_oom_kills", "Processes of the container killed by the OOM killer.", UC)
    for c in snap.containers:
        key, s = [node, c.info.user, c.info.name], c.stats
        c_cpu.add_metric(key, s.cpu_seconds)
        c_ws.add_metric(key, s.memory_working_set_bytes)
        c_rss.add_metric(key, s.memory_rss_bytes)
        if s.memory_limit_bytes is not None:
            c_limit.add_metric(key, s.memory_limit_bytes)
        c_res.add_metric(key, s.memory_reservation_bytes)
        c_pids.add_metric(key, s.pids)
        c_oom.add_metric(key, s.oom_kills)
    out += [c_cpu, c_ws, c_rss, c_limit, c_res, c_pids, c_oom]

    # --- host ---
    h = snap.host
    out.append(GaugeMetricFamily("jupyterhub_host_cpus", "CPUs of the host.", value=h.cpus))
    out.append(GaugeMetricFamily("jupyterhub_host_memory_total_bytes", "Memory of the host.", value=h.memory_total_bytes))
    out.append(GaugeMetricFamily("jupyterhub_host_memory_available_bytes", "Memory available for new work (MemAvailable).", value=h.memory_available_bytes))
    if h.nvml_available:
        out.append(GaugeMetricFamily("jupyterhub_host_gpus", "GPUs NVML reports.", value=h.gpus_total))
        out.append(GaugeMetricFamily("jupyterhub_host_gpus_free", "GPUs no running container holds.", value=h.gpus_free))
        g_util = _gauge("jupyterhub_gpu_utilization_ratio", "Time the GPU was busy over the driver's last sample period.", ("node", "gpu"))
        g_used = _gauge("jupyterhub_gpu_memory_used_bytes", "GPU memory in use.", ("node", "gpu"))
        g_total = _gauge("jupyterhub_gpu_memory_total_bytes", "GPU memory installed.", ("node", "gpu"))
        for d in snap.gpus:
            g_util.add_metric([node, str(d.index)], d.utilization_ratio)
            g_used.add_metric([node, str(d.index)], d.memory_used_bytes)
            g_total.add_metric([node, str(d.index)], d.memory_total_bytes)
        out += [g_util, g_used, g_total]

    # --- the node's guarantee capacity (what the spawner may still guarantee here) ---
    n = snap.node
    for name, doc, value in (
            ("jupyterhub_node_cpu_guarantee_capacity_cores",
             "CPU cores the node's users may be guaranteed in all (the users' slice's CPUQuota, else the host's CPUs).",
             n.capacity_cpus),
            ("jupyterhub_node_memory_guarantee_capacity_bytes",
             "Memory the node's users may be guaranteed in all (the users' slice's MemoryMax, else the host's memory).",
             n.capacity_mem_bytes),
            ("jupyterhub_node_cpu_guaranteed_cores", "CPU cores guaranteed to the node's running containers.",
             n.guaranteed_cpus),
            ("jupyterhub_node_memory_guaranteed_bytes", "Memory guaranteed to the node's running containers.",
             n.guaranteed_mem_bytes)):
        family = _gauge(name, doc, N)
        family.add_metric([node], value)
        out.append(family)

    # --- the exporter itself ---
    hh = snap.health
    out.append(GaugeMetricFamily("hubmetrics_sample_duration_seconds", "Wall time the last sample took.", value=hh.sample_duration_seconds))
    errors = _counter("hubmetrics_sample_errors", "Samples in which a source failed.", ("source",))
    for source, count in hh.errors_total:
        errors.add_metric([source], count)
    up = _gauge("hubmetrics_source_up", "1 if the source answered in the last sample; 0: its numbers are stale or absent.", ("source",))
    for source, ok in hh.source_up:
        up.add_metric([source], 1 if ok else 0)
    out += [errors, up]
    out.append(GaugeMetricFamily("hubmetrics_nvml_up", "1 if NVML answered in the last sample; 0: GPU metrics are absent.", value=1 if h.nvml_available else 0))
    out.append(GaugeMetricFamily("hubmetrics_last_sample_timestamp_seconds", "When the last sample finished (Unix time).", value=snap.time))
    return out


class SnapshotCollector:
    """prometheus_client Collector over whatever snapshot `latest()` returns (None: not yet)."""

    def __init__(self, latest: Callable[[], Snapshot | None]):
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        snap = self._latest()
        if snap is not None:
            yield from families(snap)

    def describe(self) -> list:
        return []  # families depend on the snapshot; do not let register() call collect()
