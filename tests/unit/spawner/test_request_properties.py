"""Property tests of the option -> SpawnRequest -> Docker arguments path.

Whatever a user sends (form strings, JSON numbers, huge, tiny, non-finite, garbage), the
result is either a SpawnRequestError naming a known field, or Docker arguments that Docker
accepts AND that limit the container: never a quota that rounds to "no limit", never a value
below Docker's minimums (which Docker answers with an error, i.e. a 500 from the hub).
`docker_refusal` encodes Docker 20.10's rules; tests/integration/spawner/test_docker_bounds.py
checks it against the real engine.
"""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilespawner import dockerargs, qos
from profilespawner.capacity import HostCapacity
from profilespawner.profiles import effective_profile, parse_profiles
from profilespawner.request import OPTION_KEYS, SpawnRequestError, build_request

M = 1024 ** 2
G = 1024 ** 3


def docker_refusal(hc: dict):
    """Why Docker 20.10 would refuse (or silently not enforce) these HostConfig arguments, or None."""
    if hc["cpu_quota"] < qos.MIN_CPU_QUOTA:
        return "CPU cfs quota can not be less than 1ms (0 means no limit)"
    if hc["mem_limit"] < qos.MIN_MEMORY:
        return "Minimum memory limit allowed is 6MB"
    if hc["memswap_limit"] != hc["mem_limit"]:
        return "swap escape"
    reservation = hc.get("mem_reservation", 0)
    if reservation and reservation < qos.MIN_MEMORY:
        return "Minimum memory reservation allowed is 6MB"
    if reservation > hc["mem_limit"]:
        return "Minimum memory limit can not be less than memory reservation limit"
    if not qos.MIN_CPU_SHARES <= hc["cpu_shares"] <= qos.MAX_CPU_SHARES:
        return "cpu shares outside the kernel's range (silently clamped)"
    if not 0 <= hc.get("oom_score_adj", 0) <= 1000:
        return "oom_score_adj out of range, or below 0 (needs CAP_SYS_RESOURCE, which runc may lack)"
    return None


sizes = st.one_of(
    st.integers(min_value=-10, max_value=10 ** 20),
    st.integers(min_value=0, max_value=8 * M),  # around Docker's 6 MiB minimum
    st.builds(lambda n, u: f"{n}{u}", st.floats(0, 5000, allow_nan=False).map(lambda f: round(f, 3)),
              st.sampled_from(["", "K", "M", "G", "T", "k", "m"])),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=4),
    st.floats(min_value=0, max_value=0.05),  # around Docker's 1 ms quota
    st.floats(min_value=0, max_value=0.05).map(repr),
    st.integers(min_value=-5, max_value=10 ** 400),
    st.floats(min_value=0, max_value=4).map(repr),
    st.sampled_from(["NaN", "inf", "-0", "1e-7", "1e400", "0.01", "0.0099", "two", ""]),
)
junk = st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2), st.text(max_size=8))
def mostly(strategy):
    """The strategy nine times in ten, junk otherwise: most examples get past the first check."""
    return st.one_of(*[strategy] * 9, junk)


options = st.fixed_dictionaries({}, optional={
    "resource_profile": mostly(st.sampled_from(["A", "B", "Nope"])),
    "image_profile": mostly(st.just("I")),
    "cpu_limit": mostly(numbers),
    "mem_limit": mostly(st.one_of(sizes, numbers)),
    "cpu_guarantee": mostly(numbers),
    "mem_guarantee": mostly(st.one_of(sizes, numbers)),
    "gpus": mostly(st.integers(-1, 3)),
})


