"""The Grafana dashboard, its provisioning and the Prometheus config are well-formed.

(Whether each expression returns data is tested against a real Prometheus in
tests/integration/panel/test_dashboard_queries.py.)
"""
import re
import subprocess

import pytest
import yaml

from tests.unit.panel.dashboard import (
    GRAFANA_VARIABLES,
    PROVISIONING,
    expressions,
    load_dashboard,
    panels,
    render_prometheus_config,
)

PROMTOOL = "/usr/bin/promtool"


def test_every_panel_queries_the_provisioned_datasource_variable():
    dash = load_dashboard()
    assert dash["schemaVersion"] >= 36
    (ds_var,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    for panel in panels(dash):
        assert panel["datasource"]["uid"] == "${%s}" % ds_var["name"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_datasource_variable_defaults_to_the_provisioned_uid():
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = provisioned["datasources"]
    (ds_var,) = [v for v in load_dashboard()["templating"]["list"] if v["type"] == "datasource"]
    assert source["type"] == ds_var["query"] == "prometheus"
    assert ds_var["current"]["value"] == source["uid"]


def test_dashboard_provider_is_a_file_provider():
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "jupyterhub-baremetal.yaml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")


def test_panel_ids_unique_and_layout_inside_the_grid():
    dash = load_dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    for p in panels(dash):
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]


def test_only_known_grafana_variables_are_used():
    for title, ref, expr in expressions():
        leftover = re.findall(r"\$\w+", expr)
        assert not leftover, f"{title}/{ref}: unknown variable {leftover}; known: {list(GRAFANA_VARIABLES)}"


def test_every_expression_parses_with_promtool(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{i}", "expr": expr} for i, (_, _, expr) in enumerate(expressions())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_config_renders_and_passes_promtool(tmp_path):
    token = tmp_path / "token"
    token.write_text("x")
    text = render_prometheus_config(jupyterhub_metrics_token_file=str(token),
                                    jupyterhub_base_url="/jh/", prometheus_scrape_interval="5s")
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["hubmetrics"]["static_configs"][0]["targets"] == ["127.0.0.1:9945"]
    assert jobs["jupyterhub"]["metrics_path"] == "/jh/hub/metrics"
    assert jobs["jupyterhub"]["authorization"]["credentials_file"] == str(token)
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    check = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("job", ["hubmetrics", "jupyterhub"])
def test_dashboard_job_names_match_the_scrape_config(job):
    config = yaml.safe_load(render_prometheus_config())
    assert job in {j["job_name"] for j in config["scrape_configs"]}
    assert any('job=~"' in e and job in e or f'job="{job}"' in e for _, _, e in expressions())


def test_panels_per_node_and_a_node_variable():
    dash = load_dashboard()
    (node_var,) = [v for v in dash["templating"]["list"] if v["name"] == "node"]
    assert node_var["includeAll"] and node_var["multi"] and "node" in node_var["definition"]
    titles = {p["title"] for p in panels(dash)}
    for wanted in ("CPU per node", "Memory per node", "GPU memory per node", "CPU per user on a node",
                   "Memory per user on a node", "GPU memory per user on a node"):
        assert wanted in titles, wanted
    # every per-user, per-container and per-node series is narrowed to the chosen nodes
    raw = [(p["title"], t["expr"]) for p in panels(dash) for t in p["targets"]]
    for title, expr in raw:
        for selector in re.findall(r"\b(jupyterhub_(?:user|container|node|gpu|host)_\w+)(\{[^}]*\})?", expr):
            assert 'node=~"$node"' in selector[1], f"{title}: {selector[0]} is not narrowed to $node"
