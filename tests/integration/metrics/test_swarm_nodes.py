"""Metrics on a swarm, for real: two nodes, each with its own dockerd and its own exporter.

Node "swmet-hub" is this machine's dockerd with the exporter running here; node "swmet-node2" is
a systemd host container with Docker inside (tests/harness/systemd_host.py) on its own network,
its exporter run by its systemd (the project's venv and this checkout bound read-only, as the
metrics role would install them). Each node runs one labelled user container; each exporter
must count only the containers its own dockerd lists (the nodes share one cgroup hierarchy).
A real Prometheus (Debian's) scrapes both, rendered from the project's template with one target
per node; the real resource panel app reads both exporters and one that is down.

The users' slices: node2's is a real systemd slice (CPUQuota, MemoryMax) that its dockerd puts
containers in (systemd driver, cgroup-parent, as on every swarm node); this machine's PID 1 is
not systemd, so its slice is a cgroup made by hand with the same limits files.
"""
import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from hubmetrics import labels
from hubmetrics.cgroups import systemd_slice_path
from hubmetrics.panel import handlers
from hubmetrics.panel.app import ResourcePanel
from tests.harness.hub import free_port
from tests.harness.images import ensure_systemd_image
from tests.harness import processes
from tests.harness.processes import stop_group, wait_until_ready
from tests.harness.systemd_host import SystemdHost, run_args
from tests.unit.panel.dashboard import render_prometheus_config

PREFIX = "jbm-swmet"
NETWORK, SUBNET, NODE2_IP = f"{PREFIX}-net", "172.30.80.0/24", "172.30.80.2"
NODE2 = f"{PREFIX}-node2"
HUB_NODE, NODE2_NODE = "swmet-hub", "swmet-node2"
IMAGE = "local/debian:bookworm"
REPO = Path(__file__).resolve().parents[3]
VENV = Path(sys.prefix)
EXPORTER_PORT = 9945
# each node's users' slice and its limits (the swarm role's capacity labels are these values)
NODE2_SLICE, NODE2_CPUS, NODE2_MEM = "jbmswmet-users.slice", 1.5, 1 << 30
HUB_SLICE, HUB_CPUS, HUB_MEM = "jbmswmethub-users.slice", 2.5, 2 << 30
USERS = {  # user -> (node, cpu guarantee, memory guarantee)
    "swmet-alice": (HUB_NODE, 0.5, 256 << 20),
    "swmet-bob": (NODE2_NODE, 0.25, 128 << 20),
}


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def wait_for(what, check, timeout=90.0, interval=0.5):
    return processes.wait_for(what, check, timeout, interval, (requests.RequestException, ValueError, KeyError))


def user_container_args(user):
    node, cpu, mem = USERS[user]
    return ["run", "-d", "--name", f"{PREFIX}-{user}", "--label", f"{labels.USER}={user}",
            "--label", f"{labels.CPU_GUARANTEE}={cpu}", "--label", f"{labels.MEM_GUARANTEE}={mem}",
            "--label", f"{labels.RESOURCE_PROFILE}=Tiny", "--label", f"{labels.IMAGE_PROFILE}=Debian",
            IMAGE, "sleep", "infinity"]


@pytest.fixture(scope="module")
def hub_slice():
    """This machine's users' slice as cgroups with the limits systemd would write (v1)."""
    made = []
    try:
        for controller, files in (("memory", {"memory.limit_in_bytes": HUB_MEM}),
                                  ("cpu", {"cpu.cfs_period_us": 100_000, "cpu.cfs_quota_us": int(HUB_CPUS * 100_000)})):
            path = Path("/sys/fs/cgroup", controller)
            for part in systemd_slice_path(HUB_SLICE).split("/"):
                path = path / part
                if not path.exists():
                    path.mkdir()
                    made.append(path)
            for name, value in files.items():
                (path / name).write_text(f"{value}\n")
        yield HUB_SLICE
    finally:
        for path in reversed(made):
            path.rmdir()


@pytest.fixture(scope="module")
def network():
    docker("network", "rm", NETWORK, check=False)
    docker("network", "create", "--subnet", SUBNET, NETWORK)
    try:
        yield NETWORK
    finally:
        docker("network", "rm", NETWORK, check=False)


