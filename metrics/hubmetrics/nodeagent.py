"""`jbm-node-agent`: restores on a swarm node what a swarm service cannot ask its container for.

Swarm gives a task container only the service's CPU quota and memory limit. The spawner
therefore puts the rest of its single-server Docker arguments (profilespawner/dockerargs.py) as
JSON in the container label `org.jupyterhub-baremetal.host-config`, and this agent, one per node,
applies it with the engine's container update:

- cpu_shares      (the QoS class's CPU weight: on a node, the guarantee's part of the node's
  CPU label of the kernel's range, profilespawner.qos.node_cpu_shares; best effort 2),
- mem_reservation (the memory guarantee: the v1 soft limit, memory.low on v2),
- memswap_limit   (= the memory limit: no escape into swap),
- pids_limit,
- oom_score_adj   (the OOM order by guarantee: neither a service nor `docker update` can set
  it, so the agent writes it into /proc/<pid>/oom_score_adj of every process of the container,
  found through its cgroup's cgroup.procs. Only ever raised, as runc would set it: a process
  that raised its own score keeps it. The agent's CAP_SYS_RESOURCE also makes the value the
  process's floor (the kernel's oom_score_adj_min), so the user cannot lower it again; its
  CAP_DAC_OVERRIDE lets it write the file of a process of another uid. Processes forked later
  inherit it; a `docker exec` does not: it gets the engine's 0, as a user never does.)

On start it applies the label of every running container that carries it, then follows the
engine's container start events (a restarted task is a new container). A label it cannot trust
(not JSON, a key it does not know, a value outside what Docker and the kernel accept) is refused
as a whole and logged with the container, key, value and what is allowed; the container is left
as it is. When the engine goes away (dockerd restart), it reconnects with a bounded back-off and
re-applies to every running container (starts may have been missed), and gives up with exit
status 1 after `--max-reconnects` failed attempts in a row, so systemd restarts it.

What it cannot restore: the cgroup parent (`docker update` cannot move a container); the nodes'
daemon.json puts every container in the users' slice instead, and the spawner spreads the CPU
weights over the kernel's range in place of the best-effort class's own parent (metrics/README.md,
"Guarantees on a swarm"). The pure functions decide; `Agent` is the thin shell around docker-py
and /proc.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Mapping

from . import cgroups, labels

log = logging.getLogger("hubmetrics.nodeagent")

# Bounds as Docker 20.10 (daemon/daemon_unix.go, verifyPlatformContainerResources) and the
# kernel accept them; a value outside would be refused by the engine or silently clamped.
MIN_CPU_SHARES = 2             # the kernel's cpu.shares range
MAX_CPU_SHARES = 262_144
MIN_MEMORY = 6 * 1024 ** 2     # "Minimum memory reservation allowed is 6MB"
MAX_PIDS = 4_194_304           # the kernel's PID_MAX_LIMIT: pids.max takes no more
MAX_OOM_SCORE_ADJ = 1000       # the kernel's OOM_SCORE_ADJ_MAX; below 0 would protect a server
OOM_KEY = "oom_score_adj"      # not an engine field: written into /proc by the agent
SCORE_PASSES = 3               # re-reads of cgroup.procs, for processes forked while writing
# levels searched for a container's cgroup when its init's /proc/<pid>/cgroup does not name it
# (an engine in another pid namespace): a node that is itself a container (systemd in Docker,
# LXD) has the slices below its own cgroup, e.g. docker/<node>/jupyterhub.slice/<users>/<scope>
SEARCH_DEPTH = 6

# key -> the engine's HostConfig field (what inspect shows and the update API takes)
FIELDS = {
    "cpu_shares": "CpuShares",
    "mem_reservation": "MemoryReservation",
    "memswap_limit": "MemorySwap",
    "pids_limit": "PidsLimit",
}
ALLOWED_KEYS = tuple(sorted((*FIELDS, OOM_KEY)))


@dataclass(frozen=True)
class Decision:
    """What to do with one container: `update` the engine's fields (empty: nothing to change)
    and raise its processes' `oom_score_adj` (None: leave them), or refuse the label (`errors`,
    each naming the key, the value and what is allowed)."""
    update: dict = field(default_factory=dict)
    errors: tuple = ()
    oom_score_adj: int | None = None


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_value(key: str, value, mem_limit: int) -> str | None:
    """None if `value` is acceptable for `key` on a container whose memory limit is `mem_limit`
    bytes (0: none), otherwise what is wrong and what is allowed."""
    if key == "cpu_shares":
        if _whole(value) and MIN_CPU_SHARES <= value <= MAX_CPU_SHARES:
            return None
        return f"a whole number from {MIN_CPU_SHARES} to {MAX_CPU_SHARES}"
    if key == "mem_reservation":
        top = mem_limit if mem_limit > 0 else None
        if _whole(value) and value >= MIN_MEMORY and (top is None or value <= top):
            return None
        return f"a whole number of bytes from {MIN_MEMORY}" + (
            f" to the container's memory limit {top}" if top else "")
    if key == "memswap_limit":
        if mem_limit <= 0:
            return "only for a container with a memory limit (this one has none)"
        if _whole(value) and value >= mem_limit:
            return None
        return f"a whole number of bytes >= the container's memory limit {mem_limit} (no unlimited -1)"
    if key == "pids_limit":
        if _whole(value) and 1 <= value <= MAX_PIDS:
            return None
        return f"a whole number from 1 to {MAX_PIDS} (no unlimited 0 or -1)"
    if key == OOM_KEY:
        if _whole(value) and 0 <= value <= MAX_OOM_SCORE_ADJ:
            return None
        return f"a whole number from 0 to {MAX_OOM_SCORE_ADJ} (a label may not protect a server from the OOM killer)"
    return f"one of the keys {', '.join(ALLOWED_KEYS)}"


def parse_host_config(text: str, mem_limit: int) -> tuple[dict, list[str]]:
    """The label's JSON -> ({key: value}, errors); any error refuses the whole label."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as e:
        return {}, [f"label {labels.HOST_CONFIG}={text!r} is not JSON ({e}); allowed: a JSON object "
                    f"of {', '.join(ALLOWED_KEYS)}"]
    if not isinstance(data, dict):
        return {}, [f"label {labels.HOST_CONFIG}={text!r} is not a JSON object; allowed: a JSON object "
                    f"of {', '.join(ALLOWED_KEYS)}"]
    errors = []
    for key in sorted(data):
        allowed = check_value(key, data[key], mem_limit)
        if allowed:
            errors.append(f"key {key!r} value {data[key]!r}: allowed {allowed}")
    return (data if not errors else {}), errors


