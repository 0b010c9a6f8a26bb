from hypothesis import given
from hypothesis import strategies as st

from profilespawner import dockerargs, labels, qos
from profilespawner.request import SpawnRequest
from tests.harness.cgroups import v2_weight

from .conftest import G, M


def req(**kw):
    base = dict(resource_profile="Small", image_profile="SingleUser", image="img", cpu_limit=1.5,
                mem_limit=2 * G, cpu_guarantee=0.25, mem_guarantee=512 * M, gpus=0, gpu_ids=())
    base.update(kw)
    return SpawnRequest(**base)


def test_limits_and_guarantees():
    hc = dockerargs.host_config(req(), pids_limit=1024)
    assert hc["cpu_period"] == 100_000 and hc["cpu_quota"] == 150_000
    assert hc["mem_limit"] == 2 * G and hc["memswap_limit"] == hc["mem_limit"]
    assert hc["mem_reservation"] == 512 * M
    assert hc["cpu_shares"] == 256
    assert hc["pids_limit"] == 1024 and hc["init"] is True
    assert hc["auto_remove"] is False  # the spawner removes stopped servers, not the engine's restart
    assert "cgroup_parent" not in hc and "device_requests" not in hc
    assert "oom_score_adj" not in hc  # no capacity given: no OOM preference


def test_qos_classes():
    assert req().qos == qos.BURSTABLE
    assert req(cpu_guarantee=0.0, mem_guarantee=0).qos == qos.BESTEFFORT
    assert req(cpu_guarantee=1.5, mem_guarantee=2 * G).qos == qos.GUARANTEED
    assert req(cpu_guarantee=0.0, mem_guarantee=2 * G).qos == qos.BURSTABLE  # memory only
    assert req(cpu_guarantee=1.5, mem_guarantee=0).qos == qos.BURSTABLE      # CPU only


def test_shares_formula():
    assert qos.cpu_shares(qos.BESTEFFORT, 0) == 2
    assert qos.cpu_shares(qos.BURSTABLE, 0) == 2       # a memory-only guarantee buys no CPU weight
    assert qos.cpu_shares(qos.BURSTABLE, 0.001) == 2
    assert qos.cpu_shares(qos.BURSTABLE, 1) == 1024
    assert qos.cpu_shares(qos.GUARANTEED, 2.5) == 2560
    assert qos.cpu_shares(qos.GUARANTEED, 1000) == qos.MAX_CPU_SHARES


def test_besteffort_servers_share_one_low_weight_parent():
    be = req(cpu_guarantee=0.0, mem_guarantee=0)
    hc = dockerargs.host_config(be, cgroup_parent="jupyterhub-users.slice")
    assert hc["cgroup_parent"] == "jupyterhub-users-besteffort.slice" and hc["cpu_shares"] == 2
    assert dockerargs.host_config(be, cgroup_parent="/jbm-users")["cgroup_parent"] == "/jbm-users/besteffort"
    assert dockerargs.host_config(be, cgroup_parent="x.slice", besteffort_parent="")["cgroup_parent"] == "x.slice"
    assert "cgroup_parent" not in dockerargs.host_config(be)
    # any guarantee keeps a server in the users' parent, beside the best-effort class
    assert dockerargs.host_config(req(), cgroup_parent="jupyterhub-users.slice")["cgroup_parent"] == \
        "jupyterhub-users.slice"


def test_oom_score_adj_makes_badness_memory_above_guarantee():
    cap = 8 * G
    assert dockerargs.host_config(req(mem_guarantee=2 * G), mem_capacity=cap)["oom_score_adj"] == 750
    assert dockerargs.host_config(req(mem_guarantee=0), mem_capacity=cap)["oom_score_adj"] == 1000
    assert qos.oom_score_adj(cap, cap) == 0 and qos.oom_score_adj(2 * cap, cap) == 0  # never below 0
    # badness = rss + adj * capacity / 1000: a server within its guarantee ranks below any
    # process of a best-effort server, whatever their sizes
    badness = lambda rss, g: rss + qos.oom_score_adj(g, cap) * cap / 1000  # noqa: E731
    assert badness(3 * G, 3.5 * G) < badness(200 * M, 0)
    assert badness(3 * G, 2 * G) > badness(500 * M, 0)  # 1 GiB above its guarantee goes first


