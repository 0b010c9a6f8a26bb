"""The swarm role's filters and the firewall's swarm rules: pure functions, no host needed."""
from tests.unit.roles.test_filter_plugins import load_filter

swarm = load_filter("swarm", "swarm")
networks = load_filter("firewall", "networks")

UUID = "GPU-5f1c2e4a-0b1d-4c7e-9a3f-000000000001"


def test_good_swarm_variables_have_no_problems():
    assert swarm.swarm_problems("192.0.2.10", "10.201.0.0/16", 24, [UUID], "hub") == []
    assert swarm.swarm_problems("192.0.2.10", "10.201.0.0/16", "16", []) == []


def test_each_bad_swarm_variable_is_named_with_its_value_and_what_is_allowed():
    problems = swarm.swarm_problems("127.0.0.1", "10.201.0.1/16", 24, ["GPU-a", "gpu 1", "GPU-a"], "n1")
    assert problems[0].startswith("swarm_advertise_address (host n1): '127.0.0.1' is not an IPv4")
    assert problems[1].startswith("swarm_default_addr_pool (host n1): '10.201.0.1/16' is not an IPv4 CIDR")
    assert problems[2].startswith("swarm_node_gpus[1] (host n1): 'gpu 1' is not a GPU UUID")
    assert "lists a GPU twice" in problems[3]
    assert len(problems) == 4
    assert "is not an IPv4 address" in swarm.swarm_problems("hub.example.org", "10.201.0.0/16", 24, [])[0]
    assert "between the pool's prefix (16) and 29" in swarm.swarm_problems(
        "192.0.2.1", "10.201.0.0/16", 8, [])[0]
    assert "must be a list of GPU UUIDs" in swarm.swarm_problems("192.0.2.1", "10.201.0.0/16", 24, "GPU-a,GPU-b")[0]


def test_capacity_labels_are_the_slice_limits_in_cores_and_bytes():
    assert swarm.slice_cpus("150%") == "1.5"
    assert swarm.slice_cpus("1800%") == "18"
    assert swarm.slice_cpus("25%") == "0.25"
    assert swarm.slice_bytes("20480M", 32000) == str(20480 << 20)
    assert swarm.slice_bytes("20G", 32000) == str(20 << 30)
    assert swarm.slice_bytes("infinity", 1024) == str(1 << 30)
    assert swarm.slice_bytes("50%", 1024) == str(1 << 29)
    assert swarm.slice_bytes("123456", 1024) == "123456"


def test_labels_are_updated_only_where_they_differ():
    wanted = {"a": "1.5", "b": "", "c": 7}
    assert swarm.labels_to_update({"a": "1.5", "b": "", "c": "7", "other": "x"}, wanted) == []
    assert swarm.labels_to_update(None, wanted) == ["--label-add", "a=1.5", "--label-add", "b=",
                                                    "--label-add", "c=7"]
    assert swarm.labels_to_update({"a": "2", "b": "", "c": "7"}, wanted) == ["--label-add", "a=1.5"]


def test_membership_tells_this_swarm_from_another():
    member = {"LocalNodeState": "active", "NodeID": "w1", "ControlAvailable": False,
              "RemoteManagers": [{"NodeID": "m1", "Addr": "192.0.2.10:2377"}]}
    assert swarm.swarm_membership({"LocalNodeState": "inactive"}) == "inactive"
    assert swarm.swarm_membership(member, "m1") == "member"
    assert swarm.swarm_membership(member, "m2") == "other"
    own = {"LocalNodeState": "active", "NodeID": "x", "ControlAvailable": True}
    assert swarm.swarm_membership(own) == "manager"
    assert swarm.swarm_membership(own, "m1") == "other"  # a worker that manages a swarm of its own
    assert swarm.swarm_membership({"LocalNodeState": "pending"}) == "error"


def test_swarm_rules_open_the_swarm_ports_to_the_peers_and_the_hubs_ports_to_the_hub():
    manager = networks.swarm_rules(["192.0.2.11"], [], True, "32768:60999", 9945)
    assert manager == [["7946", "any", "192.0.2.11"], ["4789", "udp", "192.0.2.11"],
                       ["2377", "tcp", "192.0.2.11"]]
    worker = networks.swarm_rules(["192.0.2.10", "192.0.2.12"], ["192.0.2.10"], False,
                                  "32768:60999", 9945)
    assert ["2377", "tcp", "192.0.2.10"] not in worker
    assert worker[-2:] == [["32768:60999", "tcp", "192.0.2.10"], ["9945", "tcp", "192.0.2.10"]]
    assert len(worker) == 6
    assert networks.swarm_rules([], [], True, "32768:60999", 9945) == []


def test_the_manager_opens_its_extra_ports_to_the_workers_only():
    manager = networks.swarm_rules(["192.0.2.11"], [], True, "32768:60999", 9945, [["2049", "tcp"]])
    assert ["2049", "tcp", "192.0.2.11"] in manager and ["2377", "tcp", "192.0.2.11"] in manager
    worker = networks.swarm_rules(["192.0.2.10"], ["192.0.2.10"], False, "32768:60999", 9945, [["2049", "tcp"]])
    assert not [rule for rule in worker if rule[0] in ("2049", "2377")]
