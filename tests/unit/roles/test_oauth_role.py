"""The jupyterhub role with jupyterhub_authenticator: oauth, run for real by ansible-playbook on
localhost (nothing is changed: only the preflight and the config template into a temporary
directory): a missing required setting stops the preflight naming it; good settings render a
jupyterhub_config.py that configures GenericOAuthenticator, accounts at first login and
shutdown_on_logout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from tests.harness.playbooks import ansible_bin

REPO = Path(__file__).resolve().parents[3]
GOOD = {"client_id": "hub", "client_secret": "s3cret", "oauth_callback_url": "https://hub.example.org/hub/oauth_callback",
        "authorize_url": "https://sso.example.org/auth", "token_url": "https://sso.example.org/token",
        "userdata_url": "https://sso.example.org/userinfo", "username_claim": "preferred_username",
        "manage_groups": True, "auth_state_groups_key": "oauth_user.groups"}
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
    (tmp_path / "play.yml").write_text(PLAY)
    profiles = yaml.safe_load((REPO / "roles/jupyterhub/defaults/main.yml").read_text())["jupyterhub_profiles"]
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    extra = {"jupyterhub_config_dir": str(tmp_path), "jupyterhub_source_dir": str(REPO),
             "docker_users_network_gateway": "10.250.0.1", "docker_users_network": "jupyterhub-users",
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


@pytest.mark.parametrize("drop,named", [
    ("client_secret", "jupyterhub_oauth_settings.client_secret is missing or empty"),
    ("oauth_callback_url", "jupyterhub_oauth_settings.oauth_callback_url is missing or empty"),
    ("token_url", "jupyterhub_oauth_settings.token_url is missing or empty"),
    ("userdata_url", "userdata_url is missing or empty (or set userdata_from_id_token: true)"),
])
def test_preflight_names_a_missing_required_setting(tmp_path, drop, named):
    settings = {k: v for k, v in GOOD.items() if k != drop}
    message = failure(converge(tmp_path, jupyterhub_oauth_settings=settings))
    assert named in message and "required: client_id, client_secret, oauth_callback_url" in message


def test_preflight_names_a_bad_url_and_groups_without_manage_groups(tmp_path):
    settings = {**GOOD, "token_url": "sso.example.org/token", "manage_groups": False}
    message = failure(converge(tmp_path, jupyterhub_oauth_settings=settings))
    assert 'jupyterhub_oauth_settings.token_url="sso.example.org/token" must be an http(s):// URL' in message
    assert 'jupyterhub_allowed_groups=["jupyter"]' in message and "needs jupyterhub_oauth_settings.manage_groups: true" in message


@pytest.mark.parametrize("variables,named", [
    ({"jupyterhub_authenticator": "pam", "jupyterhub_create_system_users": True}, "false with pam"),
    ({"jupyterhub_account_uid_min": 500}, "1000 <= jupyterhub_account_uid_min <= jupyterhub_account_uid_max"),
    ({"jupyterhub_account_uid_min": 30000, "jupyterhub_account_uid_max": 20000}, "jupyterhub_account_uid_max=20000"),
])
def test_preflight_refuses_bad_account_settings(tmp_path, variables, named):
    message = failure(converge(tmp_path, jupyterhub_oauth_settings=GOOD, **variables))
    assert named in message


def test_good_settings_render_the_oidc_config(tmp_path, monkeypatch):
    run = converge(tmp_path, jupyterhub_oauth_settings=GOOD, jupyterhub_create_system_users=True,
                   jupyterhub_account_uid_min=40000, jupyterhub_account_uid_max=40999,
                   jupyterhub_shutdown_on_logout=True)
    assert run.returncode == 0, run.stdout[-3000:]
    c = Config()
    monkeypatch.setenv("JUPYTERHUB_PROMETHEUS_TOKEN", "unused")
    exec((tmp_path / "jupyterhub_config.py").read_text(), {"get_config": lambda: c})
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert {k: c.GenericOAuthenticator[k] for k in GOOD} == GOOD
    assert c.Authenticator.allowed_groups == {"jupyter"}
    assert c.JupyterHub.shutdown_on_logout is True
    spawner = c.DockerSystemProfileSpawner
    assert (spawner.create_system_users, spawner.account_uid_min, spawner.account_uid_max) == (True, 40000, 40999)
    assert spawner.home_mode == 0o700


def test_defaults_keep_pam_without_accounts_or_shutdown(tmp_path, monkeypatch):
    run = converge(tmp_path, jupyterhub_authenticator="pam", jupyterhub_allowed_groups=["jupyterhub-users"])
    assert run.returncode == 0, run.stdout[-3000:]
    c = Config()
    monkeypatch.setenv("JUPYTERHUB_PROMETHEUS_TOKEN", "unused")
    exec((tmp_path / "jupyterhub_config.py").read_text(), {"get_config": lambda: c})
    assert c.JupyterHub.authenticator_class == "pam"
    assert c.JupyterHub.shutdown_on_logout is False
    assert c.DockerSystemProfileSpawner.create_system_users is False
