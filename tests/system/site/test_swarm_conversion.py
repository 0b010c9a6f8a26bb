"""The single-server site turned into a swarm by site.yml itself: a second systemd host container
(Docker inside) goes into [jupyterhub_nodes] and the same playbook converges both, the hub becoming
the swarm's manager and the node joining it (README.md "Several servers: a swarm").

- While a user's server runs on the single server's users' network, the run is refused before
  anything changes, naming the container; the server keeps running.
- With the servers stopped it converges: the single server's network gives way to the swarm's,
  the hub runs the swarm spawner, and a second run changes nothing on either host.
- A user's server then lands on the node (the node advertises less room: best fit), is reached
  through the hub's proxy, and runs there under the node's users' slice as the user's uid.

It runs after the package's other modules (marker `last_in_directory`): the site stays a swarm.
This machine's kernel has no NFS, so the node gets the user's account and home by hand (the
same uid), as the nfs_client and ldap_client roles would give them (the VM tier tests those).
"""
import json

import pytest
import requests
import yaml

from tests.harness.swarm import ensure_node_image
from tests.harness.systemd_host import keep_hosts, start_systemd_host

from .support import (CONTAINER, HOST_NAME, OTHER, OTHER_PASSWORD, PASSWORD, USER, USERS_NETWORK,
                      inner_docker, lab_reachable, login, serve_user, stop_server, wait_for)

pytestmark = [pytest.mark.system, pytest.mark.last_in_directory]

NODE_NAME = "jbm-h5-node"
PASSWORDS = {USER: PASSWORD, OTHER: OTHER_PASSWORD}   # the accounts the package's modules log in
NODE_INVENTORY = {"all": {"children": {"jupyterhub_nodes": {"hosts": {NODE_NAME: {
    "ansible_connection": "community.docker.docker",
    "ansible_python_interpreter": "/usr/bin/python3",
    # as the sandbox's host (ansible/sandbox/inventory.yml): reached over this machine's bridge,
    # an inner bridge that cannot clash with it, no registry
    "admin_networks": ["172.17.0.0/16"],
    "sshd_allow_users": ["root"],
    "docker_daemon_options": {"bip": "10.213.0.1/24"},
    "docker_images_pull": [],
    # less room than the hub for its users (the hub keeps the default): best fit puts a
    # server on the fuller node that still fits
    "docker_users_slice_memory_max": "40%",
}}}}}}
# No NFS in this machine's kernel: no shared homes here (the VM tier converges those roles).
SWARM_VARS = {"nfs_server_enabled": False, "nfs_client_enabled": False}


def users_network(host) -> tuple[str, list[str]]:
    """(scope, names of the containers on it) of the host's users' network."""
    scope, _, names = inner_docker(host, "network", "inspect", "--format",
                                   "{{.Scope}}{{range .Containers}} {{.Name}}{{end}}",
                                   USERS_NETWORK).stdout.strip().partition(" ")
    return scope, names.split()


def placement(host, service: str) -> str:
    """'<node> <state>' of the service's task that should run (the manager's `docker service ps`)."""
    return inner_docker(host, "service", "ps", "--filter", "desired-state=running",
                        "--format", "{{.Node}} {{.CurrentState}}", service).stdout.split("\n")[0]


def live_restore(host) -> bool:
    return json.loads(host.exec("cat", "/etc/docker/daemon.json").stdout).get("live-restore", False)


@pytest.fixture(scope="module")
def node():
    host = start_systemd_host(NODE_NAME, docker_inside=True, image=ensure_node_image())
    yield host
    if not keep_hosts():
        host.remove()


