"""DockerSwarmProfileSpawner: the same profiles on a Docker Swarm (spawner/README.md "Swarm").

A thin shell: profilespawner.swarm decides (nodes, allocations, placement, the service spec);
this class gathers the manager's nodes, services and tasks and hands the result to dockerspawner's
SwarmSpawner. Everything else (profiles, validator, form, accounts, homes, quotas, readiness,
cleanup of a failed start) is DockerSystemProfileSpawner's own code: the class derives from it
and from SwarmSpawner (MRO: ours, DockerSystemProfileSpawner, SystemUserSpawner, SwarmSpawner,
DockerSpawner), so object_type is "service" and the service calls are SwarmSpawner's.
"""

import asyncio
import os
import time
from pprint import pformat

from dockerspawner import SwarmSpawner
from tornado import web
from traitlets import Float

from . import labels, swarm
from .capacity import detect_host
from .errors import FAILED_DEPENDENCY, SpawnRefused
from .form import render_form
from .request import build_request
from .running import RunningServer
from .spawner import DockerSystemProfileSpawner, _admission_lock

# service name -> (node id, RunningServer) for spawns placed but not yet created in the swarm
_PLACED = {}


class DockerSwarmProfileSpawner(DockerSystemProfileSpawner, SwarmSpawner):
    """DockerSystemProfileSpawner on a swarm: one service per user, pinned to the node chosen by
    admission over the node labels and the running services (no state in the hub)."""

    task_start_timeout = Float(
        120.0,
        config=True,
        help="""Seconds a new service's task may take to run (and publish its port) before the spawn
        fails and the service is removed. Also bounded by start_timeout.""",
    )
    task_pending_timeout = Float(
        20.0,
        config=True,
        help="""Seconds a task may stay pending (swarm found no node for it, e.g. its node went
        away after placement) before the spawn fails with swarm's reason and the service is
        removed.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._ceiling = None  # the largest node's resources, learnt at each look at the nodes

    # ---------------------------------------------------------------- inputs

    def _limit_ceiling(self):
        """Limits are capped at the largest node (the last one seen), before that at this host."""
        return self._ceiling or detect_host()

    def _validated_request(self):
        account = self._account()
        user = self._effective_profile(account)
        try:
            return account, user, build_request(self.profiles, user, self.user_options, self._limit_ceiling())
        except SpawnRefused as e:
            raise web.HTTPError(e.status, e.message) from None

    async def _swarm_state(self):
        """(schedulable nodes, why the others are not, node id -> servers holding guarantees)."""
        nodes, problems = swarm.nodes_from_api(await self.docker("nodes"))
        wanted = [labels.USER] + [f"{k}={v}" for k, v in self.scope_labels.items()]
        services = await self.docker("services", filters={"label": wanted})
        tasks = await self.docker("tasks")
        allocs = swarm.allocations(services, tasks)
        known = {s["Spec"]["Name"] for s in services}
        for name, (node_id, server) in _PLACED.items():
            if name not in known:
                allocs[node_id] = allocs.get(node_id, ()) + (server,)
        if nodes:
            self._ceiling = swarm.limit_ceiling(nodes)
        return nodes, problems, allocs

    async def _render_options_form(self, spawner=None):
        user = self._effective_profile()
        nodes, _, allocs = await self._swarm_state()
        slot = swarm.biggest_slot(nodes, allocs)
        cpu_free, mem_free, gpu_free = (slot.cpus, slot.mem_bytes, slot.gpus) if slot else (0.0, 0, 0)
        return render_form(self.profiles, user, self._limit_ceiling(), cpu_free, mem_free,
                           gpu_free if any(n.gpus for n in nodes) else None, course=self._course)

    # ---------------------------------------------------------------- spawn

    async def create_object(self):
        """Place (409 before anything is created when no node fits), then create the service."""
        account = self._account()
        user = self._effective_profile(account)
        async with _admission_lock():
            nodes, problems, allocs = await self._swarm_state()
            try:
                req = build_request(self.profiles, user, self.user_options, self._limit_ceiling())
                node, req = swarm.place(req, nodes, allocs, exclude=self.object_name, unschedulable=problems)
            except SpawnRefused as e:
                raise web.HTTPError(e.status, e.message) from None
            _PLACED[self.object_name] = (node.id, RunningServer(
                self.object_name, self.user.name, req.cpu_guarantee, req.mem_guarantee, req.gpu_ids))
        try:
            self._apply_request(req)
            groups = tuple(g for g in os.getgrouplist(account.pw_name, account.pw_gid) if g != account.pw_gid)
            inputs = swarm.ServiceInputs(
                name=self.object_name, username=self.user.name, uid=account.pw_uid, gid=account.pw_gid,
                groups=groups, home=self.homedir, env=self.get_env(), args=tuple(await self.get_command()),
                port=self.port, mounts=swarm.volume_mounts(self.volume_binds), scope_labels=dict(self.scope_labels),
                pids_limit=self.pids_limit, networks=(self.network_name,) if self.network_name else ())
            spec = swarm.service_spec(req, node, inputs)
            self.log.info("Spawning %s on node %s: %s", self.user.name, node.hostname, req)
            return await self.docker("create_service", **spec)
        finally:
            _PLACED.pop(self.object_name, None)

    async def start(self):
        """DockerSystemProfileSpawner's start (it removes the service of a failed start); a task
        swarm could not run is a 424 with swarm's reason, never a 500."""
        try:
            return await super().start()
        except swarm.TaskError as e:
            raise web.HTTPError(FAILED_DEPENDENCY, f"Cannot start the server of {self.user.name!r} on the "
                                                   f"swarm: {e}") from None

    async def start_object(self):
        """Wait (bounded) until the task runs and publishes its port; a task rejected, failed or
        pending too long raises TaskError with swarm's reason (start() then removes the service)."""
        started = time.monotonic()
        deadline = started + min(self.task_start_timeout, self.start_timeout)
        pending_since = None
        while True:
            task = await self.get_task()  # None for a moment: the manager makes the task after the service
            problem = swarm.task_problem(task, self.service_name) if task else None
            if problem:
                raise swarm.TaskError(problem)
            status = (task or {}).get("Status") or {}
            state = status.get("State", "") if task else "not created"
            if state == "running" and (status.get("PortStatus") or {}).get("Ports"):
                return
            now = time.monotonic()
            pending_since = (pending_since or now) if state in ("pending", "not created") else None
            if pending_since and now - pending_since > self.task_pending_timeout:
                raise swarm.TaskError(f"the task of service {self.service_name} was {state} for "
                                      f"{now - pending_since:.0f}s: {status.get('Err') or status.get('Message')}")
            if now > deadline:
                raise swarm.TaskError(f"the task of service {self.service_name} is still {state} after "
                                      f"{now - started:.0f}s: {status.get('Err') or status.get('Message')}")
            await asyncio.sleep(0.5)

    async def poll(self):
        """SwarmSpawner's poll, and a server whose node is not ready counts as stopped (the hub
        then tells the user and cleans up; the node cannot be reached)."""
        task = await self.get_task()
        if not task:
            return 0
        state = (task.get("Status") or {}).get("State")
        if state not in ("running", "starting", "pending", "preparing"):
            return pformat(task.get("Status"))
        if task.get("NodeID"):
            node = await self.docker("inspect_node", task["NodeID"])
            node_state = (node.get("Status") or {}).get("State")
            if node_state != "ready":
                host = (node.get("Description") or {}).get("Hostname", task["NodeID"])
                self.log.warning("%s: node %s of service %s is %s", self._log_name, host, self.service_name,
                                 node_state)
                return f"node {host} is {node_state}"
        return None

    async def get_ip_and_port(self):
        """The node's address and the task's host-mode published port (no VIP, no routing mesh)."""
        task = await self.get_task()
        if not task or not task.get("NodeID"):
            raise swarm.TaskError(f"service {self.service_name} has no task on a node")
        node = await self.docker("inspect_node", task["NodeID"])
        return swarm.task_address(task, node, self.port)
