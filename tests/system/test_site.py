"""site.yml converged for real into a systemd host container with Docker inside.

One converge (CPython built without PGO) and one re-run; then a real user logs in with a PAM
password through configurable-http-proxy, spawns a real container inside the host and keeps
it across `systemctl restart jupyterhub`. The same host is re-converged in the other serve
modes (https with an operator's certificate; proxy behind the role's own nginx and Caddy
examples on a second container) and back. Bad inventory values must stop the play in its
preflight, before the server is touched.
"""
import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from profilespawner import qos
from tests.harness.images import REVERSE_PROXY_IMAGE, ensure_reverse_proxy_image
from tests.harness.systemd_host import SystemdHost, keep_hosts
from tests.harness.users_network import METADATA, OUTSIDE_ADDRESS, Outside, http_probe, tcp_probe

ROOT = Path(__file__).resolve().parents[2]
HOST_NAME = "jbm-h5-site"
USER, PASSWORD = "alice", "alice-Pa55word"   # no "-": dockerspawner escapes it in names
CONTAINER = f"jupyter-{USER}"
SLICE = "jupyterhub-users.slice"
TINY_MEM = 512 * 1024**2      # the sandbox inventory's Tiny profile: 0.5 CPU, 512M
TINY_CFS_QUOTA_US = 50_000    # 0.5 CPU at the default 100 ms period

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def site(sandbox, python_source_url):
    """The converged host and the results of both runs (first, then the re-run)."""
    host = sandbox.start_host(HOST_NAME)
    first = sandbox.converge(HOST_NAME, python_source_url)
    assert first.returncode == 0, first.output[-6000:]
    secrets_before = host.exec("cat", "/etc/jupyterhub/secrets.env").stdout
    second = sandbox.converge(HOST_NAME, python_source_url)
    yield {"host": host, "first": first, "second": second, "url": python_source_url,
           "secrets_before": secrets_before, "ufw_status": host.exec("ufw", "status").stdout}
    if not keep_hosts():
        host.remove()


@pytest.fixture(scope="module")
def hub(site, sandbox):
    """A logged-in browser session of a real PAM user, through the proxy on port 8000."""
    host = site["host"]
    sandbox.load_singleuser_image(host)
    sandbox.create_user(host, USER, PASSWORD)
    base = sandbox.hub_url(host)
    wait_for(lambda: requests.get(base + "hub/api/", timeout=5).status_code == 200, 120,
             "the hub's API through the proxy")
    return {"base": base, "session": login(base), "host": host}


def login(base: str, verify: bool | str = True, user: str = USER,
          password: str = PASSWORD) -> requests.Session:
    """A session of the PAM user, logged in through the hub's login form at `base`; `verify`
    is the CA file the server's certificate must chain to (for https)."""
    session = requests.Session()
    session.trust_env = False   # else REQUESTS_CA_BUNDLE (or a proxy) in the environment wins
    session.verify = verify
    session.get(base + "hub/login", timeout=10).raise_for_status()
    reply = session.post(base + "hub/login", timeout=30, allow_redirects=False,
                         data={"username": user, "password": password, "_xsrf": xsrf(session)})
    assert reply.status_code == 302, (
        f"login at {base} failed ({reply.status_code}): {reply.text[:500]}")
    return session


def xsrf(session: requests.Session) -> str:
    """The hub's _xsrf cookie (there may be one per path)."""
    values = [c.value for c in session.cookies if c.name == "_xsrf"]
    assert values, "the hub set no _xsrf cookie"
    return values[-1]


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s ({last})")


def lab_reachable(session: requests.Session, base: str, user: str = USER) -> bool:
    """JupyterLab of the user answers at `base` (OAuth with the hub included)."""
    reply = session.get(base + f"user/{user}/lab", timeout=20)
    return reply.status_code == 200 and f"/user/{user}/lab" in reply.url and "JupyterLab" in reply.text


def spawn(session: requests.Session, base: str) -> None:
    """Start the user's server with the Tiny profile through the spawn form."""
    reply = session.post(base + "hub/spawn", timeout=60, data={
        "resource_profile": "Tiny", "image_profile": "SingleUser", "_xsrf": xsrf(session)})
    assert reply.status_code == 200, reply.text[:1000]