@pytest.fixture(scope="module")
def node2(network, base_image):
    """A second node: systemd, its own dockerd (systemd driver, containers in its users' slice),
    its own exporter as a systemd service on the node's address."""
    ensure_systemd_image()
    host = SystemdHost(NODE2)
    host.remove()
    args = run_args(NODE2, docker_inside=True)
    args[-1:-1] = ["--network", network, "--ip", NODE2_IP,
                   "-v", f"{VENV}:{VENV}:ro", "-v", f"{REPO}:{REPO}:ro"]
    try:
        subprocess.run(args, check=True, capture_output=True)
        host.wait_booted()
        host.exec("bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                  "apt-get install -y -qq --no-install-recommends docker.io >/dev/null", timeout=400)
        host.exec("bash", "-c", f"printf '[Slice]\\nCPUQuota={int(NODE2_CPUS * 100)}%%\\nMemoryMax={NODE2_MEM}\\n' "
                  f"> /etc/systemd/system/{NODE2_SLICE}")
        host.exec("bash", "-c", "cat > /etc/docker/daemon.json", input=json.dumps(
            {"exec-opts": ["native.cgroupdriver=systemd"], "cgroup-parent": NODE2_SLICE, "live-restore": False}))
        host.exec("systemctl", "daemon-reload")
        host.exec("systemctl", "start", NODE2_SLICE)
        host.exec("systemctl", "restart", "docker")
        host.load_image(IMAGE)
        host.exec("systemd-run", "--unit", "jbm-swmet-exporter", f"--setenv=PYTHONPATH={REPO / 'metrics'}",
                  str(VENV / "bin" / "python"), "-m", "hubmetrics.exporter", "--listen",
                  f"{NODE2_IP}:{EXPORTER_PORT}", "--node-name", NODE2_NODE, "--users-slice", NODE2_SLICE,
                  "--interval", "1")
        yield host
    finally:
        host.remove()


@pytest.fixture(scope="module")
def user_containers(node2, base_image):
    docker("rm", "-f", f"{PREFIX}-swmet-alice", check=False)
    try:
        docker(*user_container_args("swmet-alice"))
        node2.exec("docker", *user_container_args("swmet-bob"))
        yield
    finally:
        docker("rm", "-f", f"{PREFIX}-swmet-alice", check=False)


@pytest.fixture(scope="module")
def exporters(tmp_path_factory, hub_slice, node2, user_containers):
    """{node: exporter base URL}: this machine's exporter here, node2's on its node."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("exporter") / "exporter.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hubmetrics.exporter", "--listen", f"127.0.0.1:{port}",
                             "--node-name", HUB_NODE, "--users-slice", hub_slice, "--interval", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": f"{REPO / 'metrics'}:{os.environ.get('PYTHONPATH', '')}"})
    urls = {HUB_NODE: f"http://127.0.0.1:{port}", NODE2_NODE: f"http://{NODE2_IP}:{EXPORTER_PORT}"}
    try:
        wait_until_ready(proc, lambda: requests.get(urls[HUB_NODE] + "/api/snapshot", timeout=5).ok, 60,
                         "this machine's exporter", log_path.read_text)

        def node2_sees_bob():
            users = requests.get(urls[NODE2_NODE] + "/api/snapshot", timeout=5).json()["users"]
            return users.get("swmet-bob", {}).get("containers")
        wait_for("node2's exporter to report bob's container", node2_sees_bob, timeout=90)
        yield urls
    finally:
        stop_group(proc, 20)
        log.close()


def snapshot(url):
    return requests.get(url + "/api/snapshot", timeout=5).json()


def guaranteed(snap):
    """The node's running guarantees as the sum of its users' (other tests' labelled containers
    may share this machine's dockerd: the hub node is compared with what its exporter lists)."""
    users = snap["users"].values()
    return (round(sum(u["cpu_guarantee_cores"] for u in users), 9), sum(u["memory_guarantee_bytes"] for u in users))


def test_each_exporter_counts_only_its_own_dockerds_containers(exporters):
    hub, node2 = snapshot(exporters[HUB_NODE]), snapshot(exporters[NODE2_NODE])
    for snap, node, user, other in ((hub, HUB_NODE, "swmet-alice", "swmet-bob"),
                                    (node2, NODE2_NODE, "swmet-bob", "swmet-alice")):
        assert snap["node"]["name"] == node
        assert snap["users"][user]["containers"] == [f"{PREFIX}-{user}"], snap["users"]
        assert other not in snap["users"], f"{node} counts {other}, who runs on the other node"
        _, cpu, mem = USERS[user]
        assert (snap["users"][user]["cpu_guarantee_cores"], snap["users"][user]["memory_guarantee_bytes"]) == (cpu, mem)
        assert (snap["node"]["guaranteed_cpus"], snap["node"]["guaranteed_mem_bytes"]) == guaranteed(snap)
    # node2's dockerd runs bob's container only: its running guarantees are exactly his
    assert (node2["node"]["guaranteed_cpus"], node2["node"]["guaranteed_mem_bytes"]) == USERS["swmet-bob"][1:]


def test_the_guarantee_capacity_is_each_nodes_users_slice(exporters, node2):
    hub, two = snapshot(exporters[HUB_NODE])["node"], snapshot(exporters[NODE2_NODE])["node"]
    # node2: a real systemd slice (CPUQuota=150%, MemoryMax=1G), read by the exporter on the node
    assert (two["capacity_source"], two["capacity_cpus"], two["capacity_mem_bytes"]) == \
        ("users_slice", NODE2_CPUS, NODE2_MEM)
    assert (two["free_cpus"], two["free_mem_bytes"]) == (NODE2_CPUS - 0.25, NODE2_MEM - (128 << 20))
    assert (hub["capacity_source"], hub["capacity_cpus"], hub["capacity_mem_bytes"]) == \
        ("users_slice", HUB_CPUS, HUB_MEM)
    # and node2's dockerd really put bob's container into that slice (what the capacity bounds)
    pid = node2.exec("docker", "inspect", "-f", "{{.State.Pid}}", f"{PREFIX}-swmet-bob").stdout.strip()
    memory = [line for line in node2.exec("cat", f"/proc/{pid}/cgroup").stdout.splitlines() if ":memory:" in line]
    assert memory and f"/{systemd_slice_path(NODE2_SLICE)}/docker-" in memory[0], memory


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, exporters):
    """Debian's Prometheus with the project's template: one target per node, labelled node."""
    work = tmp_path_factory.mktemp("prometheus")
    token = work / "hub-token"
    token.write_text("unused")
    config = work / "prometheus.yml"
    config.write_text(render_prometheus_config(
        prometheus_scrape_interval="1s", jupyterhub_metrics_token_file=str(token),
        jupyterhub_metrics_address="127.0.0.1:9",   # no hub here: only the exporters are asserted
        hubmetrics_exporter_targets=[{"address": url.removeprefix("http://"), "node": node}
                                     for node, url in exporters.items()]))
    port = free_port()
    log_path = work / "prometheus.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(["/usr/bin/prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def both_up():
        active = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["labels"]["node"]: t["health"] for t in active if t["labels"]["job"] == "hubmetrics"} == \
            {HUB_NODE: "up", NODE2_NODE: "up"}

    try:
        wait_until_ready(proc, lambda: requests.get(f"{url}/-/ready", timeout=5).ok, 60, "Prometheus",
                         log_path.read_text)
        wait_for("Prometheus to scrape both nodes' exporters", both_up, timeout=60)
        yield url
    finally:
        stop_group(proc, 30)
        log.close()


