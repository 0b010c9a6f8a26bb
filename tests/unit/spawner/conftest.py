"""Shared values for the spawner's unit tests: sample profiles, and for the tests of the spawner's
shell (no Docker) a stand-in hub user and empty caches of loaded profiles."""
from types import SimpleNamespace

import pytest

from profilespawner.capacity import HostCapacity
from profilespawner.profiles import effective_profile, parse_profiles

G = 1024**3
M = 1024**2


def sample_data():
    return {
        "resource_profiles": {
            "Tiny": {"cpu_limit": 1, "mem_limit": "2G", "description": "1 CPU, 2 GiB"},
            "Small": {"cpu_limit": 2, "mem_limit": "4G"},
            "Extreme": {"cpu_limit": 36, "mem_limit": "80G"},
            "GPU1": {"cpu_limit": 1, "mem_limit": "2G", "gpus": 1},
        },
        "image_profiles": {
            "SingleUser": {"image": "local/singleuser:latest", "description": "JupyterLab"},
            "Other": {"image": "local/other:1"},
        },
        "user_profiles": {
            "default": {
                "allowed_resources": ["Tiny", "Small"],
                "allowed_images": ["SingleUser"],
                "host_homedir_format_string": "/home/{username}",
                "max_preallocate": {"cpu_guarantee": 0.5, "mem_guarantee": "1G"},
            },
            "@gpu-users": {"allowed_resources": ["Tiny", "GPU1"]},
            "alice": {"allowed_resources": ["Tiny", "Small", "Extreme"], "allowed_images": ["Other", "SingleUser"]},
        },
    }


@pytest.fixture
def profiles():
    return parse_profiles(sample_data())


@pytest.fixture
def host():
    return HostCapacity(cpus=2.0, mem_bytes=24 * G)


@pytest.fixture
def default_user(profiles):
    return effective_profile(profiles, "bob", [])


class HubUser:
    """What the spawner reads of a JupyterHub user: name, url, hub groups and auth_state."""

    def __init__(self, name, auth_state=None, groups=()):
        self.name, self.url = name, f"/user/{name}/"
        self.groups = [SimpleNamespace(name=g) for g in groups]
        self._auth_state = auth_state

    async def get_auth_state(self):
        return self._auth_state


@pytest.fixture
def fresh_caches(monkeypatch):
    """The profiles the spawner module has loaded, and the warnings it gave, empty for one test."""
    from profilespawner import check
    from profilespawner import spawner as spawner_module
    monkeypatch.setattr(check, "LOADED", {})
    monkeypatch.setattr(spawner_module, "LOADED", check.LOADED)
    monkeypatch.setattr(check, "WARNED", set())
    monkeypatch.setattr(spawner_module, "WARNED", check.WARNED)
