"""The swarm spawner on a real 2-node Docker Swarm (tests/harness/swarm.py) with a real hub + proxy.

One swarm and one hub for the module; the tests run in order and build on each other's servers:
node 1 (manager, no GPU) and node 2 (one fake GPU) may each guarantee 1 core and 1 GiB.
"""
import json
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
    try:
        swarm = harness.start_swarm(2, [singleuser_image], users,
                                    [("1", G, ""), ("1", G, GPU)])
        print(f"swarm of 2 up in {time.monotonic() - started:.0f}s")
        workdir = tmp_path_factory.mktemp("swarmhub")
        profiles_file = workdir / "profiles.yaml"
        profiles_file.write_text(yaml.safe_dump(swarm_profiles(singleuser_image)))
        hub = Hub(workdir=workdir, profiles_file=profiles_file, extra_config=harness.hub_config())
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
    # the host-config label: what the node agent restores, as the single server computes it
    req = SpawnRequest("Tiny", "SingleUser", "", 1.0, 512 * M, 0.75, 256 * M)
    text = cfg["Labels"][labels.HOST_CONFIG]
    assert text == json.dumps(dockerargs.node_host_config(req, 1024), sort_keys=True)
    assert json.loads(text) == {"cpu_shares": 768, "mem_reservation": 256 * M, "memswap_limit": 512 * M,
                                "pids_limit": 1024}
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
