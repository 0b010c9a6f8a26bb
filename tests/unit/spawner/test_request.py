import pytest

from profilespawner.admission import Capacity
from profilespawner.gpus import GpuAllocationError
from profilespawner.profiles import effective_profile
from profilespawner.request import SpawnRequest, SpawnRequestError, build_request, plan_spawn
from profilespawner.running import RunningServer

from .conftest import G, M


def test_empty_options_give_defaults(profiles, default_user, host):
    req = build_request(profiles, default_user, {}, host)
    assert req == SpawnRequest("Tiny", "SingleUser", "local/singleuser:latest", 1.0, 2 * G, 0.0, 0, 0, ())
    assert build_request(profiles, default_user, None, host) == req


def test_form_strings_and_json_numbers_agree(profiles, default_user, host):
    form = {"resource_profile": "Small", "image_profile": "SingleUser", "cpu_limit": "1.5",
            "mem_limit": str(3 * G), "cpu_guarantee": "0.25", "mem_guarantee": "512M"}
    api = {"resource_profile": "Small", "image_profile": "SingleUser", "cpu_limit": 1.5,
           "mem_limit": 3 * G, "cpu_guarantee": 0.25, "mem_guarantee": 512 * M}
    a = build_request(profiles, default_user, form, host)
    assert a == build_request(profiles, default_user, api, host)
    assert (a.cpu_limit, a.mem_limit, a.cpu_guarantee, a.mem_guarantee) == (1.5, 3 * G, 0.25, 512 * M)


def test_profile_bigger_than_host_is_capped_with_warning(profiles, host):
    alice = effective_profile(profiles, "alice", [])
    req = build_request(profiles, alice, {"resource_profile": "Extreme"}, host)
    assert req.cpu_limit == 2.0 and req.mem_limit == 24 * G
    assert any("'Extreme'" in w and "cpu_limit 36" in w and "capped at 2" in w for w in req.warnings)
    with pytest.raises(SpawnRequestError) as err:
        build_request(profiles, alice, {"resource_profile": "Extreme", "cpu_limit": 3}, host)
    assert "0.01 to 2 CPUs" in err.value.message


