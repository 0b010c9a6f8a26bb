"""dockerspawner's contract: settings the profiles own, extra_host_config merging, auth_state ids,
inline profiles, and start()'s guarantees (attributes, no server, no leaked container)."""
import asyncio
import json
import os
import pwd

import pytest
from traitlets.config import Config

from dockerspawner import SystemUserSpawner
from profilespawner import check
from profilespawner.check import profiles_from
from profilespawner.contract import (ConfigRefused, auth_state_ids_problem, merge_host_config,
                                     owned_setting_warnings)
from profilespawner.profiles import ProfilesError
from profilespawner.spawner import DockerSystemProfileSpawner

from .conftest import G, HubUser, sample_data

OURS = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "read_only": True, "pids_limit": 1024,
        "mem_limit": 2 * G, "tmpfs": {"/tmp": "size=1"}}


def test_owned_settings_are_named_with_their_value():
    c = Config()
    c.DockerSpawner.image = "site/image:1"
    c.Spawner.mem_limit = "8G"
    c.SystemUserSpawner.host_homedir_format_string = "/data/{username}"
    c.DockerSpawner.extra_host_config = {"cpu_quota": 1, "dns": ["1.1.1.1"]}
    c.DockerSpawner.network_name = "fine"
    text = "\n".join(owned_setting_warnings(c))
    assert "c.DockerSpawner.image = 'site/image:1' is ignored" in text
    assert "c.Spawner.mem_limit = '8G' is ignored" in text
    assert "c.SystemUserSpawner.host_homedir_format_string" in text
    assert "extra_host_config['cpu_quota'] = 1 is ignored" in text
    assert "network_name" not in text and "dns" not in text
    assert owned_setting_warnings(Config()) == []


def test_operator_lists_combine_with_ours():
    base = {"security_opt": ["apparmor=site"], "cap_drop": ["NET_RAW"], "devices": ["/dev/fuse"],
            "tmpfs": {"/run": "size=1M"}, "dns": ["1.1.1.1"]}
    merged, warnings = merge_host_config(base, OURS)
    assert merged["security_opt"] == ["apparmor=site", "no-new-privileges"]
    assert merged["cap_drop"] == ["NET_RAW", "ALL"]
    assert merged["devices"] == ["/dev/fuse"] and merged["dns"] == ["1.1.1.1"]
    assert merged["tmpfs"] == {"/run": "size=1M", "/tmp": "size=1"}
    assert merged["read_only"] is True and warnings == []
    assert base["security_opt"] == ["apparmor=site"]  # the configured value is never modified


def test_stricter_operator_pids_limit_is_kept_with_a_warning():
    merged, warnings = merge_host_config({"pids_limit": 64}, OURS)
    assert merged["pids_limit"] == 64
    assert warnings == ["extra_host_config['pids_limit'] = 64 is stricter than pids_limit = 1024; keeping 64"]
    merged, warnings = merge_host_config({"pids_limit": 4096}, OURS)
    assert merged["pids_limit"] == 1024 and warnings == []


def test_operator_owned_limit_is_replaced_loudly():
    merged, warnings = merge_host_config({"mem_limit": "64G"}, OURS)
    assert merged["mem_limit"] == 2 * G
    assert warnings == [f"extra_host_config['mem_limit'] = '64G' is replaced by the profile's {2 * G}"]


@pytest.mark.parametrize("base, named", [
    ({"privileged": True}, "extra_host_config['privileged'] = True"),
    ({"cap_add": ["SYS_ADMIN"]}, "extra_host_config['cap_add'] = ['SYS_ADMIN']"),
    ({"security_opt": ["no-new-privileges:false"]}, "'no-new-privileges:false'"),
    ({"read_only": False}, "extra_host_config['read_only'] = False"),
])
def test_weakening_our_security_defaults_is_refused(base, named):
    with pytest.raises(ConfigRefused) as err:
        merge_host_config(base, OURS)
    assert named in str(err.value)
    assert "allowed" in str(err.value) or "unless the image profile" in str(err.value)


