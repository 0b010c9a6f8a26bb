"""The prometheus role's scrape configuration, rendered for real by ansible-playbook from an
inventory (the metrics role's defaults loaded as in site.yml, the role's own template task, and
its `promtool check config` validation): one exporter target per node, labelled with the node."""
import json
import os
import subprocess
import sys

import yaml

from tests.harness.playbooks import ansible_bin
from tests.unit.panel.dashboard import REPO

PLAY = """
- hosts: jupyterhub
  connection: local
  gather_facts: false
  tasks:
    - name: The metrics role's defaults (its tasks skipped), as site.yml loads them
      ansible.builtin.import_role: {name: metrics}
      when: false
    - ansible.builtin.include_role: {name: prometheus, tasks_from: scrape_config}
    - ansible.builtin.meta: end_play   # no handler: nothing to restart here

- hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: The metrics role's defaults, as site.yml loads them on every node
      ansible.builtin.import_role: {name: metrics}
      when: false
    - name: Each node's exporter unit, from the role's template
      ansible.builtin.template:
        src: "{{ metrics_exporter_unit_source }}"
        dest: "{{ units_dir }}/{{ inventory_hostname }}.service"
        mode: "0644"
"""

ONE_SERVER = "[jupyterhub]\nhub.example.org\n"
SWARM = """[jupyterhub]
hub ansible_host=10.1.0.1
[jupyterhub_nodes]
node1 ansible_host=10.1.0.11
gpu1 ansible_host=10.1.0.12 metrics_node_name=gpu-node-1
"""


def render(tmp_path, inventory: str) -> dict:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "inventory.ini").write_text(inventory)
    token = tmp_path / "token"
    token.write_text("x")
    variables = {"prometheus_config_file": str(tmp_path / "prometheus.yml"), "prometheus_source_dir": str(REPO),
                 "metrics_source_dir": str(REPO), "prometheus_hub_token_file": str(token),
                 "ansible_python_interpreter": sys.executable, "units_dir": str(tmp_path)}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    run = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml"),
         "-e", f"@{tmp_path}/vars.json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    config["exec_start"] = {unit.stem: next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
                            for unit in tmp_path.glob("*.service")}
    return config


def exporter_job(config: dict) -> dict:
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert len(jobs["jupyterhub"]["static_configs"]) == 1   # the hub's own metrics: one target, as before
    return jobs["hubmetrics"]


def test_one_server_renders_exactly_one_target_as_before(tmp_path):
    config = render(tmp_path, ONE_SERVER)
    job = exporter_job(config)
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9945"], "labels": {"node": "hub.example.org"}}]
    assert config["exec_start"]["hub.example.org"].endswith(" --listen 127.0.0.1:9945 --node-name hub.example.org")
    assert job["honor_labels"] is True   # the exporter's own node label stays `node`


def test_a_swarm_renders_every_node_labelled_with_its_name(tmp_path):
    config = render(tmp_path, SWARM)
    job = exporter_job(config)
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9945"], "labels": {"node": "hub"}},      # the hub's own, on loopback
        {"targets": ["10.1.0.11:9945"], "labels": {"node": "node1"}},
        {"targets": ["10.1.0.12:9945"], "labels": {"node": "gpu-node-1"}},
    ]
    # and each node's exporter listens where that target points, under that name
    assert config["exec_start"]["hub"].endswith(" --listen 127.0.0.1:9945 --node-name hub")
    assert config["exec_start"]["node1"].endswith(" --listen 10.1.0.11:9945 --node-name node1")
    assert config["exec_start"]["gpu1"].endswith(" --listen 10.1.0.12:9945 --node-name gpu-node-1")
