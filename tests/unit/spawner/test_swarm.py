"""The swarm spawner's pure core: nodes from labels, allocations from services, placement, the spec."""
import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilespawner import dockerargs, labels, swarm
from profilespawner.admission import AdmissionError, Capacity
from profilespawner.capacity import HostCapacity
from profilespawner.profiles import DataMount
from profilespawner.request import SpawnRequest, build_request
from profilespawner.running import RunningServer

from .conftest import G, M


def api_node(node_id, hostname, cpus="1", mem=str(G), gpus="", state="ready", availability="active",
             addr=None, drop=()):
    node_labels = {labels.NODE_CAPACITY_CPUS: cpus, labels.NODE_CAPACITY_MEM: mem, labels.NODE_GPUS: gpus}
    for key in drop:
        node_labels.pop(key)
    return {"ID": node_id, "Spec": {"Labels": node_labels, "Availability": availability},
            "Status": {"State": state, "Addr": addr or f"10.0.0.{len(hostname)}"},
            "Description": {"Hostname": hostname, "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 24 * G}}}


def api_service(name, user, node_id, cpu="0", mem="0", gpus="", service_id=None):
    return {"ID": service_id or f"svc-{name}", "Spec": {
        "Name": name,
        "Labels": {labels.USER: user, labels.CPU_GUARANTEE: cpu, labels.MEM_GUARANTEE: mem, labels.GPUS: gpus},
        "TaskTemplate": {"Placement": {"Constraints": [f"node.id=={node_id}"]}}}}


def request(cpu_g=0.0, mem_g=0, gpus=0, cpu_limit=1.0, mem_limit=G):
    return SpawnRequest("Tiny", "SingleUser", "local/singleuser:latest", cpu_limit, mem_limit, cpu_g, mem_g, gpus)


# ---------------------------------------------------------------- nodes


def test_node_from_labels():
    node = swarm.node_from_api(api_node("n1", "node1", cpus="1.5", mem=str(2 * G), gpus="GPU-a, GPU-b"))
    assert node == swarm.Node("n1", "node1", "10.0.0.5", Capacity(1.5, 2 * G), HostCapacity(2.0, 24 * G),
                              ("GPU-a", "GPU-b"))


@pytest.mark.parametrize("key,value,needle", [
    (labels.NODE_CAPACITY_CPUS, "many", "capacity-cpus='many' is not valid"),
    (labels.NODE_CAPACITY_CPUS, "-1", "capacity-cpus='-1' is not valid"),
    (labels.NODE_CAPACITY_CPUS, "nan", "capacity-cpus='nan' is not valid"),
    (labels.NODE_CAPACITY_MEM, "1.5G", "capacity-mem='1.5G' is not valid; allowed: an integer number of bytes"),
    (labels.NODE_CAPACITY_MEM, "0", "capacity-mem='0' is not valid"),
])
def test_a_bad_label_makes_the_node_unschedulable_and_says_which(key, value, needle):
    entry = api_node("n1", "node1")
    entry["Spec"]["Labels"][key] = value
    nodes, problems = swarm.nodes_from_api([entry, api_node("n2", "node2")])
    assert [n.id for n in nodes] == ["n2"]
    assert len(problems) == 1 and problems[0].startswith("node node1: label org.jupyterhub-baremetal.")
    assert needle in problems[0]


@pytest.mark.parametrize("missing", [labels.NODE_CAPACITY_CPUS, labels.NODE_CAPACITY_MEM, labels.NODE_GPUS])
def test_a_missing_label_is_named(missing):
    _, problems = swarm.nodes_from_api([api_node("n1", "node1", drop=(missing,))])
    assert problems == tuple(p for p in problems if f"label {missing} is missing" in p) and problems


def test_down_or_drained_nodes_are_not_schedulable():
    nodes, problems = swarm.nodes_from_api([api_node("n1", "node1", state="down"),
                                            api_node("n2", "node2", availability="drain")])
    assert nodes == ()
    assert problems == ("node node1: state 'down', not ready", "node node2: availability 'drain', not active")


def test_manager_address_when_status_says_0000():
    entry = api_node("n1", "node1", addr="0.0.0.0")
    entry["ManagerStatus"] = {"Addr": "172.30.77.2:2377"}
    assert swarm.node_addr(entry) == "172.30.77.2"


# ---------------------------------------------------------------- allocations


def test_allocations_come_from_services_and_skip_ended_ones():
    services = [api_service("jupyter-a", "a", "n1", "0.5", str(G), "GPU-a"),
                api_service("jupyter-b", "b", "n2", "0.25", "0"),
                api_service("jupyter-c", "c", "n1", "1", "0")]
    tasks = [{"ServiceID": "svc-jupyter-c", "NodeID": "n1", "Status": {"State": "failed"}},
             {"ServiceID": "svc-jupyter-a", "NodeID": "n1", "Status": {"State": "running"}}]
    allocs = swarm.allocations(services, tasks)
    assert allocs == {"n1": (RunningServer("jupyter-a", "a", 0.5, G, ("GPU-a",)),),
                      "n2": (RunningServer("jupyter-b", "b", 0.25, 0, ()),)}


def test_a_service_without_constraint_counts_on_its_tasks_node():
    service = api_service("jupyter-a", "a", "n1", "0.5")
    service["Spec"]["TaskTemplate"] = {}
    tasks = [{"ServiceID": "svc-jupyter-a", "NodeID": "n3", "Status": {"State": "running"}}]
    assert list(swarm.allocations([service], tasks)) == ["n3"]


# ---------------------------------------------------------------- placement


def two_nodes(gpus2="GPU-x"):
    nodes, _ = swarm.nodes_from_api([api_node("n1", "node1", cpus="1", mem=str(G)),
                                     api_node("n2", "node2", cpus="1", mem=str(G), gpus=gpus2)])
    return nodes


def test_best_fit_keeps_gpu_nodes_for_gpu_users_and_packs():
    nodes = two_nodes()
    node, _ = swarm.place(request(0.5, 256 * M), nodes, {})
    assert node.id == "n1"  # the CPU-only spawn leaves the GPU node free
    allocs = {"n1": (RunningServer("jupyter-a", "a", 0.5, 256 * M),)}
    node, _ = swarm.place(request(0.25, 256 * M), nodes, allocs)
    assert node.id == "n1"  # best fit: the fuller node that still fits


def test_a_full_node_sends_the_next_spawn_elsewhere():
    allocs = {"n1": (RunningServer("jupyter-a", "a", 0.75, 512 * M),)}
    node, req = swarm.place(request(0.5, 256 * M), two_nodes(), allocs)
    assert node.id == "n2" and req.gpu_ids == ()


def test_gpus_are_exclusive_per_node():
    nodes = two_nodes()
    node, req = swarm.place(request(0, 0, gpus=1), nodes, {})
    assert (node.id, req.gpu_ids) == ("n2", ("GPU-x",))
    allocs = {"n2": (RunningServer("jupyter-g", "g", 0, 0, ("GPU-x",)),)}
    with pytest.raises(AdmissionError) as err:
        swarm.place(request(0, 0, gpus=1), nodes, allocs)
    assert err.value.status == 409 and err.value.field == "gpus"
    assert "gpus 1" in err.value.message and "only 0 of 1 are free" in err.value.message


def test_nothing_fits_names_what_was_asked_and_the_biggest_free_slot():
    allocs = {"n1": (RunningServer("jupyter-a", "a", 0.75, 768 * M),),
              "n2": (RunningServer("jupyter-b", "b", 0.5, 512 * M),)}
    with pytest.raises(AdmissionError) as err:
        swarm.place(request(0.75, 256 * M), two_nodes(), allocs, unschedulable=("node node3: state 'down', not ready",))
    msg = err.value.message
    assert err.value.status == 409 and err.value.field == "cpu_guarantee"
    assert msg.startswith("cpu_guarantee: no swarm node can take this server (asked cpu_guarantee 0.75 CPUs, "
                          "mem_guarantee 256M, gpus 0)")
    assert "the biggest free slot is node node2 (0.5 CPUs, 512M, 1 GPUs free)" in msg
    assert "not schedulable: node node3: state 'down', not ready" in msg


def test_no_nodes_at_all():
    with pytest.raises(AdmissionError) as err:
        swarm.place(request(), (), {})
    assert "no node is schedulable" in err.value.message


def test_the_replaced_service_does_not_count():
    allocs = {"n1": (RunningServer("jupyter-a", "a", 1, G),), "n2": (RunningServer("jupyter-b", "b", 1, G),)}
    node, _ = swarm.place(request(1, G), two_nodes(), allocs, exclude="jupyter-a")
    assert node.id == "n1"


def test_limits_above_every_node_are_refused():
    with pytest.raises(AdmissionError) as err:
        swarm.place(request(cpu_limit=4), two_nodes(), {})
    assert err.value.field == "cpu_limit" and "cpu_limit: 4 CPUs but node node1 has 2" in err.value.message


node_caps = st.tuples(st.sampled_from(["0.5", "1", "1.5", "2"]), st.sampled_from([256 * M, G, 2 * G]),
                      st.integers(0, 2))
spawn = st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]), st.sampled_from([0, 64 * M, 256 * M, G]),
                  st.integers(0, 2))


