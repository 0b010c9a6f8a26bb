"""The swarm spawner on a real 2-node Docker Swarm (tests/harness/swarm.py) with a real hub + proxy.

One swarm and one hub for the module; the tests run in order and build on each other's servers:
node 1 (manager, no GPU) and node 2 (one fake GPU) may each guarantee 1 core and 1 GiB.
"""
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from profilespawner import dockerargs, labels
from profilespawner.request import SpawnRequest
from tests.harness import swarm as harness
from tests.harness.hub import Hub
from tests.integration.spawner.support import spawn, spawn_ready, through_proxy

pytestmark = pytest.mark.integration

G = 1024 ** 3
M = 1024 ** 2
USERS = ("jbmswann", "jbmswbob", "jbmswcat", "jbmswdan", "jbmsweve")  # no "-": dockerspawner escapes it in names
GPU = "GPU-fake-0"
HUB_ONLY = Path("/srv/jbm-swarm-hubonly")
OUTSIDER_IP = "172.30.77.50"  # a container on the swarm's network that is not the hub

# One bounded TCP connect per target (argv: ip:port ...), printed as JSON: 'open', 'refused'
# (a RST: the port's host answered), 'unreachable' (an ICMP error, e.g. the rules' REJECT) or
# 'timeout' (dropped).
PROBE = """
import errno, json, socket, sys
out = []
for target in sys.argv[1:]:
    ip, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((ip, int(port)))
        out.append("open")
    except ConnectionRefusedError:
        out.append("refused")
    except socket.timeout:
        out.append("timeout")
    except OSError as e:
        out.append("unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES,
                                                  errno.EPERM) else f"error {e.errno}")
    finally:
        s.close()
print(json.dumps(out))
"""


def swarm_profiles(image):
    return {
        "resource_profiles": {
            "Tiny": {"cpu_limit": 1, "mem_limit": "512M"},
            "Gpu": {"cpu_limit": 0.5, "mem_limit": "512M", "gpus": 1},
        },
        "image_profiles": {"SingleUser": {"image": image}},
        "user_profiles": {"default": {
            "allowed_resources": ["Tiny", "Gpu"], "allowed_images": ["SingleUser"],
            "host_homedir_format_string": f"{harness.HOMES}/{{username}}",
            "max_preallocate": {"cpu_guarantee": 1, "mem_guarantee": "512M"}},
            # a data mount whose source is on the hub's host only, not on the nodes: swarm rejects the task
            "jbmsweve": {"data_mounts": [{"host_path": str(HUB_ONLY), "container_path": "/shared"}]}},
    }




@pytest.fixture(scope="module")
def cluster(tmp_path_factory, singleuser_image, system_users):
    users = {name: system_users(name) for name in USERS}
    started = time.monotonic()
    HUB_ONLY.mkdir(exist_ok=True)
    workdir = tmp_path_factory.mktemp("swarmhub")
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump(swarm_profiles(singleuser_image)))
    hub = Hub(workdir=workdir, profiles_file=profiles_file, extra_config=harness.hub_config())
    try:
        swarm = harness.start_swarm(2, [singleuser_image], users,
                                    [("1", G, ""), ("1", G, GPU)], hub_port=hub.hub_port)
        print(f"swarm of 2 up in {time.monotonic() - started:.0f}s")
        hub.start()
        try:
            yield swarm, hub
        finally:
            hub.stop()
            swarm.remove_services()
    finally:
        harness.stop_swarm()
        harness.remove_homes()
        HUB_ONLY.rmdir()


def service(swarm, user):
    out = swarm.manager.docker("service", "inspect", f"jupyter-{user}", check=False)
    found = json.loads(out) if out.startswith("[") else []  # a missing service: "[]" and exit 1
    return found[0] if found else None


def service_node(swarm, user):
    constraint = service(swarm, user)["Spec"]["TaskTemplate"]["Placement"]["Constraints"][0]
    return swarm.node(constraint.split("==", 1)[1])


