"""Several nodes' exporters (a swarm): the user's numbers come from their server's node, every
node's free guarantee capacity is shown with the cluster's total, and a node whose exporter does
not answer is shown as down while the rest still works."""
from hubmetrics.panel import views
from hubmetrics.panel.sampler import Cluster
from tests.unit.panel.conftest import FakeExporter, snapshot, use


def node(name, cpus, mem, guaranteed_cpus=0.0, guaranteed_mem=0):
    return {"name": name, "capacity_cpus": cpus, "capacity_mem_bytes": mem, "capacity_source": "users_slice",
            "guaranteed_cpus": guaranteed_cpus, "guaranteed_mem_bytes": guaranteed_mem,
            "free_cpus": max(0.0, cpus - guaranteed_cpus), "free_mem_bytes": max(0, mem - guaranteed_mem)}


def with_node(snap, n):
    return dict(snap, node=n)


def test_cluster_view_totals_the_nodes_that_answered():
    a = with_node(snapshot(1.0, gpus_total=2, gpus_free=1), node("hub", 1.5, 4 << 30, 0.5, 1 << 30))
    b = with_node(snapshot(1.0, nvml_available=False, gpus_total=0, gpus_free=0), node("node2", 3.5, 8 << 30, 0.2))
    c = with_node(snapshot(1.0), node("node3", 8.0, 64 << 30))
    got = views.cluster_view([("http://127.0.0.1:9945/api/snapshot", a, None),
                              ("http://10.0.0.2:9945/api/snapshot", b, None),
                              ("http://10.0.0.3:9945/api/snapshot", c, "exporter at http://10.0.0.3:9945 unreachable")])
    hub, node2, node3 = got["nodes"]
    assert (hub["name"], hub["up"], hub["free_cpus"], hub["free_mem_bytes"], hub["gpus_free"]) == \
        ("hub", True, 1.0, 3 << 30, 1)
    assert (node2["free_cpus"], node2["gpus_total"], node2["gpus_free"]) == (3.3, 0, 0)   # no NVML: no GPUs
    # the dead node is shown as such, with no numbers that could pass for the present
    assert node3["up"] is False and "unreachable" in node3["error"] and node3["name"] == "node3"
    assert node3["free_cpus"] is None and node3["gpus_free"] is None
    total = got["total"]
    assert (total["capacity_cpus"], total["free_cpus"], total["free_mem_bytes"], total["gpus_free"]) == \
        (5.0, 4.3, (3 << 30) + (8 << 30), 1)
    assert (total["nodes_up"], total["nodes_total"]) == (2, 3)


def test_a_node_never_seen_is_named_by_its_address():
    (n,) = views.cluster_view([("http://10.0.0.9:9945/api/snapshot", None, "unreachable")])["nodes"]
    assert (n["name"], n["up"]) == ("10.0.0.9", False)


async def test_the_users_numbers_come_from_the_node_running_their_server():
    hub, worker, dead = FakeExporter(), FakeExporter(), FakeExporter()
    try:
        hub.serve(with_node(snapshot(1.0, {"bob": use(name="bob")}), node("hub", 1.5, 4 << 30)))
        worker.serve(with_node(snapshot(1.0, {"alice": use(cpu_seconds=3.0, name="alice")}), node("node2", 2.0, 4 << 30)))
        dead_url = dead.url
        dead.close()
        cluster = Cluster([hub.url, worker.url, dead_url], 1, 10, timeout_seconds=2)
        assert await cluster.sample_once() == [True, True, False]
        assert cluster.for_user("alice").url == worker.url
        assert cluster.for_user("bob") is cluster.primary
        assert cluster.for_user("nobody") is cluster.primary   # no server: the hub's own node
        assert cluster.snapshot["node"]["name"] == "hub"        # what one server's panel read
        admin = views.cluster_admin_view([(s.url, s.snapshot, s.error, s.history) for s in cluster.samplers])
        assert {u: v["node"] for u, v in admin["users"].items()} == {"alice": "node2", "bob": "hub"}
        up = [n["up"] for n in views.cluster_view(cluster.nodes())["nodes"]]
        assert up == [True, True, False]
        # alice's node stops answering: she sees her last numbers and why they are old
        worker.status = 500
        assert await cluster.sample_once() == [True, False, False]
        mine = cluster.for_user("alice")
        assert mine.url == worker.url and "HTTP 500" in mine.error
        view = views.me_view(mine.snapshot, mine.history, "alice", mine.error)
        assert view["usage"]["containers"] == ["jupyter-alice"] and "HTTP 500" in view["exporter_error"]
    finally:
        hub.close()
        worker.close()


def test_one_url_is_one_node_as_before():
    cluster = Cluster(["http://127.0.0.1:9945/api/snapshot"], 5, 10)
    assert len(cluster.samplers) == 1 and cluster.for_user("alice") is cluster.primary
    assert cluster.interval_seconds == 5.0
