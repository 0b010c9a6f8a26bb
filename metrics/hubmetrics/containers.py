"""Which running containers belong to which hub user, from the labels the spawner sets.

Docker is asked only when something changed (a container event arrived, a container's cgroup
vanished) or every `ttl` seconds as a safety net, so a sample normally costs no API call. When the
daemon does not answer, the last known containers keep being served and the directory says so.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from . import labels
from .snapshot import ContainerInfo

log = logging.getLogger(__name__)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def info_from_labels(container_id: str, name: str, container_labels: Mapping[str, str],
                     init_pid: int = 0, cgroup_parent: str = "") -> ContainerInfo | None:
    """A hub user's container as the exporter sees it; None if it is not a hub container."""
    user = container_labels.get(labels.USER)
    if not user:
        return None
    gpus = tuple(g.strip() for g in container_labels.get(labels.GPUS, "").split(",") if g.strip())
    return ContainerInfo(
        id=container_id, name=name.lstrip("/"), user=user, init_pid=init_pid,
        cgroup_parent=cgroup_parent or "",
        cpu_limit_cores=_float(container_labels.get(labels.CPU_LIMIT)),
        mem_limit_bytes=_int(container_labels.get(labels.MEM_LIMIT)),
        cpu_guarantee_cores=_float(container_labels.get(labels.CPU_GUARANTEE)) or 0.0,
        mem_guarantee_bytes=_int(container_labels.get(labels.MEM_GUARANTEE)) or 0,
        gpus=gpus,
        resource_profile=container_labels.get(labels.RESOURCE_PROFILE, ""),
        image_profile=container_labels.get(labels.IMAGE_PROFILE, ""),
    )


def _docker_client():
    import docker
    return docker.from_env(timeout=10)


class ContainerDirectory:
    """A cached {container id: ContainerInfo} for running hub containers."""

    def __init__(self, client_factory: Callable[[], object] = _docker_client, ttl: float = 60.0,
                 watch_events: bool = True):
        self._factory = client_factory
        self._ttl = ttl
        self._client = None
        self._known: dict[str, ContainerInfo] = {}
        self._dirty = threading.Event()
        self._dirty.set()
        self._last_refresh = 0.0
        self.up = False
        self.errors = 0
        self._watch_events = watch_events
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- what the sampler calls ---
    def current(self) -> dict[str, ContainerInfo]:
        """The containers, refreshed first if Docker told us something changed."""
        if self._watch_events and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="docker-events", daemon=True)
            self._watcher.start()
        if self._dirty.is_set() or not self.up or time.monotonic() - self._last_refresh > self._ttl:
            self.refresh()
        return dict(self._known)

    def invalidate(self, container_id: str | None = None) -> None:
        """Something looked wrong (e.g. a cgroup vanished): ask Docker again next sample."""
        if container_id is not None:
            self._known.pop(container_id, None)
        self._dirty.set()

    def refresh(self) -> None:
        self._dirty.clear()
        try:
            if self._client is None:
                self._client = self._factory()
            summaries = self._client.api.containers(filters={"label": labels.USER, "status": "running"})
            fresh = {}
            for summary in summaries:
                cid = summary["Id"]
                known = self._known.get(cid)
                if known is None:
                    known = self._inspect(cid)
                if known is not None:
                    fresh[cid] = known
            self._known = fresh
            self.up = True
            self._last_refresh = time.monotonic()
        except Exception as exc:  # noqa: BLE001  daemon down, socket gone, API error: keep the last known
            if self.up:
                log.warning("docker unreachable, serving the last known containers: %s", exc)
            self.up = False
            self.errors += 1
            self._client = None

    def _inspect(self, cid: str) -> ContainerInfo | None:
        import docker.errors
        try:
            data = self._client.api.inspect_container(cid)
        except docker.errors.NotFound:
            return None
        return info_from_labels(cid, data.get("Name", cid[:12]), data["Config"].get("Labels") or {},
                                init_pid=data["State"].get("Pid") or 0,
                                cgroup_parent=data["HostConfig"].get("CgroupParent") or "")

    # --- the event watcher (its own client: the events stream holds its connection) ---
    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                client = self._factory()
                for _event in client.events(decode=True, filters={
                        "type": "container", "event": ["start", "die", "destroy", "rename"]}):
                    self._dirty.set()
                    backoff = 1.0
                    if self._stopping.is_set():
                        return
            except Exception as exc:  # noqa: BLE001  any break of the stream: reconnect
                log.debug("docker events stream broke: %s", exc)
            self._dirty.set()
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def close(self) -> None:
        self._stopping.set()
