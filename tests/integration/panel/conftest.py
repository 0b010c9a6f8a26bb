"""The panel's test bed: two real users burning CPU in real containers, the real exporter
(with the fake NVML library, so GPU series exist), a real hub running the panel service, and a
real Prometheus scraping the exporter and the hub. Shared by the tests in this folder.
"""
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.fakenvml import build as fakenvml
from tests.harness.hub import Hub, free_port
from tests.harness.profiles import sample_profiles
from tests.unit.panel.dashboard import render_prometheus_config

from tests.integration.panel.support import ADMIN, PANEL_USER, PASSWORD, PREFIX, USERS, wait_for


LABEL = "org.jupyterhub-baremetal."
BUSY_IMAGE = "local/debian:bookworm"
# A shell holding ~24 MB in a variable, then spinning: measurable memory and CPU.
BUSY_SCRIPT = "x=$(head -c 25000000 /dev/zero | tr '\\0' a); while :; do :; done"
EXPORTER = str(Path(sys.executable).with_name("hubmetrics-exporter"))
REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("JBM_CACHE_DIR", "/var/cache/jbm"))
JUPYTERHUB_PIN = "jupyterhub==6.1.1"  # as tests/requirements.txt


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def remove_spawned_servers():
    """Remove the servers the hub spawned for our users (the hub keeps them across stops)."""
    for user in [*USERS, ADMIN]:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}user={user}"],
                             capture_output=True, text=True).stdout.split()
        spawned = [i for i in ids if not docker("inspect", "-f", "{{.Name}}", i).startswith(f"/{PREFIX}-load-")]
        if spawned:
            subprocess.run(["docker", "rm", "-f", *spawned], capture_output=True)


@pytest.fixture(scope="package")
def pn_users(system_users):
    """Real login users (PAM passwords) and the panel's unprivileged service user."""
    for name in [*USERS, ADMIN]:
        system_users(name, password=PASSWORD)
    system_users(PANEL_USER)
    return list(USERS)


@pytest.fixture(scope="package")
def service_python(pn_users):
    """An interpreter the unprivileged panel user can run, with hubmetrics importable.

    On a server that is the hub venv's (/opt/jupyterhub/venv, world-readable), and so is the
    project's .venv made from Debian's python3. A dev venv whose interpreter lives under /root
    is not runnable by the service user, exactly as it would not be on a server; then the
    service gets a venv of its own from Debian's python3 with hubmetrics installed editable
    (so it runs this checkout), cached by the pyproject's content.
    """
    import hashlib
    probe = subprocess.run(["runuser", "-u", PANEL_USER, "--", sys.executable, "-c", "import hubmetrics.panel"],
                           capture_output=True, cwd="/")
    if probe.returncode == 0:
        return sys.executable
    key = hashlib.sha256((JUPYTERHUB_PIN + (REPO / "metrics" / "pyproject.toml").read_text()).encode())
    venv = CACHE / f"{PREFIX}-panel-venv-{key.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", JUPYTERHUB_PIN,
                        "-e", str(REPO / "metrics")], check=True)
        (venv / ".complete").touch()
    return str(python)