def test_image_profile_opt_outs_allow_what_they_name():
    merged, _ = merge_host_config({"cap_add": ["CAP_CHOWN"]}, {**OURS, "cap_add": ["CHOWN"]}, ["CHOWN"])
    assert merged["cap_add"] == ["CAP_CHOWN", "CHOWN"]
    ours = {k: v for k, v in OURS.items() if k != "security_opt"} | {"read_only": False}
    merged, _ = merge_host_config({"security_opt": ["no-new-privileges:false"], "read_only": False}, ours)
    assert merged["read_only"] is False


def test_auth_state_ids():
    assert auth_state_ids_problem(None, 1000, 1000) is None
    assert auth_state_ids_problem({"uid": 1000, "gid": "1000"}, 1000, 1000) is None
    problem = auth_state_ids_problem({"user_id": 5000}, 1000, 1000)
    assert "auth_state['user_id'] = 5000 differs from the system account's uid 1000" in problem
    assert "auth_state['gid'] = 'x'" in auth_state_ids_problem({"gid": "x"}, 1000, 1000)


def test_inline_profiles_go_through_the_same_validator(tmp_path):
    data = sample_data()
    profiles, warnings = profiles_from(str(tmp_path / "none.yaml"), data)
    assert set(profiles.resources) == {"Tiny", "Small", "Extreme", "GPU1"} and warnings == ()
    data["resource_profiles"]["Tiny"]["cpu_limit"] = -1
    with pytest.raises(ProfilesError) as err:
        profiles_from(str(tmp_path / "none.yaml"), data)
    assert "c.DockerSystemProfileSpawner" in str(err.value) and "resource_profiles.Tiny.cpu_limit" in str(err.value)


def test_file_wins_over_inline_profiles_with_a_warning(tmp_path):
    path = tmp_path / "profiles.json"
    file_data = sample_data()
    file_data["resource_profiles"]["FromFile"] = {"cpu_limit": 1, "mem_limit": "1G"}
    path.write_text(json.dumps(file_data))
    profiles, warnings = profiles_from(str(path), sample_data())
    assert "FromFile" in profiles.resources
    assert len(warnings) == 1 and "ignored" in warnings[0] and str(path) in warnings[0]


# ---------------------------------------------------------------- the shell, without Docker




@pytest.fixture
def make_spawner(tmp_path, fresh_caches):
    data = sample_data()
    data["user_profiles"]["default"]["host_homedir_format_string"] = str(tmp_path / "homes" / "{username}")
    name = pwd.getpwuid(os.getuid()).pw_name  # the runner's own account: its home needs no chown

    def make(auth_state=None, **config):
        c = Config()
        for key, value in config.items():
            setattr(c.DockerSystemProfileSpawner, key, value)
        c.DockerSystemProfileSpawner.profiles_file = str(tmp_path / "absent.yaml")
        for key in ("resource_profiles", "image_profiles", "user_profiles"):
            setattr(c.DockerSystemProfileSpawner, key, data[key])
        return DockerSystemProfileSpawner(user=HubUser(name, auth_state), config=c)

    return make


@pytest.fixture
def fake_docker(monkeypatch):
    calls = []

    async def start(self):
        self.object_id = "c0ffee"
        calls.append("start")
        if self._fail:
            raise self._fail
        return "127.0.0.1", 1

    async def stop_object(self):
        calls.append("stop")

    async def remove_object(self):
        calls.append("remove")

    async def get_object(self):
        return {"State": {"Running": True}} if self.object_id else None

    monkeypatch.setattr(SystemUserSpawner, "start", start)
    monkeypatch.setattr(DockerSystemProfileSpawner, "get_object", get_object)
    monkeypatch.setattr(DockerSystemProfileSpawner, "stop_object", stop_object)
    monkeypatch.setattr(DockerSystemProfileSpawner, "remove_object", remove_object)
    return calls


def test_attributes_after_start_are_what_the_container_got(make_spawner, fake_docker):
    s = make_spawner(mem_limit="8G", cpu_limit=7.0)
    s._fail = None
    s.user_options = {"resource_profile": "Small", "cpu_limit": "1.5", "mem_guarantee": "512M",
                      "cpu_guarantee": "0.25"}
    assert asyncio.run(s.start()) == ("127.0.0.1", 1)  # no server (no hub): no readiness check, no crash
    assert (s.image, s.mem_limit, s.cpu_limit) == ("local/singleuser:latest", 4 * G, 1.5)
    assert (s.mem_guarantee, s.cpu_guarantee) == (512 * 1024**2, 0.25)
    assert fake_docker == ["start"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), asyncio.CancelledError()])