@st.composite
def setups(draw):
    """A valid profiles file (with or without guarantee floors) and a host."""
    def resource():
        cpu = draw(st.floats(min_value=0.01, max_value=64))
        mem = draw(st.integers(min_value=qos.MIN_MEMORY, max_value=2 ** 40))
        cpu_floor = draw(st.one_of(st.just(0), st.floats(min_value=0, max_value=cpu)))
        mem_floor = draw(st.one_of(st.just(0), st.integers(min_value=qos.MIN_MEMORY, max_value=mem)))
        return {"cpu_limit": cpu, "mem_limit": mem, "cpu_guarantee": cpu_floor, "mem_guarantee": mem_floor,
                "gpus": draw(st.integers(0, 2))}
    resources = {"A": resource(), "B": resource()}
    largest_cpu = max(r["cpu_limit"] for r in resources.values())
    largest_mem = max(r["mem_limit"] for r in resources.values())
    pre_mem = draw(st.one_of(st.just(0), st.integers(min_value=qos.MIN_MEMORY, max_value=largest_mem)))
    data = {
        "resource_profiles": resources,
        "image_profiles": {"I": {"image": "img"}},
        "user_profiles": {"default": {
            "allowed_resources": ["A", "B"], "allowed_images": ["I"],
            "max_preallocate": {"cpu_guarantee": draw(st.floats(min_value=0, max_value=largest_cpu)),
                                "mem_guarantee": pre_mem}}},
    }
    host = HostCapacity(cpus=float(draw(st.integers(1, 128))), mem_bytes=draw(st.integers(512 * M, 4 * 2 ** 40)))
    return parse_profiles(data), host


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=setups(), opts=options, capacity=st.integers(min_value=0, max_value=2 ** 42))
def test_every_accepted_option_yields_a_limited_container_docker_accepts(setup, opts, capacity):
    profiles, host = setup
    user = effective_profile(profiles, "u", [])
    try:
        req = build_request(profiles, user, opts, host)
    except SpawnRequestError as e:
        assert e.field in OPTION_KEYS + ("user_options",)
        assert e.message.startswith(f"{e.field}: ")
        return
    hc = dockerargs.host_config(req, pids_limit=1024, cgroup_parent="jupyterhub-users.slice",
                                mem_capacity=capacity)
    assert docker_refusal(hc) is None, (opts, hc)
    res = profiles.resources[req.resource_profile]
    # limited, never above the profile (capped at the host), never below the operator's floor
    assert 0 < req.cpu_limit <= min(res.cpu_limit, host.cpus) and math.isfinite(req.cpu_limit)
    assert req.mem_limit <= min(res.mem_limit, host.mem_bytes)
    assert min(res.cpu_guarantee, host.cpus) <= req.cpu_guarantee <= req.cpu_limit
    assert min(res.mem_guarantee, host.mem_bytes) <= req.mem_guarantee <= req.mem_limit
    assert hc["cpu_quota"] == round(req.cpu_limit * qos.CPU_PERIOD)
    assert hc["cgroup_parent"] == ("jupyterhub-users-besteffort.slice" if req.qos == qos.BESTEFFORT
                                   else "jupyterhub-users.slice")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=setups(), field=st.sampled_from(["cpu_limit", "mem_limit", "cpu_guarantee", "mem_guarantee"]),
       value=st.one_of(numbers, sizes), capacity=st.integers(min_value=0, max_value=2 ** 42))
def test_one_option_at_a_time_at_docker_boundaries(setup, field, value, capacity):
    """Each numeric option alone (the others at their defaults), so the edges are reached often."""
    test_every_accepted_option_yields_a_limited_container_docker_accepts.hypothesis.inner_test(
        setup, {field: value}, capacity)


@settings(max_examples=300, deadline=None)
@given(opts=options)
def test_refusals_are_errors_not_crashes_on_the_sample_profiles(opts):
    """The spawner's one exception type for bad input (a 400), never a TypeError/OverflowError (a 500)."""
    from .conftest import sample_data
    profiles = parse_profiles(sample_data())
    try:
        build_request(profiles, effective_profile(profiles, "bob", []), opts, HostCapacity(2.0, 24 * G))
    except SpawnRequestError:
        pass
