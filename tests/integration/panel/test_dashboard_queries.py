"""Every PromQL expression of the Grafana dashboard returns data from a real Prometheus that
scraped the real exporter (real containers of real users burning CPU, fake NVML GPUs) and a real
hub (which spawned two real servers, so the spawn-duration histogram moved)."""
import math
import time

import pytest

from tests.integration.panel.support import PREFIX, USERS, json_dump, prom_query, wait_for
from tests.unit.panel.dashboard import expressions

pytestmark = pytest.mark.integration

EXPRESSIONS = expressions()


def spawn(hub, user):
    hub.api("POST", f"/users/{user}")  # 201, or 409 when the hub knows the user already
    reply = hub.api("POST", f"/users/{user}/server", json={"resource_profile": "Tiny"})
    assert reply.status_code in (201, 202), f"spawn {user}: {reply.status_code} {reply.text}\n{hub.log()}"
    hub.wait_ready(user)


@pytest.fixture(scope="module")
def scraped(prometheus, panel_hub):
    """Two spawns (the second after Prometheus saw the first, so the histogram's rate is
    non-zero), then enough scrapes for every rate window; returns the evaluation time."""
    first, second = list(USERS)
    spawn(panel_hub, first)
    wait_for("Prometheus to see the first spawn",
             lambda: prom_query(prometheus, 'jupyterhub_server_spawn_duration_seconds_count{job="jupyterhub"}'))
    spawn(panel_hub, second)
    wait_for("Prometheus to see the second spawn", lambda: any(
        float(s["value"][1]) >= 2 for s in
        prom_query(prometheus, 'sum(jupyterhub_server_spawn_duration_seconds_count{job="jupyterhub"})')))
    wait_for("a CPU rate for both users", lambda: len(prom_query(
        prometheus, "rate(jupyterhub_user_cpu_seconds_total[15s]) > 0")) >= len(USERS))
    return time.time()


@pytest.mark.parametrize("title, ref, expr", EXPRESSIONS, ids=[f"{t}/{r}" for t, r, _ in EXPRESSIONS])
def test_expression_returns_data(prometheus, scraped, title, ref, expr):
    result = prom_query(prometheus, expr, at=scraped)
    assert result, f"panel {title!r} query {ref} returned nothing: {expr}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), f"{title!r}: only NaN/Inf: {json_dump(result)}"


def test_per_user_series_carry_the_right_users(prometheus, scraped):
    """The users' panels show exactly our users' containers, each under their own name."""
    result = prom_query(prometheus, f'sum by (user) (jupyterhub_user_memory_limit_bytes{{user=~"{PREFIX}-.*"}})',
                        at=scraped)
    by_user = {s["metric"]["user"]: float(s["value"][1]) for s in result}
    # each user: the busy container's limit plus the hub-spawned Tiny server's (512M)
    assert by_user == {u: float(int(mem) + (512 << 20)) for u, (_, mem, _) in USERS.items()}
    gpu = prom_query(prometheus, f'jupyterhub_user_gpu_memory_used_bytes{{user=~"{PREFIX}-.*"}}', at=scraped)
    assert {(s["metric"]["user"], s["metric"]["gpu"]) for s in gpu} == {(f"{PREFIX}-alice", "0"), (f"{PREFIX}-bob", "1")}