def inner_docker(host, *args, check=True):
    return host.exec("docker", *args, check=check)


def inspect_container(host, name: str = CONTAINER) -> dict:
    return json.loads(inner_docker(host, "inspect", name).stdout)[0]


# --- the converge ------------------------------------------------------------------------------

def test_first_converge_succeeds(site):
    recap = site["first"].recap["sandbox"]
    assert recap["failed"] == 0 and recap["unreachable"] == 0, site["first"].output[-4000:]
    assert recap["changed"] > 0


def test_second_run_changes_nothing(site):
    second = site["second"]
    assert second.returncode == 0, second.output[-4000:]
    assert second.recap["sandbox"]["changed"] == 0, f"changed on re-run: {second.changed_tasks}"


def test_secrets_are_private_and_never_regenerated(site):
    host = site["host"]
    assert host.exec("cat", "/etc/jupyterhub/secrets.env").stdout == site["secrets_before"]
    names = {line.split("=", 1)[0] for line in site["secrets_before"].splitlines()}
    assert {"JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN"} <= names
    modes = host.exec("stat", "-c", "%a %U %n", "/etc/jupyterhub/secrets.env",
                      "/var/lib/jupyterhub/jupyterhub_cookie_secret").stdout.split("\n")
    assert all(line.startswith("600 root ") for line in modes if line), modes


def test_services_are_active(site):
    out = site["host"].exec("systemctl", "is-active", "jupyterhub", "hubmetrics-exporter",
                            "docker", check=False).stdout.split()
    assert out == ["active", "active", "active"], site["host"].exec(
        "journalctl", "-u", "jupyterhub", "-u", "hubmetrics-exporter", "-n", "60", "--no-pager",
        check=False).stdout


