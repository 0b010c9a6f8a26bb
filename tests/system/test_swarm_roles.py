"""The swarm roles converged for real: two systemd host containers with Docker inside, on a
user-defined network of their own, play the hub (the swarm's manager, [jupyterhub]) and one
node ([jupyterhub_nodes]); one ansible-playbook run (-v) converges docker, the firewall and the
swarm role into both. Everything asserted is read back from the live hosts: `docker node ls`
and `docker node inspect` on the manager, `systemctl show` of each users' slice, `docker info`,
a container's cgroup, connections through ufw from the other node and from an outsider.
The hosts' image has the packages of the docker and firewall roles already installed
(tests/system/swarm/host-image; installing them is test_base_roles.py's), for the time budget.
"""
import json
import os
import re
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.harness import playbooks
from tests.harness.images import build_image, ensure_base_image, ensure_systemd_image
from tests.harness.playbooks import recap
from tests.harness.systemd_host import SystemdHost, run_args

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "system" / "playbooks" / "swarm_roles.yml"
SWARM_ONLY = REPO / "tests" / "system" / "playbooks" / "swarm_only.yml"
HOST_IMAGE_CONTEXT = REPO / "tests" / "system" / "swarm" / "host-image"
PREFIX = "jbm-swrole-"
NETWORK, SUBNET, GATEWAY = f"{PREFIX}net", "172.30.78.0/24", "172.30.78.1"
HUB, NODE, OUTSIDER = f"{PREFIX}hub", f"{PREFIX}node1", f"{PREFIX}outsider"
IPS = {HUB: "172.30.78.10", NODE: "172.30.78.11", OUTSIDER: "172.30.78.50"}
NODE_GPUS = ["GPU-5f1c2e4a-0b1d-4c7e-9a3f-000000000001", "GPU-5f1c2e4a-0b1d-4c7e-9a3f-000000000002"]
NODE_CPU_QUOTA = "150%"  # the node's users' slice: 1.5 cores (the hub keeps the default)
LABEL_CPUS = "org.jupyterhub-baremetal.capacity-cpus"
LABEL_MEM = "org.jupyterhub-baremetal.capacity-mem"
LABEL_GPUS = "org.jupyterhub-baremetal.gpus"
SLICE = "jupyterhub-users.slice"
HOST_IMAGE = f"local/{PREFIX}host:bookworm"
VARS = {"admin_networks": [f"{GATEWAY}/32"]}


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def start_node(name: str, image: str) -> SystemdHost:
    """A systemd host with Docker inside (tests/harness/systemd_host.py), on our network only."""
    args = run_args(name, docker_inside=True, image=image)
    args[-1:-1] = ["--network", NETWORK, "--ip", IPS[name]]
    sh("docker", "rm", "-f", "-v", name, check=False)
    sh(*args)
    host = SystemdHost(name)
    host.wait_booted()
    return host


def converge(workdir: Path, inventory: Path, extra: dict | None = None,
             playbook: Path = PLAYBOOK) -> playbooks.Run:
    """One -v run of the swarm playbook (verbose, so no_log is tested where it would print)."""
    os.environ["ANSIBLE_VERBOSITY"] = "1"
    try:
        return playbooks.run_playbook(workdir, inventory, {**VARS, **(extra or {})}, playbook,
                                      timeout=900)
    finally:
        del os.environ["ANSIBLE_VERBOSITY"]