def query(url, expr):
    reply = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", reply
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in reply["data"]["result"]}


def test_prometheus_scrapes_every_node_with_its_node_label(prometheus):
    wanted = {(("job", "hubmetrics"), ("node", node), ("user", user)): cpu for user, (node, cpu, _) in USERS.items()}
    got = wait_for("both users' guarantees, each on their own node",
                   lambda: query(prometheus, "sum by (job, node, user) (jupyterhub_user_cpu_guarantee_cores)") == wanted
                   or None, timeout=30)
    assert got
    # the exporter's own node label is kept as `node` (honor_labels), never exported_node
    assert not query(prometheus, "count by (exported_node) ({exported_node!=''})")
    capacity = query(prometheus, "sum by (node) (jupyterhub_node_cpu_guarantee_capacity_cores)")
    assert capacity == {(("node", HUB_NODE),): HUB_CPUS, (("node", NODE2_NODE),): NODE2_CPUS}
    free = query(prometheus, "sum by (node) (jupyterhub_node_cpu_guarantee_capacity_cores"
                             " - jupyterhub_node_cpu_guaranteed_cores)")
    assert free[(("node", NODE2_NODE),)] == NODE2_CPUS - 0.25
    # host series get the node from the target
    assert {dict(k)["node"] for k in query(prometheus, "jupyterhub_host_cpus")} == {HUB_NODE, NODE2_NODE}


@pytest.fixture(scope="module")
def panel(exporters):
    """The resource panel app reading both nodes' exporters and a third that never answers."""
    dead = f"http://127.0.0.1:{free_port()}/api/snapshot"
    port = free_port()
    app = ResourcePanel(snapshot_urls=[exporters[HUB_NODE] + "/api/snapshot", exporters[NODE2_NODE] + "/api/snapshot",
                                       dead],
                        service_prefix="/services/resources/", sample_interval=1, service_url=f"http://127.0.0.1:{port}")
    ready, loops = threading.Event(), []

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        sampler = app.make_sampler()
        HTTPServer(app.make_app(sampler)).listen(port, "127.0.0.1")
        sampler.start()
        loops.append(IOLoop.current())
        ready.set()
        IOLoop.current().start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}/services/resources/"
    finally:
        loops[0].add_callback(loops[0].stop)
        thread.join(10)


