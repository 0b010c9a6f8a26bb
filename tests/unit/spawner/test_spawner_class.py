"""The thin shell's wiring, without Docker: traitlets, entry point, config merging."""
import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib.metadata import entry_points

import pytest

from profilespawner import spawner as spawner_module
from profilespawner.spawner import DockerSystemProfileSpawner, _merged

OPTIONS = ["profiles_file", "gpu_devices", "gpu_sharing", "guarantee_cpu_capacity", "guarantee_mem_capacity",
           "pids_limit", "cgroup_parent", "home_mode", "scope_labels", "remove", "docker_api_threads",
           "ready_poll_interval"]


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_is_configurable_with_help(name):
    trait = DockerSystemProfileSpawner.class_traits()[name]
    assert trait.metadata.get("config") is True
    assert len(trait.help) > 20


def test_defaults():
    traits = DockerSystemProfileSpawner.class_traits()
    assert traits["remove"].default() is True
    assert traits["home_mode"].default() == 0o700
    assert traits["pids_limit"].default() == 1024
    assert traits["gpu_sharing"].default() == "exclusive"
    assert traits["profiles_file"].default() == "/etc/jupyterhub/profiles.yaml"


def test_entry_point():
    (ep,) = [e for e in entry_points(group="jupyterhub.spawners") if e.name == "profile-docker"]
    assert ep.load() is DockerSystemProfileSpawner


def test_merged_dict_ours_win_and_base_untouched():
    base = {"labels": {"site": "x", "org.jupyterhub-baremetal.user": "forged"}, "dns": ["1.1.1.1"]}
    out = _merged(base, {"labels": {"org.jupyterhub-baremetal.user": "alice"}, "working_dir": "/home/alice"})
    assert out == {"labels": {"site": "x", "org.jupyterhub-baremetal.user": "alice"}, "dns": ["1.1.1.1"],
                   "working_dir": "/home/alice"}
    assert base["labels"]["org.jupyterhub-baremetal.user"] == "forged"


def test_merged_callable_base():
    async def base(spawner):
        return {"cpu_quota": 1, "dns": ["x"]}

    out = _merged(base, {"cpu_quota": 50_000})
    assert asyncio.run(out(None)) == {"cpu_quota": 50_000, "dns": ["x"]}


def test_bad_guarantee_mem_capacity_refused_at_config():
    from traitlets.config import Config

    with pytest.raises(Exception) as err:
        Probe(config=Config({"DockerSystemProfileSpawner": {"guarantee_mem_capacity": "20X"}}))
    assert "guarantee_mem_capacity" in str(err.value) and "'20X'" in str(err.value)


def test_merged_callable_base_keeps_its_labels():
    def base(spawner):
        return {"labels": {"site": "x"}}

    out = _merged(base, {"labels": {"org.jupyterhub-baremetal.user": "alice"}})
    assert asyncio.run(out(None)) == {"labels": {"site": "x", "org.jupyterhub-baremetal.user": "alice"}}


class Probe(DockerSystemProfileSpawner):
    """The spawner's own methods and traits, without a hub user or profiles."""

    def __init__(self, **kw):
        super(DockerSystemProfileSpawner, self).__init__(**kw)


def test_docker_calls_share_one_pool_of_docker_api_threads(monkeypatch):
    monkeypatch.setattr(spawner_module, "_DOCKER_EXECUTOR", None)
    first, second = Probe(docker_api_threads=3), Probe(docker_api_threads=3)
    assert first.executor is second.executor
    assert first.executor._max_workers == 3


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Answer(BaseHTTPRequestHandler):
    status = 302  # what a single-user server's base URL answers before login

    def do_GET(self):
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_later(port, delay, status):
    """An HTTP server on port that starts listening after delay seconds."""
    handler = type("Handler", (Answer,), {"status": status})
    server = None

    def run():
        nonlocal server
        server = HTTPServer(("127.0.0.1", port), handler)
        server.serve_forever()

    timer = threading.Timer(delay, run)
    timer.start()
    return lambda: (timer.cancel(), server and server.shutdown())


async def test_ready_wait_returns_once_the_server_answers():
    port = free_port()
    stop = serve_later(port, 0.6, 302)
    try:
        assert await Probe(ready_poll_interval=0.05)._wait_until_answering(
            f"http://127.0.0.1:{port}/user/a/", budget=10) is True
    finally:
        stop()


async def test_ready_wait_gives_up_quietly_when_the_budget_runs_out():
    port = free_port()  # nobody listens
    assert await Probe(ready_poll_interval=0.05)._wait_until_answering(
        f"http://127.0.0.1:{port}/user/a/", budget=0.3) is False


async def test_ready_wait_keeps_waiting_through_server_errors():
    port = free_port()
    stop = serve_later(port, 0, 502)  # e.g. a proxy in front with nothing behind it yet
    try:
        assert await Probe(ready_poll_interval=0.05)._wait_until_answering(
            f"http://127.0.0.1:{port}/user/a/", budget=0.5) is False
    finally:
        stop()


def quota_probe(monkeypatch, outcome):
    """A Probe whose quota.apply_quota records its call and returns or raises outcome."""
    import pwd as _pwd

    from profilespawner import quota
    from profilespawner.profiles import ResourceProfile

    calls = []

    def apply_quota(uid, nbytes, home):
        calls.append((uid, nbytes, home))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(quota, "apply_quota", apply_quota)
    account = _pwd.struct_passwd(("alice", "x", 1001, 1001, "", "/srv/homes/alice", "/bin/sh"))
    return Probe(), account, calls, lambda q: ResourceProfile("Big", 2.0, 4 << 30, disk_quota=q)


async def test_the_profiles_disk_quota_is_applied_to_the_users_uid(monkeypatch):
    probe, account, calls, profile = quota_probe(monkeypatch, "/srv/homes")
    await probe._apply_disk_quota(account, profile(20 << 30), "/srv/homes/alice")
    assert calls == [(1001, 20 << 30, "/srv/homes/alice")]
    await probe._apply_disk_quota(account, profile(None), "/srv/homes/alice")  # no disk_quota: left alone
    assert len(calls) == 1


async def test_a_home_without_quotas_refuses_the_spawn_naming_profile_path_and_fix(monkeypatch):
    from tornado import web

    from profilespawner.quota import QuotaError

    off = QuotaError("/srv", "user quotas are off on /srv (quotaon -p: user quota on /srv (/dev/sdb1) is off)")
    probe, account, _, profile = quota_probe(monkeypatch, off)
    with pytest.raises(web.HTTPError) as err:
        await probe._apply_disk_quota(account, profile(20 << 30), "/srv/homes/alice")
    assert err.value.status_code == 424
    msg = err.value.log_message
    assert msg.startswith("Resource profile 'Big' sets disk_quota 20G, which cannot be applied to the home "
                          "/srv/homes/alice of 'alice': user quotas are off on /srv"), msg
    assert "quotas_enabled: true, quotas_homes_path: /srv" in msg and "remove disk_quota" in msg