def inventory_text() -> str:
    conn = "ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3"
    return (f"[jupyterhub]\n{HUB} {conn}\n\n"
            f"[jupyterhub_nodes]\n{NODE} {conn} docker_users_slice_cpu_quota={NODE_CPU_QUOTA} "
            f"swarm_node_gpus='{json.dumps(NODE_GPUS)}'\n")


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    image = build_image(HOST_IMAGE, HOST_IMAGE_CONTEXT, parent=ensure_systemd_image())
    workdir = tmp_path_factory.mktemp("swarm-roles")
    sh("docker", "network", "rm", NETWORK, check=False)
    sh("docker", "network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    hosts = {}
    try:
        for name in (HUB, NODE):
            hosts[name] = start_node(name, image)
        sh("docker", "run", "-d", "--name", OUTSIDER, "--network", NETWORK, "--ip", IPS[OUTSIDER],
           "--entrypoint", "sleep", ensure_systemd_image(), "1200")
        inventory = workdir / "inventory.ini"
        inventory.write_text(inventory_text())
        first = converge(workdir, inventory)
        assert first.returncode == 0, first.stdout[-8000:]
        second = converge(workdir, inventory)
        print(f"\nswarm converge: first {first.seconds:.0f} s, second {second.seconds:.0f} s")
        yield {"hosts": hosts, "workdir": workdir, "inventory": inventory,
               "first": first, "second": second}
    finally:
        for name in (HUB, NODE, OUTSIDER):
            sh("docker", "rm", "-f", "-v", name, check=False)
        sh("docker", "network", "rm", NETWORK, check=False)


def manager(swarm) -> SystemdHost:
    return swarm["hosts"][HUB]


def test_the_swarm_has_both_nodes_ready_with_the_hub_as_manager(swarm):
    rows = []
    for _ in range(60):  # bounded: about 30 s for the worker to report Ready
        rows = manager(swarm).exec("docker", "node", "ls", "--format",
                                   "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").stdout.split("\n")
        rows = sorted(row for row in rows if row)
        if all(" Ready" in row for row in rows) and len(rows) == 2:
            break
        time.sleep(0.5)
    assert rows == [f"{HUB} Ready Leader", f"{NODE} Ready "], rows
    node_info = json.loads(swarm["hosts"][NODE].exec(
        "docker", "info", "--format", "{{json .Swarm}}").stdout)
    assert node_info["LocalNodeState"] == "active" and not node_info["ControlAvailable"]
    assert node_info["NodeAddr"] == IPS[NODE]
    pool = json.loads(manager(swarm).exec(
        "docker", "info", "--format", "{{json .Swarm.Cluster.DefaultAddrPool}}").stdout)
    assert pool == ["10.201.0.0/16"]


def slice_capacity(host: SystemdHost) -> tuple[str, str]:
    """(cores, bytes) of the users' slice, as systemd applied them (systemctl show)."""
    props = dict(line.split("=", 1) for line in host.exec(
        "systemctl", "show", SLICE, "-p", "MemoryMax", "-p", "CPUQuotaPerSecUSec").stdout.split())
    quota = props["CPUQuotaPerSecUSec"]
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", quota).groups()
    cores = Decimal(number) / {"us": 1000000, "ms": 1000, "s": 1}[unit]
    return format(cores.normalize(), "f"), props["MemoryMax"]


def test_labels_are_what_each_users_slice_got(swarm):
    for name, gpus in ((HUB, ""), (NODE, ",".join(NODE_GPUS))):
        labels = json.loads(manager(swarm).exec(
            "docker", "node", "inspect", name, "--format", "{{json .Spec.Labels}}").stdout)
        cores, memory = slice_capacity(swarm["hosts"][name])
        assert labels == {LABEL_CPUS: cores, LABEL_MEM: memory, LABEL_GPUS: gpus}, name
    assert slice_capacity(swarm["hosts"][NODE])[0] == "1.5"


def test_engines_run_without_live_restore_and_under_the_users_slice(swarm):
    base = ensure_base_image()
    for host in swarm["hosts"].values():
        assert host.exec("docker", "info", "--format", "{{.LiveRestoreEnabled}}").stdout.strip() == "false"
        daemon = json.loads(host.exec("cat", "/etc/docker/daemon.json").stdout)
        assert daemon["cgroup-parent"] == SLICE and daemon["live-restore"] is False
        if host.exec("docker", "image", "inspect", base, check=False).returncode != 0:
            host.load_image(base)
    # A swarm task on the worker (swarm sets no cgroup parent itself) lands in the users' slice.
    hub = manager(swarm)
    service = f"{PREFIX}probe"
    hub.exec("docker", "service", "rm", service, check=False)
    try:
        hub.exec("docker", "service", "create", "--detach", "--name", service, "--constraint",
                 f"node.hostname=={NODE}", "--restart-condition", "none", base, "sleep", "300")
        container = ""
        for _ in range(60):  # bounded: about 30 s for the task to start
            container = swarm["hosts"][NODE].exec(
                "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").stdout.strip()
            if container:
                break
            time.sleep(0.5)
        assert container, hub.exec("docker", "service", "ps", "--no-trunc", service).stdout
        pid = swarm["hosts"][NODE].exec("docker", "inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
        cgroup = swarm["hosts"][NODE].exec("cat", f"/proc/{pid}/cgroup").stdout
        assert f"/{SLICE}/" in cgroup or f"/jupyterhub.slice/{SLICE}/" in cgroup, cgroup
    finally:
        hub.exec("docker", "service", "rm", service, check=False)


def test_the_join_token_is_never_in_the_output(swarm):
    token = manager(swarm).exec("docker", "swarm", "join-token", "--quiet", "worker").stdout.strip()
    assert token.startswith("SWMTKN-")
    for run in (swarm["first"], swarm["second"]):
        assert '=> {"changed": ' in run.stdout  # -v: task results are printed
        assert "SWMTKN" not in run.stdout
        assert token.split("-")[-1] not in run.stdout
    # The tasks that saw the token did run (and changed the node), with no_log's placeholder.
    assert "swarm : Join the swarm as a worker" in swarm["first"].changed_tasks
    assert re.search(rf'^changed: \[{NODE}\] => {{"censored": ', swarm["first"].stdout, re.MULTILINE)


def connect(source: str, ip: str, port: int) -> str:
    """'open', 'refused' or 'dropped' for a TCP connection from the container `source`."""
    probe = ("import socket,sys\n"
             "try:\n"
             f"    socket.create_connection(('{ip}', {port}), 3).close(); print('open')\n"
             "except ConnectionRefusedError: print('refused')\n"
             "except OSError: print('dropped')\n")
    return sh("docker", "exec", source, "python3", "-c", probe).stdout.strip()


def test_ufw_lets_the_swarm_ports_in_from_the_other_node_only(swarm):
    # 2377 (the manager) and 7946 (every node) listen: swarm's own listeners.
    assert connect(NODE, IPS[HUB], 2377) == "open"
    assert connect(HUB, IPS[NODE], 7946) == "open"
    assert connect(NODE, IPS[HUB], 7946) == "open"
    assert connect(OUTSIDER, IPS[HUB], 2377) == "dropped"
    assert connect(OUTSIDER, IPS[HUB], 7946) == "dropped"
    assert connect(OUTSIDER, IPS[NODE], 7946) == "dropped"
    hub_rules = manager(swarm).exec("ufw", "status").stdout
    node_rules = swarm["hosts"][NODE].exec("ufw", "status").stdout
    # 7946 without a protocol: ufw's rule for tcp and udp.
    for port in ("2377/tcp", "7946", "4789/udp"):
        assert re.search(rf"^{port}\s+ALLOW\s+{IPS[NODE]}\s", hub_rules, re.MULTILINE), hub_rules
    for port in ("7946", "4789/udp", "32768:60999/tcp", "9945/tcp"):
        assert re.search(rf"^{port}\s+ALLOW\s+{IPS[HUB]}\s", node_rules, re.MULTILINE), node_rules
    assert "2377" not in node_rules  # workers take no joins
    assert "Anywhere" not in (hub_rules + node_rules).replace("Anywhere (v6)", "")


def task_container(host: SystemdHost, service: str) -> str:
    """The id of the service's running task container on `host` (bounded: about 60 s)."""
    for _ in range(120):
        found = host.exec("docker", "ps", "-q", "--filter",
                          f"label=com.docker.swarm.service.name={service}").stdout.strip()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no running task of {service} on {host.name}")


def test_users_servers_on_the_swarm_network_admit_the_hub_only(swarm):
    """The users' swarm network and rules the roles made, with real connections: a server on the
    worker (a task on jupyterhub-users, its port published in host mode as the spawner does) is
    reached from the hub's address, not from the outsider (Docker's DNAT passes ufw: the rules'
    REJECT stops it). A server on the hub's node reaches the hub API port through ufw (refused:
    nothing listens here, so ufw let it in) but not the worker's published port (its traffic
    would leave masqueraded as the hub's address)."""
    image = ensure_systemd_image()  # has python3: a server and the probes
    hub, node = manager(swarm), swarm["hosts"][NODE]
    for host in (hub, node):
        if host.exec("docker", "image", "inspect", image, check=False).returncode != 0:
            host.load_image(image)
    web, client = f"{PREFIX}web", f"{PREFIX}client"
    try:
        hub.exec("docker", "service", "create", "--detach", "--name", web, "--network", "jupyterhub-users",
                 "--constraint", f"node.hostname=={NODE}", "--restart-condition", "none",
                 "--publish", "mode=host,target=8888", image, "python3", "-m", "http.server", "8888")
        hub.exec("docker", "service", "create", "--detach", "--name", client, "--network", "jupyterhub-users",
                 "--constraint", f"node.hostname=={HUB}", "--restart-condition", "none", image, "sleep", "300")
        task_container(node, web)
        client_id = task_container(hub, client)
        port = 0
        for _ in range(60):  # bounded: the task reports its published port
            tasks = hub.exec("docker", "service", "ps", "-q", "--filter", "desired-state=running", web).stdout.split()
            ports = json.loads(hub.exec("docker", "inspect", tasks[0]).stdout)[0]["Status"].get(
                "PortStatus", {}).get("Ports") if tasks else None
            if ports:
                port = ports[0]["PublishedPort"]
                break
            time.sleep(0.5)
        assert port, hub.exec("docker", "service", "ps", "--no-trunc", web).stdout
        for _ in range(20):  # bounded: python's server listens a moment after the task runs
            if connect(HUB, IPS[NODE], port) == "open":
                break
            time.sleep(0.5)
        probe = ("import socket\n"
                 "for ip, port in ((%r, %d), (%r, 8081)):\n"
                 "    try:\n"
                 "        socket.create_connection((ip, port), 3).close(); print('open')\n"
                 "    except ConnectionRefusedError: print('refused')\n"
                 "    except OSError: print('dropped')\n") % (IPS[NODE], port, IPS[HUB])
        from_hub_node_server = hub.exec("docker", "exec", client_id, "python3", "-c", probe).stdout.split()
        results = {"hub": connect(HUB, IPS[NODE], port), "outsider": connect(OUTSIDER, IPS[NODE], port),
                   "hub-node server": from_hub_node_server}
        print(f"\nto the worker's server at {IPS[NODE]}:{port}: {results}")
        assert results == {"hub": "open", "outsider": "dropped", "hub-node server": ["dropped", "refused"]}
    finally:
        hub.exec("docker", "service", "rm", web, client, check=False)


def test_a_second_converge_changes_nothing(swarm):
    second = swarm["second"]
    assert second.returncode == 0, second.stdout[-6000:]
    for name in (HUB, NODE):
        assert recap(second.stdout, name)["changed"] == 0, second.changed_tasks
        assert recap(swarm["first"].stdout, name)["changed"] > 0
    assert any("Label this node" in task for task in swarm["first"].changed_tasks)


def test_a_bad_inventory_variable_stops_the_preflight(swarm):
    run = converge(swarm["workdir"], swarm["inventory"],
                   {"swarm_advertise_address": "127.0.0.1", "swarm_node_gpus": ["GPU-ok", "gpu 1"]})
    assert run.returncode != 0
    assert f"swarm_advertise_address (host {HUB}): '127.0.0.1' is not an IPv4 address" in run.stdout
    assert "swarm_node_gpus[1] (host " in run.stdout and "'gpu 1' is not a GPU UUID" in run.stdout
    assert "Install the Docker engine" not in run.stdout
    assert all(recap(run.stdout, name)["changed"] == 0 for name in (HUB, NODE))


def test_a_node_in_another_swarm_is_a_clear_failure_not_a_silent_leave(swarm):
    """Last: the node leaves and starts a swarm of its own, then the play runs."""
    node = swarm["hosts"][NODE]
    node.exec("docker", "swarm", "leave", "--force")
    node.exec("docker", "swarm", "init", "--advertise-addr", IPS[NODE])
    own = json.loads(node.exec("docker", "info", "--format", "{{json .Swarm}}").stdout)
    run = converge(swarm["workdir"], swarm["inventory"], playbook=SWARM_ONLY)
    assert run.returncode != 0
    assert f"{NODE} is already in another swarm" in run.stdout, run.stdout[-4000:]
    assert f"run `docker swarm leave --force` on {NODE}" in run.stdout
    after = json.loads(node.exec("docker", "info", "--format", "{{json .Swarm}}").stdout)
    assert after["NodeID"] == own["NodeID"] and after["ControlAvailable"]  # still its own swarm
    assert recap(run.stdout, HUB)["failed"] == 0
