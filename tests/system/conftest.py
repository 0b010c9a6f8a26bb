"""Fixtures of the system tests: the sandbox functions (tests/harness/sandbox.py, which `make
sandbox` uses too: one source for starting a systemd host container and converging site.yml
into it) and the CPython tarball they need."""
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import molecule
from tests.harness import sandbox as sandbox_module
from tests.harness.hub import bridge_gateway


@pytest.fixture(scope="session")
def sandbox():
    """tests/harness/sandbox.py (start_host, converge, create_user, ...)."""
    return sandbox_module


@pytest.fixture(scope="session")
def python_source_url(sandbox, docker_engine):
    """The CPython tarball, served on the machine's docker bridge for the whole session."""
    tarball = sandbox.ensure_python_tarball()
    server, base_url = sandbox.serve_directory(tarball.parent, bridge_gateway())
    yield f"{base_url}/{tarball.name}"
    server.shutdown()


@pytest.fixture(scope="session", autouse=True)
def molecule_results(request, tmp_path_factory):
    """When test_molecule.py is among the collected tests: every role's molecule scenario, started
    with the tier's first test so the scenarios run beside the tier's other tests (their waits
    leave the machine idle at times: measured, the tier took about 9 min less on CI's scale);
    {role: future of (code, output, seconds)}. Else None."""
    roles = sorted({item.callspec.params["role"] for item in request.session.items
                    if item.path.name == "test_molecule.py" and hasattr(item, "callspec")})
    if not roles:
        yield None
        return
    url = request.getfixturevalue("python_source_url")
    request.getfixturevalue("systemd_image")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               JBM_PYTHON_SOURCE_URL=url)
    logs = tmp_path_factory.mktemp("molecule")
    with ThreadPoolExecutor(molecule.PARALLEL) as pool:
        futures = molecule.start_scenarios(roles, env, pool)
        yield futures
        for role, future in futures.items():
            code, output, seconds = future.result()
            (logs / f"{role}.log").write_text(output)
            print(f"molecule test {role}: exit {code} in {seconds:.0f}s (log {logs / role}.log)")
