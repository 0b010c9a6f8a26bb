"""The jupyterhub role's preflight (tasks/validate.yml) with jupyterhub_authenticator: ldap, run
for real by ansible-playbook on this machine (the validate tasks change nothing): a missing or
wrong LDAP setting stops the play, naming the field, its value and what is allowed."""

import sys

import pytest

from tests.harness.playbooks import run_playbook

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: jupyterhub, tasks_from: validate}
"""
GOOD = {"server_address": "127.0.0.1", "server_port": 3389, "tls_strategy": "insecure",
        "bind_dn_template": ["uid={username},ou=people,dc=jbm,dc=test"]}


@pytest.fixture(scope="module")
def preflight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ldap-preflight")
    (workdir / "play.yml").write_text(PLAYBOOK)
    (workdir / "inventory.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")

    def run(settings, **more):
        extra = {"jupyterhub_authenticator": "ldap", "jupyterhub_allow_all": True,
                 "jupyterhub_allowed_groups": [],
                 "jupyterhub_ldap_settings": settings, **more}
        return run_playbook(workdir, workdir / "inventory.ini", extra, workdir / "play.yml",
                            timeout=120)
    return run


def test_a_complete_ldap_configuration_passes(preflight):
    result = preflight(GOOD)
    assert result.returncode == 0, result.output[-3000:]
    after = result.output[result.output.index("Check the LDAP settings"):]
    assert after.splitlines()[1].startswith("ok: [localhost]"), after[:3000]


@pytest.mark.parametrize("settings, more, expected", [
    ({}, {}, ["jupyterhub_ldap_settings.server_address=\"(unset)\"", "bind_dn_template=[]",
              "lookup_dn: true"]),
    ({**GOOD, "bind_dn_template": ["uid=alice,dc=jbm,dc=test"]}, {}, ["entries without {username}"]),
    ({**GOOD, "tls_strategy": "starttls"}, {},
     ["tls_strategy=starttls must be one of before_bind, on_connect, insecure"]),
    ({"server_address": "ldap", "lookup_dn": True}, {},
     ["lookup_dn=true needs user_search_base (got \"(unset)\")"]),
    (GOOD, {"jupyterhub_allowed_groups": ["jupyterhub-users"]},
     ["jupyterhub_allowed_groups=[\"jupyterhub-users\"] must hold group DNs"]),
], ids=["empty", "template-without-username", "tls-strategy", "lookup-dn-incomplete",
        "unix-group-name"])
def test_a_missing_or_wrong_setting_stops_the_preflight(preflight, settings, more, expected):
    result = preflight(settings, **more)
    assert result.returncode != 0, result.output[-3000:]
    failure = result.output[result.output.index("Check the LDAP settings"):]
    for text in expected:
        assert text in failure, f"{text!r} not in:\n{failure[:3000]}"
