"""The linters CI runs (as `make lint` does): ruff with the one configuration (ruff.toml), and
ansible-lint's production profile over the playbook and every role."""
import os
import subprocess

from tests.harness.playbooks import ANSIBLE_CFG, REPO, ansible_bin


def test_ansible_lint_production_profile_is_clean():
    result = subprocess.run([ansible_bin("ansible-lint"), "--nocolor", "--profile", "production",
                             "ansible/site.yml", "roles"],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_CFG)})
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]


def test_ruff_with_the_repositorys_configuration_is_clean():
    result = subprocess.run([ansible_bin("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
