"""Fixtures of the test bed (tests/harness): a real Docker engine, images, users and hubs."""
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness import dockerd, images, users
from tests.harness.hub import Hub
from tests.harness.profiles import sample_profiles

LABEL_USER = "org.jupyterhub-baremetal.user"


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine that answers (started here when none does)."""
    dockerd.ensure_dockerd()


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    return images.ensure_base_image()


@pytest.fixture(scope="session")
def singleuser_image(docker_engine) -> str:
    return images.ensure_singleuser_image()


@pytest.fixture(scope="session")
def systemd_image(docker_engine) -> str:
    return images.ensure_systemd_image()


@pytest.fixture(scope="session")
def system_users():
    """Factory for real system users; removed (with their homes) at the end of the session."""
    made: list[str] = []

    def make(name: str, **kwargs):
        entry = users.ensure_user(name, **kwargs)
        made.append(name)
        return entry

    yield make
    for name in made:
        users.remove_user(name)


def remove_user_containers(names) -> None:
    for name in names:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_USER}={name}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


@pytest.fixture
def hub_factory(tmp_path, singleuser_image):
    """Start real hubs: `hub_factory(profiles=None, extra_config="", admin_users=())`.

    Stopped at teardown; containers of users the test spawned are removed.
    """
    hubs: list[Hub] = []

    def make(profiles: dict | None = None, **kwargs) -> Hub:
        workdir = tmp_path / f"hub{len(hubs)}"
        workdir.mkdir()
        profiles_file = workdir / "profiles.yaml"
        profiles_file.write_text(yaml.safe_dump(profiles or sample_profiles(singleuser_image)))
        hub = Hub(workdir=workdir, profiles_file=profiles_file, **kwargs)
        hubs.append(hub)
        return hub.start()

    yield make
    for hub in hubs:
        spawned = []
        try:
            spawned = [u["name"] for u in hub.api("GET", "/users").json()] if hub.process else []
        except Exception:  # noqa: BLE001  the hub may be down in a failure test; clean what we know
            pass
        hub.stop()
        remove_user_containers(spawned)


TIERS = ("unit", "integration", "system", "vm")


def pytest_configure(config):
    if os.geteuid() == 0:  # the caches of the tiers that need root; `pytest tests/unit` needs none
        Path("/var/cache/jbm").mkdir(parents=True, exist_ok=True)


def pytest_collection_modifyitems(items):
    """Every test carries its tier's marker (its directory under tests/): `-m unit`, `-m "not vm"`.
    The molecule scenarios' tests go last in the system tier: the scenarios run beside the tier's
    other tests (tests/system/conftest.py), and their tests wait for them. A module marked
    `last_in_directory` goes after the other modules of its directory (it changes what they share)."""
    for item in items:
        parts = Path(item.fspath).relative_to(Path(__file__).parent).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])
    _move_after([item for item in items if item.path.name == "test_molecule.py"], items,
                lambda item: item.get_closest_marker("system"))
    last = [item for item in items if item.get_closest_marker("last_in_directory")]
    if last:
        _move_after(last, items, lambda item, directory=last[0].path.parent: item.path.parent == directory)


def _move_after(picked: list, items: list, belongs) -> None:
    """Move the picked items (in their order) after the last other item that `belongs`."""
    if not picked:
        return
    ids = {id(item) for item in picked}
    rest = [item for item in items if id(item) not in ids]
    at = max((k for k, item in enumerate(rest) if belongs(item)), default=len(rest) - 1) + 1
    items[:] = rest[:at] + picked + rest[at:]


# ---------------------------------------------------------------- time per tier (CI prints it)
TIER_SECONDS: dict = {}
MODULE_SECONDS: dict = {}


def pytest_runtest_logreport(report):
    """Add each test's setup, call and teardown time to its tier (tests/<tier>/...) and module."""
    parts = report.nodeid.split("/")
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
    TIER_SECONDS[tier] = TIER_SECONDS.get(tier, 0.0) + report.duration
    module = report.nodeid.split("::")[0]
    MODULE_SECONDS[module] = MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if TIER_SECONDS:
        terminalreporter.write_line("time per tier: " + ", ".join(
            f"{tier} {seconds / 60:.1f} min" for tier, seconds in sorted(TIER_SECONDS.items())))
        slowest = sorted(MODULE_SECONDS.items(), key=lambda item: -item[1])[:20]
        terminalreporter.write_line("slowest modules: " + ", ".join(
            f"{module.removeprefix('tests/')} {seconds:.0f} s" for module, seconds in slowest))
