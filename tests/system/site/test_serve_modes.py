"""The serve modes, each a re-converge of the same host: https with the operator's certificate,
and proxy behind the role's own nginx and Caddy examples on a reverse-proxy machine. The module
ends back in the sandbox's local mode (its last test checks that restore; the autouse fixture
restores it when the module is cut short). Fixtures: conftest.py."""
import json
import subprocess

import pytest
import requests
import yaml

from tests.harness.images import REVERSE_PROXY_IMAGE, ensure_reverse_proxy_image
from tests.harness.systemd_host import SystemdHost, keep_hosts

from .support import (EXAMPLES_DIR, GRAFANA, HOST_NAME, PROXY_NAME, PUBLIC_RULE, ROOT, TLS_DIR, USER,
                      USERS_PUBLIC_DENIAL, check_user_through, lab_reachable, listening_ports, public_rules,
                      put_file, self_signed_certificate, wait_for)

pytestmark = pytest.mark.system


@pytest.fixture(scope="module", autouse=True)
def serve_mode(site, sandbox):
    """The module's mode: `changed` once a fixture re-converged the site into another one; then
    the sandbox's local mode is restored at the module's end."""
    state = {"changed": False}
    yield state
    if state["changed"]:
        result = sandbox.converge(HOST_NAME, site["url"])
        assert result.returncode == 0, result.output[-6000:]


@pytest.fixture(scope="module")
def https_mode(site, sandbox, hub, serve_mode, tmp_path_factory):
    """The site re-converged twice in https mode, with a self-signed certificate for the host's
    address that the operator put at the default paths before the play. The same two runs
    drop the Grafana files (one converge and one re-run fewer for the module)."""
    host = hub["host"]
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("https"), host.ip)
    put_file(host, f"{TLS_DIR}/fullchain.pem", cert.read_text())
    put_file(host, f"{TLS_DIR}/privkey.pem", key.read_text(), mode="0600")
    variables = {"jupyterhub_serve_mode": "https", **GRAFANA}
    serve_mode["changed"] = True
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
def proxy_mode(site, sandbox, hub, serve_mode, reverse_proxy, tmp_path_factory):
    """The site re-converged in proxy mode: the reverse proxy's address is the public name and
    the only source let in. Gives the examples the role rendered, fetched out of the host, and
    a certificate for the reverse proxy (at the path the nginx example names, as certbot would)."""
    ip = reverse_proxy.ip
    serve_mode["changed"] = True
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


def test_back_to_local_mode_restores_the_sandbox_site(site, sandbox, hub, serve_mode):
    host = hub["host"]
    result = sandbox.converge(HOST_NAME, site["url"])
    assert result.returncode == 0, result.output[-6000:]
    serve_mode["changed"] = False
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