def decide(container_labels: Mapping[str, str], host_config: Mapping) -> Decision | None:
    """From a container's labels and its current HostConfig (as the engine inspects it): None if
    it is not ours (no host-config label), else what to update (only fields that differ)."""
    text = container_labels.get(labels.HOST_CONFIG)
    if text is None:
        return None
    mem_limit = int(host_config.get("Memory") or 0)
    wanted, errors = parse_host_config(text, mem_limit)
    if errors:
        return Decision(errors=tuple(errors))
    update = {FIELDS[k]: v for k, v in sorted(wanted.items()) if k in FIELDS and host_config.get(FIELDS[k]) != v}
    if "MemorySwap" in update:
        # runc on cgroup v2 refuses a swap limit without the memory limit in the same update
        # ("unable to set swap limit without memory limit"): send the unchanged limit along
        update["Memory"] = mem_limit
    return Decision(update=update, oom_score_adj=wanted.get(OOM_KEY))


def to_raise(scores: Mapping[int, int], wanted: int) -> list[int]:
    """The pids (of {pid: current oom_score_adj}) whose score is below `wanted`, in order; a
    process that raised its own score keeps it."""
    return sorted(pid for pid, score in scores.items() if score < wanted)


def backoff(attempt: int, base: float = 0.5, cap: float = 10.0) -> float:
    """Seconds to wait before reconnect attempt `attempt` (1, 2, ...): doubling, at most `cap`."""
    return min(cap, base * 2 ** max(0, attempt - 1))


