"""The site converged once for the package's modules, which do not depend on their order:
- test_install.py: the converge, its re-run, the preflight, the python role, backups, Prometheus;
- test_users.py: real users through the proxy, their limits, privileges, homes and network,
  and the hub's and the engine's restarts;
- test_serve_modes.py: https, and proxy behind the nginx and Caddy examples; it restores the
  sandbox's local mode at its end, as every module that changes the serve mode must;
- test_swarm_conversion.py: the site turned into a swarm's manager with a node; it runs after
  the others (marker `last_in_directory`), the site staying a swarm.

A converge with extra variables leaves the site at those values until the next converge; the
modules' tests hold in the sandbox's own settings (tests/harness/sandbox.py) and in those.
"""
import pytest
import requests

from tests.harness.systemd_host import keep_hosts

from .support import HOST_NAME, PASSWORD, USER, login, wait_for


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def hub(site, sandbox):
    """A logged-in session of a real PAM user, through the proxy on port 8000."""
    host = site["host"]
    sandbox.load_singleuser_image(host)
    sandbox.create_user(host, USER, PASSWORD)
    base = sandbox.hub_url(host)
    wait_for(lambda: requests.get(base + "hub/api/", timeout=5).status_code == 200, 120,
             "the hub's API through the proxy")
    return {"base": base, "session": login(base), "host": host}
