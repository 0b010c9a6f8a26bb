"""The site's installation: the converge and its re-run, the services it leaves, the preflight
that stops bad inventory values, the python role, backups before a change, and the optional
Prometheus. Fixtures: conftest.py."""
import json

import pytest

from .support import HOST_NAME, USER, inspect_container, lab_reachable, serve_user, wait_for

pytestmark = pytest.mark.system


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


def test_a_changed_setting_backs_up_the_old_installation_first(site, sandbox, hub):
    host = hub["host"]
    serve_user(hub)
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