def _docker_client(url: str | None):
    import docker
    if url:
        return docker.DockerClient(base_url=url, timeout=30)
    return docker.from_env(timeout=30)


class Agent:
    """The thin shell: list, inspect and update containers through docker-py; oom_score_adj
    through the container's cgroup (`cgroup_root`) and /proc (`proc_root`)."""

    def __init__(self, client_factory: Callable[[], object], max_reconnects: int = 30,
                 wait: Callable[[float], object] | None = None, cgroup_root: str = "/sys/fs/cgroup",
                 proc_root: str = "/proc"):
        self._cgroup_root = cgroup_root
        self._proc_root = proc_root
        self._mode = None   # the cgroup layout, detected on first use
        self._factory = client_factory
        self._max_reconnects = max_reconnects
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait   # returns early on stop()
        self._events = None
        self.applied = 0     # containers updated
        self.refused = 0     # labels refused
        self.scored = 0      # containers whose processes' oom_score_adj was raised

    def apply(self, api, container_id: str) -> Decision | None:
        """Inspect one container and apply its label; never raises for a bad label."""
        info = api.inspect_container(container_id)
        name = info.get("Name", "").lstrip("/") or container_id[:12]
        if not info.get("State", {}).get("Running"):
            return None
        decision = decide(info.get("Config", {}).get("Labels") or {}, info.get("HostConfig") or {})
        if decision is None:
            return None
        if decision.errors:
            self.refused += 1
            for error in decision.errors:
                log.warning("container %s (%s): refused %s: %s; left as it is", name, container_id[:12],
                            labels.HOST_CONFIG, error)
            return decision
        if decision.oom_score_adj is not None:   # first: whatever the engine says to the update
            self.raise_scores(info, name, decision.oom_score_adj)
        if decision.update:
            # docker-py's update_container has no pids_limit: post the engine's own fields
            result = api._post_json(api._url("/containers/{0}/update", container_id), data=decision.update)
            api._raise_for_status(result)
            self.applied += 1
            log.info("container %s (%s): applied %s", name, container_id[:12],
                     json.dumps(decision.update, sort_keys=True))
        return decision

    def _procs_file(self, info: dict) -> str | None:
        """The container's cgroup.procs (pids as this process's /proc sees them, whatever pid
        namespace the engine is in), through its init's /proc/<pid>/cgroup when that is the
        container's, else Docker's layouts."""
        if self._mode is None:
            self._mode = cgroups.detect_mode(self._cgroup_root)
        text = cgroups.read_proc_cgroup(self._proc_root, info.get("State", {}).get("Pid") or 0)
        cg = cgroups.locate(self._cgroup_root, self._mode, info["Id"],
                            cgroups.parse_proc_cgroup(text) if text else None,
                            (info.get("HostConfig") or {}).get("CgroupParent") or "", SEARCH_DEPTH)
        where = cg and (cg.dir("memory") or cg.dir("pids"))
        return os.path.join(where, "cgroup.procs") if where else None

    def raise_scores(self, info: dict, name: str, wanted: int) -> int:
        """Raise every process of the container to `wanted` (bounded passes, for processes forked
        meanwhile); how many were written. Errors are logged, never raised."""
        procs = self._procs_file(info)
        if procs is None:
            log.error("container %s: its cgroup was not found under %s; oom_score_adj %d not set",
                      name, self._cgroup_root, wanted)
            return 0
        written = 0
        for _ in range(SCORE_PASSES):
            try:
                with open(procs) as f:
                    pids = [int(line) for line in f.read().split()]
            except OSError as e:   # the container stopped meanwhile
                log.info("container %s: %s unreadable (%s); it is gone", name, procs, e)
                break
            scores = {pid: cgroups.int_file(f"{self._proc_root}/{pid}/oom_score_adj") for pid in pids}  # None: gone
            todo = to_raise({pid: s for pid, s in scores.items() if s is not None}, wanted)
            if not todo:
                break
            for pid in todo:
                try:
                    with open(f"{self._proc_root}/{pid}/oom_score_adj", "w") as f:
                        f.write(str(wanted))
                    written += 1
                except (FileNotFoundError, ProcessLookupError):
                    pass   # the process exited
                except OSError as e:
                    log.error("container %s: cannot set oom_score_adj %d of pid %d (%s); the agent needs "
                              "CAP_DAC_OVERRIDE and CAP_SYS_RESOURCE (systemd/jbm-node-agent.service)",
                              name, wanted, pid, e)
                    return written
        if written:
            self.scored += 1
            log.info("container %s: oom_score_adj %d for %d processes", name, wanted, written)
        return written

    def _apply_logged(self, api, container_id: str) -> None:
        import docker
        try:
            self.apply(api, container_id)
        except docker.errors.NotFound:
            log.info("container %s is gone before it could be updated", container_id[:12])
        except docker.errors.APIError as e:  # the engine refused: log, keep following
            log.error("container %s: the engine refused the update: %s", container_id[:12], e)

    def apply_all(self, api) -> None:
        for c in api.containers(filters={"label": labels.HOST_CONFIG, "status": "running"}):
            self._apply_logged(api, c["Id"])

    def run_once(self) -> None:
        """Subscribe to start events, apply to what already runs, then follow (until the stream ends)."""
        client = self._factory()
        api = client.api
        api.ping()
        self._events = api.events(decode=True, filters={"type": "container", "event": "start",
                                                         "label": labels.HOST_CONFIG})
        try:
            self.apply_all(api)   # after subscribing: a start in between is seen twice, never missed
            log.info("following container starts (applied %d, refused %d so far)", self.applied, self.refused)
            for event in self._events:
                if self._stop.is_set():
                    break
                if event.get("status") == "start" or event.get("Action") == "start":
                    self._apply_logged(api, event.get("id") or event.get("Actor", {}).get("ID", ""))
        finally:
            self._events.close()
            client.close()

    def run(self) -> int:
        """Follow forever; reconnect with a bounded back-off; 1 after too many failures in a row."""
        failures = 0
        while not self._stop.is_set():
            try:
                self.run_once()
                failures = 0   # the stream ended (the engine stopped): reconnect after a short pause
                if self._stop.is_set():
                    break
                log.warning("the engine closed the event stream; reconnecting")
                self._wait(backoff(1))
            except Exception as e:  # noqa: BLE001 - the engine is down or restarting: any error means reconnect
                if self._stop.is_set():
                    break
                failures += 1
                if failures > self._max_reconnects:
                    log.error("the engine did not answer %d times in a row (%s); giving up", failures - 1, e)
                    return 1
                delay = backoff(failures)
                log.warning("the engine does not answer (%s); reconnect %d/%d in %.1f s",
                            e, failures, self._max_reconnects, delay)
                self._wait(delay)
        return 0

    def stop(self) -> None:
        self._stop.set()
        if self._events is not None:
            try:
                self._events.close()
            except Exception:  # noqa: BLE001 - closing an already broken stream
                pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jbm-node-agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--docker-url", default="", metavar="URL",
                   help="the engine, e.g. unix:///run/docker.sock (default: $DOCKER_HOST, else the local socket)")
    p.add_argument("--max-reconnects", type=int, default=30, metavar="N",
                   help="failed reconnects in a row before exiting with status 1 (default 30, about 5 minutes)")
    p.add_argument("--cgroup-root", default="/sys/fs/cgroup", metavar="DIR",
                   help="where the cgroup hierarchies are mounted (default /sys/fs/cgroup)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_reconnects < 0:
        build_parser().error(f"--max-reconnects {args.max_reconnects}: expected a whole number >= 0")
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    agent = Agent(lambda: _docker_client(args.docker_url or None), max_reconnects=args.max_reconnects,
                  cgroup_root=args.cgroup_root)

    def shutdown(signum, _frame):
        log.info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