def test_a_failed_start_leaves_no_running_container(make_spawner, fake_docker, error):
    s = make_spawner()
    s._fail = error
    with pytest.raises(type(error)):
        asyncio.run(s.start())
    assert fake_docker == ["start", "stop", "remove"]
    assert s.object_id == ""


def test_auth_state_uid_that_differs_is_refused(make_spawner, fake_docker):
    from tornado import web

    s = make_spawner(auth_state={"uid": 4242})
    s._fail = None
    with pytest.raises(web.HTTPError) as err:
        asyncio.run(s.start())
    assert err.value.status_code == 403 and "auth_state['uid'] = 4242" in err.value.log_message
    assert fake_docker == []


def test_owned_settings_are_logged_once_by_name(make_spawner, caplog):
    import logging
    caplog.set_level(logging.WARNING)
    make_spawner(image="site/image:1")
    make_spawner(image="site/image:1")
    named = [r for r in caplog.records if "c.DockerSystemProfileSpawner.image = 'site/image:1' is ignored" in r.getMessage()]
    assert len(named) == 1


def test_a_container_that_cannot_be_stopped_is_still_removed(make_spawner, fake_docker, monkeypatch):
    async def stop_object(self):
        fake_docker.append("stop failed")
        raise RuntimeError("not running")

    monkeypatch.setattr(DockerSystemProfileSpawner, "stop_object", stop_object)
    s = make_spawner()
    s._fail = RuntimeError("docker start refused")
    with pytest.raises(RuntimeError, match="docker start refused"):
        asyncio.run(s.start())
    assert fake_docker == ["start", "stop failed", "remove"]


def test_load_profiles_or_exit_names_owned_settings_and_validates_inline(tmp_path, capsys, monkeypatch):
    import profilespawner
    monkeypatch.setattr(check, "LOADED", {})
    monkeypatch.setattr(check, "WARNED", set())
    c = Config()
    c.DockerSpawner.cpu_limit = 3.0
    for key, value in sample_data().items():
        setattr(c.DockerSystemProfileSpawner, key, value)
    profiles = profilespawner.load_profiles_or_exit(str(tmp_path / "absent.yaml"), c)
    assert "Tiny" in profiles.resources
    assert "c.DockerSpawner.cpu_limit = 3.0 is ignored" in capsys.readouterr().err
    c.DockerSystemProfileSpawner.user_profiles = {"alice": {}}
    with pytest.raises(SystemExit):
        profilespawner.load_profiles_or_exit(str(tmp_path / "absent.yaml"), c)
    assert "user_profiles" in capsys.readouterr().err


def test_a_refused_spawn_whose_old_container_is_gone_calls_nothing(make_spawner, fake_docker, monkeypatch):
    async def refused(self):
        raise RuntimeError("admission refused")

    async def gone(self):
        return None

    monkeypatch.setattr(SystemUserSpawner, "start", refused)
    monkeypatch.setattr(DockerSystemProfileSpawner, "get_object", gone)
    s = make_spawner()
    s.object_id = "old"
    with pytest.raises(RuntimeError):
        asyncio.run(s.start())
    assert fake_docker == [] and s.object_id == ""


def test_a_static_extra_host_config_that_every_spawn_would_refuse_stops_the_hub(tmp_path, capsys, monkeypatch):
    import profilespawner
    monkeypatch.setattr(check, "LOADED", {})
    monkeypatch.setattr(check, "WARNED", set())
    c = Config()
    for key, value in sample_data().items():
        setattr(c.DockerSystemProfileSpawner, key, value)
    c.DockerSpawner.extra_host_config = {"pids_limit": 64, "security_opt": ["label=disable"]}
    assert profilespawner.load_profiles_or_exit(str(tmp_path / "absent.yaml"), c)  # harmless: starts
    c.DockerSpawner.extra_host_config = {"privileged": True}
    with pytest.raises(SystemExit):
        profilespawner.load_profiles_or_exit(str(tmp_path / "absent.yaml"), c)
    err = capsys.readouterr().err
    assert "c.DockerSpawner.extra_host_config['privileged'] = True is refused" in err, err
    assert "for image profile" in err
