"""Real users through the proxy on the converged site: a limited container under the users'
slice, least privilege, private homes, the users' network, and the servers kept across the
hub's and the engine's restarts and the play's own docker handler. Fixtures: conftest.py."""
import time

import pytest
import requests

from profilespawner import qos
from tests.harness.users_network import METADATA, OUTSIDE_ADDRESS, Outside, http_probe, tcp_probe

from .support import (CONTAINER, HOST_NAME, HOST_TEST_PORTS, HUB_API_PORT, LAYER_FILE, OTHER, OTHER_CONTAINER,
                      OTHER_PASSWORD, PUBLIC_PORT, SECOND_PORT, SLICE, TINY_CFS_QUOTA_US, TINY_MEM, USER,
                      USERS_GATEWAY, USERS_NETWORK, container_ip, inner_docker, inspect_container, lab_reachable,
                      login, probe_in, serve_user, spawn, stop_server, wait_for)

pytestmark = pytest.mark.system


def test_user_logs_in_and_spawns_a_limited_container_under_the_slice(hub):
    session, base, host = hub["session"], hub["base"], hub["host"]
    stop_server(session, base)   # another module may have served alice already: spawn anew
    spawn(session, base)
    wait_for(lambda: lab_reachable(session, base), 240, f"{USER}'s JupyterLab through the proxy")

    info = inspect_container(host)
    assert info["State"]["Running"]
    assert info["HostConfig"]["Memory"] == TINY_MEM
    # no guarantee asked: a best-effort server, in the class's slice under the users' slice
    assert info["Config"]["Labels"]["org.jupyterhub-baremetal.qos-class"] == qos.BESTEFFORT
    assert info["HostConfig"]["CgroupParent"] == qos.besteffort_parent(SLICE)
    assert info["Config"]["User"].split(":")[0] == host.exec("id", "-u", USER).stdout.strip()

    pid = str(info["State"]["Pid"])
    cgroups = dict(line.split(":", 2)[1:] for line in
                   host.exec("cat", f"/proc/{pid}/cgroup").stdout.splitlines())
    memory_path = next(path for ctrls, path in cgroups.items() if "memory" in ctrls.split(","))
    cpu_path = next(path for ctrls, path in cgroups.items() if "cpu" in ctrls.split(","))
    assert f"/{SLICE}/" in memory_path, memory_path
    limit = host.exec("cat", f"/sys/fs/cgroup/memory{memory_path}/memory.limit_in_bytes").stdout
    assert int(limit) == TINY_MEM
    quota = host.exec("cat", f"/sys/fs/cgroup/cpu{cpu_path}/cpu.cfs_quota_us").stdout
    period = host.exec("cat", f"/sys/fs/cgroup/cpu{cpu_path}/cpu.cfs_period_us").stdout
    assert int(quota) * 100_000 // int(period) == TINY_CFS_QUOTA_US

    # The kernel enforces the limit: 1000 MB in a 512 MB container gets OOM-killed.
    hog = inner_docker(host, "exec", CONTAINER, "python3", "-c",
                       "b = b'x' * (1000 * 1024 * 1024); print(len(b))", check=False)
    assert hog.returncode == 137, (hog.returncode, hog.stdout, hog.stderr)


