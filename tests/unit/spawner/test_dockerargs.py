from profilespawner import dockerargs, labels
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
    assert "cgroup_parent" not in hc and "device_requests" not in hc


def test_shares_formula():
    assert dockerargs.cpu_shares(0) is None
    assert dockerargs.cpu_shares(0.001) == 2
    assert dockerargs.cpu_shares(1) == 1024
    assert dockerargs.cpu_shares(2.5) == 2560


def test_no_guarantee_no_reservation():
    hc = dockerargs.host_config(req(cpu_guarantee=0.0, mem_guarantee=0))
    assert "mem_reservation" not in hc and "cpu_shares" not in hc


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
    }
    assert labels.USER == "org.jupyterhub-baremetal.user"
    assert dockerargs.container_labels(req(cpu_guarantee=0.0, mem_guarantee=0), "a")[labels.CPU_GUARANTEE] == "0"


def test_environment():
    env = dockerargs.environment(req())
    assert env["MEM_LIMIT"] == str(2 * G) and env["CPU_LIMIT"] == "1.5"
