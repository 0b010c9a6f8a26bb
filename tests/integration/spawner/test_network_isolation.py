"""Users are isolated on the network: real hubs of the harness, real traffic between real
user containers on the harness's users' network (made as the docker role makes it).

Anchor: z2jh's singleuser network policy (ingress only from the hub and the proxy). Measured:
user B's container cannot open a connection to user A's server port nor to any other port A
listens on, while this machine (where the hub and the proxy run) reaches both; A answers
through the proxy; containers reach the hub API, "the internet" (a network namespace standing
in for it, tests/harness/users_network.py) unless egress is off, and never 169.254.169.254
(caught by the same stand-in, so nothing goes to a real metadata service).
"""
import subprocess

import pytest

from tests.harness.processes import wait_for
from tests.harness.users_network import (HARNESS_NETWORK, METADATA, NO_EGRESS_NETWORK,
                                         OUTSIDE_ADDRESS, Outside, http_probe, tcp_probe)

from .support import SCOPE, dexec, inspect, spawn_ready, start_hub, through_proxy

pytestmark = pytest.mark.integration

SERVER_PORT = 8888          # dockerspawner's port inside the container
OTHER_PORT = 9100           # a second listener user A starts in their own container


@pytest.fixture(scope="module")
def outside():
    stand_in = Outside(sources=(HARNESS_NETWORK.subnet, NO_EGRESS_NETWORK.subnet)).start()
    yield stand_in
    stand_in.stop()


def address_on(container: str, network: str) -> str:
    return inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]


def probe_from(container: str, uid: int, command: list[str]) -> str:
    """Run a probe in a user's container as the user (as their notebook code would)."""
    done = dexec(container, *command, user=str(uid), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def from_this_machine(address: str, port: int) -> str:
    return subprocess.run(tcp_probe(address, port), capture_output=True, text=True).stdout.strip()


def test_a_user_container_reaches_no_port_of_another_but_hub_proxy_and_internet_work(
        hub_factory, system_users, outside):
    alice, bob = system_users("h9alice"), system_users("h9bob")
    hub = start_hub(hub_factory, None)
    for account in (alice, bob):
        spawn_ready(hub, account.pw_name, {"resource_profile": "Tiny"})
    a_name, b_name = f"jupyter-{alice.pw_name}", f"jupyter-{bob.pw_name}"
    info = inspect(a_name)
    assert list(info["NetworkSettings"]["Networks"]) == [HARNESS_NETWORK.name]
    assert not info["HostConfig"]["PortBindings"], "no port may be published"
    a_ip = address_on(a_name, HARNESS_NETWORK.name)

    # A's second listener, started by A's own code (a python http.server on another port)
    subprocess.Popen(["docker", "exec", "-u", str(alice.pw_uid), a_name, "python3", "-m",
                      "http.server", str(OTHER_PORT), "--bind", "0.0.0.0"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for port in (SERVER_PORT, OTHER_PORT):   # this machine (the hub's, the proxy's) gets in ...
        wait_for(f"port {port} of A's container open from this machine",
                 lambda port=port: from_this_machine(a_ip, port) == "open", timeout=60)
    for port in (SERVER_PORT, OTHER_PORT):   # ... B does not, on either port
        assert probe_from(b_name, bob.pw_uid, tcp_probe(a_ip, port)) == "closed", port

    # A is served through the proxy; B's container calls the hub API on the gateway
    assert through_proxy(hub, alice.pw_name, "api/status").status_code == 200
    api = f"{hub.hub_ip}:{hub.hub_port}"
    assert probe_from(b_name, bob.pw_uid, http_probe(api, "hub/api")) == "open"

    # egress works by default; the metadata address is dropped on the way out
    assert probe_from(b_name, bob.pw_uid, http_probe(OUTSIDE_ADDRESS, "egress-h9bob")) == "open"
    metadata = probe_from(b_name, bob.pw_uid, http_probe(METADATA, "metadata-h9bob"))
    assert metadata.startswith("closed"), metadata
    log = outside.requests()
    assert "/egress-h9bob" in log and "/metadata-h9bob" not in log, log


def test_with_egress_off_only_the_hub_and_the_proxy_talk_to_a_server(
        hub_factory, system_users, outside):
    carol = system_users("h9carol")
    # the docker role with docker_users_egress: false
    hub = hub_factory(profiles=None, extra_config=SCOPE, network=NO_EGRESS_NETWORK)
    spawn_ready(hub, carol.pw_name, {"resource_profile": "Tiny"})   # it called the hub API
    name = f"jupyter-{carol.pw_name}"
    assert list(inspect(name)["NetworkSettings"]["Networks"]) == [NO_EGRESS_NETWORK.name]
    assert through_proxy(hub, carol.pw_name, "api/status").status_code == 200
    api = f"{hub.hub_ip}:{hub.hub_port}"
    assert probe_from(name, carol.pw_uid, http_probe(api, "hub/api")) == "open"
    egress = probe_from(name, carol.pw_uid, http_probe(OUTSIDE_ADDRESS, "egress-h9carol"))
    assert egress.startswith("closed"), egress
    metadata = probe_from(name, carol.pw_uid, http_probe(METADATA, "metadata-h9carol"))
    assert metadata.startswith("closed"), metadata
    log = outside.requests()
    assert "h9carol" not in log, log
