"""A real JupyterHub with configurable-http-proxy and the profile spawner, for tests.

The hub runs as root on this machine (it creates homes and drives the Docker engine) and keeps
user servers across a restart (`cleanup_servers = False`), as the installed hub does. Its API
listens on the gateway of the harness's users' network (tests/harness/users_network.py), where
the user containers run and the hub and proxy reach them at their own addresses.
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .cgroups import ensure_users_parent
from .processes import stop_group, wait_until_ready
from .users_network import HARNESS_NETWORK, UsersNetwork, ensure_users_network

CHP_CANDIDATES = (
    os.environ.get("JBM_CHP", ""),
    "/var/cache/jbm/chp-4.6.3/node_modules/.bin/configurable-http-proxy",  # `make chp`
    shutil.which("configurable-http-proxy") or "",
)
HARNESS_SERVICE = "test-harness"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bridge_gateway() -> str:
    """The docker bridge's (docker0) gateway: where containers on the default network reach
    this machine (the sandbox's CPython tarball). Hubs listen on their users' network."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True, text=True, check=True)
    return out.stdout.strip() or "172.17.0.1"


def chp_command() -> str:
    for candidate in CHP_CANDIDATES:
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("configurable-http-proxy not found: `make deps` installs it with npm "
                       "(or set JBM_CHP)")


@dataclass
class Hub:
    """One hub instance in a work directory (sqlite, cookie secret, config, log)."""
    workdir: Path
    profiles_file: Path
    extra_config: str = ""
    admin_users: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    process: subprocess.Popen | None = None
    # the users' parent cgroup (and its best-effort child), made here as the docker role makes
    # jupyterhub-users.slice on a server: QoS classes need the two levels
    users_cgroup: str = "jbm-users"
    # the users' network (made here as the docker role makes it on a server): the hub API on
    # its gateway, servers reached at their own address on it, no traffic between them
    network: UsersNetwork = HARNESS_NETWORK

    @property
    def hub_ip(self) -> str:
        return self.network.gateway

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "jupyterhub.log"

    def write_config(self) -> Path:
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = {self.url!r}
c.JupyterHub.hub_ip = {self.hub_ip!r}
c.JupyterHub.hub_port = {self.hub_port}
c.JupyterHub.db_url = "sqlite:///{self.workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{self.workdir}/jupyterhub_cookie_secret"
c.JupyterHub.cleanup_servers = False
c.ConfigurableHTTPProxy.command = [{chp_command()!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = {secrets.token_hex(16)!r}
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = set({list(self.admin_users)!r})
c.JupyterHub.services = [{{"name": {HARNESS_SERVICE!r}, "api_token": {self.token!r}}}]
c.JupyterHub.load_roles = [{{"name": "test-harness", "services": [{HARNESS_SERVICE!r}],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:metrics", "tokens"]}}]
c.JupyterHub.spawner_class = "profilespawner.DockerSystemProfileSpawner"
c.DockerSystemProfileSpawner.profiles_file = {str(self.profiles_file)!r}
c.DockerSystemProfileSpawner.cgroup_parent = {ensure_users_parent(self.users_cgroup)!r}
c.DockerSystemProfileSpawner.network_name = {ensure_users_network(self.network).name!r}
c.DockerSystemProfileSpawner.use_internal_ip = True
import profilespawner  # noqa: E402  (validate the profiles before anything starts, as installed)
profilespawner.load_profiles_or_exit(c.DockerSystemProfileSpawner.profiles_file)
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
""" + self.extra_config)
        return config

    def start(self, timeout: float | None = None) -> "Hub":
        """Start and wait for the API; JBM_HUB_START_TIMEOUT (seconds, default 60) for slow
        or busy machines."""
        timeout = timeout or float(os.environ.get("JBM_HUB_START_TIMEOUT", "60"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=self.workdir,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_ready(self.process, lambda: requests.get(f"{self.url}/hub/api", timeout=2).ok, timeout,
                         "jupyterhub", self.log, interval=0.3)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        stop_group(self.process, timeout)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self, tail: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the hub's REST API (`path` below /hub/api) as the admin test service."""
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers,
                                timeout=kwargs.pop("timeout", 30), **kwargs)

    def wait_ready(self, user: str, timeout: float = 180.0) -> dict:
        """Wait until the user's default server is ready; return the user model."""
        deadline = time.monotonic() + timeout
        model = {}
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return model
            if not server:
                raise RuntimeError(f"{user} has no server (spawn failed?):\n{self.log()}")
            time.sleep(0.5)
        raise RuntimeError(f"{user}'s server not ready in {timeout:.0f}s: {json.dumps(model)}\n{self.log()}")

    def user_token(self, user: str) -> str:
        """A token for `user` (the admin service may issue it), e.g. to talk to their server."""
        reply = self.api("POST", f"/users/{user}/tokens", json={"note": "test", "expires_in": 3600})
        reply.raise_for_status()
        return reply.json()["token"]
