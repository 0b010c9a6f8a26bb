"""A Docker engine that does not answer (dockerd crashed: its socket is left with nobody behind
it) is a 424 naming the engine and what to do, through the real hub's REST API and spawn page,
never a 500; nothing is left pending, and the hub keeps serving."""
import socket

import pytest
import requests

from .support import shipped_profiles, spawn, start_hub

pytestmark = pytest.mark.integration
PASSWORD = "h1-no-engine-pw"


@pytest.fixture
def dead_engine(tmp_path):
    """A unix socket no one listens on: what a crashed dockerd leaves behind."""
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


def test_a_dead_docker_engine_is_a_424_naming_it_and_leaves_nothing_pending(
        hub_factory, system_users, singleuser_image, dead_engine):
    data, _ = shipped_profiles(singleuser_image)
    user = "h1noengine"
    system_users(user, password=PASSWORD)
    hub = start_hub(hub_factory, data, extra=f"\nc.DockerSpawner.client_kwargs = {{'base_url': {dead_engine!r}}}\n")
    r = spawn(hub, user, {})
    assert r.status_code == 424, f"{r.status_code} {r.text}\n{hub.log()}"
    message = r.json()["message"]
    assert f"The Docker engine at {dead_engine} does not answer" in message, message
    assert "systemctl start docker" in message and "nothing was created" in message, message
    server = hub.api("GET", f"/users/{user}").json()["servers"]
    assert not server, server  # not left pending: the next try starts afresh
    # the spawn page (the form reads the running servers from the engine) says the same, not a 500
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=10).raise_for_status()
    login = session.post(f"{hub.url}/hub/login", allow_redirects=False, timeout=30,
                         data={"username": user, "password": PASSWORD, "_xsrf": session.cookies["_xsrf"]})
    assert login.status_code == 302, login.text[:500]
    page = session.get(f"{hub.url}/hub/spawn/{user}", timeout=30)
    assert page.status_code == 424, (page.status_code, page.url, page.text[-1500:])
    assert "does not answer" in page.text
    # and the hub itself keeps serving
    assert hub.api("GET", "/users").status_code == 200