@settings(max_examples=150, deadline=None)
@given(st.lists(node_caps, min_size=1, max_size=3), st.lists(spawn, max_size=12))
def test_placement_never_exceeds_a_node_nor_shares_a_gpu(caps, spawns):
    nodes, _ = swarm.nodes_from_api([
        api_node(f"n{i}", f"node{i}", cpus=c, mem=str(m), gpus=",".join(f"GPU-{i}-{k}" for k in range(g)))
        for i, (c, m, g) in enumerate(caps)])
    allocs = {}
    for k, (cpu, mem, gpus) in enumerate(spawns):
        try:
            node, req = swarm.place(request(cpu, mem, gpus), nodes, allocs)
        except AdmissionError as e:
            # refused only when no node could take it
            assert all(swarm.free_slot(n, allocs.get(n.id, ())).cpus + 1e-9 < cpu
                       or swarm.free_slot(n, allocs.get(n.id, ())).mem_bytes < mem
                       or swarm.free_slot(n, allocs.get(n.id, ())).gpus < gpus for n in nodes), e.message
            continue
        allocs[node.id] = allocs.get(node.id, ()) + (RunningServer(f"s{k}", "u", cpu, mem, req.gpu_ids),)
    for node in nodes:
        held = allocs.get(node.id, ())
        assert sum(s.cpu_guarantee for s in held) <= node.capacity.cpus + 1e-9
        assert sum(s.mem_guarantee for s in held) <= node.capacity.mem_bytes
        ids = [g for s in held for g in s.gpus]
        assert len(ids) == len(set(ids)) and set(ids) <= set(node.gpus)


