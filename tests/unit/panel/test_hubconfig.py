"""What jupyterhub_config.py gets from the panel, and the panel's option checks."""
import os
import sys

import pytest

from hubmetrics import panel
from hubmetrics.panel.app import ResourcePanel


def test_service_definition_runs_the_panel_unprivileged_on_loopback():
    service = panel.service_definition("hubmetrics-panel", port=9999,
                                       snapshot_url="http://127.0.0.1:1/api/snapshot")
    assert service["name"] == "resources"
    assert service["url"] == "http://127.0.0.1:9999"
    assert service["command"][:3] == [sys.executable, "-m", "hubmetrics.panel"]
    assert "--snapshot-url=http://127.0.0.1:1/api/snapshot" in service["command"]
    assert service["user"] == "hubmetrics-panel"
    assert service["oauth_no_confirm"] is True
    assert "api_token" not in service


@pytest.mark.parametrize("kwargs, message", [
    (dict(user="root"), "unprivileged"),
    (dict(user=""), "system user name"),
    (dict(user="p", port=70000), "70000"),
    (dict(user="p", port="80"), "'80'"),
])
def test_service_definition_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        panel.service_definition(**kwargs)


def test_roles_grant_users_access_to_the_panel_and_keep_self():
    (role,) = panel.load_roles()
    assert role["name"] == "user"
    assert role["scopes"] == ["self", "access:services!service=resources"]


def test_hub_templates_dir_holds_the_overrides():
    assert sorted(f for f in os.listdir(panel.HUB_TEMPLATES_DIR) if f.endswith(".html")) == [
        "home.html", "page.html", "spawn.html"]


@pytest.mark.parametrize("argv, message", [
    (["--snapshot-url=127.0.0.1:9945/api/snapshot"], "snapshot_url '127.0.0.1:9945/api/snapshot'"),
    (["--sample-interval=0"], "sample_interval must be > 0"),
    (["--history-seconds=-5"], "history_seconds must be > 0"),
])
def test_panel_options_fail_with_the_bad_value(argv, message, capsys):
    app = ResourcePanel()
    with pytest.raises(SystemExit) as exit_:
        app.initialize(argv)
    assert exit_.value.code == 1
    assert message in capsys.readouterr().err


def test_panel_reads_the_hub_environment(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/jh/services/resources/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:4242")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/jh/")
    app = ResourcePanel()
    app.initialize(["--sample-interval=2", "--history-seconds=300"])
    assert app.service_prefix == "/jh/services/resources/"
    assert app.hub_prefix == "/jh/hub/"
    assert app.history_points() == 150


def test_service_reads_every_nodes_exporter_when_given_a_list():
    urls = ["http://127.0.0.1:9945/api/snapshot", "http://10.0.0.2:9945/api/snapshot"]
    command = panel.service_definition(user="hubmetrics-panel", snapshot_url=urls)["command"]
    assert [a for a in command if a.startswith("--snapshot")] == [f"--snapshot-urls={u}" for u in urls]
    app = ResourcePanel()
    app.initialize([a for a in command if a.startswith("--snapshot")])
    assert app.urls() == urls
