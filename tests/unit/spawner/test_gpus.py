import pytest

from profilespawner import labels
from profilespawner.gpus import GpuAllocationError, choose_gpus
from profilespawner.running import RunningServer, running_servers


def holding(*gpu_sets):
    return tuple(RunningServer(f"jupyter-u{i}", f"u{i}", gpus=tuple(g)) for i, g in enumerate(gpu_sets))


def test_exclusive_picks_free_in_configured_order():
    assert choose_gpus(2, ["0", "1", "2", "3"], holding(["1"])) == ("0", "2")


def test_zero_gpus():
    assert choose_gpus(0, [], ()) == ()


def test_exclusive_exhausted_is_an_error_never_a_share():
    with pytest.raises(GpuAllocationError) as err:
        choose_gpus(1, ["0", "1"], holding(["0"], ["1"]))
    msg = err.value.message
    assert msg.startswith("gpus: 1 GPUs asked but only 0 of 2 are free")
    assert "0 (held by u0)" in msg and "1 (held by u1)" in msg


def test_more_than_configured():
    with pytest.raises(GpuAllocationError) as err:
        choose_gpus(3, ["0", "1"], ())
    assert "allowed: 0 to 2" in err.value.message


def test_shared_picks_least_loaded():
    running = holding(["0"], ["0"], ["1"])
    assert choose_gpus(1, ["0", "1", "2"], running, "shared") == ("2",)
    assert choose_gpus(2, ["0", "1"], running, "shared") == ("1", "0")


def test_unknown_mode():
    with pytest.raises(ValueError):
        choose_gpus(1, ["0"], (), "sometimes")


def test_survives_restart_derived_from_container_list():
    """A fresh process (no memory) sees the same allocation from the containers' labels."""
    containers = [{"Names": ["/jupyter-a"], "Labels": {labels.USER: "a", labels.GPUS: "GPU-aaa"}}]
    running = running_servers(containers)
    assert choose_gpus(1, ["GPU-aaa", "GPU-bbb"], running) == ("GPU-bbb",)
    with pytest.raises(GpuAllocationError):
        choose_gpus(2, ["GPU-aaa", "GPU-bbb"], running)