def test_spawns_fill_one_node_then_go_to_the_other_and_are_reachable(cluster):
    swarm, hub = cluster
    spawn_ready(hub, "jbmswann", {"cpu_guarantee": 0.75, "mem_guarantee": "256M"})
    # best fit keeps the GPU node free for GPU users: ann lands on node 1
    assert service_node(swarm, "jbmswann").name == "jbm-swarm-node1"
    # node 1 has 0.25 cores left: bob's 0.5 must go to node 2
    spawn_ready(hub, "jbmswbob", {"cpu_guarantee": 0.5, "mem_guarantee": "256M"})
    assert service_node(swarm, "jbmswbob").name == "jbm-swarm-node2"
    for user, node_ip in (("jbmswann", "172.30.77.2"), ("jbmswbob", "172.30.77.3")):
        assert hub.api("GET", "/users/" + user).json()["servers"][""]["ready"]
        # through the proxy, which routes to the node's address and the task's host-mode port
        r = through_proxy(hub, user, "api/status")
        assert r.status_code == 200, r.text
        task = json.loads(swarm.manager.docker("inspect", swarm.manager.docker(
            "service", "ps", "-q", "--filter", "desired-state=running", f"jupyter-{user}")))[0]
        port = task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]
        direct = requests.get(f"http://{node_ip}:{port}/user/{user}/api/status", timeout=10,
                              headers={"Authorization": f"token {hub.user_token(user)}"})
        assert direct.status_code == 200, direct.text


def test_the_task_container_gets_the_limits_and_the_host_config_label(cluster):
    swarm, hub = cluster
    node, container = swarm.service_container("jupyter-jbmswann")
    assert node.name == "jbm-swarm-node1"
    ann = swarm.users["jbmswann"]
    cfg, hc = container["Config"], container["HostConfig"]
    # the host-config label: what the node agent restores, for node1's labels (1 core, 1G): the
    # single server's values, the CPU weight spread over the kernel's range (0.75 of the node's
    # guarantees) and the OOM score scaled to the node's memory
    req = SpawnRequest("Tiny", "SingleUser", "", 1.0, 512 * M, 0.75, 256 * M)
    text = cfg["Labels"][labels.HOST_CONFIG]
    assert text == json.dumps(dockerargs.node_host_config(req, 1024, 1.0, G), sort_keys=True)
    assert json.loads(text) == {"cpu_shares": 196608, "mem_reservation": 256 * M, "memswap_limit": 512 * M,
                                "oom_score_adj": 750, "pids_limit": 1024}
    assert cfg["Labels"][labels.USER] == "jbmswann" and cfg["Labels"][labels.CPU_GUARANTEE] == "0.75"
    # what swarm itself enforces
    assert hc["NanoCpus"] == 1_000_000_000 and hc["Memory"] == 512 * M and hc["PidsLimit"] == 1024
    assert hc["Init"] is True and hc["ReadonlyRootfs"] is True and hc["CapDrop"] == ["ALL"]
    assert cfg["User"] == f"{ann.pw_uid}:{ann.pw_gid}" and cfg["WorkingDir"] == f"{harness.HOMES}/jbmswann"
    assert "NVIDIA_VISIBLE_DEVICES=void" in cfg["Env"]
    binds = {m["Destination"]: m for m in container["Mounts"] if m["Type"] == "bind"}
    assert binds[f"{harness.HOMES}/jbmswann"]["RW"] is True
    # the home is on the shared storage: the server wrote into it as the user
    assert (harness.HOMES / "jbmswann").stat().st_uid == ann.pw_uid


def test_gpus_are_exclusive_across_the_swarm(cluster):
    swarm, hub = cluster
    spawn_ready(hub, "jbmswcat", {"resource_profile": "Gpu"})
    node, container = swarm.service_container("jupyter-jbmswcat")
    assert node.name == "jbm-swarm-node2"
    assert f"NVIDIA_VISIBLE_DEVICES={GPU}" in container["Config"]["Env"]
    assert container["Config"]["Labels"][labels.GPUS] == GPU
    # the only GPU is held: a second GPU spawn is refused before anything is created
    r = spawn(hub, "jbmswdan", {"resource_profile": "Gpu"})
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    assert "gpus: no swarm node can take this server" in msg and "gpus 1" in msg
    assert "only 0 of 1 are free" in msg
    assert service(swarm, "jbmswdan") is None


def published(swarm, user):
    """(node address, published port, container address on the users' network) of the user's server."""
    node, container = swarm.service_container(f"jupyter-{user}")
    task = json.loads(swarm.manager.docker("inspect", swarm.manager.docker(
        "service", "ps", "-q", "--filter", "desired-state=running", f"jupyter-{user}")))[0]
    port = task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]
    networks = container["NetworkSettings"]["Networks"]
    assert list(networks) == [harness.USERS_NETWORK], networks  # the users' swarm network, and only it
    return node.ip, port, networks[harness.USERS_NETWORK]["IPAddress"]