# ---------------------------------------------------------------- the service


def inputs(**kw):
    base = dict(name="jupyter-ann", username="ann", uid=2001, gid=2001, groups=(100, 3000),
                home="/srv/homes/ann", env={"NB_UID": "2001", "HOME": "/srv/homes/ann"}, args=("jupyterhub-singleuser",),
                port=8888, mounts=({"Type": "bind", "Source": "/srv/homes/ann", "Target": "/srv/homes/ann",
                                    "ReadOnly": False},), scope_labels={"scope": "test"})
    base.update(kw)
    return swarm.ServiceInputs(**base)


def test_service_spec():
    node = two_nodes()[1]
    req = replace(request(0.5, 256 * M, 1, cpu_limit=1.0, mem_limit=G), gpu_ids=("GPU-x",))
    spec = swarm.service_spec(req, node, inputs())
    task = spec["task_template"]
    cs = task["ContainerSpec"]
    assert spec["name"] == "jupyter-ann" and spec["mode"] == {"replicated": {"Replicas": 1}}
    assert cs["User"] == "2001:2001" and cs["Groups"] == ["100", "3000"] and cs["Dir"] == "/srv/homes/ann"
    assert cs["Init"] is True and cs["ReadOnly"] is True and cs["CapabilityDrop"] == ["ALL"]
    assert "NB_UID=2001" in cs["Env"] and "NVIDIA_VISIBLE_DEVICES=GPU-x" in cs["Env"] and f"MEM_LIMIT={G}" in cs["Env"]
    assert cs["Args"] == ["jupyterhub-singleuser"]
    expected_labels = {"scope": "test", **dockerargs.container_labels(req, "ann")}
    assert spec["labels"] == expected_labels
    assert {k: v for k, v in cs["Labels"].items() if k != labels.HOST_CONFIG} == expected_labels
    # node2's labels: 1 core and 1G of guarantees; 0.5 core of it weighs half the kernel's
    # range (no best-effort parent on a node), 256M of 1G ranks the OOM score at 750
    assert json.loads(cs["Labels"][labels.HOST_CONFIG]) == {
        "cpu_shares": 131072, "mem_reservation": 256 * M, "memswap_limit": G, "oom_score_adj": 750,
        "pids_limit": 1024}
    assert list(json.loads(cs["Labels"][labels.HOST_CONFIG])) == sorted(json.loads(cs["Labels"][labels.HOST_CONFIG]))
    assert cs["Mounts"][0]["Source"] == "/srv/homes/ann" and cs["Mounts"][-1]["Type"] == "tmpfs"
    assert cs["Mounts"][-1]["TmpfsOptions"] == {"SizeBytes": G // 2, "Mode": 0o1777}
    assert task["Resources"] == {"Limits": {"NanoCPUs": 10**9, "MemoryBytes": G, "Pids": 1024},
                                 "Reservations": {"NanoCPUs": 5 * 10**8, "MemoryBytes": 256 * M}}
    assert task["Placement"] == {"Constraints": ["node.id==n2"]}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert spec["endpoint_spec"] == {"Mode": "dnsrr", "Ports": [
        {"Protocol": "tcp", "TargetPort": 8888, "PublishMode": "host"}]}
    assert "networks" not in spec  # no network_name: swarm's default


def test_the_service_is_on_the_users_swarm_network():
    spec = swarm.service_spec(request(), two_nodes()[0], inputs(networks=("jupyterhub-users",)))
    assert spec["networks"] == ["jupyterhub-users"]


def test_cpu_only_spawns_see_no_gpu_and_data_mounts_keep_read_only():
    req = replace(request(), data_mounts=(DataMount("/srv/data", "/data", False),
                                           DataMount("/srv/scratch", "/scratch", True)))
    cs = swarm.service_spec(req, two_nodes()[0], inputs(pids_limit=0))["task_template"]["ContainerSpec"]
    assert "NVIDIA_VISIBLE_DEVICES=void" in cs["Env"]
    binds = {m["Target"]: m["ReadOnly"] for m in cs["Mounts"] if m["Type"] == "bind"}
    assert binds == {"/srv/homes/ann": False, "/data": True, "/scratch": False}
    assert "pids_limit" not in json.loads(cs["Labels"][labels.HOST_CONFIG])


options = st.dictionaries(
    st.sampled_from(["cpu_limit", "mem_limit", "cpu_guarantee", "mem_guarantee", "resource_profile"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**12),
              st.sampled_from(["Tiny", "Small", "1G", "0", "512M", "0.5", "x", ""])), max_size=5)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options)
