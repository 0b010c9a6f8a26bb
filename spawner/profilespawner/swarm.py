"""The swarm spawner's decisions, pure (no Docker calls): nodes, allocations, placement, the service.

- Nodes: capacity and GPUs come from node labels (docs/contracts.md "Swarm"), the ceiling for
  limits from what the engine reports of the node; a node without valid labels, not ready or not
  active is not schedulable, and ``nodes_from_api`` says why.
- Allocations: the guarantees and GPUs held on each node come from the services with our user
  label (their labels, their ``node.id==`` constraint, else their task's node), so they survive
  hub restarts: the hub keeps no state of its own.
- Placement: admission per node with admission.py and gpus.py (exclusive GPUs per node). Rule
  (best fit): among the nodes where the spawn fits, the one left with the fewest free GPUs (a
  CPU-only spawn keeps GPU nodes free for GPU users), then the least free guaranteed memory,
  then the fewest free guaranteed cores, then the hostname. Nothing fits: AdmissionError (409)
  naming what was asked and the biggest free slot.
- The service: a validated SpawnRequest as docker-py ``create_service`` keyword arguments, one
  replica pinned with ``node.id==<id>``, host-mode published port, dnsrr, no restart.
"""

import json
import math
from dataclasses import dataclass, field, replace
from typing import Dict, Tuple

from docker.types import ContainerSpec, EndpointSpec, Mount, Placement, Resources, RestartPolicy, ServiceMode, TaskTemplate

from . import dockerargs, labels
from .admission import Capacity, check_admission, guaranteed
from .capacity import HostCapacity
from .errors import AdmissionError, SpawnRefused
from .gpus import choose_gpus, free_gpus
from .request import SpawnRequest
from .running import RunningServer, running_servers
from .sizes import format_size

# task states that will never run again: their service holds nothing
TERMINAL_TASK_STATES = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
# task states on the way to running (start_object waits through them)
STARTING_TASK_STATES = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
CONSTRAINT = "node.id=="


class NodeLabelError(ValueError):
    """A node label that is missing or malformed: the message names the node, label and value."""


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    addr: str
    capacity: Capacity  # what the guarantees on the node may add up to (its labels)
    host: HostCapacity  # what the engine reports the node has: the ceiling for limits
    gpus: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    """What a node could still guarantee now."""
    node: Node
    cpus: float
    mem_bytes: int
    gpus: int


