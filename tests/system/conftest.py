"""Fixtures of the system tests: the sandbox script's functions (one source for starting a
systemd host container and converging site.yml into it) and the CPython tarball they need."""
import importlib.util
from pathlib import Path

import pytest

from tests.harness.hub import bridge_gateway

ROOT = Path(__file__).resolve().parents[2]


def _load_sandbox():
    spec = importlib.util.spec_from_file_location(
        "jbm_sandbox", ROOT / "ansible" / "sandbox" / "sandbox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sandbox():
    """ansible/sandbox/sandbox.py as a module (start_host, converge, create_user, ...)."""
    return _load_sandbox()


@pytest.fixture(scope="session")
def python_source_url(sandbox, docker_engine):
    """The CPython tarball, served on the machine's docker bridge for the whole session."""
    tarball = sandbox.ensure_python_tarball()
    server, base_url = sandbox.serve_directory(tarball.parent, bridge_gateway())
    yield f"{base_url}/{tarball.name}"
    server.shutdown()
