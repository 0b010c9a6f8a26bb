import pytest

from profilespawner import labels
from profilespawner.admission import AdmissionError, Capacity, check_admission, free_capacity
from profilespawner.running import running_servers

from .conftest import G, M


def container(name, user, cpu="0", mem="0", gpus="", state="running"):
    return {"Names": [f"/{name}"], "State": state, "Labels": {
        labels.USER: user, labels.CPU_GUARANTEE: cpu, labels.MEM_GUARANTEE: mem, labels.GPUS: gpus}}


def test_running_servers_from_labels():
    servers = running_servers([container("jupyter-a", "a", "0.5", str(G), "0,1"),
                               {"Names": ["/other"], "Labels": {"x": "y"}}])
    assert len(servers) == 1
    s = servers[0]
    assert (s.container, s.user, s.cpu_guarantee, s.mem_guarantee, s.gpus) == ("jupyter-a", "a", 0.5, G, ("0", "1"))


def test_admits_up_to_capacity_exactly():
    running = running_servers([container("jupyter-a", "a", "0.7", str(G)), container("jupyter-b", "b", "0.8", str(G))])
    check_admission(0.5, 2 * G, running, Capacity(2, 4 * G))  # 0.7+0.8+0.5 == 2, 1+1+2 == 4


def test_refuses_cpu_overcommit_with_numbers():
    running = running_servers([container("jupyter-a", "a", "1.5", "0")])
    with pytest.raises(AdmissionError) as err:
        check_admission(1, 0, running, Capacity(2, 4 * G))
    msg = err.value.message
    assert err.value.field == "cpu_guarantee"
    assert "cannot guarantee 1 CPUs" in msg and "1.5 of 2 CPUs are already guaranteed" in msg and "0.5 free" in msg


def test_refuses_mem_overcommit_with_numbers():
    running = running_servers([container("jupyter-a", "a", "0", str(3 * G))])
    with pytest.raises(AdmissionError) as err:
        check_admission(0, 1536 * M, running, Capacity(2, 4 * G))
    msg = err.value.message
    assert err.value.field == "mem_guarantee"
    assert "cannot guarantee 1.5G" in msg and "3G of 4G" in msg and "1G free" in msg


def test_replaced_container_not_counted():
    running = running_servers([container("jupyter-a", "a", "2", "0")])
    check_admission(2, 0, running, Capacity(2, G), exclude_container="jupyter-a")
    with pytest.raises(AdmissionError):
        check_admission(2, 0, running, Capacity(2, G))


def test_free_capacity():
    running = running_servers([container("jupyter-a", "a", "0.5", str(G))])
    assert free_capacity(running, Capacity(2, 4 * G)) == (1.5, 3 * G)
