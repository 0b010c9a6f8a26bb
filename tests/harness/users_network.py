"""The users' network of the test hubs, made here as the `docker` role makes it on a server.

A user-defined bridge without traffic between containers (enable_icc=false), a fixed subnet
whose gateway the hub API listens on, and the role's own rules script
(roles/docker/files/jupyterhub-users-firewall: metadata address dropped, optional egress off)
applied with the same settings the role writes. Networks and their rules stay for the next
session (like the harness's images and cgroups); only this harness's networks are touched.

`Outside` stands in for the internet and the cloud metadata service: a network namespace
behind a veth pair holding 198.51.100.1 (TEST-NET-2, never a real host) and 169.254.169.254,
with an HTTP server logging every request. Traffic from the given subnets to 169.254.169.254
is steered there by a policy-routing rule that matches only those sources, so the machine's own
traffic to that address (and every real metadata service) is untouched.
"""
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES_SCRIPT = ROOT / "roles" / "docker" / "files" / "jupyterhub-users-firewall"
METADATA = "169.254.169.254"


@dataclass(frozen=True)
class UsersNetwork:
    """One users' network: the docker role's variables of the same names."""
    name: str
    subnet: str
    gateway: str
    bridge: str
    egress: bool = True
    blocked: tuple[str, ...] = (f"{METADATA}/32",)

    def docker_create_args(self) -> list[str]:
        """`docker network create` as the role's docker_network task creates it."""
        return ["docker", "network", "create", "--driver", "bridge",
                "--subnet", self.subnet, "--gateway", self.gateway,
                "-o", f"com.docker.network.bridge.name={self.bridge}",
                "-o", "com.docker.network.bridge.enable_icc=false",
                "-o", "com.docker.network.bridge.enable_ip_masquerade=true", self.name]

    def rules_env(self) -> dict[str, str]:
        """The settings the role writes to /etc/default/jupyterhub-users-firewall."""
        return {"JBM_USERS_BRIDGE": self.bridge, "JBM_USERS_EGRESS": str(self.egress).lower(),
                "JBM_USERS_BLOCKED": " ".join(self.blocked)}


HARNESS_NETWORK = UsersNetwork("jbm-harness-users", "10.251.0.0/24", "10.251.0.1", "jbm-harness0")
NO_EGRESS_NETWORK = UsersNetwork("jbm-harness-noegress", "10.251.1.0/24", "10.251.1.1",
                                 "jbm-harness1", egress=False)