def _label_number(node_name, node_labels, key, cast):
    allowed = "a decimal number of cores > 0, e.g. 3.5" if cast is float else "an integer number of bytes > 0"
    if key not in node_labels:
        raise NodeLabelError(f"node {node_name}: label {key} is missing; allowed: {allowed}")
    text = node_labels[key]
    try:
        value = cast(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise NodeLabelError(f"node {node_name}: label {key}={text!r} is not valid; allowed: {allowed}")
    return value


def node_addr(node: dict) -> str:
    """The node's address: Status.Addr, or the manager address's host part when the engine
    reports 0.0.0.0 (a manager that was given --advertise-addr reports its own IP)."""
    addr = (node.get("Status") or {}).get("Addr") or ""
    if addr in ("", "0.0.0.0"):
        manager = (node.get("ManagerStatus") or {}).get("Addr") or ""
        addr = manager.rsplit(":", 1)[0] if manager else addr
    return addr


def node_from_api(node: dict) -> Node:
    """A schedulable Node from a docker-py ``nodes()`` entry, or NodeLabelError saying why not."""
    spec, status, desc = node.get("Spec") or {}, node.get("Status") or {}, node.get("Description") or {}
    name = desc.get("Hostname") or node.get("ID", "?")
    if status.get("State") != "ready":
        raise NodeLabelError(f"node {name}: state {status.get('State')!r}, not ready")
    if spec.get("Availability", "active") != "active":
        raise NodeLabelError(f"node {name}: availability {spec.get('Availability')!r}, not active")
    node_labels = spec.get("Labels") or {}
    cpus = _label_number(name, node_labels, labels.NODE_CAPACITY_CPUS, float)
    mem = _label_number(name, node_labels, labels.NODE_CAPACITY_MEM, int)
    if labels.NODE_GPUS not in node_labels:
        raise NodeLabelError(f"node {name}: label {labels.NODE_GPUS} is missing; allowed: comma-separated GPU "
                             "ids, or \"\" for none")
    gpus = tuple(dict.fromkeys(g.strip() for g in node_labels[labels.NODE_GPUS].split(",") if g.strip()))
    res = desc.get("Resources") or {}
    host = HostCapacity(float(res.get("NanoCPUs") or 0) / 1e9 or cpus, int(res.get("MemoryBytes") or 0) or mem)
    return Node(node["ID"], name, node_addr(node), Capacity(float(cpus), int(mem)), host, gpus)


def nodes_from_api(nodes) -> Tuple[Tuple[Node, ...], Tuple[str, ...]]:
    """(schedulable nodes, one message per node that is not)."""
    good, problems = [], []
    for entry in nodes:
        try:
            good.append(node_from_api(entry))
        except NodeLabelError as e:
            problems.append(str(e))
    return tuple(sorted(good, key=lambda n: n.hostname)), tuple(problems)


def limit_ceiling(nodes) -> HostCapacity:
    """The largest limits any node could give (request.build_request caps limits at it)."""
    if not nodes:
        return HostCapacity(0.0, 0)
    return HostCapacity(max(n.host.cpus for n in nodes), max(n.host.mem_bytes for n in nodes))


def service_node(service: dict, tasks=()) -> str:
    """The node a service of ours is pinned to (its constraint), else the node of its task."""
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    for constraint in placement.get("Constraints") or ():
        text = constraint.replace(" ", "")
        if text.startswith(CONSTRAINT):
            return text[len(CONSTRAINT):]
    for task in tasks:
        if task.get("NodeID"):
            return task["NodeID"]
    return ""


def allocations(services, tasks) -> Dict[str, Tuple[RunningServer, ...]]:
    """node id -> the servers holding guarantees/GPUs there, from our services (user label) and
    their tasks; a service whose tasks all ended holds nothing."""
    by_service = {}
    for task in tasks:
        by_service.setdefault(task.get("ServiceID"), []).append(task)
    out = {}
    for service in services:
        spec = service.get("Spec") or {}
        own = by_service.get(service.get("ID"), [])
        if own and all((t.get("Status") or {}).get("State") in TERMINAL_TASK_STATES for t in own):
            continue
        servers = running_servers([{"Name": spec.get("Name", ""), "Labels": spec.get("Labels") or {}}])
        node = service_node(service, own)
        if servers and node:
            out[node] = out.get(node, ()) + servers
    return out


def free_slot(node: Node, running, exclude=None) -> Slot:
    cpu_used, mem_used = guaranteed(running, exclude)
    return Slot(node, max(0.0, node.capacity.cpus - cpu_used), max(0, node.capacity.mem_bytes - mem_used),
                len(free_gpus(node.gpus, running, exclude)))


def biggest_slot(nodes, allocs, exclude=None):
    """The node that could guarantee the most now (GPUs, then memory, then cores), or None."""
    slots = [free_slot(n, allocs.get(n.id, ()), exclude) for n in nodes]
    return max(slots, key=lambda s: (s.gpus, s.mem_bytes, s.cpus, s.node.hostname), default=None)


def describe_slot(slot: Slot) -> str:
    return (f"node {slot.node.hostname} ({slot.cpus:g} CPUs, {format_size(slot.mem_bytes)}, "
            f"{slot.gpus} GPUs free)")


def _fit(req: SpawnRequest, node: Node, running, exclude):
    """GPU ids for req on node, or SpawnRefused saying why it does not fit there."""
    if req.cpu_limit > node.host.cpus + 1e-9:
        raise AdmissionError("cpu_limit", f"cpu_limit: {req.cpu_limit:g} CPUs but node {node.hostname} has "
                                          f"{node.host.cpus:g}")
    if req.mem_limit > node.host.mem_bytes:
        raise AdmissionError("mem_limit", f"mem_limit: {format_size(req.mem_limit)} but node {node.hostname} has "
                                          f"{format_size(node.host.mem_bytes)}")
    check_admission(req.cpu_guarantee, req.mem_guarantee, running, node.capacity, exclude)
    return choose_gpus(req.gpus, node.gpus, running, "exclusive", exclude)


def place(req: SpawnRequest, nodes, allocs, exclude=None, unschedulable=()) -> Tuple[Node, SpawnRequest]:
    """(chosen node, req with its GPU ids) by the best-fit rule (module doc); AdmissionError (409)
    naming what was asked and the biggest free slot when no node can take it. ``exclude``: the
    service this spawn replaces (its holdings do not count)."""
    fits, refusals = [], []
    for node in nodes:
        running = allocs.get(node.id, ())
        try:
            gpu_ids = _fit(req, node, running, exclude)
        except SpawnRefused as e:
            refusals.append(e)
            continue
        slot = free_slot(node, running, exclude)
        key = (slot.gpus - len(gpu_ids), slot.mem_bytes - req.mem_guarantee, slot.cpus - req.cpu_guarantee,
               node.hostname)
        fits.append((key, node, gpu_ids))
    if fits:
        _, node, gpu_ids = min(fits, key=lambda f: f[0])
        return node, replace(req, gpu_ids=tuple(gpu_ids))
    asked = (f"cpu_guarantee {req.cpu_guarantee:g} CPUs, mem_guarantee {format_size(req.mem_guarantee)}, "
             f"gpus {req.gpus}")
    slot = biggest_slot(nodes, allocs, exclude)
    biggest = f"the biggest free slot is {describe_slot(slot)}" if slot else "no node is schedulable"
    why = "; ".join(dict.fromkeys(e.message for e in refusals))
    down = f"; not schedulable: {'; '.join(unschedulable)}" if unschedulable else ""
    field_name = refusals[0].field if refusals else "cpu_guarantee"
    raise AdmissionError(field_name, (
        f"{field_name}: no swarm node can take this server (asked {asked}); {biggest}"
        f"{' (' + why + ')' if why else ''}{down}; ask for at most that or try later"))


@dataclass(frozen=True)
class ServiceInputs:
    """What the spawner gathers for one service (besides the SpawnRequest)."""
    name: str
    username: str
    uid: int
    gid: int
    groups: Tuple[int, ...]
    home: str
    env: Dict[str, str]
    args: Tuple[str, ...]
    port: int
    mounts: Tuple[dict, ...] = ()  # home (and configured) volumes: volume_mounts()
    scope_labels: Dict[str, str] = field(default_factory=dict)
    pids_limit: int = 1024
    networks: Tuple[str, ...] = ()  # the users' swarm network (the spawner's network_name), or none


def service_labels(req: SpawnRequest, inputs: ServiceInputs) -> dict:
    """The usual container labels (docs/contracts.md), on the service and its container."""
    return {**inputs.scope_labels, **dockerargs.container_labels(req, inputs.username)}


def host_config_label(req: SpawnRequest, pids_limit: int, node: Node) -> str:
    """The HOST_CONFIG label: what the node agent restores on `node`, JSON with sorted keys."""
    return json.dumps(dockerargs.node_host_config(req, pids_limit, node.capacity.cpus, node.capacity.mem_bytes),
                      sort_keys=True)


def volume_mounts(volume_binds) -> Tuple[dict, ...]:
    """dockerspawner's volume_binds (``{source: {bind, mode: ro|rw}}``, SystemUserSpawner's home
    entry ``{bind, ro: bool}``) as service mounts: a path is a bind, anything else a named volume.
    (SwarmSpawner.mounts reads only ``mode`` and fails on the home entry.)"""
    return tuple(Mount(target=vol["bind"], source=source, type="bind" if source.startswith("/") else "volume",
                       read_only=vol.get("mode") == "ro" or vol.get("ro") is True)
                 for source, vol in volume_binds.items())


def service_spec(req: SpawnRequest, node: Node, inputs: ServiceInputs) -> dict:
    """docker-py ``APIClient.create_service`` keyword arguments for req on node. Limits always set
    (quota and memory: never an unlimited service), reservations = guarantees, GPUs pinned by
    NVIDIA_VISIBLE_DEVICES (``void``: none), the pids limit in Resources.Limits.Pids (API 1.41)
    and, with what else swarm drops, in the HOST_CONFIG label for the node agent."""
    svc_labels = service_labels(req, inputs)
    env = {**inputs.env, **dockerargs.environment(req)}
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(req.gpu_ids) or "void"
    mounts = [dict(m) for m in inputs.mounts]
    mounts += [Mount(target=m["Target"], source=m["Source"], type="bind", read_only=m["ReadOnly"])
               for m in dockerargs.data_mounts(req)]
    mounts.append(Mount(target="/tmp", source=None, type="tmpfs", tmpfs_size=int(req.tmp_bytes), tmpfs_mode=0o1777))
    container = ContainerSpec(
        image=req.image, args=list(inputs.args), env=dict(sorted(env.items())), workdir=inputs.home,
        user=f"{inputs.uid}:{inputs.gid}", groups=[str(g) for g in inputs.groups] or None,
        labels={**svc_labels, labels.HOST_CONFIG: host_config_label(req, inputs.pids_limit, node)},
        mounts=mounts, init=True, read_only=bool(req.read_only_root), cap_drop=["ALL"],
        cap_add=list(req.cap_add) or None)
    resources = Resources(cpu_limit=int(round(req.cpu_limit * 1e9)), mem_limit=int(req.mem_limit),
                          cpu_reservation=int(round(req.cpu_guarantee * 1e9)) or None,
                          mem_reservation=int(req.mem_guarantee) or None)
    if inputs.pids_limit and inputs.pids_limit > 0:
        resources["Limits"]["Pids"] = int(inputs.pids_limit)
    task = TaskTemplate(container_spec=container, resources=resources,
                        restart_policy=RestartPolicy(condition="none"),
                        placement=Placement(constraints=[f"{CONSTRAINT}{node.id}"]))
    endpoint = EndpointSpec(mode="dnsrr", ports=[{"Protocol": "tcp", "TargetPort": int(inputs.port),
                                                  "PublishMode": "host"}])
    spec = {"name": inputs.name, "task_template": task, "labels": svc_labels,
            "mode": ServiceMode("replicated", replicas=1), "endpoint_spec": endpoint}
    if inputs.networks:
        # the users' swarm network: on each node its bridge has no traffic between containers
        # and admits new connections from the hub only (docs/contracts.md "Swarm")
        spec["networks"] = list(inputs.networks)
    return spec


class TaskError(RuntimeError):
    """A task that cannot run (rejected, failed, or pending too long): the message says why."""


def task_problem(task: dict, name: str):
    """None while the task is on its way or running; the reason when it never will."""
    status = task.get("Status") or {}
    state = status.get("State", "")
    if state in TERMINAL_TASK_STATES:
        why = status.get("Err") or status.get("Message") or state
        return f"the task of service {name} is {state}: {why}"
    return None


def task_address(task: dict, node: dict, port: int) -> Tuple[str, int]:
    """(node address, the task's host-mode published port for ``port``) or TaskError."""
    for entry in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or ():
        if entry.get("TargetPort") == port and entry.get("PublishedPort"):
            addr = node_addr(node)
            if not addr:
                raise TaskError(f"node {node.get('ID', '?')} reports no address")
            return addr, int(entry["PublishedPort"])
    raise TaskError(f"task {task.get('ID', '?')} publishes no host port for {port}")
