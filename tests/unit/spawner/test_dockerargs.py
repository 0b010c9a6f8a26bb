from profilespawner import dockerargs, labels, qos
from profilespawner.request import SpawnRequest

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
