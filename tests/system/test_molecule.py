"""Every role's molecule scenario (roles/<role>/molecule/default), run with `molecule test` as a
role's maintainer would: create, prepare, converge, idempotence (a second converge must change
nothing), verify, destroy.

The platforms are the project's own (tests/molecule/create.yml → tests/harness/molecule.py):
systemd host containers from the local image, with a dockerd inside where the role needs one,
and the Debian 12 VM for what this machine's kernel lacks (NFS, quota formats). The scenarios
run a few at a time, the longest first; each test reads its scenario's result.
"""
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if (path / "tasks" / "main.yml").exists())
# Scenarios at once: ansible mostly waits on its hosts, but a CPython build or an emulated VM
# takes the machine's two cores.
PARALLEL = 3
TIMEOUT = 2400
# The longest first (measured), so the short ones fill in beside them.
LONGEST_FIRST = ("python", "jupyterhub", "metrics", "swarm", "quotas", "nfs_server",
                 "nfs_client", "node", "hub", "docker", "prometheus", "firewall")
STEPS = ("converge", "idempotence", "verify")


def scenario(role: str) -> Path:
    return ROLES_DIR / role / "molecule" / "default" / "molecule.yml"


def run_scenario(role: str, env: dict) -> tuple[int, str, float]:
    """`molecule test` in the role's directory: exit code, output, seconds."""
    started = time.monotonic()
    try:
        proc = subprocess.run(["molecule", "test"], cwd=ROLES_DIR / role, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = -1, f"{expired.stdout or ''}{expired.stderr or ''}\n[killed after {TIMEOUT}s]"
        subprocess.run(["molecule", "destroy"], cwd=ROLES_DIR / role, env=env, capture_output=True,
                       timeout=300)
    return code, output, time.monotonic() - started


@pytest.fixture(scope="module")
def results(python_source_url, systemd_image, tmp_path_factory):
    """Every scenario started on a pool at once; {role: future of (code, output, seconds)}."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               JBM_PYTHON_SOURCE_URL=python_source_url)
    order = sorted((role for role in ROLES if scenario(role).exists()),
                   key=lambda role: LONGEST_FIRST.index(role) if role in LONGEST_FIRST else 99)
    logs = tmp_path_factory.mktemp("molecule")
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {role: pool.submit(run_scenario, role, env) for role in order}
        yield futures
        for role, future in futures.items():
            code, output, seconds = future.result()
            (logs / f"{role}.log").write_text(output)
            print(f"molecule test {role}: exit {code} in {seconds:.0f}s (log {logs / role}.log)")


def test_every_role_has_a_scenario_with_converge_idempotence_and_verify():
    for role in ROLES:
        assert scenario(role).exists(), f"roles/{role} has no molecule scenario"
        config = yaml.safe_load(scenario(role).read_text())
        sequence = config["scenario"]["test_sequence"]
        assert [step for step in sequence if step in STEPS] == list(STEPS), (role, sequence)
        assert sequence[0] == sequence[-1] == "destroy", (role, sequence)
        for step in ("converge", "verify"):
            assert (scenario(role).parent / f"{step}.yml").exists(), (role, step)
        has_prepare = (scenario(role).parent / "prepare.yml").exists()
        assert ("prepare" in sequence) == has_prepare, (role, sequence, has_prepare)


@pytest.mark.parametrize("role", ROLES)
def test_molecule_scenario(results, role):
    code, output, seconds = results[role].result(timeout=TIMEOUT + 600)
    tail = output[-8000:]
    assert code == 0, f"molecule test in roles/{role} failed (exit {code}, {seconds:.0f}s):\n{tail}"
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in output, f"roles/{role}: no successful {step}\n{tail}"
