"""The thin shell's wiring, without Docker: traitlets, entry point, config merging."""
import asyncio
from importlib.metadata import entry_points

import pytest

from profilespawner.spawner import DockerSystemProfileSpawner, _merged

OPTIONS = ["profiles_file", "gpu_devices", "gpu_sharing", "guarantee_cpu_capacity", "guarantee_mem_capacity",
           "pids_limit", "cgroup_parent", "home_mode", "scope_labels", "remove"]


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_is_configurable_with_help(name):
    trait = DockerSystemProfileSpawner.class_traits()[name]
    assert trait.metadata.get("config") is True
    assert len(trait.help) > 20


def test_defaults():
    traits = DockerSystemProfileSpawner.class_traits()
    assert traits["remove"].default() is True
    assert traits["home_mode"].default() == 0o700
    assert traits["pids_limit"].default() == 1024
    assert traits["gpu_sharing"].default() == "exclusive"
    assert traits["profiles_file"].default() == "/etc/jupyterhub/profiles.yaml"


def test_entry_point():
    (ep,) = [e for e in entry_points(group="jupyterhub.spawners") if e.name == "profile-docker"]
    assert ep.load() is DockerSystemProfileSpawner


def test_merged_dict_ours_win_and_base_untouched():
    base = {"labels": {"site": "x", "org.jupyterhub-baremetal.user": "forged"}, "dns": ["1.1.1.1"]}
    out = _merged(base, {"labels": {"org.jupyterhub-baremetal.user": "alice"}, "working_dir": "/home/alice"})
    assert out == {"labels": {"site": "x", "org.jupyterhub-baremetal.user": "alice"}, "dns": ["1.1.1.1"],
                   "working_dir": "/home/alice"}
    assert base["labels"]["org.jupyterhub-baremetal.user"] == "forged"


def test_merged_callable_base():
    async def base(spawner):
        return {"cpu_quota": 1, "dns": ["x"]}

    out = _merged(base, {"cpu_quota": 50_000})
    assert asyncio.run(out(None)) == {"cpu_quota": 50_000, "dns": ["x"]}


def test_bad_guarantee_mem_capacity_refused_at_config():
    from traitlets.config import Config

    class Probe(DockerSystemProfileSpawner):
        def __init__(self, **kw):  # only the traitlets, no user/profiles needed
            super(DockerSystemProfileSpawner, self).__init__(**kw)

    with pytest.raises(Exception) as err:
        Probe(config=Config({"DockerSystemProfileSpawner": {"guarantee_mem_capacity": "20X"}}))
    assert "guarantee_mem_capacity" in str(err.value) and "'20X'" in str(err.value)


def test_merged_callable_base_keeps_its_labels():
    def base(spawner):
        return {"labels": {"site": "x"}}

    out = _merged(base, {"labels": {"org.jupyterhub-baremetal.user": "alice"}})
    assert asyncio.run(out(None)) == {"labels": {"site": "x", "org.jupyterhub-baremetal.user": "alice"}}
