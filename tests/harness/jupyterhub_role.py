"""The jupyterhub role's preflight and config template, run for real by ansible-playbook on
localhost (nothing on the machine changes: the config lands in a temporary directory), for the
tests of the authenticators' settings (tests/unit/roles, tests/integration/test_ldap_login.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from traitlets.config import Config

from .playbooks import ansible_bin

REPO = Path(__file__).resolve().parents[2]
PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: jupyterhub, tasks_from: validate, public: true}
    - ansible.builtin.template:
        src: "{{ jupyterhub_source_dir }}/roles/jupyterhub/templates/jupyterhub_config.py.j2"
        dest: "{{ jupyterhub_config_dir }}/jupyterhub_config.py"
        mode: "0644"
"""


def converge(tmp_path, **variables):
    """The preflight, then the config template, with these inventory variables (OAuth unless
    jupyterhub_authenticator says otherwise)."""
    (tmp_path / "play.yml").write_text(PLAY)
    profiles = variables.get("jupyterhub_profiles") or \
        yaml.safe_load((REPO / "roles/jupyterhub/defaults/main.yml").read_text())["jupyterhub_profiles"]
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    extra = {"jupyterhub_config_dir": str(tmp_path), "jupyterhub_source_dir": str(REPO),
             "docker_users_network_gateway": "10.250.0.1", "docker_users_network": "jupyterhub-users",
             "docker_users_network_subnet": "10.250.0.0/16",
             "ansible_python_interpreter": sys.executable, "jupyterhub_authenticator": "oauth",
             "jupyterhub_allowed_groups": ["jupyter"], **variables}
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    return subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path}/vars.json"],
        cwd=REPO / "ansible", capture_output=True, text=True, timeout=120,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"})


def failure(run):
    assert run.returncode != 0, run.stdout[-3000:]
    return " ".join(run.stdout[run.stdout.find("fatal:"):].split()).replace("''", "'")


def rendered(tmp_path, monkeypatch) -> Config:
    """The traitlets Config that the rendered jupyterhub_config.py builds."""
    c = Config()
    monkeypatch.setenv("JUPYTERHUB_PROMETHEUS_TOKEN", "unused")
    exec((tmp_path / "jupyterhub_config.py").read_text(), {"get_config": lambda: c})  # noqa: S102
    return c
