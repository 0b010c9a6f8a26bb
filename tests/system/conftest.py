"""Fixtures of the system tests: the sandbox functions (tests/harness/sandbox.py, which `make
sandbox` uses too: one source for starting a systemd host container and converging site.yml
into it) and the CPython tarball they need."""
import pytest

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
