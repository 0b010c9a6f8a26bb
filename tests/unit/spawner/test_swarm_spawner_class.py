"""The swarm spawner's shell without a swarm: its traits, its bases, and how it reads task states."""
import pytest
from dockerspawner import SwarmSpawner

import profilespawner
from profilespawner import swarm
from profilespawner.spawner import DockerSystemProfileSpawner
from profilespawner.swarmspawner import DockerSwarmProfileSpawner


class Probe(DockerSwarmProfileSpawner):
    """The spawner's own methods, with canned swarm answers instead of an engine."""

    def __init__(self, tasks=(), nodes=None, **kw):
        super(DockerSystemProfileSpawner, self).__init__(**kw)
        self._tasks, self._nodes, self._ceiling = list(tasks), nodes or {}, None
        self.object_name = "jupyter-ann"

    async def get_task(self):
        return self._tasks.pop(0) if len(self._tasks) > 1 else self._tasks[0]  # the last one stays

    async def docker(self, method, *args, **kwargs):
        assert method == "inspect_node"
        return self._nodes[args[0]]


def task(state, node="n1", err=None, ports=()):
    return {"ID": "t1", "NodeID": node, "Status": {"State": state, "Err": err, "PortStatus": {"Ports": list(ports)}}}


def test_bases_and_export():
    assert profilespawner.DockerSwarmProfileSpawner is DockerSwarmProfileSpawner
    assert issubclass(DockerSwarmProfileSpawner, SwarmSpawner)
    assert issubclass(DockerSwarmProfileSpawner, DockerSystemProfileSpawner)
    assert DockerSwarmProfileSpawner.object_type == "service"


@pytest.mark.parametrize("name", ["task_start_timeout", "task_pending_timeout"])
def test_options_are_configurable_with_help(name):
    trait = DockerSwarmProfileSpawner.class_traits()[name]
    assert trait.metadata.get("config") is True and len(trait.help) > 20


async def test_a_rejected_task_raises_swarms_reason():
    probe = Probe([None, task("pending"), task("rejected", err="invalid mount config for type \"bind\"")])
    with pytest.raises(swarm.TaskError, match="jupyter-ann is rejected: invalid mount config"):
        await probe.start_object()


async def test_a_task_pending_too_long_fails():
    probe = Probe([task("pending", err="no suitable node")], task_pending_timeout=0.6)
    with pytest.raises(swarm.TaskError, match=r"was pending for \ds: no suitable node"):
        await probe.start_object()


async def test_a_service_whose_task_never_comes_fails():
    probe = Probe([None], task_pending_timeout=0.6)
    with pytest.raises(swarm.TaskError, match=r"was not created for \ds"):
        await probe.start_object()


async def test_start_waits_for_the_published_port():
    port = {"TargetPort": 8888, "PublishedPort": 30001}
    probe = Probe([task("running"), task("running", ports=[port])],
                  nodes={"n1": {"ID": "n1", "Status": {"State": "ready", "Addr": "172.30.77.3"}}})
    await probe.start_object()
    assert await probe.get_ip_and_port() == ("172.30.77.3", 30001)


async def test_poll_reports_a_server_on_a_down_node_as_stopped():
    nodes = {"n1": {"Status": {"State": "down"}, "Description": {"Hostname": "node2"}}}
    assert await Probe([task("running")], nodes=nodes).poll() == "node node2 is down"
    nodes["n1"]["Status"]["State"] = "ready"
    assert await Probe([task("running")], nodes=nodes).poll() is None
    assert "failed" in await Probe([task("failed")], nodes=nodes).poll()
