"""The jupyterhub role's config starts the panel reading every node's exporter on a swarm (the
metrics role's metrics_snapshot_urls), and exactly as before on one server."""
import pytest

from tests.harness.jupyterhub_role import converge, rendered

SWARM_URLS = ["http://127.0.0.1:9945/api/snapshot", "http://10.1.0.11:9945/api/snapshot"]


@pytest.mark.parametrize("urls", [SWARM_URLS, SWARM_URLS[:1]], ids=["swarm", "one-server"])
def test_the_panel_service_reads_every_node(tmp_path, monkeypatch, urls):
    run = converge(tmp_path, jupyterhub_authenticator="pam", jupyterhub_allowed_groups=["jupyterhub-users"],
                   metrics_snapshot_urls=urls)
    assert run.returncode == 0, run.stdout[-3000:]
    (service,) = [s for s in rendered(tmp_path, monkeypatch).JupyterHub.services if s["name"] == "resources"]
    flags = [a for a in service["command"] if a.startswith("--snapshot")]
    assert flags == ([f"--snapshot-urls={u}" for u in urls] if len(urls) > 1 else [])