def kept(weights, guaranteed, capacity, besteffort, weight):
    """Each guaranteed server's CPU under full contention, as a part of its guarantee: cores
    split by weight among the busy siblings of one parent (each busy, none capped below its share)."""
    total = sum(weight(w) for w in weights) + besteffort * weight(qos.BESTEFFORT_CPU_SHARES)
    return [capacity * weight(w) / total / g for w, g in zip(weights, guaranteed, strict=True)]


def test_on_a_node_the_weights_span_the_kernels_range():
    assert qos.node_cpu_shares(qos.GUARANTEED, 2, 2) == qos.MAX_CPU_SHARES      # the whole node
    assert qos.node_cpu_shares(qos.BURSTABLE, 0.5, 2) == qos.MAX_CPU_SHARES // 4
    assert qos.node_cpu_shares(qos.BESTEFFORT, 0, 2) == qos.MIN_CPU_SHARES
    assert qos.node_cpu_shares(qos.BURSTABLE, 0, 2) == qos.MIN_CPU_SHARES       # memory-only guarantee
    assert qos.node_cpu_shares(qos.GUARANTEED, 1, 0) == qos.cpu_shares(qos.GUARANTEED, 1)  # no capacity
    hc = dockerargs.node_host_config(req(), 512, cpu_capacity=1.0, mem_capacity=2 * G)
    assert hc == {"cpu_shares": 65536, "mem_reservation": 512 * M, "memswap_limit": 2 * G,
                  "oom_score_adj": 750, "pids_limit": 512}


@given(st.lists(st.integers(1, 100), min_size=1, max_size=16), st.integers(1, 64), st.integers(0, 100))
def test_busy_best_effort_servers_barely_dent_a_nodes_guarantees(parts, cores, besteffort):
    """Guarantees filling a node of `cores` (admission's bound, in up to 16 parts) beside up to
    100 busy best-effort servers, all in the users' slice: each guaranteed server
    keeps 97 % of its guarantee on cgroup v2 and v1. With 1024 shares per core (one server's
    weights, whose best-effort class has its own parent) they would take up to 56 % of it on v2."""
    guaranteed = [max(0.1, cores * p / sum(parts)) for p in parts]
    guaranteed = [g * cores / sum(guaranteed) for g in guaranteed]
    shares = [qos.node_cpu_shares(qos.GUARANTEED, g, cores) for g in guaranteed]
    for weight in (v2_weight, lambda s: s):
        assert min(kept(shares, guaranteed, cores, besteffort, weight)) >= 0.97


def test_one_servers_weights_would_let_best_effort_tasks_take_the_guarantees():
    """Why a node spreads its weights: one server's 1024 shares per core beside 98 busy
    best-effort servers on a 2-core cgroup v2 node keep 44 % of a guarantee; spread, 99 %."""
    flat = [qos.cpu_shares(qos.GUARANTEED, 1)] * 2
    assert round(min(kept(flat, [1, 1], 2, 98, v2_weight)), 2) == 0.44
    spread = [qos.node_cpu_shares(qos.GUARANTEED, 1, 2)] * 2
    assert round(min(kept(spread, [1, 1], 2, 98, v2_weight)), 2) == 0.99


def test_cgroup_parent_and_gpus():
    hc = dockerargs.host_config(req(gpus=2, gpu_ids=("0", "GPU-x")), cgroup_parent="jupyterhub-users.slice")
    assert hc["cgroup_parent"] == "jupyterhub-users.slice"
    assert hc["device_requests"] == [{"Driver": "nvidia", "DeviceIDs": ["0", "GPU-x"], "Capabilities": [["gpu"]]}]


def test_labels_per_contract():
    lab = dockerargs.container_labels(req(gpu_ids=("0", "1")), "alice")
    assert lab == {
        labels.USER: "alice",
        labels.RESOURCE_PROFILE: "Small",
        labels.IMAGE_PROFILE: "SingleUser",
        labels.CPU_LIMIT: "1.5",
        labels.MEM_LIMIT: str(2 * G),
        labels.CPU_GUARANTEE: "0.25",
        labels.MEM_GUARANTEE: str(512 * M),
        labels.GPUS: "0,1",
        labels.QOS_CLASS: "burstable",
    }
    assert labels.USER == "org.jupyterhub-baremetal.user"
    assert dockerargs.container_labels(req(cpu_guarantee=0.0, mem_guarantee=0), "a")[labels.CPU_GUARANTEE] == "0"


def test_environment():
    env = dockerargs.environment(req())
    assert env["MEM_LIMIT"] == str(2 * G) and env["CPU_LIMIT"] == "1.5"
