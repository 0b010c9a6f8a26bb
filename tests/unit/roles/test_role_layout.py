"""Every role stands alone, Galaxy style: argument_specs that document each default, no path
taken from where the playbook happens to be, and one apt-cache step shared by the roles that
install packages."""
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def _yaml(path):
    return yaml.safe_load(path.read_text()) or {}


def _role_files(role):
    return [p for p in role.rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml", ".j2")]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_document_every_default(role):
    specs = role / "meta" / "argument_specs.yml"
    assert specs.exists(), f"{role.name}: no meta/argument_specs.yml"
    options = _yaml(specs)["argument_specs"]["main"]["options"]
    defaults = _yaml(role / "defaults" / "main.yml") if (role / "defaults" / "main.yml").exists() else {}
    missing = sorted(set(defaults) - set(options))
    assert not missing, f"{role.name}: defaults without an argument spec: {missing}"
    undocumented = sorted(k for k, v in options.items() if not v.get("description"))
    assert not undocumented, f"{role.name}: argument specs without a description: {undocumented}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_no_role_reads_the_playbook_directory(role):
    hits = [f"{p.relative_to(REPO)}:{n}" for p in _role_files(role)
            for n, line in enumerate(p.read_text().splitlines(), 1) if "playbook_dir" in line]
    assert not hits, f"{role.name} depends on where the playbook is: {hits}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_apt_installs_rely_on_the_one_apt_cache_step(role):
    tasks = [p for p in (role / "tasks").glob("*.yml")]
    installs = any("ansible.builtin.apt:" in p.read_text() for p in tasks)
    if role.name == "apt_cache" or not installs:
        return
    deps = _yaml(role / "meta" / "main.yml").get("dependencies") or []
    names = [d["role"] if isinstance(d, dict) else d for d in deps]
    assert "apt_cache" in names, f"{role.name} installs packages but does not depend on apt_cache"
    own_refresh = [p.name for p in tasks if re.search(r"/var/lib/apt/lists", p.read_text())]
    assert not own_refresh, f"{role.name} refreshes the apt cache itself in {own_refresh}"


def test_units_are_rendered_from_the_role_variables():
    """The unit files name no path or port that a role variable sets: they are templates."""
    hub = (REPO / "systemd" / "jupyterhub.service").read_text()
    exporter = (REPO / "systemd" / "hubmetrics-exporter.service").read_text()
    body = lambda text: "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # noqa: E731
    for literal in ("/opt/jupyterhub", "/etc/jupyterhub", "/var/lib/jupyterhub"):
        assert literal not in body(hub), f"jupyterhub.service hard-codes {literal}"
    assert "/opt/jupyterhub" not in body(exporter) and "9945" not in body(exporter)
    for var in ("jupyterhub_venv", "jupyterhub_config_dir", "jupyterhub_state_dir"):
        assert "{{ " + var + " }}" in hub
    for var in ("metrics_venv", "metrics_exporter_url"):
        assert var in exporter


def test_one_pin_file_serves_the_hub_venv_and_the_tests():
    """tests/requirements.txt includes the hub role's pin file and pins none of its packages again."""
    hub_pins = REPO / "roles" / "hub" / "files" / "requirements.txt"
    names = lambda text: {re.split(r"[=<>!~ ]", line, maxsplit=1)[0].lower()  # noqa: E731
                          for line in text.splitlines() if line.strip() and not line.startswith(("#", "-"))}
    tests = (REPO / "tests" / "requirements.txt").read_text()
    assert "-r ../roles/hub/files/requirements.txt" in tests.splitlines()
    assert names(hub_pins.read_text()) >= {"jupyterhub", "dockerspawner", "jupyterhub-idle-culler"}
    assert not names(hub_pins.read_text()) & names(tests), "a hub pin is repeated in tests/requirements.txt"
    assert "hub_requirements_file" in (REPO / "roles" / "hub" / "vars" / "main.yml").read_text()


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_spec_descriptions_hold_no_jinja(role):
    """Ansible templates the whole argument_spec before validating: an example like
    "{{ vault_x }}" in a description makes the role fail on every host that lacks vault_x."""
    text = (role / "meta" / "argument_specs.yml").read_text()
    assert "{{" not in text and "{%" not in text, f"{role.name}: Jinja in meta/argument_specs.yml"
