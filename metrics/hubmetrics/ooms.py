"""OOM kills, per user: which limit killed a process, detected as counters rise between samples.

Pure: `detect` folds one sample's container numbers into the previous marks and returns the new
marks and the kills seen. A container's `oom_kills` rising means one of its processes was killed;
whether its own limit did it is told by `own_limit_hits` rising in the same interval:
- cgroup v2: memory.events `oom` counts OOMs at this cgroup's own memory.max; `oom_kill` alone
  rising means an ancestor's limit (the users' slice) or the host ran out.
  "Rising" for the limit counter is since the previous kill, not the previous sample: the hits
  leading to an OOM can come a sample before the kill itself.
- cgroup v1: memory.oom_control `oom_kill` (kernel >= 4.13) counts kills; memory.failcnt counts
  charges that failed at the container's own limit, but some kernels leave it at 0, so a kill
  is also put on the container's limit when its high watermark (memory.max_usage_in_bytes, read
  only then) reached that limit. v1 cannot tell which limit triggered an OOM when both were reached in the
  same interval, and kernels before 4.13 report no kills at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from .snapshot import ContainerSample, OomEvent

CONTAINER = "container"
SHARED = "users' slice or host"
RECENT = 10   # events kept per user


@dataclass(frozen=True)
class OomMark:
    oom_kills: int
    own_limit_hits: int


def detect(marks: Mapping[str, OomMark], containers: Iterable[ContainerSample], now: float,
           shared_limit: Callable[[ContainerSample], int], first: bool = False,
           reached_own_limit: Callable[[ContainerSample], bool] = lambda c: False
           ) -> tuple[dict[str, OomMark], list[OomEvent]]:
    """New marks (by container id) and one event per container whose kills rose.

    A container seen for the first time counts from zero (it started after the previous sample),
    except in the exporter's `first` sample, which only sets the marks: kills before the exporter
    started have no time to report. `shared_limit` gives the limit above a container (only
    called for an event)."""
    new, events = {}, []
    for c in containers:
        s = c.stats
        before = marks.get(c.info.id)
        if before is None and first:
            new[c.info.id] = OomMark(s.oom_kills, s.own_limit_hits)
            continue
        if before is None or s.oom_kills < before.oom_kills or s.own_limit_hits < before.own_limit_hits:
            before = OomMark(0, 0)  # new since the last sample, or counters reset (a new cgroup)
        kills = s.oom_kills - before.oom_kills
        # the limit-hit mark moves only with a kill: the hits that lead to an OOM (v1 failcnt
        # rises while the kernel reclaims at the limit) may fall in the sample before the kill
        new[c.info.id] = OomMark(s.oom_kills, s.own_limit_hits if kills > 0 else before.own_limit_hits)
        if kills <= 0:
            continue
        own = s.own_limit_hits > before.own_limit_hits or reached_own_limit(c)
        if own:
            limit = c.info.mem_limit_bytes if c.info.mem_limit_bytes is not None else (s.memory_limit_bytes or 0)
        else:
            limit = shared_limit(c)
        events.append(OomEvent(time=now, user=c.info.user, container=c.info.name,
                               limit=CONTAINER if own else SHARED, limit_bytes=limit, kills=kills))
    return new, events


def keep_recent(recent: Mapping[str, tuple[OomEvent, ...]], events: Iterable[OomEvent],
                per_user: int = RECENT) -> dict[str, tuple[OomEvent, ...]]:
    """Each user's last `per_user` events, oldest first."""
    out = dict(recent)
    for e in events:
        out[e.user] = (out.get(e.user, ()) + (e,))[-per_user:]
    return out
