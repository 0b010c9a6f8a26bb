"""The jupyterhub role's LTI choice (jupyterhub_authenticator: lti11 / lti13): the preflight names a
missing required setting, and the rendered jupyterhub_config.py configures ltiauthenticator with
auth_state on (the spawner reads the launch's course from it)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.playbooks import ansible_bin

from tests.harness.jupyterhub_role import converge, rendered

ROLE = Path(__file__).resolve().parents[3] / "roles" / "jupyterhub"

LTI13_OK = {"issuer": "https://lms.example.org", "authorize_url": "https://lms.example.org/auth",
            "jwks_endpoint": "https://lms.example.org/jwks", "client_id": ["tool-1"]}
CASES = {
    "lti11-no-consumers": ("lti11", {}, "needs jupyterhub_lti11_settings.consumers: a mapping of consumer key"),
    "lti11-empty-secret": ("lti11", {"consumers": {"moodle": "", "canvas": "s3cret"}},
                           'got the keys ["canvas", "moodle"], an empty secret for ["moodle"] (secrets not shown)'),
    "lti11-not-a-mapping": ("lti11", {"consumers": ["moodle"]}, 'got ["moodle"]'),
    "lti11-ok": ("lti11", {"consumers": {"moodle": "s3cret"}}, "ok"),
    "lti13-missing": ("lti13", {"issuer": "https://lms.example.org", "authorize_url": "x"},
                      "missing or empty: jwks_endpoint, client_id"),
    "lti13-client-id-string": ("lti13", {**LTI13_OK, "client_id": "tool-1"}, "client_id \"tool-1\" is not a list"),
    "lti13-ok": ("lti13", LTI13_OK, "ok"),
}


def test_preflight_names_the_missing_lti_setting(tmp_path):
    """The role's own LTI checks (taken from tasks/validate.yml), one ansible-playbook run for all cases."""
    tasks = [t for t in yaml.safe_load((ROLE / "tasks" / "validate.yml").read_text())
             if t["name"].startswith("Check the LTI")]
    assert len(tasks) == 2
    (tmp_path / "lti_checks.yml").write_text(yaml.safe_dump(tasks))
    plays = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
              "vars_files": [str(ROLE / "defaults" / "main.yml")], "vars": {"results": {}}, "tasks": [
        *[{"name": name, "block": [
            {"ansible.builtin.include_tasks": str(tmp_path / "lti_checks.yml"),
             "vars": {"jupyterhub_authenticator": auth, f"jupyterhub_{auth}_settings": settings}},
            {"ansible.builtin.set_fact": {"results": "{{ results | combine({'%s': 'ok'}) }}" % name}}],
           "rescue": [{"ansible.builtin.set_fact": {
               "results": "{{ results | combine({'%s': ansible_failed_result.msg}) }}" % name}}]}
          for name, (auth, settings, _) in CASES.items()],
        {"ansible.builtin.copy": {"content": "{{ results | to_json }}", "dest": str(tmp_path / "out.json")}},
    ]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays))
    run = subprocess.run([ansible_bin("ansible-playbook"), "-i", "localhost,", "-e",
                          f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    results = json.loads((tmp_path / "out.json").read_text())
    for name, (_, _, expected) in CASES.items():
        assert expected in results[name], (name, results[name])
    assert "s3cret" not in json.dumps(results)


@pytest.mark.parametrize("auth, section, expected", [
    ("lti11", "LTI11Authenticator", {"consumers": {"moodle": "s"}, "username_key": "user_id"}),
    ("lti13", "LTI13Authenticator", {**LTI13_OK, "username_key": "sub"}),
])
def test_config_sets_the_lti_authenticator_with_auth_state(tmp_path, monkeypatch, auth, section, expected):
    given = {"lti11": {"consumers": {"moodle": "s"}}, "lti13": LTI13_OK}[auth]   # username_key: the role's default
    run = converge(tmp_path, jupyterhub_authenticator=auth, jupyterhub_allowed_groups=[], jupyterhub_allow_all=True,
                   **{f"jupyterhub_{auth}_settings": given})
    assert run.returncode == 0, run.stdout[-3000:]
    c = rendered(tmp_path, monkeypatch)
    assert c.JupyterHub.authenticator_class == f"ltiauthenticator.{auth}.auth.{section}"
    assert c.Authenticator.enable_auth_state is True
    assert {k: c[section][k] for k in expected} == expected