def test_unit_files_pass_systemd_analyze_verify(site):
    verify = site["host"].exec("systemd-analyze", "verify",
                               "/etc/systemd/system/jupyterhub.service",
                               "/etc/systemd/system/hubmetrics-exporter.service", check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_exporter_listens_on_loopback_only(site):
    host = site["host"]
    listeners = host.exec("ss", "-ltnH", "sport = :9945").stdout.split("\n")
    addresses = {line.split()[3] for line in listeners if line.strip()}
    assert addresses == {"127.0.0.1:9945"}, listeners
    metrics = host.exec("python3", "-c", "import urllib.request;print(urllib.request.urlopen("
                        "'http://127.0.0.1:9945/metrics', timeout=10).read().decode())").stdout
    assert "# TYPE" in metrics


# --- a real user through the proxy --------------------------------------------------------------

def test_user_logs_in_and_spawns_a_limited_container_under_the_slice(hub):
    session, base, host = hub["session"], hub["base"], hub["host"]
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
    session, base, host = hub["session"], hub["base"], hub["host"]
    if not lab_reachable(session, base):
        spawn(session, base)
    wait_for(lambda: lab_reachable(session, base), 240, f"{USER}'s JupyterLab through the proxy")
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
    before = inspect_container(host)
    host.exec("systemctl", "restart", "jupyterhub")
    wait_for(lambda: requests.get(hub["base"] + "hub/api/", timeout=5).status_code == 200, 120,
             "the hub after its restart")
    after = inspect_container(host)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    wait_for(lambda: lab_reachable(hub["session"], hub["base"]), 120,
             f"{USER}'s JupyterLab after the hub restart")


# --- private homes and state; the users' network; the engine's restart ---------------------------

OTHER, OTHER_PASSWORD = "bob", "bob-Pa55word"
OTHER_CONTAINER = f"jupyter-{OTHER}"
USERS_NETWORK = "jupyterhub-users"            # docker_users_network (default)
USERS_GATEWAY = "10.250.0.1"                  # docker_users_network_gateway (default)
HUB_API_PORT = 8081
PUBLIC_PORT = 8000           # the sandbox serves in local mode on 0.0.0.0:8000, open to "any"
SECOND_PORT = 9100          # a listener user A starts in their own container
HOST_TEST_PORTS = (9300, 9200)   # listeners on all the host's addresses, never opened
LAYER_FILE = "/tmp/jbm-container-state-proof"  # the container's own tmpfs /tmp: lost if it were restarted


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
    """alice's server (spawned above) and bob's, spawned through the form as bob."""
    host, base = hub["host"], hub["base"]
    sandbox.create_user(host, OTHER, OTHER_PASSWORD)
    session = login(base, user=OTHER, password=OTHER_PASSWORD)
    if not lab_reachable(session, base, OTHER):
        spawn(session, base)
    wait_for(lambda: lab_reachable(session, base, OTHER), 240, f"{OTHER}'s JupyterLab")
    wait_for(lambda: lab_reachable(hub["session"], base), 120, f"{USER}'s JupyterLab")
    uids = {name: host.exec("id", "-u", name).stdout.strip() for name in (USER, OTHER)}
    return {**hub, "other_session": session, "uids": uids}


def container_ip(host, name: str) -> str:
    return inspect_container(host, name)["NetworkSettings"]["Networks"][USERS_NETWORK]["IPAddress"]


def probe_in(host, container: str, uid: str, command: list[str]) -> str:
    """A probe run in a user's container as the user, as their notebook code would."""
    done = inner_docker(host, "exec", "-u", uid, container, *command, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


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


def test_a_changed_setting_backs_up_the_old_installation_first(site, sandbox, hub):
    host = hub["host"]
    listing = "ls -1 /var/backups/jupyterhub-*.tar.gz 2>/dev/null || true"
    before = set(host.exec("sh", "-c", listing).stdout.split())
    changed = sandbox.converge(HOST_NAME, site["url"],
                               extra_vars={"jupyterhub_idle_timeout_seconds": 1800})
    assert changed.returncode == 0, changed.output[-4000:]
    new = set(host.exec("sh", "-c", listing).stdout.split()) - before
    assert len(new) == 1, new
    backup = new.pop()
    assert host.exec("stat", "-c", "%a", backup).stdout.strip() == "600"
    old_config = host.exec("tar", "-xzOf", backup, "etc/jupyterhub/jupyterhub_config.py").stdout
    assert "3600" in old_config and "1800" not in old_config
    assert "1800" in host.exec("cat", "/etc/jupyterhub/jupyterhub_config.py").stdout
    # the handler restarted the hub; the user's server is still there
    assert inspect_container(host)["State"]["Running"]
    wait_for(lambda: lab_reachable(hub["session"], hub["base"]), 120,
             f"{USER}'s JupyterLab after the reconfiguration")


# --- the serve modes: https, proxy behind the role's nginx and Caddy examples, back to local ----
# Each mode is a re-converge of the same host; the last one restores the sandbox's local mode
# for the tests below. The user's server spawned above keeps running through all of them.

TLS_DIR = "/etc/jupyterhub/tls"       # the folder of the default jupyterhub_https_cert/_key
EXAMPLES_DIR = "/etc/jupyterhub/reverse-proxy-examples"   # jupyterhub_reverse_proxy_examples_dir
PROXY_NAME = "jbm-h5-reverse-proxy"
PUBLIC_RULE = "# jupyterhub-baremetal public"   # the firewall role's comment on the public rules
USERS_PUBLIC_DENIAL = "jupyterhub-baremetal containers denied the public ports"  # and on their denials
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455


def self_signed_certificate(directory: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for the address `ip` (subjectAltName) and its key, by openssl."""
    cert, key = directory / f"{ip}.crt", directory / f"{ip}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def put_file(container: SystemdHost, path: str, content: str, mode: str = "0644") -> None:
    """Copy a file into a container, its folder created: what the operator does by hand."""
    script = f'mkdir -p "$(dirname {path})" && cat > {path} && chmod {mode} {path}'
    container.exec("sh", "-c", script, input=content)


def public_rules(host) -> list[str]:
    """The hub's public ufw rules (tagged by the firewall role), spaces collapsed."""
    return [" ".join(line.split()) for line in host.exec("ufw", "status").stdout.splitlines()
            if PUBLIC_RULE in line]


def listening_ports(host) -> set[int]:
    """The TCP ports something listens on in the host."""
    return {int(line.split()[3].rsplit(":", 1)[1])
            for line in host.exec("ss", "-ltnH").stdout.splitlines() if line.strip()}


def websocket_handshake(session: requests.Session, url: str) -> tuple[int, bool]:
    """The HTTP status of a websocket opening handshake to the https `url`, with the session's
    cookies and CA, and whether Sec-WebSocket-Accept answers our key. 101 with the right
    answer only when every proxy on the way passed the Upgrade and Connection headers."""
    parts = urllib.parse.urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    cookie = session.prepare_request(requests.Request("GET", url)).headers.get("Cookie", "")
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, timeout=30,
        context=ssl.create_default_context(cafile=session.verify))
    try:
        connection.request("GET", parts.path, headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13", "Cookie": cookie})
        reply = connection.getresponse()
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        return reply.status, reply.getheader("Sec-WebSocket-Accept") == accept
    finally:
        connection.close()


def check_user_through(base: str, ca: str, what: str) -> None:
    """Through `base` (https, certificate checked against `ca`): a PAM login, the user's
    JupyterLab (spawned if not running) and a websocket to the user's server (jupyter_server's
    event stream, as JupyterLab opens it)."""
    session = login(base, verify=ca)
    if not lab_reachable(session, base):
        spawn(session, base)
    wait_for(lambda: lab_reachable(session, base), 240, f"{USER}'s JupyterLab through {what}")
    status, accepted = websocket_handshake(session, base + f"user/{USER}/api/events/subscribe")
    assert (status, accepted) == (101, True), (
        f"websocket through {what}: HTTP {status} (101 expected), "
        f"Sec-WebSocket-Accept {'right' if accepted else 'missing or wrong'}")


# The metrics role's Grafana files for an existing Grafana, in a folder of the operator's.
GRAFANA = {"metrics_grafana_provisioning_dir": "/etc/grafana/provisioning",
           "metrics_grafana_dashboards_dir": "/srv/grafana/dashboards/jupyterhub"}


@pytest.fixture(scope="module")
def https_mode(site, sandbox, hub, tmp_path_factory):
    """The site re-converged twice in https mode, with a self-signed certificate for the host's
    address that the operator put at the default paths before the play. The same two runs
    drop the Grafana files (one converge and one re-run fewer for the module)."""
    host = hub["host"]
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("https"), host.ip)
    put_file(host, f"{TLS_DIR}/fullchain.pem", cert.read_text())
    put_file(host, f"{TLS_DIR}/privkey.pem", key.read_text(), mode="0600")
    variables = {"jupyterhub_serve_mode": "https", **GRAFANA}
    first = sandbox.converge(HOST_NAME, site["url"], extra_vars=variables)
    assert first.returncode == 0, first.output[-6000:]
    return {"host": host, "cert": str(cert), "base": f"https://{host.ip}/",
            "second": sandbox.converge(HOST_NAME, site["url"], extra_vars=variables)}


def test_https_mode_serves_the_hub_over_tls_with_the_operators_certificate(https_mode):
    base, cert = https_mode["base"], https_mode["cert"]
    wait_for(lambda: requests.get(base + "hub/api/", verify=cert, timeout=5).status_code == 200,
             120, "the hub over https on port 443")
    page = requests.get(base + "hub/login", verify=cert, timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:1000]
    check_user_through(base, cert, "the hub's own TLS")
    ports = listening_ports(https_mode["host"])
    assert 443 in ports and 8000 not in ports, f"listening: {sorted(ports)}"


def test_https_mode_opens_only_the_https_port(https_mode):
    assert public_rules(https_mode["host"]) == [
        f"443/tcp ALLOW Anywhere {PUBLIC_RULE} (https)",
        f"443/tcp (v6) ALLOW Anywhere (v6) {PUBLIC_RULE} (https)"]
    # ... and denies it (first, before the allows) to the users' network: not 8000 any more
    status = https_mode["host"].exec("ufw", "status").stdout
    rules = [" ".join(line.split()) for line in status.splitlines()]
    denials = [i for i, rule in enumerate(rules) if rule.endswith(f"# {USERS_PUBLIC_DENIAL}")]
    assert [rules[i].split()[:3] for i in denials] == [["443/tcp", "DENY", "10.250.0.0/16"]], rules
    assert denials[0] < rules.index(f"443/tcp ALLOW Anywhere {PUBLIC_RULE} (https)")


def test_rerun_in_https_mode_with_the_grafana_files_changes_nothing(https_mode):
    second = https_mode["second"]
    assert second.returncode == 0, second.output[-4000:]
    assert second.recap["sandbox"]["changed"] == 0, f"changed on re-run: {second.changed_tasks}"


def test_grafana_files_land_where_the_provider_points(https_mode):
    host, provisioning = https_mode["host"], GRAFANA["metrics_grafana_provisioning_dir"]
    provider = yaml.safe_load(host.exec(
        "cat", f"{provisioning}/dashboards/jupyterhub-baremetal.yaml").stdout)["providers"][0]
    folder = provider["options"]["path"]
    wanted = GRAFANA["metrics_grafana_dashboards_dir"]
    assert (provider["type"], folder) == ("file", wanted), provider
    dashboards = sorted((ROOT / "metrics/grafana/dashboards").glob("*.json"))
    assert dashboards
    for dashboard in dashboards:
        dropped = host.exec("cat", f"{folder}/{dashboard.name}", check=False)
        assert dropped.returncode == 0, f"{dashboard.name} is not in the provider's folder {folder}"
        assert json.loads(dropped.stdout) == json.loads(dashboard.read_text()), dashboard.name
    datasource = yaml.safe_load(host.exec(
        "cat", f"{provisioning}/datasources/prometheus.yaml").stdout)["datasources"][0]
    assert (datasource["type"], datasource["uid"]) == ("prometheus", "prometheus"), datasource


@pytest.fixture(scope="module")
def reverse_proxy(hub):
    """The reverse-proxy machine: a container with Debian's nginx and Caddy (IPv6 on, like a
    real machine, for the examples' [::] listeners), which knows the hub host by its inventory
    name, as DNS would tell it."""
    ensure_reverse_proxy_image()
    proxy = SystemdHost(PROXY_NAME)   # any container: exec, ip, remove
    proxy.remove()
    subprocess.run(["docker", "run", "-d", "--name", PROXY_NAME,
                    "--add-host", f"{HOST_NAME}:{hub['host'].ip}",
                    "--sysctl", "net.ipv6.conf.all.disable_ipv6=0", REVERSE_PROXY_IMAGE],
                   check=True, capture_output=True)
    yield proxy
    if not keep_hosts():
        proxy.remove()


@pytest.fixture(scope="module")
def proxy_mode(site, sandbox, hub, reverse_proxy, tmp_path_factory):
    """The site re-converged in proxy mode: the reverse proxy's address is the public name and
    the only source let in. Gives the examples the role rendered, fetched out of the host, and
    a certificate for the reverse proxy (at the path the nginx example names, as certbot would)."""
    ip = reverse_proxy.ip
    result = sandbox.converge(HOST_NAME, site["url"], extra_vars={
        "jupyterhub_serve_mode": "proxy", "jupyterhub_public_hostname": ip,
        "firewall_proxy_sources": [f"{ip}/32"]})
    assert result.returncode == 0, result.output[-6000:]
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("proxy"), ip)
    put_file(reverse_proxy, f"/etc/letsencrypt/live/{ip}/fullchain.pem", cert.read_text())
    put_file(reverse_proxy, f"/etc/letsencrypt/live/{ip}/privkey.pem", key.read_text(), mode="0600")
    host = hub["host"]
    return {"ip": ip, "base": f"https://{ip}/", "cert": str(cert), "host": host,
            "nginx": host.exec("cat", f"{EXAMPLES_DIR}/nginx-jupyterhub.conf").stdout,
            "caddy": host.exec("cat", f"{EXAMPLES_DIR}/Caddyfile").stdout}


def test_proxy_mode_lets_only_the_reverse_proxy_in(proxy_mode):
    assert public_rules(proxy_mode["host"]) == [
        f"8000/tcp ALLOW {proxy_mode['ip']} {PUBLIC_RULE} (proxy)"]


def test_login_and_websockets_through_the_nginx_example(proxy_mode, reverse_proxy):
    ip = proxy_mode["ip"]
    put_file(reverse_proxy, "/etc/nginx/sites-available/jupyterhub", proxy_mode["nginx"])
    reverse_proxy.exec("ln", "-sf", "../sites-available/jupyterhub", "/etc/nginx/sites-enabled/")
    syntax = reverse_proxy.exec("nginx", "-t", check=False)
    assert syntax.returncode == 0, syntax.stderr
    reverse_proxy.exec("nginx")
    try:
        redirect = requests.get(f"http://{ip}/hub/login", allow_redirects=False, timeout=10)
        assert (redirect.status_code, redirect.headers.get("Location")) == (
            301, f"https://{ip}/hub/login"), "nginx's port 80 must redirect to https"
        check_user_through(proxy_mode["base"], proxy_mode["cert"], "nginx")
    finally:
        stop = "nginx -s stop; while [ -e /run/nginx.pid ]; do sleep 0.2; done"   # port 80/443 free
        reverse_proxy.exec("sh", "-c", stop, timeout=60)


def test_login_and_websockets_through_the_caddy_example(proxy_mode, reverse_proxy, tmp_path):
    put_file(reverse_proxy, "/etc/caddy/Caddyfile", proxy_mode["caddy"])
    valid = reverse_proxy.exec("caddy", "validate", "--config", "/etc/caddy/Caddyfile", check=False)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # The public name is an address, so Caddy gets its certificate from its own local CA.
    # Its log goes to a file: Caddy runs on after `docker exec` has closed the pipes.
    started = reverse_proxy.exec("sh", "-c", "caddy start --config /etc/caddy/Caddyfile "
                                 ">/var/log/caddy.log 2>&1", check=False)
    assert started.returncode == 0, reverse_proxy.exec("cat", "/var/log/caddy.log").stdout[-3000:]
    try:
        root = tmp_path / "caddy-root.crt"
        root_path = "/root/.local/share/caddy/pki/authorities/local/root.crt"
        wait_for(lambda: reverse_proxy.exec("test", "-s", root_path, check=False).returncode == 0,
                 60, "Caddy's local CA")
        root.write_text(reverse_proxy.exec("cat", root_path).stdout)
        base = proxy_mode["base"]
        wait_for(lambda: requests.get(base + "hub/api/", verify=str(root), timeout=5).ok, 60,
                 "the hub through Caddy")
        check_user_through(base, str(root), "Caddy")
    finally:
        reverse_proxy.exec("caddy", "stop", check=False)


def test_back_to_local_mode_restores_the_sandbox_site(site, sandbox, hub):
    host = hub["host"]
    result = sandbox.converge(HOST_NAME, site["url"])
    assert result.returncode == 0, result.output[-6000:]
    ufw = host.exec("ufw", "status").stdout
    # the same rules as after the first converge (a denial re-inserted on top may sit higher) ...
    assert sorted(ufw.splitlines()) == sorted(site["ufw_status"].splitlines()), \
        f"ufw now:\n{ufw}\nafter the first converge:\n{site['ufw_status']}"
    # ... and the users' network is denied the public port before "any" is allowed it
    lines = ufw.splitlines()
    denied = max(i for i, line in enumerate(lines) if line.endswith(USERS_PUBLIC_DENIAL))
    assert denied < min(i for i, line in enumerate(lines) if PUBLIC_RULE in line), ufw
    ports = listening_ports(host)
    assert 8000 in ports and 443 not in ports, f"listening: {sorted(ports)}"
    wait_for(lambda: lab_reachable(hub["session"], hub["base"]), 120,
             f"{USER}'s JupyterLab on plain http again")


# --- bad inventory values stop the play before the server is touched ----------------------------

BAD_VALUES = {
    "profile name that does not exist": (
        {"jupyterhub_profiles": {
            "resource_profiles": {"Tiny": {"cpu_limit": 1, "mem_limit": "1G"}},
            "image_profiles": {"I": {"image": "local/singleuser:latest"}},
            "user_profiles": {"default": {"allowed_resources": ["Tiny", "Hge"],
                                          "allowed_images": ["I"]}}}},
        ["jupyterhub_profiles", "user_profiles.default.allowed_resources[1]", "Hge"]),
    "network that is not a CIDR": (
        {"admin_networks": ["10.0.0.300/8"]}, ["admin_networks[0]", "10.0.0.300/8"]),
    "home template without {username}": (
        {"jupyterhub_profiles": {
            "resource_profiles": {"Tiny": {"cpu_limit": 1, "mem_limit": "1G"}},
            "image_profiles": {"I": {"image": "local/singleuser:latest"}},
            "user_profiles": {"default": {"allowed_resources": ["Tiny"], "allowed_images": ["I"],
                                          "host_homedir_format_string": "/home/everyone"}}}},
        ["jupyterhub_profiles", "host_homedir_format_string", "/home/everyone", "{username}"]),
    "serve mode that does not exist": (
        {"jupyterhub_serve_mode": "public"}, ["jupyterhub_serve_mode=public", "local, https, proxy"]),
    "https certificate that is not on the server": (
        {"jupyterhub_serve_mode": "https", "jupyterhub_https_cert": "/etc/jupyterhub/tls/none.pem"},
        ["jupyterhub_serve_mode=https", "jupyterhub_https_cert=/etc/jupyterhub/tls/none.pem"]),
}


@pytest.mark.parametrize("case", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_a_bad_variable_stops_the_play_in_preflight(site, sandbox, case):
    extra_vars, expected = BAD_VALUES[case]
    config_before = site["host"].exec("cat", "/etc/jupyterhub/profiles.yaml").stdout
    result = sandbox.converge(HOST_NAME, site["url"], extra_vars=extra_vars)
    assert result.returncode != 0
    assert "PLAY [Install JupyterHub on the server]" not in result.output, "did not stop early"
    failure = result.output[result.output.find("fatal:"):]
    for text in expected:
        assert text in failure, f"{text!r} not in:\n{failure[:3000]}"
    assert site["host"].exec("cat", "/etc/jupyterhub/profiles.yaml").stdout == config_before


# --- the python role (built once, by the first converge above) ------------------------------------

CPYTHON_PREFIX = "/opt/jupyterhub/python-3.11.2"
SYSTEM_PYTHON_PACKAGES = ("python3.11-minimal", "python3.11", "libpython3.11-minimal",
                          "libpython3.11-stdlib")


def test_cpython_is_built_into_its_own_prefix_beside_the_system_python(site):
    host = site["host"]
    built = host.exec(f"{CPYTHON_PREFIX}/bin/python3.11", "-c", (
        "import sys, ssl, sqlite3, ctypes, lzma, venv; print(sys.version.split()[0], sys.prefix)"))
    assert built.stdout.split() == ["3.11.2", CPYTHON_PREFIX]
    venv_base = host.exec("/opt/jupyterhub/venv/bin/python", "-c", "import sys; print(sys.base_prefix)")
    assert venv_base.stdout.strip() == CPYTHON_PREFIX
    # The system Python's files are as Debian shipped them, and no unversioned python3 was added.
    assert host.exec("dpkg", "--verify", *SYSTEM_PYTHON_PACKAGES).stdout == ""
    for path in (f"{CPYTHON_PREFIX}/bin/python3", "/usr/local/bin/python3"):
        assert host.exec("test", "-e", path, check=False).returncode != 0, path


def test_a_wrong_cpython_checksum_is_refused(site, sandbox):
    result = sandbox.converge(HOST_NAME, site["url"], extra_vars={
        "python_version": "3.11.99", "python_source_sha256": "0" * 64})
    assert result.returncode != 0
    assert "did not match" in result.output or "checksum" in result.output.lower(), result.output[-3000:]
    assert site["host"].exec("test", "-e", "/opt/jupyterhub/python-3.11.99", check=False).returncode


# --- the optional prometheus role (last: it adds a service to the converged site) ----------------

PROMETHEUS_TARGETS = ("import json, urllib.request; "
                      "print(json.dumps([(t['labels']['job'], t['health']) for t in json.load("
                      "urllib.request.urlopen('http://127.0.0.1:9090/api/v1/targets'))"
                      "['data']['activeTargets']]))")


def test_optional_prometheus_scrapes_the_exporter_and_the_hub(site, sandbox):
    result = sandbox.converge(HOST_NAME, site["url"], extra_vars={"prometheus_enabled": True})
    assert result.returncode == 0, result.output[-6000:]
    host = site["host"]
    targets = {}

    def both_up() -> bool:
        reply = host.exec("python3", "-c", PROMETHEUS_TARGETS, check=False)
        targets.update(json.loads(reply.stdout or "[]"))
        return targets.get("hubmetrics") == "up" and targets.get("jupyterhub") == "up"

    try:
        wait_for(both_up, 120, "Prometheus scraping the exporter and the hub")
    except AssertionError as error:
        raise AssertionError(f"{error}; last targets: {targets}") from None
