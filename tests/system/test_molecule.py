"""Every role's molecule scenario (roles/<role>/molecule/default), run with `molecule test` as a
role's maintainer would: create, prepare, converge, idempotence (a second converge must change
nothing), verify, destroy.

The platforms are the project's own (tests/molecule/create.yml → tests/harness/molecule.py):
systemd host containers from the local image, with a dockerd inside where the role needs one,
and the Debian 12 VM for what this machine's kernel lacks (NFS, quota formats). The scenarios
run a few at a time, the longest first, beside the tier's other tests (tests/system/conftest.py
starts them with the tier's first test); each test reads its scenario's result.
"""
import pytest
import yaml

from tests.harness.molecule import ROLES_DIR, TIMEOUT, scenario

pytestmark = pytest.mark.system

ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if (path / "tasks" / "main.yml").exists())
STEPS = ("converge", "idempotence", "verify")


@pytest.fixture(scope="module")
def results(molecule_results):
    """{role: future of (code, output, seconds)}: started with the system tier (its conftest)."""
    assert molecule_results is not None, "tests/system/conftest.py started no scenario"
    return molecule_results


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