def test_no_accepted_request_yields_an_unlimited_service(profiles, default_user, opts):
    try:
        req = build_request(profiles, default_user, opts, HostCapacity(2.0, 24 * G))
    except Exception as e:  # noqa: BLE001
        assert hasattr(e, "field"), repr(e)
        return
    res = swarm.service_spec(req, two_nodes()[0], inputs())["task_template"]["Resources"]
    assert res["Limits"]["NanoCPUs"] >= 10**6 and res["Limits"]["MemoryBytes"] >= 6 * M
    assert res.get("Reservations", {}).get("MemoryBytes", 0) <= res["Limits"]["MemoryBytes"]
    assert res.get("Reservations", {}).get("NanoCPUs", 0) <= res["Limits"]["NanoCPUs"]


# ---------------------------------------------------------------- tasks


def test_task_problem_and_address():
    assert swarm.task_problem({"Status": {"State": "pending"}}, "s") is None
    assert swarm.task_problem({"Status": {"State": "rejected", "Err": "invalid mount config"}}, "s") == \
        "the task of service s is rejected: invalid mount config"
    task = {"ID": "t", "Status": {"PortStatus": {"Ports": [{"TargetPort": 8888, "PublishedPort": 30001}]}}}
    assert swarm.task_address(task, api_node("n1", "node1", addr="172.30.77.3"), 8888) == ("172.30.77.3", 30001)
    with pytest.raises(swarm.TaskError, match="publishes no host port for 9999"):
        swarm.task_address(task, api_node("n1", "node1"), 9999)


def test_volume_binds_become_service_mounts():
    mounts = swarm.volume_mounts({"/srv/homes/ann": {"bind": "/srv/homes/ann", "ro": False},
                                  "/srv/ro": {"bind": "/ro", "mode": "ro"}, "certs": {"bind": "/certs", "mode": "ro"}})
    assert [(m["Source"], m["Target"], m["Type"], m["ReadOnly"]) for m in mounts] == [
        ("/srv/homes/ann", "/srv/homes/ann", "bind", False), ("/srv/ro", "/ro", "bind", True),
        ("certs", "/certs", "volume", True)]
