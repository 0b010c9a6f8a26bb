"""site.yml converged for real into a systemd host container with Docker inside.

One converge (CPython built without PGO) and one re-run; then a real user logs in with a PAM
password through configurable-http-proxy, spawns a real container inside the host and keeps
it across `systemctl restart jupyterhub`. Bad inventory values must stop the play in its
preflight, before the server is touched.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
HOST_NAME = "jbm-h5-site"
USER, PASSWORD = "alice", "alice-Pa55word"   # no "-": dockerspawner escapes it in names
CONTAINER = f"jupyter-{USER}"
SLICE = "jupyterhub-users.slice"
TINY_MEM = 512 * 1024**2      # the sandbox inventory's Tiny profile: 0.5 CPU, 512M
TINY_CFS_QUOTA_US = 50_000    # 0.5 CPU at the default 100 ms period


@pytest.fixture(scope="module")
def site(sandbox, python_source_url):
    """The converged host and the results of both runs (first, then the re-run)."""
    host = sandbox.start_host(HOST_NAME)
    first = sandbox.converge(HOST_NAME, python_source_url)
    assert first.returncode == 0, first.output[-6000:]
    secrets_before = host.exec("cat", "/etc/jupyterhub/secrets.env").stdout
    second = sandbox.converge(HOST_NAME, python_source_url)
    yield {"host": host, "first": first, "second": second, "url": python_source_url,
           "secrets_before": secrets_before}
    if os.environ.get("JBM_KEEP_HOSTS", "") in ("", "0"):
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
    session = requests.Session()
    session.get(base + "hub/login", timeout=10).raise_for_status()
    reply = session.post(base + "hub/login", timeout=30, allow_redirects=False,
                         data={"username": USER, "password": PASSWORD, "_xsrf": xsrf(session)})
    assert reply.status_code == 302, f"login failed ({reply.status_code}): {reply.text[:500]}"
    return {"base": base, "session": session, "host": host}


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


def lab_reachable(hub) -> bool:
    """JupyterLab of the user answers through the proxy (OAuth with the hub included)."""
    reply = hub["session"].get(hub["base"] + f"user/{USER}/lab", timeout=20)
    return reply.status_code == 200 and f"/user/{USER}/lab" in reply.url and "JupyterLab" in reply.text


def inner_docker(host, *args, check=True):
    return host.exec("docker", *args, check=check)


def inspect_container(host) -> dict:
    return json.loads(inner_docker(host, "inspect", CONTAINER).stdout)[0]


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
    reply = session.post(base + "hub/spawn", timeout=60, data={
        "resource_profile": "Tiny", "image_profile": "SingleUser", "_xsrf": xsrf(session)})
    assert reply.status_code == 200, reply.text[:1000]
    wait_for(lambda: lab_reachable(hub), 240, f"{USER}'s JupyterLab through the proxy")

    info = inspect_container(host)
    assert info["State"]["Running"]
    assert info["HostConfig"]["Memory"] == TINY_MEM
    assert info["HostConfig"]["CgroupParent"] == SLICE
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


def test_restarting_the_hub_keeps_the_users_container(hub):
    host = hub["host"]
    before = inspect_container(host)
    host.exec("systemctl", "restart", "jupyterhub")
    wait_for(lambda: requests.get(hub["base"] + "hub/api/", timeout=5).status_code == 200, 120,
             "the hub after its restart")
    after = inspect_container(host)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    wait_for(lambda: lab_reachable(hub), 120, f"{USER}'s JupyterLab after the hub restart")


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
    wait_for(lambda: lab_reachable(hub), 120, f"{USER}'s JupyterLab after the reconfiguration")


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


# --- lint ------------------------------------------------------------------------------------------

def test_ansible_lint_production_profile_is_clean(sandbox):
    lint = Path(sandbox.ansible_playbook()).with_name("ansible-lint")
    result = subprocess.run([str(lint) if lint.exists() else "ansible-lint", "--nocolor",
                             "--profile", "production", "ansible/site.yml", "roles"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible/ansible.cfg")})
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
