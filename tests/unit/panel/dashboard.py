"""Reads the Grafana dashboard's PromQL the way Grafana would send it to Prometheus.

Shared by the unit checks (syntax, structure) and the integration test (each
expression returns data from a real Prometheus).
"""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "metrics" / "grafana" / "dashboards" / "jupyterhub-resources.json"
PROVISIONING = REPO / "metrics" / "grafana" / "provisioning"
PROMETHEUS_TEMPLATE = REPO / "metrics" / "prometheus" / "prometheus.yml.j2"

# What Grafana substitutes before querying: "All" users, and a rate window of
# at least four scrape intervals (the tests scrape every second).
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$user": ".*", "$node": ".*"}

# Expressions that only return data when a GPU (or the fake NVML library) is present.
GPU_METRICS = ("_gpu_",)


def load_dashboard():
    return json.loads(DASHBOARD.read_text())


def panels(dashboard=None):
    dashboard = dashboard or load_dashboard()
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def expressions(dashboard=None):
    """[(panel title, refId, expression as Grafana sends it)]."""
    found = []
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], target["refId"], expr))
    return found


def render_prometheus_config(**variables):
    """The installer's Prometheus config, rendered as the role would (Jinja2)."""
    import jinja2
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(PROMETHEUS_TEMPLATE.read_text()).render(**variables)
