"""A real Docker Swarm of 2 (or 3) nodes on this one machine, for the swarm spawner's tests.

Each node is a systemd host container with its own dockerd inside (systemd_host.py,
docker_inside), on the user-defined network jbm-swarm-net (172.30.77.0/24, node i at .(i+1)).
Node 1 is the manager (`swarm init --advertise-addr`, `--default-addr-pool 10.201.0.0/16`), the
others join with the worker token. Each dockerd: live-restore off, cgroup-parent the users' slice
(docs/contracts.md "Swarm"), its own bridge pools away from this machine's networks. Nodes get the
capacity labels (small: they all share this machine's cores) and node 2 a fake GPU id. The test
image is loaded into every node; the test users exist with the same uid/gid here and on every
node; the homes are one directory of this machine bind-mounted at the same path into every node
(this kernel has no NFS). Node 1's engine socket is in a directory bind-mounted from this machine
(SOCKET_DIR), so the hub here talks to the manager.

The users' network as the docker and swarm roles make it on a swarm: a config-only network of the
role's settings on every node (bridge jbm-users0, enable_icc=false), the swarm-scoped network
jupyterhub-users made from it on the manager, and the role's own rules script
(roles/docker/files/jupyterhub-users-firewall) applied in every node with the settings the role
writes there: new connections into the users' bridge admitted from the hub only (this machine,
GATEWAY: the hub and its proxy run here), every node's address blocked to the containers but
the hub API.
"""
import json
import pwd
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .images import CACHE_DIR, build_image, ensure_systemd_image
from .systemd_host import SystemdHost, keep_hosts, run_args
from .users_network import METADATA, RULES_SCRIPT

PREFIX = "jbm-swarm-"
NETWORK = "jbm-swarm-net"
SUBNET = "172.30.77.0/24"
GATEWAY = "172.30.77.1"  # this machine on the swarm network: where the hub API listens
ADDR_POOL = "10.201.0.0/16"
NODE_IMAGE = "local/debian-systemd-docker:bookworm"
HOMES = Path("/srv/jbm-swarm-homes")  # the "shared storage": same path here and in every node
SOCKET_DIR = Path("/run/jbm-swarm-sock")  # node 1's engine socket, seen from this machine
SOCKET = SOCKET_DIR / "docker.sock"
# the container labels of the interfaces (profilespawner.labels defines them for the spawner)
CAPACITY_CPUS = "org.jupyterhub-baremetal.capacity-cpus"
CAPACITY_MEM = "org.jupyterhub-baremetal.capacity-mem"
GPUS = "org.jupyterhub-baremetal.gpus"
# the users' network: the docker role's defaults (docker_users_network, _bridge, _gateway) on a
# smaller subnet; the config-only network's name is the role's docker_users_network_config_only
USERS_NETWORK = "jupyterhub-users"
USERS_CONFIG_ONLY = f"{USERS_NETWORK}-config"
USERS_SUBNET = "10.250.0.0/24"
USERS_GATEWAY = "10.250.0.1"
USERS_BRIDGE = "jbm-users0"

NODE_DOCKERFILE = """\
# A swarm node: the systemd host with Debian's docker.io (swarm mode is in it)
FROM local/debian-systemd:bookworm
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io \\
 && rm -rf /var/lib/apt/lists/*
"""


def ensure_node_image() -> str:
    """The node image, built from a context made here (cached by content like the others)."""
    context = CACHE_DIR / "swarm-node-context"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(NODE_DOCKERFILE)
    return build_image(NODE_IMAGE, context, parent=ensure_systemd_image())


def hub_config() -> str:
    """The hub's extra config (tests/harness/hub.py) for the swarm: the swarm spawner on the
    manager's engine, the hub API on this machine's address on the swarm network."""
    return f"""
c.JupyterHub.spawner_class = "profilespawner.DockerSwarmProfileSpawner"
c.JupyterHub.hub_ip = {GATEWAY!r}
c.DockerSwarmProfileSpawner.client_kwargs = {{"base_url": "unix://{SOCKET}"}}
c.DockerSwarmProfileSpawner.network_name = {USERS_NETWORK!r}
c.DockerSwarmProfileSpawner.use_internal_ip = False
c.DockerSwarmProfileSpawner.cgroup_parent = ""
c.Spawner.poll_interval = 3
"""


def image_archive(image: str) -> Path:
    """`docker save` of the image, once per image id (every node loads the same file)."""
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True,
                              text=True, check=True).stdout.strip().split(":")[-1][:16]
    path = CACHE_DIR / "swarm-images" / f"{image_id}.tar"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        subprocess.run(["docker", "save", "-o", str(partial), image], check=True)
        partial.rename(path)
    return path


def load_archive(host: SystemdHost, archive: Path) -> None:
    with open(archive, "rb") as data:
        subprocess.run(["docker", "exec", "-i", host.name, "docker", "load"], stdin=data, check=True,
                       stdout=subprocess.DEVNULL)