@pytest.fixture(scope="module")
def converted(site, hub, sandbox, node, tmp_path_factory):
    """The refused run (a server running), then the conversion and its re-run."""
    inventory = tmp_path_factory.mktemp("swarm-conversion") / "nodes.yml"
    inventory.write_text(yaml.safe_dump(NODE_INVENTORY))
    host = hub["host"]

    def converge():
        return sandbox.converge(HOST_NAME, site["url"], extra_vars=SWARM_VARS, more_inventory=inventory)

    serve_user(hub)
    before = {"live_restore": live_restore(host), "network": users_network(host),
              "started": inner_docker(host, "inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout}
    refused = converge()
    after_refusal = {"live_restore": live_restore(host), "network": users_network(host),
                     "started": inner_docker(host, "inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout}
    for name in after_refusal["network"][1]:   # the package's users' servers: stopped as each user
        user = name.removeprefix("jupyter-")
        assert user in PASSWORDS, f"{name} runs on the hub, a server of no account these tests know"
        stop_server(login(hub["base"], user=user, password=PASSWORDS[user]), hub["base"], user)
    first = converge()
    assert first.returncode == 0, first.output[-8000:]
    second = converge()
    return {"host": host, "before": before, "refused": refused, "after_refusal": after_refusal,
            "first": first, "second": second}


def test_a_running_server_stops_the_conversion_before_anything_changes(converted):
    refused, before, after = converted["refused"], converted["before"], converted["after_refusal"]
    assert refused.returncode != 0
    assert "becomes a node of the swarm" in refused.output and CONTAINER in refused.output, refused.output[-4000:]
    assert "Stop their servers first" in refused.output
    assert before["network"][0] == "local" and CONTAINER in before["network"][1]
    assert after == before   # live-restore, the network and the server's container as they were
    assert before["live_restore"] is True


def test_site_yml_makes_the_hub_the_manager_and_the_node_a_worker(converted, node):
    host = converted["host"]
    rows = sorted(inner_docker(host, "node", "ls", "--format",
                               "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").stdout.split("\n"))
    assert [row.strip() for row in rows if row] == [f"{NODE_NAME} Ready", f"{HOST_NAME} Ready Leader"], rows
    assert users_network(host) == ("swarm", [])
    assert live_restore(host) is False and live_restore(node) is False
    config = host.exec("cat", "/etc/jupyterhub/jupyterhub_config.py").stdout
    assert "DockerSwarmProfileSpawner" in config


def test_a_second_run_changes_nothing_on_the_hub_or_the_node(converted):
    second = converted["second"]
    assert second.returncode == 0, second.output[-6000:]
    assert {host: counts["changed"] for host, counts in second.recap.items()} == {"sandbox": 0, NODE_NAME: 0}, \
        second.changed_tasks


def test_a_server_lands_on_the_node_and_answers_through_the_proxy(converted, hub, sandbox, node):
    host = converted["host"]
    account = host.exec("getent", "passwd", USER).stdout.split(":")
    uid, gid = account[2], account[3]
    if node.exec("id", USER, check=False).returncode != 0:   # what the directory and NFS would give
        node.exec("groupadd", "-g", gid, USER)
        node.exec("useradd", "-u", uid, "-g", gid, "-M", "-d", f"/home/{USER}", USER)
    node.exec("install", "-d", "-m", "700", "-o", uid, "-g", gid, f"/home/{USER}")
    sandbox.load_singleuser_image(node)
    session = login(hub["base"])
    serve_user(hub, session)
    placed = placement(host, CONTAINER)
    assert placed.startswith(f"{NODE_NAME} Running"), placed
    wait_for(lambda: lab_reachable(session, hub["base"]), 60, f"{USER}'s JupyterLab on {NODE_NAME}")
    container = inner_docker(node, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={CONTAINER}").stdout.split()
    assert len(container) == 1, container
    inspected = json.loads(inner_docker(node, "inspect", container[0]).stdout)[0]
    assert inspected["Config"]["User"].split(":")[0] == uid
    cgroup = node.exec("cat", f"/proc/{inspected['State']['Pid']}/cgroup").stdout   # as the node sees it
    assert "/jupyterhub.slice/jupyterhub-users.slice/" in cgroup, cgroup
    reply = session.get(hub["base"] + f"user/{USER}/api/status", timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    stop_server(session, hub["base"])
    assert requests.get(hub["base"] + "hub/api/", timeout=10).status_code == 200


def test_a_server_on_the_hubs_own_node_is_served_by_the_hub_and_closed_to_the_other_node(converted, hub, sandbox,
                                                                                         node):
    """The hub's connections to a server on its own node are the host's own (not forwarded
    through the admit rule that keeps published ports to the hub): measured with the real hub.
    The node is drained (a node taken out for maintenance), so the spawner places on the hub."""
    host = converted["host"]
    sandbox.create_user(host, OTHER, OTHER_PASSWORD)
    inner_docker(host, "node", "update", "--availability", "drain", NODE_NAME)
    try:
        session = login(hub["base"], user=OTHER, password=OTHER_PASSWORD)
        serve_user(hub, session, user=OTHER)
        service = f"jupyter-{OTHER}"
        placed = placement(host, service)
        assert placed.startswith(f"{HOST_NAME} Running"), placed
        task = inner_docker(host, "service", "ps", "-q", "--filter", "desired-state=running", service).stdout.split()[0]
        ports = json.loads(inner_docker(host, "inspect", "--format", "{{json .Status.PortStatus.Ports}}",
                                        task).stdout)   # host mode: the port the task got, as the spawner reads it
        published = ports[0]["PublishedPort"]
        reply = session.get(hub["base"] + f"user/{OTHER}/api/status", timeout=30)
        assert reply.status_code == 200, reply.text[:300]   # through the proxy, on the hub's own node
        probe = ("import socket, sys\n"
                 "try:\n"
                 f"    socket.create_connection(({host.ip!r}, {published}), 5).close(); print('open')\n"
                 "except OSError as e:\n"
                 "    print(type(e).__name__)\n")
        from_node = node.exec("python3", "-c", probe).stdout.strip()
        print(f"{OTHER}'s server on {HOST_NAME}, published port {published}: from {NODE_NAME} {from_node}")
        assert from_node != "open", from_node
        stop_server(session, hub["base"], OTHER)
    finally:
        inner_docker(host, "node", "update", "--availability", "active", NODE_NAME)
