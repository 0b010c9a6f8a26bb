"""A one-node swarm: a systemd host container with Docker inside (tests/harness/systemd_host.py)
on its own network, swarm initialised in it, reached from this machine through a second engine
socket in a bind-mounted directory; and the agent, run from this machine against that socket."""
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

import hubmetrics
from hubmetrics.nodeagent import Agent
from tests.harness import images
from tests.harness.systemd_host import SystemdHost, run_args

PREFIX = "jbm-nagent-"
NETWORK, SUBNET, NODE_IP = PREFIX + "net", "172.30.79.0/24", "172.30.79.2"
NODE_NAME = PREFIX + "node1"
NODE_IMAGE = "local/jbm-nagent-node:bookworm"
SWARM_POOL = "10.203.0.0/16"
SOCKET_DIR = "/jbm-nagent-sock"   # inside the node (node-image/docker.service.d)
CONTEXT = Path(__file__).resolve().parent / "node-image"
# This checkout's venv and hubmetrics, bound read-only at the same paths into the node, so the
# real unit (systemd/jbm-node-agent.service) can run the agent there under systemd.
VENV = Path(sys.prefix)
METRICS_SRC = Path(hubmetrics.__file__).resolve().parents[1]


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    """Poll `check()` until it returns something truthy (bounded), else fail naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (docker.errors.APIError, OSError, subprocess.CalledProcessError, KeyError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Node:
    host: SystemdHost
    client: docker.DockerClient
    url: str          # the engine's socket, as seen from this machine
    node_id: str      # its swarm node id


@pytest.fixture(scope="module")
def swarm_node(base_image, systemd_image):
    """The one-node swarm, removed (with its network) at the end."""
    images.build_image(NODE_IMAGE, CONTEXT, parent=systemd_image)
    sock_dir = tempfile.mkdtemp(prefix=PREFIX + "sock-")
    host = SystemdHost(NODE_NAME)
    host.remove()
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
    client = None
    try:
        subprocess.run(["docker", "network", "create", "--subnet", SUBNET, NETWORK], check=True,
                       capture_output=True)
        args = run_args(NODE_NAME, docker_inside=True, image=NODE_IMAGE)
        args[-1:-1] = ["--network", NETWORK, "--ip", NODE_IP, "-v", f"{sock_dir}:{SOCKET_DIR}",
                       "-v", f"{VENV}:{VENV}:ro", "-v", f"{METRICS_SRC}:{METRICS_SRC}:ro"]
        subprocess.run(args, check=True, capture_output=True)
        host.wait_booted()
        url = f"unix://{sock_dir}/docker.sock"
        client = docker.DockerClient(base_url=url, timeout=60)
        wait_for("the node's dockerd", client.ping, timeout=60)
        host.exec("docker", "swarm", "init", "--advertise-addr", NODE_IP, "--default-addr-pool", SWARM_POOL)
        host.load_image(base_image)
        yield Node(host, client, url, client.info()["Swarm"]["NodeID"])
    finally:
        if client is not None:
            client.close()
        host.remove()
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
        shutil.rmtree(sock_dir, ignore_errors=True)


@contextmanager
def running_agent(node):
    """The agent in a thread against the node's engine (its own client, as the unit has)."""
    agent = Agent(lambda: docker.DockerClient(base_url=node.url, timeout=60), max_reconnects=5)
    thread = threading.Thread(target=agent.run, name="jbm-node-agent", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the agent did not stop"