def _inspect(name: str) -> dict | None:
    out = subprocess.run(["docker", "network", "inspect", name], capture_output=True, text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def _matches(info: dict, network: UsersNetwork) -> bool:
    options = info.get("Options") or {}
    ipam = (info.get("IPAM") or {}).get("Config") or [{}]
    return (options.get("com.docker.network.bridge.name") == network.bridge
            and options.get("com.docker.network.bridge.enable_icc") == "false"
            and ipam[0].get("Subnet") == network.subnet
            and ipam[0].get("Gateway") == network.gateway)


def ensure_users_network(network: UsersNetwork = HARNESS_NETWORK) -> UsersNetwork:
    """The network exists as configured and its rules are applied (idempotent)."""
    info = _inspect(network.name)
    if info is not None and not _matches(info, network):
        if info.get("Containers"):
            raise RuntimeError(f"docker network {network.name} exists with other settings and "
                               f"has containers: {sorted(info['Containers'])}")
        subprocess.run(["docker", "network", "rm", network.name], check=True, capture_output=True)
        info = None
    if info is None:
        made = subprocess.run(network.docker_create_args(), capture_output=True, text=True)
        if made.returncode != 0 and _inspect(network.name) is None:   # another session won
            raise RuntimeError(f"docker network create {network.name}: {made.stderr}")
    apply_rules(network)
    return network


def apply_rules(network: UsersNetwork) -> None:
    """Run the role's rules script for `network` on this machine."""
    done = subprocess.run(["sh", str(RULES_SCRIPT), "apply"], capture_output=True, text=True,
                          env={**os.environ, **network.rules_env()})
    if done.returncode != 0:
        raise RuntimeError(f"{RULES_SCRIPT.name} apply failed: {done.stderr}")


# --- the internet and metadata stand-in ----------------------------------------------------------

OUTSIDE_ADDRESS = "198.51.100.1"          # TEST-NET-2 (RFC 5737): "the internet" here
OUTSIDE_HOST_SIDE = "198.51.100.254"
ROUTE_TABLE = 2510


@dataclass
class Outside:
    """Commands for the stand-in, run on this machine or in a systemd host (`run`: argv ->
    CompletedProcess). `sources`: the subnets whose traffic to 169.254.169.254 it catches."""
    sources: tuple[str, ...]
    run: object = None
    namespace: str = "jbm-outside"
    veth: str = "jbm-outside0"
    log: str = "/run/jbm-outside.log"
    pid_file: str = "/run/jbm-outside.pid"
    www: str = "/run/jbm-outside-www"      # an empty folder: every probe gets a 404
    _started: list = field(default_factory=list)

    def _sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        runner = self.run or (lambda argv: subprocess.run(argv, capture_output=True, text=True))
        done = runner(["sh", "-c", script])
        if check and done.returncode != 0:
            raise RuntimeError(f"outside stand-in: {script!r} failed: {done.stderr}")
        return done

    def start(self) -> "Outside":
        ns, veth = self.namespace, self.veth
        rules = "\n".join(
            f"ip rule show | grep -q 'from {src} lookup {ROUTE_TABLE}' || "
            f"ip rule add from {src} lookup {ROUTE_TABLE} priority {ROUTE_TABLE}"
            for src in self.sources)
        self._sh(f"""set -e
ip netns list | grep -qw {ns} || ip netns add {ns}
if ! ip link show {veth} >/dev/null 2>&1; then
  ip link add {veth} type veth peer name eth0 netns {ns}
  ip addr add {OUTSIDE_HOST_SIDE}/24 dev {veth}
  ip link set {veth} up
  ip -n {ns} link set lo up
  ip -n {ns} addr add {OUTSIDE_ADDRESS}/24 dev eth0
  ip -n {ns} addr add {METADATA}/32 dev eth0
  ip -n {ns} link set eth0 up
  ip -n {ns} route add default via {OUTSIDE_HOST_SIDE}
fi
ip route replace {METADATA}/32 via {OUTSIDE_ADDRESS} dev {veth} table {ROUTE_TABLE}
{rules}
if ! [ -s {self.pid_file} ] || ! kill -0 "$(cat {self.pid_file})" 2>/dev/null; then
  : > {self.log}
  mkdir -p {self.www}
  nohup ip netns exec {ns} python3 -m http.server 80 --bind 0.0.0.0 --directory {self.www} \
    >>{self.log} 2>&1 &
  echo $! > {self.pid_file}
fi
""")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._sh(f"ip netns exec {ns} python3 -c \"import socket; "
                        f"socket.create_connection(('{OUTSIDE_ADDRESS}', 80), 2).close()\"",
                        check=False).returncode == 0:
                return self
            time.sleep(0.3)
        raise RuntimeError(f"the outside stand-in did not answer: {self.requests()}")

    def requests(self) -> str:
        """The HTTP server's log: one line per request that reached it."""
        return self._sh(f"cat {self.log} 2>/dev/null || true").stdout

    def stop(self) -> None:
        rules = "\n".join(f"ip rule del from {src} lookup {ROUTE_TABLE} 2>/dev/null || true"
                          for src in self.sources)
        self._sh(f"""[ -s {self.pid_file} ] && kill "$(cat {self.pid_file})" 2>/dev/null
rm -f {self.pid_file}
{rules}
ip route flush table {ROUTE_TABLE} 2>/dev/null || true
ip link del {self.veth} 2>/dev/null || true
ip netns del {self.namespace} 2>/dev/null || true
""", check=False)


# --- probes from inside a container ---------------------------------------------------------------

# One bounded TCP connect (bash's /dev/tcp under `timeout`), or an HTTP GET with a path that
# names the probe, so the stand-in's log tells which probe arrived.
def tcp_probe(address: str, port: int, seconds: int = 4) -> list[str]:
    return ["bash", "-c", f"timeout {seconds} bash -c 'exec 3<>/dev/tcp/{address}/{port}' "
            f"2>/dev/null && echo open || echo closed"]


def http_probe(address: str, tag: str, seconds: int = 4) -> list[str]:
    """'open' when any HTTP answer came back (the stand-in answers 404), else 'closed ...'."""
    return ["python3", "-c", (
        "import urllib.error, urllib.request\n"
        "try:\n"
        f"    urllib.request.urlopen('http://{address}/{tag}', timeout={seconds}).read()\n"
        "    print('open')\n"
        "except urllib.error.HTTPError:\n"
        "    print('open')\n"
        "except Exception as error:\n"
        "    print('closed', type(error).__name__, error)\n")]