@pytest.fixture(scope="package")
def busy_containers(docker_engine, base_image, pn_users):
    """One labelled container per user, as the spawner would start it, burning CPU."""
    import pwd
    names = []
    for user, (cpu, mem, gpus) in USERS.items():
        entry = pwd.getpwnam(user)
        name = f"{PREFIX}-load-{user}"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        docker("run", "-d", "--name", name, "--user", f"{entry.pw_uid}:{entry.pw_gid}",
               "--cpus", cpu, "--memory", mem, "--memory-reservation", str(int(mem) // 4),
               "--label", f"{LABEL}user={user}", "--label", f"{LABEL}resource-profile=Tiny",
               "--label", f"{LABEL}image-profile=Debian", "--label", f"{LABEL}cpu-limit={cpu}",
               "--label", f"{LABEL}mem-limit={mem}", "--label", f"{LABEL}cpu-guarantee=0.1",
               "--label", f"{LABEL}mem-guarantee={int(mem) // 4}", "--label", f"{LABEL}gpus={gpus}",
               BUSY_IMAGE, "sh", "-c", BUSY_SCRIPT)
        names.append(name)
    yield {user: name for user, name in zip(USERS, names, strict=True)}
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


@pytest.fixture(scope="package")
def fake_gpus(tmp_path_factory, busy_containers):
    """The fake libnvidia-ml.so.1 with two GPUs, each running one user's container process."""
    work = tmp_path_factory.mktemp("fakenvml")
    lib = fakenvml.build(work / "lib")
    pids = {user: int(docker("inspect", "-f", "{{.State.Pid}}", c)) for user, c in busy_containers.items()}
    config = fakenvml.write_config(
        work / "nvml.conf",
        [fakenvml.FakeGpu(uuid="GPU-pntest-0", memory_used=3 << 30, utilization_percent=60),
         fakenvml.FakeGpu(uuid="GPU-pntest-1", memory_used=1 << 30, utilization_percent=25)],
        processes=[(0, pids[f"{PREFIX}-alice"], 3 << 30), (1, pids[f"{PREFIX}-bob"], 1 << 30)])
    return fakenvml.nvml_env(lib, config)


@pytest.fixture(scope="package")
def exporter(tmp_path_factory, fake_gpus):
    """The real hubmetrics-exporter on a loopback port, sampling every second."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("exporter") / "exporter.log", "wb")
    proc = subprocess.Popen([EXPORTER, "--listen", f"127.0.0.1:{port}", "--interval", "1"],
                            env=fake_gpus, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def both_users_seen():
        users = requests.get(f"{url}/api/snapshot", timeout=5).json()["users"]
        return all(users.get(u, {}).get("containers") for u in USERS)

    try:
        wait_for("the exporter to report both users' containers", both_users_seen)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="package")
def panel_hub(tmp_path_factory, singleuser_image, exporter, pn_users, service_python):
    """A real hub (PAM, profile spawner) running the resources panel as a managed service,
    with the hub templates and roles from hubmetrics.panel, and a token for Prometheus."""
    workdir = tmp_path_factory.mktemp("hub")
    profiles = workdir / "profiles.yaml"
    profiles.write_text(yaml.safe_dump(sample_profiles(singleuser_image)))
    panel_token = secrets.token_hex(32)
    metrics_token = secrets.token_hex(32)
    panel_port = free_port()
    extra = f"""
from hubmetrics import panel
service = panel.service_definition(user={PANEL_USER!r}, port={panel_port},
                                   snapshot_url={exporter + "/api/snapshot"!r}, sample_interval=1,
                                   python={service_python!r})
service["api_token"] = {panel_token!r}  # known to the test, to scan served pages for it
c.JupyterHub.services.append(service)
c.JupyterHub.services.append({{"name": "{PREFIX}-prometheus", "api_token": {metrics_token!r}}})
c.JupyterHub.load_roles.extend(panel.load_roles())
c.JupyterHub.load_roles.append({{"name": "metrics-reader", "scopes": ["read:metrics"],
                                 "services": ["{PREFIX}-prometheus"]}})
c.JupyterHub.template_paths = [panel.HUB_TEMPLATES_DIR]
"""
    hub = Hub(workdir=workdir, profiles_file=profiles, extra_config=extra, admin_users=(ADMIN,))
    hub.panel_token = panel_token
    hub.metrics_token = metrics_token
    hub.panel_url = f"{hub.url}/services/resources/"
    hub.start()
    try:
        wait_for("the panel service to answer through the proxy",
                 lambda: requests.get(hub.panel_url + "api/me", timeout=5).status_code == 403)
        yield hub
    finally:
        hub.stop()
        remove_spawned_servers()


@pytest.fixture(scope="package")
def prometheus(tmp_path_factory, exporter, panel_hub):
    """The Debian package's Prometheus with the project's scrape config (rendered from the
    template), scraping every second."""
    work = tmp_path_factory.mktemp("prometheus")
    token_file = work / "hub-token"
    token_file.write_text(panel_hub.metrics_token)
    token_file.chmod(0o600)
    config = work / "prometheus.yml"
    config.write_text(render_prometheus_config(
        prometheus_scrape_interval="1s",
        # one target labelled with the exporter's node (its default --node-name), as the role renders it
        hubmetrics_exporter_targets=[{"address": exporter.removeprefix("http://"), "node": socket.gethostname()}],
        jupyterhub_metrics_address=f"{panel_hub.hub_ip}:{panel_hub.hub_port}",
        jupyterhub_metrics_token_file=str(token_file)))
    port = free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def targets_up():
        active = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in active}
        return health if all(h == "up" for h, _ in health.values()) and len(health) == 2 else None

    try:
        wait_for("Prometheus to scrape the exporter and the hub", targets_up, timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