def test_the_users_server_runs_with_least_privilege_and_a_bounded_disk(hub):
    """On the converged host: no capabilities, no-new-privileges, a read-only image and /tmp a
    tmpfs (the writable layer cannot fill the disk), checked from inside as the user."""
    host = hub["host"]
    serve_user(hub)
    hc = inspect_container(host)["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"], (hc["CapDrop"], hc["CapAdd"])
    assert "no-new-privileges" in hc["SecurityOpt"], hc["SecurityOpt"]
    assert hc["ReadonlyRootfs"] is True
    assert "/tmp" in hc["Tmpfs"], hc["Tmpfs"]
    uid = host.exec("id", "-u", USER).stdout.strip()
    status = dict(line.split(":\t", 1) for line in inner_docker(
        host, "exec", "-u", uid, CONTAINER, "cat", "/proc/self/status").stdout.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"].strip() == "1" and int(status["CapBnd"], 16) == 0, status
    written = inner_docker(host, "exec", "-u", uid, CONTAINER, "sh", "-c",
                           "echo x > /usr/local/made-by-user", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written
    assert inner_docker(host, "exec", CONTAINER, "stat", "-f", "-c", "%T", "/tmp").stdout.strip() == "tmpfs"


def test_restarting_the_hub_keeps_the_users_container(hub):
    host = hub["host"]
    serve_user(hub)
    before = inspect_container(host)
    host.exec("systemctl", "restart", "jupyterhub")
    wait_for(lambda: requests.get(hub["base"] + "hub/api/", timeout=5).status_code == 200, 120,
             "the hub after its restart")
    after = inspect_container(host)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    wait_for(lambda: lab_reachable(hub["session"], hub["base"]), 120,
             f"{USER}'s JupyterLab after the hub restart")


def test_homes_and_the_hubs_state_are_private(hub):
    host = hub["host"]
    defs = host.exec("grep", "-E", r"^HOME_MODE\s", "/etc/login.defs").stdout.split()
    assert defs == ["HOME_MODE", "0700"], defs
    # alice was made by plain `useradd --create-home` after the converge
    modes = host.exec("stat", "-c", "%a %U %n", f"/home/{USER}",
                      "/var/lib/jupyterhub/jupyterhub.sqlite",
                      "/var/lib/jupyterhub/jupyterhub_cookie_secret").stdout.splitlines()
    assert modes == [f"700 {USER} /home/{USER}", "600 root /var/lib/jupyterhub/jupyterhub.sqlite",
                     "600 root /var/lib/jupyterhub/jupyterhub_cookie_secret"], modes
    unit = host.exec("systemctl", "show", "-p", "UMask", "jupyterhub").stdout.strip()
    assert unit == "UMask=0077", unit


@pytest.fixture(scope="module")
def outside(hub):
    """The internet and the metadata service stood in by a network namespace inside the host
    (tests/harness/users_network.py): nothing leaves the machine."""
    host = hub["host"]
    subnet = inner_docker(host, "network", "inspect", USERS_NETWORK, "-f",
                          "{{(index .IPAM.Config 0).Subnet}}").stdout.strip()
    stand_in = Outside(sources=(subnet,), run=lambda argv: host.exec(*argv, check=False)).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def two_users(hub, sandbox):
    """alice's server and bob's, spawned through the form as bob."""
    host, base = hub["host"], hub["base"]
    serve_user(hub)
    sandbox.create_user(host, OTHER, OTHER_PASSWORD)
    session = login(base, user=OTHER, password=OTHER_PASSWORD)
    if not lab_reachable(session, base, OTHER):
        spawn(session, base)
    wait_for(lambda: lab_reachable(session, base, OTHER), 240, f"{OTHER}'s JupyterLab")
    wait_for(lambda: lab_reachable(hub["session"], base), 120, f"{USER}'s JupyterLab")
    uids = {name: host.exec("id", "-u", name).stdout.strip() for name in (USER, OTHER)}
    return {**hub, "other_session": session, "uids": uids}


def test_users_are_isolated_on_the_network(two_users, outside):
    host, uids = two_users["host"], two_users["uids"]
    info = inspect_container(host)
    assert list(info["NetworkSettings"]["Networks"]) == [USERS_NETWORK]
    assert not info["HostConfig"]["PortBindings"], "no port may be published"
    a_ip = container_ip(host, CONTAINER)
    inner_docker(host, "exec", "-d", "-u", uids[USER], CONTAINER, "python3", "-m", "http.server",
                 str(SECOND_PORT), "--bind", "0.0.0.0")
    # the host (where the hub and the proxy run) reaches both of alice's ports ...
    for port in (8888, SECOND_PORT):
        wait_for(lambda port=port: host.exec(*tcp_probe(a_ip, port)).stdout.strip() == "open", 30,
                 f"alice's port {port} from the host", interval=1)
    # ... bob's container reaches neither
    for port in (8888, SECOND_PORT):
        assert probe_in(host, OTHER_CONTAINER, uids[OTHER], tcp_probe(a_ip, port)) == "closed", port
    # alice is still served through the proxy
    assert lab_reachable(two_users["session"], two_users["base"])
    # bob's container: the hub API on the gateway, and no other port of the host (a real
    # listener on all the host's addresses, on an internal port and on a port never opened)
    pids = [host.exec("sh", "-c", f"nohup python3 -m http.server {port} --bind 0.0.0.0 "
                      ">/dev/null 2>&1 & echo $!").stdout.strip() for port in HOST_TEST_PORTS]
    try:
        for port in HOST_TEST_PORTS:
            wait_for(lambda port=port: host.exec(*tcp_probe("127.0.0.1", port)).stdout.strip() == "open",
                     30, f"the host's test listener on {port}", interval=1)
        api = f"{USERS_GATEWAY}:{HUB_API_PORT}"
        assert probe_in(host, OTHER_CONTAINER, uids[OTHER], http_probe(api, "hub/api")) == "open"
        # the hub's public port answers on every host address, the gateway's too (from the host)
        assert host.exec(*tcp_probe(USERS_GATEWAY, PUBLIC_PORT)).stdout.strip() == "open"
        for port in (*HOST_TEST_PORTS, PUBLIC_PORT):
            answer = probe_in(host, OTHER_CONTAINER, uids[OTHER], tcp_probe(USERS_GATEWAY, port))
            assert answer == "closed", (port, answer)
    finally:
        host.exec("kill", *pids, check=False)
    # egress to "the internet" works; the metadata address is dropped on the way
    out = probe_in(host, OTHER_CONTAINER, uids[OTHER], http_probe(OUTSIDE_ADDRESS, "egress-bob"))
    assert out == "open", out
    metadata = probe_in(host, OTHER_CONTAINER, uids[OTHER], http_probe(METADATA, "metadata-bob"))
    assert metadata.startswith("closed"), metadata
    log = outside.requests()
    assert "/egress-bob" in log and "/metadata-bob" not in log, log


def test_restarting_the_engine_keeps_every_server_its_layer_and_its_route(two_users):
    host = two_users["host"]
    inner_docker(host, "exec", "-u", host.exec("id", "-u", USER).stdout.strip(), CONTAINER, "sh", "-c",
                 f"echo kept > {LAYER_FILE}")
    before = {name: inspect_container(host, name) for name in (CONTAINER, OTHER_CONTAINER)}
    started = time.monotonic()
    host.exec("systemctl", "restart", "docker")
    restart_seconds = time.monotonic() - started
    for name, old in before.items():
        new = inspect_container(host, name)
        assert (new["Id"], new["State"]["Running"], new["State"]["StartedAt"]) == (
            old["Id"], True, old["State"]["StartedAt"]), name
    assert inner_docker(host, "exec", CONTAINER, "cat", LAYER_FILE).stdout.strip() == "kept"
    wait_for(lambda: lab_reachable(two_users["session"], two_users["base"]), 120,
             f"{USER}'s JupyterLab after `systemctl restart docker` ({restart_seconds:.1f} s)")
    # the users' network rules came back with the engine (PartOf=docker.service)
    assert host.exec("systemctl", "is-active", "jupyterhub-users-firewall").stdout.strip() == "active"


def test_egress_off_and_the_plays_docker_handler_keep_the_servers(site, sandbox, two_users, outside):
    """One converge: docker_users_egress false, a daemon.json change (so the play's own
    `Restart docker` handler runs) and a home made world-readable by hand (the role fixes it)."""
    host, uids = two_users["host"], two_users["uids"]
    host.exec("chmod", "0755", f"/home/{USER}")
    before = inspect_container(host)
    result = sandbox.converge(HOST_NAME, site["url"], extra_vars={
        "docker_users_egress": False,
        "docker_daemon_options": {"bip": "10.213.0.1/24", "max-concurrent-downloads": 4}})
    assert result.returncode == 0, result.output[-6000:]
    assert "docker : Restart docker" in result.changed_tasks, result.changed_tasks
    after = inspect_container(host)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    assert inner_docker(host, "exec", CONTAINER, "cat", LAYER_FILE).stdout.strip() == "kept"
    assert host.exec("stat", "-c", "%a", f"/home/{USER}").stdout.strip() == "700"
    wait_for(lambda: lab_reachable(two_users["session"], two_users["base"]), 120,
             f"{USER}'s JupyterLab after the docker handler")
    api = f"{USERS_GATEWAY}:{HUB_API_PORT}"
    assert probe_in(host, OTHER_CONTAINER, uids[OTHER], http_probe(api, "hub/api")) == "open"
    out = probe_in(host, OTHER_CONTAINER, uids[OTHER], http_probe(OUTSIDE_ADDRESS, "egress-off"))
    assert out.startswith("closed"), out
    assert "/egress-off" not in outside.requests()
