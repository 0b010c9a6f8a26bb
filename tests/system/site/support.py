"""What the site's system tests share: the host's names and settings, logging in through the
hub's form, spawning, waiting, and reading the inner engine. The fixtures are in conftest.py."""
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

import requests

from tests.harness.systemd_host import SystemdHost

ROOT = Path(__file__).resolve().parents[3]
HOST_NAME = "jbm-h5-site"
USER, PASSWORD = "alice", "alice-Pa55word"   # no "-": dockerspawner escapes it in names
CONTAINER = f"jupyter-{USER}"
SLICE = "jupyterhub-users.slice"
TINY_MEM = 512 * 1024**2      # the sandbox inventory's Tiny profile: 0.5 CPU, 512M
TINY_CFS_QUOTA_US = 50_000    # 0.5 CPU at the default 100 ms period

OTHER, OTHER_PASSWORD = "bob", "bob-Pa55word"
OTHER_CONTAINER = f"jupyter-{OTHER}"
USERS_NETWORK = "jupyterhub-users"            # docker_users_network (default)
USERS_GATEWAY = "10.250.0.1"                  # docker_users_network_gateway (default)
HUB_API_PORT = 8081
PUBLIC_PORT = 8000           # the sandbox serves in local mode on 0.0.0.0:8000, open to "any"
SECOND_PORT = 9100          # a listener user A starts in their own container
HOST_TEST_PORTS = (9300, 9200)   # listeners on all the host's addresses, never opened
LAYER_FILE = "/tmp/jbm-container-state-proof"  # the container's own tmpfs /tmp: lost if it were restarted
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
    """The hub's _xsrf cookie (path /hub/): a user's server sets one of its own at /user/<name>/,
    which the hub's forms and API refuse."""
    cookies = [c for c in session.cookies if c.name == "_xsrf"]
    assert cookies, "the hub set no _xsrf cookie"
    hub = [c.value for c in cookies if c.path == "/hub/"]
    return (hub or [cookies[-1].value])[-1]


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


def serve_user(hub, session=None, user=USER) -> None:
    """The user's JupyterLab answers through the proxy: spawned with Tiny unless it runs."""
    session = session or hub["session"]
    if not lab_reachable(session, hub["base"], user):
        spawn(session, hub["base"])
    wait_for(lambda: lab_reachable(session, hub["base"], user), 240, f"{user}'s JupyterLab through the proxy")


def stop_server(session: requests.Session, base: str, user: str = USER) -> None:
    """Stop the user's server through the hub's REST API, as the user (cookie and XSRF token)."""
    api = base + f"hub/api/users/{user}"
    headers = {"X-XSRFToken": xsrf(session)}
    reply = session.delete(api + "/server", headers=headers, timeout=60)
    assert reply.status_code in (202, 204, 400), reply.text[:500]   # 400: not running
    wait_for(lambda: not session.get(api, headers=headers, timeout=10).json().get("servers"), 120,
             f"{user}'s server to stop")


def container_ip(host, name: str) -> str:
    return inspect_container(host, name)["NetworkSettings"]["Networks"][USERS_NETWORK]["IPAddress"]


def probe_in(host, container: str, uid: str, command: list[str]) -> str:
    """A probe run in a user's container as the user, as their notebook code would."""
    done = inner_docker(host, "exec", "-u", uid, container, *command, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