FORGED = [
    ({"resource_profile": "Huge"}, "resource_profile", "allowed: Tiny, Small"),
    ({"resource_profile": "Extreme"}, "resource_profile", "allowed: Tiny, Small"),  # exists, not allowed
    ({"resource_profile": ["Tiny"]}, "resource_profile", "allowed: Tiny, Small"),
    ({"image_profile": "Other"}, "image_profile", "allowed: SingleUser"),
    ({"image_profile": 3}, "image_profile", "allowed: SingleUser"),
    ({"cpu_limit": 1.5}, "cpu_limit", "allowed: 0.01 to 1 CPUs"),  # above Tiny's max
    ({"cpu_limit": "-1"}, "cpu_limit", "allowed: 0.01 to 1 CPUs"),
    ({"cpu_limit": 0}, "cpu_limit", "allowed: 0.01 to 1 CPUs"),
    # below Docker's 1 ms quota: would round to quota 0 ("no limit") or be refused by Docker
    ({"cpu_limit": 1e-7}, "cpu_limit", "allowed: 0.01 to 1 CPUs"),
    ({"cpu_limit": 0.0099}, "cpu_limit", "allowed: 0.01 to 1 CPUs"),
    ({"cpu_limit": 10 ** 400}, "cpu_limit", "too large"),
    ({"cpu_limit": "1e400"}, "cpu_limit", "finite"),
    ({"cpu_limit": "NaN"}, "cpu_limit", "finite"),
    ({"cpu_limit": float("nan")}, "cpu_limit", "finite"),
    ({"cpu_limit": "inf"}, "cpu_limit", "finite"),
    ({"cpu_limit": "lots"}, "cpu_limit", "not a number"),
    ({"cpu_limit": True}, "cpu_limit", "not a number"),
    ({"cpu_limit": None}, "cpu_limit", "not a number"),
    ({"mem_limit": "3G"}, "mem_limit", "to 2G"),
    ({"mem_limit": 0}, "mem_limit", "allowed: 6M (6291456 bytes) to 2G"),
    ({"mem_limit": 6 * M - 1}, "mem_limit", "allowed: 6M (6291456 bytes) to 2G"),  # Docker's minimum
    ({"mem_limit": 10 ** 400}, "mem_limit", "allowed: 6M (6291456 bytes) to 2G"),
    ({"mem_limit": "9" * 400 + "T"}, "mem_limit", "too large"),
    ({"mem_limit": -5}, "mem_limit", "negative"),
    ({"mem_limit": "-1G"}, "mem_limit", "512M"),
    ({"mem_limit": "NaN"}, "mem_limit", "512M"),
    ({"mem_limit": float("inf")}, "mem_limit", "finite"),
    ({"mem_limit": "lots"}, "mem_limit", "512M"),
    ({"cpu_guarantee": 0.75}, "cpu_guarantee", "above max_preallocate 0.5"),
    ({"cpu_guarantee": -0.1}, "cpu_guarantee", "negative"),
    ({"cpu_guarantee": "nan"}, "cpu_guarantee", "finite"),
    ({"cpu_limit": 0.3, "cpu_guarantee": 0.4}, "cpu_guarantee", "above cpu_limit 0.3"),
    ({"mem_guarantee": "2G"}, "mem_guarantee", "above max_preallocate 1G"),
    ({"mem_limit": "512M", "mem_guarantee": "768M"}, "mem_guarantee", "above mem_limit 512M"),
    ({"mem_guarantee": "-1"}, "mem_guarantee", "512M"),
    ({"mem_guarantee": "1M"}, "mem_guarantee", "below Docker's minimum memory reservation; allowed: 0, or 6M"),
    ({"cpu_guarantee": 10 ** 400}, "cpu_guarantee", "too large"),
    ({"gpus": 1}, "gpus", "from 0 to 0"),
    ({"gpus": "x"}, "gpus", "not a number"),
    ({"image": "evil/image"}, "image", "unknown option"),
]


@pytest.mark.parametrize("options,field,allowed", FORGED, ids=[repr(f[0]) for f in FORGED])
def test_forged_option_names_field_and_allowed(profiles, default_user, host, options, field, allowed):
    with pytest.raises(SpawnRequestError) as err:
        build_request(profiles, default_user, options, host)
    assert err.value.field == field
    assert err.value.message.startswith(f"{field}: ")
    assert allowed in err.value.message


def test_gpu_count_bounded_by_profile(profiles, host):
    gpu_user = effective_profile(profiles, "gus", ["gpu-users"])
    assert build_request(profiles, gpu_user, {"resource_profile": "GPU1"}, host).gpus == 1  # default: full
    assert build_request(profiles, gpu_user, {"resource_profile": "GPU1", "gpus": "0"}, host).gpus == 0
    for bad in (2, 0.5, -1):
        with pytest.raises(SpawnRequestError) as err:
            build_request(profiles, gpu_user, {"resource_profile": "GPU1", "gpus": bad}, host)
        assert err.value.field == "gpus" and "from 0 to 1" in err.value.message


def test_not_an_object(profiles, default_user, host):
    with pytest.raises(SpawnRequestError) as err:
        build_request(profiles, default_user, ["Tiny"], host)
    assert err.value.field == "user_options"


def test_plan_spawn_admission_and_gpus(profiles, host):
    gpu_user = effective_profile(profiles, "gus", ["gpu-users"])
    running = (RunningServer("jupyter-x", "x", 0.0, 0, ("0",)),)
    req = plan_spawn(profiles, gpu_user, {"resource_profile": "GPU1"}, host, running,
                     Capacity(2, 24 * G), ["0", "1"])
    assert req.gpu_ids == ("1",)
    with pytest.raises(GpuAllocationError):
        plan_spawn(profiles, gpu_user, {"resource_profile": "GPU1"}, host, running, Capacity(2, 24 * G), ["0"])