def daemon_json() -> dict:
    """Each node's /etc/docker/daemon.json: what the swarm role writes, plus private pools."""
    return {
        "live-restore": False,
        "exec-opts": ["native.cgroupdriver=systemd"],
        "cgroup-parent": "jupyterhub-users.slice",
        "storage-driver": "overlay2",
        "bip": "10.209.0.1/24",
        "default-address-pools": [{"base": "10.210.0.0/16", "size": 24}],
    }


# node 1's dockerd also listens on the socket directory bound from this machine
SOCKET_DROPIN = """[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// -H unix:///srv/jbm-swarm-sock/docker.sock --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
"""


@dataclass
class SwarmNode:
    host: SystemdHost
    ip: str
    node_id: str = ""

    @property
    def name(self) -> str:
        return self.host.name

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        return self.host.exec("docker", *args, check=check, timeout=timeout).stdout.strip()

    def stop_engine(self) -> None:
        """Stop the node's dockerd (the node then goes down in the manager's view)."""
        self.host.exec("systemctl", "stop", "docker.service", "docker.socket", timeout=60)

    def start_engine(self) -> None:
        self.host.exec("systemctl", "start", "docker.service", timeout=60)


@dataclass
class Swarm:
    nodes: list[SwarmNode]
    users: dict[str, pwd.struct_passwd] = field(default_factory=dict)

    @property
    def manager(self) -> SwarmNode:
        return self.nodes[0]

    @property
    def docker_url(self) -> str:
        return f"unix://{SOCKET}"

    def node(self, node_id: str) -> SwarmNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def node_states(self) -> dict[str, str]:
        out = self.manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def wait_node_state(self, name: str, state: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node_states().get(name) == state:
                return
            time.sleep(1)
        raise RuntimeError(f"node {name} not {state} in {timeout:.0f}s: {self.node_states()}")

    def service_container(self, service: str, timeout: float = 30) -> tuple[SwarmNode, dict]:
        """(node, `docker inspect` of the service's running task container there)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                ids = node.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}",
                                  check=False).split()
                if ids:
                    return node, json.loads(node.docker("inspect", ids[0]))[0]
            time.sleep(1)
        raise RuntimeError(f"no running container of service {service} on any node")

    def remove_services(self, prefix: str = "jupyter-") -> None:
        names = self.manager.docker("service", "ls", "--format", "{{.Name}}", check=False).split()
        doomed = [n for n in names if n.startswith(prefix)]
        if doomed:
            self.manager.docker("service", "rm", *doomed, check=False)


def users_rules_env(swarm: "Swarm", hub_port: int | None, egress: bool = True) -> dict[str, str]:
    """What the docker role writes to a swarm node's /etc/default/jupyterhub-users-firewall:
    the hub admitted, every swarm host's address blocked but the hub API. The hub runs here
    (GATEWAY), not on the manager node as on a real swarm, so its address is blocked as the
    hub's node's is there."""
    blocked = [f"{METADATA}/32", f"{GATEWAY}/32"] + [f"{n.ip}/32" for n in swarm.nodes]
    return {"JBM_USERS_BRIDGE": USERS_BRIDGE, "JBM_USERS_EGRESS": str(egress).lower(),
            "JBM_USERS_BLOCKED": " ".join(blocked), "JBM_USERS_ADMIT": f"{GATEWAY}/32",
            "JBM_USERS_HUB_API": f"{GATEWAY}:{hub_port}" if hub_port else ""}


def users_rules(node: SwarmNode, action: str, env: dict[str, str]) -> None:
    """Run the role's rules script in the node (`apply` or `remove`) with these settings."""
    argv = ["docker", "exec", "-i"] + [a for k, v in env.items() for a in ("-e", f"{k}={v}")] + [node.name, "sh", "-s", action]
    done = subprocess.run(argv, input=RULES_SCRIPT.read_text(), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{node.name}: {RULES_SCRIPT.name} {action} failed: {done.stderr}")


def _users_network(swarm: "Swarm") -> None:
    """The config-only network on every node, the swarm network from it on the manager."""
    for node in swarm.nodes:
        node.docker("network", "create", "--config-only", "--subnet", USERS_SUBNET, "--gateway", USERS_GATEWAY,
                    "-o", f"com.docker.network.bridge.name={USERS_BRIDGE}",
                    "-o", "com.docker.network.bridge.enable_icc=false",
                    "-o", "com.docker.network.bridge.enable_ip_masquerade=true", USERS_CONFIG_ONLY)
    swarm.manager.docker("network", "create", "--driver", "bridge", "--scope", "swarm",
                         "--config-from", USERS_CONFIG_ONLY, USERS_NETWORK)


def _exec_ok(host: SystemdHost, *cmd: str, timeout: float = 60) -> str:
    done = host.exec(*cmd, check=False, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{host.name}: {' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _start_node(index: int, image: str) -> SwarmNode:
    name = f"{PREFIX}node{index}"
    ip = f"172.30.77.{index + 1}"
    host = SystemdHost(name)
    host.remove()
    args = run_args(name, docker_inside=True, image=image)
    extra = ["--network", NETWORK, "--ip", ip, "-v", f"{HOMES}:{HOMES}"]
    if index == 1:
        extra += ["-v", f"{SOCKET_DIR}:/srv/jbm-swarm-sock"]
    subprocess.run(args[:-1] + extra + args[-1:], check=True, capture_output=True)
    host.wait_booted()
    _exec_ok(host, "sh", "-c", f"cat > /etc/docker/daemon.json <<'EOF'\n{json.dumps(daemon_json(), indent=1)}\nEOF")
    if index == 1:
        _exec_ok(host, "sh", "-c", "mkdir -p /etc/systemd/system/docker.service.d && cat > "
                 "/etc/systemd/system/docker.service.d/jbm-socket.conf <<'EOF'\n" + SOCKET_DROPIN + "EOF")
        _exec_ok(host, "systemctl", "daemon-reload")
    _exec_ok(host, "systemctl", "restart", "docker.service", timeout=120)
    deadline = time.monotonic() + 60
    while host.exec("docker", "info", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: dockerd did not answer in 60s")
        time.sleep(0.5)
    return SwarmNode(host, ip)


def _add_users(node: SwarmNode, users: dict[str, pwd.struct_passwd]) -> None:
    for name, entry in users.items():
        node.host.exec("groupadd", "-g", str(entry.pw_gid), name, check=False)
        _exec_ok(node.host, "useradd", "-M", "-u", str(entry.pw_uid), "-g", str(entry.pw_gid),
                 "-d", str(HOMES / name), "-s", "/bin/bash", name)


def node_labels(cpus: str, mem: int, gpus: str) -> list[str]:
    """`docker node update` arguments of the capacity labels (the swarm role sets the same)."""
    return ["--label-add", f"{CAPACITY_CPUS}={cpus}", "--label-add", f"{CAPACITY_MEM}={mem}",
            "--label-add", f"{GPUS}={gpus}"]


def start_swarm(count: int, images: list[str], users: dict[str, pwd.struct_passwd],
                capacities: list[tuple[str, int, str]], hub_port: int | None = None) -> Swarm:
    """Start `count` nodes, form the swarm, label node i with capacities[i] (cpus, mem bytes,
    gpus), make the users' network and its rules (`hub_port`: the hub API's, which the rules let
    the containers reach whatever else they block), load the images and add the users on every
    node."""
    image = ensure_node_image()
    archives = [image_archive(img) for img in images]
    stop_swarm()
    HOMES.mkdir(parents=True, exist_ok=True)
    HOMES.chmod(0o755)
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["docker", "network", "create", "--driver", "bridge", "--subnet", SUBNET,
                    "--gateway", GATEWAY, NETWORK], check=True, capture_output=True)
    with ThreadPoolExecutor(count) as pool:
        nodes = list(pool.map(lambda i: _start_node(i, image), range(1, count + 1)))
    swarm = Swarm(nodes, dict(users))
    manager = swarm.manager
    manager.docker("swarm", "init", "--advertise-addr", manager.ip, "--default-addr-pool", ADDR_POOL)
    token = manager.docker("swarm", "join-token", "-q", "worker")
    for node in nodes[1:]:
        node.docker("swarm", "join", "--token", token, f"{manager.ip}:2377")
    for node in nodes:
        node.node_id = node.docker("info", "-f", "{{.Swarm.NodeID}}")
    for node, (cpus, mem, gpus) in zip(nodes, capacities, strict=True):
        manager.docker("node", "update", *node_labels(cpus, mem, gpus), node.node_id)
    _users_network(swarm)
    for node in nodes:
        users_rules(node, "apply", users_rules_env(swarm, hub_port))

    def prepare(node: SwarmNode) -> None:
        for archive in archives:
            load_archive(node.host, archive)
        _add_users(node, users)

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(prepare, nodes))
    for node in nodes:
        swarm.wait_node_state(node.name, "Ready")
    return swarm


def stop_swarm() -> None:
    """Remove this harness's node containers (with their engines' volumes) and network."""
    if keep_hosts():
        return
    names = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{PREFIX}node"],
                           capture_output=True, text=True).stdout.split()
    if names:
        subprocess.run(["docker", "rm", "-f", "-v", *names], capture_output=True)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
    SOCKET.unlink(missing_ok=True)
    if SOCKET_DIR.is_dir():
        SOCKET_DIR.rmdir()


def remove_homes() -> None:
    shutil.rmtree(HOMES, ignore_errors=True)