def test_the_panel_shows_the_users_node_and_the_free_capacity_with_a_node_down(panel, exporters, monkeypatch):
    def as_user(name):
        monkeypatch.setattr(handlers.BaseHandler, "get_current_user", lambda self: {"name": name, "admin": False})
        return requests.get(panel + "api/me", timeout=10)

    def bob_seen():
        reply = as_user("swmet-bob")
        return reply.json() if reply.ok and reply.json()["node"] else None
    me = wait_for("the panel to read both nodes", bob_seen, timeout=30)
    assert me["node"] == NODE2_NODE and me["usage"]["containers"] == [f"{PREFIX}-swmet-bob"]
    nodes = {n["name"]: n for n in me["cluster"]["nodes"]}
    assert [n["up"] for n in me["cluster"]["nodes"]] == [True, True, False]
    dead = me["cluster"]["nodes"][2]
    assert "unreachable" in dead["error"] and dead["free_cpus"] is None
    assert nodes[NODE2_NODE]["free_cpus"] == NODE2_CPUS - 0.25
    hub_free_cpus = HUB_CPUS - guaranteed(snapshot(exporters[HUB_NODE]))[0]
    assert nodes[HUB_NODE]["free_cpus"] == pytest.approx(hub_free_cpus, abs=1e-6)
    total = me["cluster"]["total"]
    assert total["free_cpus"] == pytest.approx(hub_free_cpus + NODE2_CPUS - 0.25, abs=1e-6)
    assert (total["capacity_cpus"], total["nodes_up"], total["nodes_total"]) == (HUB_CPUS + NODE2_CPUS, 2, 3)
    alice = as_user("swmet-alice").json()
    assert alice["node"] == HUB_NODE and alice["usage"]["containers"] == [f"{PREFIX}-swmet-alice"]
    nobody = as_user("swmet-carol").json()   # no server anywhere: no node, the cluster all the same
    assert (nobody["node"], nobody["usage"], nobody["cluster"]["total"]["nodes_up"]) == (None, None, 2)
    # the spawn page's capacity API too, with no 500 for the dead node
    host = requests.get(panel + "api/host", timeout=10)
    assert host.status_code == 200 and host.json()["cluster"]["total"]["nodes_up"] == 2


@pytest.mark.parametrize("page", ["", "capacity"])
def test_the_panel_page_renders_the_users_node_and_every_nodes_capacity(panel, monkeypatch, page):
    """The real page and script in headless Chromium: bob's server's node, one row per node
    (the dead one said to be down), the cluster's total; the spawn page's line likewise."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.harness.browser import chromium
    monkeypatch.setattr(handlers.BaseHandler, "get_current_user", lambda self: {"name": "swmet-bob", "admin": False})
    driver = chromium()
    try:
        driver.get(panel + page)
        wait = WebDriverWait(driver, 60, poll_frequency=0.3)
        wait.until(lambda d: d.find_element(By.ID, "total-cpus").text not in ("", "–"))
        total = driver.find_element(By.ID, "total-cpus").text
        assert total.endswith(f"of {HUB_CPUS + NODE2_CPUS:.2f}"), total
        if page == "capacity":
            line = driver.find_element(By.ID, "cluster-line").text
            assert "2 of 3 nodes answering" in line, line
            return
        wait.until(lambda d: d.find_element(By.ID, "user-node").text == NODE2_NODE)
        assert driver.find_element(By.ID, "node-line").is_displayed()
        rows = {r.get_attribute("data-node"): r for r in driver.find_elements(By.CSS_SELECTOR, "#nodes-table tbody tr")}
        assert set(rows) >= {HUB_NODE, NODE2_NODE} and len(rows) == 3, list(rows)
        assert f"{NODE2_CPUS - 0.25:.2f} of {NODE2_CPUS:.2f}" in rows[NODE2_NODE].text
        (dead,) = [r for r in rows.values() if "down" in (r.get_attribute("class") or "")]
        assert "not answering" in dead.text
        # an admin's table of every user names the node each one's server runs on
        monkeypatch.setattr(handlers.BaseHandler, "get_current_user",
                            lambda self: {"name": "swmet-admin", "admin": True})
        driver.get(panel)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#users-table tr[data-user="swmet-bob"]'))
        assert driver.find_element(By.ID, "users-node-head").is_displayed()
        for user, (node, _, _) in USERS.items():
            cells = driver.find_elements(By.CSS_SELECTOR, f'#users-table tr[data-user="{user}"] td')
            assert cells[-1].text == node, (user, [c.text for c in cells])
    finally:
        driver.quit()


def test_both_exporters_expositions_pass_promtool(exporters):
    for node, url in exporters.items():
        text = requests.get(url + "/metrics", timeout=10).text
        assert f'jupyterhub_node_cpu_guarantee_capacity_cores{{node="{node}"}}' in text
        check = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert (check.returncode, check.stdout, check.stderr) == (0, "", ""), node
