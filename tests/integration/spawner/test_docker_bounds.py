"""Docker's own bounds, against the real engine: the rules the property test encodes
(tests/unit/spawner/test_request_properties.py: docker_refusal) are the engine's, and the
smallest requests the spawner accepts really run with a limit the kernel enforces."""
import docker
import pytest

from profilespawner import dockerargs, qos
from profilespawner.request import SpawnRequest
from tests.unit.spawner.test_request_properties import docker_refusal

pytestmark = pytest.mark.integration

M = 1024 ** 2


def req(**kw):
    base = dict(resource_profile="R", image_profile="I", image="", cpu_limit=1.0, mem_limit=256 * M)
    return SpawnRequest(**{**base, **kw})


@pytest.fixture
def create(base_image):
    client = docker.from_env()
    made = []

    def create(hc: dict):
        """Create (and start) a container with these HostConfig arguments; the engine's error or None."""
        try:
            cid = client.api.create_container(base_image, ["sleep", "60"], labels={"org.jupyterhub-baremetal.test": "bounds"},
                                              host_config=client.api.create_host_config(**hc))["Id"]
        except docker.errors.APIError as e:
            return str(e.explanation)
        made.append(cid)
        client.api.start(cid)
        return None

    yield create
    for cid in made:
        client.api.remove_container(cid, force=True)


BOUNDARY = [
    (req(cpu_limit=qos.MIN_CPU_LIMIT), None),
    (req(mem_limit=qos.MIN_MEMORY), None),
    (req(mem_guarantee=qos.MIN_MEMORY), None),
    (req(mem_guarantee=256 * M, cpu_guarantee=1.0), None),
]


@pytest.mark.parametrize("request_", [r for r, _ in BOUNDARY], ids=["cpu", "mem", "reservation", "full"])
def test_the_smallest_accepted_requests_run_limited(create, request_):
    hc = dockerargs.host_config(request_, mem_capacity=1024 * M)
    assert docker_refusal(hc) is None
    assert create(hc) is None


@pytest.mark.parametrize("change,engine_says", [
    ({"cpu_quota": qos.MIN_CPU_QUOTA - 1}, "CPU cfs quota can not be less than 1ms"),
    ({"mem_limit": qos.MIN_MEMORY - 1, "memswap_limit": qos.MIN_MEMORY - 1}, "Minimum memory limit allowed is 6MB"),
    ({"mem_reservation": qos.MIN_MEMORY - 1}, "Minimum memory reservation allowed is 6MB"),
])
def test_one_past_each_bound_the_engine_refuses_and_the_rule_knows(create, change, engine_says):
    hc = {**dockerargs.host_config(req(), mem_capacity=1024 * M), **change}
    assert docker_refusal(hc) is not None
    assert engine_says in (create(hc) or "")


def test_a_zero_quota_is_accepted_by_docker_as_no_limit(create):
    """Why the bound matters: quota 0 is not refused, it silently means unlimited."""
    hc = {**dockerargs.host_config(req()), "cpu_quota": 0}
    assert create(hc) is None
    assert docker_refusal(hc) is not None