def probe_from_server(swarm, user, *targets):
    """Connect from inside the user's server container (as the user) to each 'ip:port'."""
    node, container = swarm.service_container(f"jupyter-{user}")
    return json.loads(node.docker("exec", container["Id"], "python3", "-c", PROBE, *targets, timeout=60))


@pytest.fixture(scope="module")
def outsider(cluster, singleuser_image):
    """A container on the swarm's network (OUTSIDER_IP) that is not the hub: a neighbour of the nodes."""
    name = f"{harness.PREFIX}outsider"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", harness.NETWORK, "--ip", OUTSIDER_IP,
                    "--entrypoint", "sleep", singleuser_image, "900"], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def probe_from_outsider(name, *targets):
    done = subprocess.run(["docker", "exec", name, "python3", "-c", PROBE, *targets],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_users_server_accepts_connections_from_the_hub_only(cluster, outsider):
    """ann on node 1; bob and cat on node 2, all on the users' swarm network. Real connections:
    the hub (this machine, via the proxy and directly) reaches each server; a server reaches no
    other server, on its node (container address) or on the other (node:published port); a
    container on the nodes' network that is not the hub reaches no published port. Then the
    rules are taken out of both nodes: the cross-node and outsider connections open (so it is
    the rules that closed them), and are put back."""
    swarm, hub = cluster
    ann, bob, cat = (published(swarm, u) for u in ("jbmswann", "jbmswbob", "jbmswcat"))
    assert ann[0] == "172.30.77.2" and bob[0] == cat[0] == "172.30.77.3", (ann, bob, cat)
    for user in ("jbmswann", "jbmswbob", "jbmswcat"):  # the hub serves every server through the proxy
        assert through_proxy(hub, user, "api/status").status_code == 200, user
    for ip, port, _ in (ann, bob):  # and reaches the published ports itself (the hub's address)
        socket.create_connection((ip, port), 5).close()
    hub_api = f"{harness.GATEWAY}:{hub.hub_port}"
    # from bob's server: cat's container on the same node, ann's published port on node 1; the
    # hub API answers (the probe itself works)
    from_bob = probe_from_server(swarm, "jbmswbob", f"{cat[2]}:8888", f"{ann[0]}:{ann[1]}", hub_api)
    # from ann's server: bob's and cat's published ports on node 2
    from_ann = probe_from_server(swarm, "jbmswann", f"{bob[0]}:{bob[1]}", f"{cat[0]}:{cat[1]}", hub_api)
    from_outsider = probe_from_outsider(outsider, f"{ann[0]}:{ann[1]}", f"{bob[0]}:{bob[1]}",
                                        f"{cat[0]}:{cat[1]}")
    print(f"\nfrom bob: {from_bob}; from ann: {from_ann}; outsider: {from_outsider}")
    assert from_bob[2] == from_ann[2] == "open"
    # the same node: enable_icc=false and the rules' admit rule; the other node: the sender's node
    # blocks every node's address (dropped), the receiver's admits the hub only (rejected)
    closed = ("timeout", "unreachable")
    assert from_bob[0] in closed and from_bob[1] in closed, from_bob
    assert from_ann[0] in closed and from_ann[1] in closed, from_ann
    assert from_outsider == ["unreachable"] * 3, from_outsider  # the receiving node's REJECT
    # the control: without the rules in the nodes the same connections open
    env = harness.users_rules_env(swarm, hub.hub_port)
    for node in swarm.nodes:
        harness.users_rules(node, "remove", env)
    try:
        bare_ann = probe_from_server(swarm, "jbmswann", f"{bob[0]}:{bob[1]}")
        bare_outsider = probe_from_outsider(outsider, f"{ann[0]}:{ann[1]}", f"{bob[0]}:{bob[1]}")
    finally:
        for node in swarm.nodes:
            harness.users_rules(node, "apply", env)
    print(f"without the rules: from ann {bare_ann}; outsider {bare_outsider}")
    assert bare_ann == ["open"] and bare_outsider == ["open", "open"], (bare_ann, bare_outsider)
    assert probe_from_outsider(outsider, f"{bob[0]}:{bob[1]}") == ["unreachable"]


def test_egress_off_on_a_swarm_node_keeps_the_hub_api(cluster, outsider):
    """docker_users_egress false on node 2: bob's server still reaches the hub API (on another
    host, whose address is blocked otherwise) and the hub still serves it; nothing else beyond
    the node: a closed port of the outsider refuses (RST) with egress on and is unreachable (the
    rules' REJECT) with it off."""
    swarm, hub = cluster
    node2 = swarm.nodes[1]
    targets = (f"{harness.GATEWAY}:{hub.hub_port}", f"{OUTSIDER_IP}:9", f"{harness.GATEWAY}:9")
    before = probe_from_server(swarm, "jbmswbob", *targets)
    harness.users_rules(node2, "apply", harness.users_rules_env(swarm, hub.hub_port, egress=False))
    try:
        after = probe_from_server(swarm, "jbmswbob", *targets)
        served = through_proxy(hub, "jbmswbob", "api/status").status_code
    finally:
        harness.users_rules(node2, "apply", harness.users_rules_env(swarm, hub.hub_port))
    print(f"\negress on: {before}; off: {after}")
    # the hub's host but the hub API: blocked (dropped) either way
    assert before == ["open", "refused", "timeout"] and after == ["open", "unreachable", "timeout"], (before, after)
    assert served == 200


def test_nothing_fits_answers_409_naming_the_biggest_free_slot(cluster):
    swarm, hub = cluster
    r = spawn(hub, "jbmswdan", {"cpu_guarantee": 0.75})
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    assert msg.startswith("cpu_guarantee: no swarm node can take this server (asked cpu_guarantee 0.75 CPUs"), msg
    assert "the biggest free slot is node jbm-swarm-node2 (0.5 CPUs, 768M, 0 GPUs free)" in msg, msg
    assert service(swarm, "jbmswdan") is None


def test_a_rejected_task_fails_the_spawn_with_swarms_reason_and_leaves_no_service(cluster):
    swarm, hub = cluster
    r = spawn(hub, "jbmsweve", {})
    assert r.status_code in (201, 202, 424), r.text  # 424 when swarm refuses it at once, never a 500
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and hub.api("GET", "/users/jbmsweve").json()["servers"]:
        time.sleep(1)
    assert not hub.api("GET", "/users/jbmsweve").json()["servers"], hub.log()
    log = hub.log(400)
    assert "the task of service jupyter-jbmsweve is rejected" in log and "bind source path does not exist" in log
    assert service(swarm, "jbmsweve") is None


def test_a_restarted_hub_keeps_the_servers_and_their_allocation(cluster):
    swarm, hub = cluster
    before = {u: service(swarm, u)["ID"] for u in USERS[:3]}  # ann, bob, cat
    hub.restart()
    for user in USERS[:3]:
        assert hub.wait_ready(user, timeout=60)
        assert service(swarm, user)["ID"] == before[user]
    assert through_proxy(hub, "jbmswbob", "api/status").status_code == 200
    # the new hub knows nothing in memory: node 1's 0.25 free cores come from the services
    r = spawn(hub, "jbmswdan", {"cpu_guarantee": 0.5})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("jbmswdan")
    assert service_node(swarm, "jbmswdan").name == "jbm-swarm-node2"


def test_a_stopped_node_stops_its_servers_and_new_spawns_avoid_it(cluster):
    swarm, hub = cluster
    node2 = swarm.nodes[1]
    node2.stop_engine()
    swarm.wait_node_state(node2.name, "Down", timeout=90)
    # the hub polls: bob's, cat's and dan's servers on node 2 are reported stopped, their services removed
    deadline = time.monotonic() + 60
    gone = set()
    while time.monotonic() < deadline and gone != {"jbmswbob", "jbmswcat", "jbmswdan"}:
        gone = {u for u in ("jbmswbob", "jbmswcat", "jbmswdan")
                if not hub.api("GET", f"/users/{u}").json()["servers"]}
        time.sleep(1)
    assert gone == {"jbmswbob", "jbmswcat", "jbmswdan"}, hub.log()
    assert "node jbm-swarm-node2 is down" in hub.log(400)
    assert hub.api("GET", "/users/jbmswann").json()["servers"][""]["ready"]
    # node 2 is not schedulable: a spawn that only it could take is refused, naming it
    r = spawn(hub, "jbmswbob", {"cpu_guarantee": 0.5})
    assert r.status_code == 409, r.text
    assert "not schedulable: node jbm-swarm-node2: state 'down', not ready" in r.json()["message"]
    # what still fits goes to node 1
    spawn_ready(hub, "jbmswbob", {"cpu_guarantee": 0.25})
    assert service_node(swarm, "jbmswbob").name == "jbm-swarm-node1"
