"""Isolation keys of the profiles file -> SpawnRequest -> Docker arguments (pure, no Docker).

tmp_size (resource profiles), allow_privilege_escalation / cap_add / read_only_root (image
profiles), data_mounts (user profiles): validated once in profiles.py, carried by the request,
turned into Docker's HostConfig by dockerargs, named in the form.
"""
import subprocess
import sys

import pytest

from profilespawner import dockerargs
from profilespawner.check import missing_host_paths
from profilespawner.form import render_form
from profilespawner.profiles import DataMount, ProfilesError, effective_profile, parse_profiles
from profilespawner.request import DEFAULT_TMP_FRACTION, build_request

from .conftest import G, M, sample_data


def problems_of(data):
    with pytest.raises(ProfilesError) as e:
        parse_profiles(data)
    return e.value.problems


def request_for(data, host, user="bob", groups=(), **options):
    profiles = parse_profiles(data)
    return build_request(profiles, effective_profile(profiles, user, groups), options, host)


# ------------------------------------------------------------------ default-deny

def test_default_container_holds_nothing_and_writes_only_within_bounds(profiles, default_user, host):
    req = build_request(profiles, default_user, {"mem_limit": "1G"}, host)
    hc = dockerargs.host_config(req)
    assert hc["cap_drop"] == ["ALL"] and "cap_add" not in hc
    assert hc["security_opt"] == ["no-new-privileges"]
    assert hc["read_only"] is True
    # /tmp: the default share of the spawn's mem_limit (not the profile's 2G)
    assert DEFAULT_TMP_FRACTION == 0.5
    assert hc["tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={512 * M},mode=1777"}
    assert "mounts" not in hc


# ------------------------------------------------------------------ tmp_size

def test_tmp_size_from_profile_capped_at_the_spawns_mem_limit(host):
    data = sample_data()
    data["resource_profiles"]["Small"]["tmp_size"] = "3G"
    assert request_for(data, host, resource_profile="Small").tmp_bytes == 3 * G
    # a user who asks for less memory than the profile's /tmp gets /tmp capped at it
    small = request_for(data, host, resource_profile="Small", mem_limit="1G")
    assert dockerargs.host_config(small)["tmpfs"]["/tmp"].split(",")[3] == f"size={G}"


@pytest.mark.parametrize("size, why", [
    ("5G", "1M to the profile's mem_limit (4G)"),  # above Small's mem_limit
    ("512K", "1M to the profile's mem_limit (4G)"),
    ("lots", "is not a size"),
    (-1, "is negative"),
    (True, "is not a size"),
])
def test_bad_tmp_size_named(size, why):
    data = sample_data()
    data["resource_profiles"]["Small"]["tmp_size"] = size
    msgs = problems_of(data)
    assert len(msgs) == 1 and msgs[0].startswith(f"resource_profiles.Small.tmp_size: {size!r}"), msgs
    assert why in msgs[0], msgs


# ------------------------------------------------------------------ image opt-outs

def test_image_opt_outs_reach_docker(host):
    data = sample_data()
    data["image_profiles"]["Other"].update(allow_privilege_escalation=True, cap_add=["chown", "CAP_SETUID", "CHOWN"],
                                           read_only_root=False)
    req = request_for(data, host, user="alice", image_profile="Other")
    hc = dockerargs.host_config(req)
    assert hc["cap_drop"] == ["ALL"] and hc["cap_add"] == ["CHOWN", "SETUID"]  # normalised, once each
    assert "security_opt" not in hc
    assert hc["read_only"] is False
    assert "/tmp" in hc["tmpfs"]  # /tmp stays bounded with a writable root
    # the other image of the same user keeps the default-deny container
    plain = dockerargs.host_config(request_for(data, host, user="alice", image_profile="SingleUser"))
    assert plain["security_opt"] == ["no-new-privileges"] and plain["read_only"] is True


@pytest.mark.parametrize("key, value, message", [
    ("allow_privilege_escalation", "yes", "image_profiles.Other.allow_privilege_escalation: 'yes' is not a boolean; "
                                          "allowed: true or false (default false)"),
    ("read_only_root", 0, "image_profiles.Other.read_only_root: 0 is not a boolean; allowed: true or false "
                          "(default true)"),
    ("cap_add", "CHOWN", "image_profiles.Other.cap_add: 'CHOWN' is not a list"),
    ("cap_add", ["ALL"], "image_profiles.Other.cap_add[0]: 'ALL' is not a Linux capability; allowed: AUDIT_CONTROL"),
    ("cap_add", ["CHOWN", "SUPERPOWER"], "image_profiles.Other.cap_add[1]: 'SUPERPOWER' is not a Linux capability"),
    ("cap_add", [7], "image_profiles.Other.cap_add[0]: 7 is not a Linux capability"),
])
def test_bad_image_opt_outs_named(key, value, message):
    data = sample_data()
    data["image_profiles"]["Other"][key] = value
    msgs = problems_of(data)
    assert len(msgs) == 1 and msgs[0].startswith(message), msgs


def test_form_names_the_opt_outs_next_to_the_image_escaped(host):
    data = sample_data()
    data["image_profiles"]["Other"].update(description="<b>Legacy</b>", allow_privilege_escalation=True,
                                           cap_add=["NET_RAW"], read_only_root=False)
    profiles = parse_profiles(data)
    html = render_form(profiles, effective_profile(profiles, "alice"), host, 1, G)
    option = next(part for part in html.split("<option") if 'value="Other"' in part)
    assert "&lt;b&gt;Legacy&lt;/b&gt;" in option and "<b>" not in option
    assert ("[less isolated: setuid programs may gain privileges; capabilities NET_RAW; "
            "writable root filesystem]") in option
    plain = next(part for part in html.split("<option") if 'value="SingleUser"' in part)
    assert "less isolated" not in plain


# ------------------------------------------------------------------ data_mounts

def test_data_mounts_merge_whole_and_become_bind_mounts(host):
    data = sample_data()
    data["user_profiles"]["default"]["data_mounts"] = [
        {"host_path": "/srv/shared", "container_path": "/shared"},
        {"host_path": "/srv/scratch", "container_path": "/scratch", "rw": True}]
    data["user_profiles"]["@gpu-users"]["data_mounts"] = [{"host_path": "/srv/models", "container_path": "/models"}]
    data["user_profiles"]["alice"]["data_mounts"] = []
    profiles = parse_profiles(data)
    assert effective_profile(profiles, "bob").data_mounts == (
        DataMount("/srv/shared", "/shared", False), DataMount("/srv/scratch", "/scratch", True))
    # replaced whole by the group's entry, not unioned; alice's empty list means none
    assert effective_profile(profiles, "carol", ["gpu-users"]).data_mounts == (DataMount("/srv/models", "/models"),)
    assert effective_profile(profiles, "alice", ["gpu-users"]).data_mounts == ()
    hc = dockerargs.host_config(request_for(data, host))
    assert hc["mounts"] == [
        {"Type": "bind", "Source": "/srv/shared", "Target": "/shared", "ReadOnly": True},
        {"Type": "bind", "Source": "/srv/scratch", "Target": "/scratch", "ReadOnly": False}]
    assert "mounts" not in dockerargs.host_config(request_for(data, host, user="alice"))


@pytest.mark.parametrize("mounts, message", [
    ("/srv/shared", "user_profiles.default.data_mounts: '/srv/shared' is not a list"),
    (["/srv/shared"], "user_profiles.default.data_mounts[0]: '/srv/shared' is not a mapping"),
    ([{"host_path": "srv", "container_path": "/shared"}],
     "user_profiles.default.data_mounts[0].host_path: 'srv' is not a normalised absolute path"),
    ([{"host_path": "/srv/../etc", "container_path": "/shared"}],
     "user_profiles.default.data_mounts[0].host_path: '/srv/../etc' is not a normalised absolute path"),
    ([{"host_path": "/srv/a", "container_path": "/x:ro"}],
     "user_profiles.default.data_mounts[0].container_path: '/x:ro' is not a normalised absolute path"),
    ([{"container_path": "/shared"}], "user_profiles.default.data_mounts[0].host_path: missing"),
    ([{"host_path": "/srv/a", "container_path": "/"}],
     "user_profiles.default.data_mounts[0].container_path: '/' is reserved"),
    ([{"host_path": "/srv/a", "container_path": "/tmp"}],
     "user_profiles.default.data_mounts[0].container_path: '/tmp' is reserved"),
    ([{"host_path": "/srv/a", "container_path": "/home/alice"}],
     "user_profiles.default.data_mounts[0].container_path: '/home/alice' would cover the users' homes "
     "(/home/{username})"),
    ([{"host_path": "/srv/a", "container_path": "/home"}],
     "user_profiles.default.data_mounts[0].container_path: '/home' would cover the users' homes"),
    ([{"host_path": "/srv/a", "container_path": "/d"}, {"host_path": "/srv/b", "container_path": "/d"}],
     "user_profiles.default.data_mounts[1].container_path: '/d' is already mounted by "
     "user_profiles.default.data_mounts[0]"),
    ([{"host_path": "/srv/a", "container_path": "/d", "rw": "yes"}],
     "user_profiles.default.data_mounts[0].rw: 'yes' is not a boolean"),
    ([{"host_path": "/srv/a", "container_path": "/d", "mode": "ro"}],
     "user_profiles.default.data_mounts[0].mode: unknown key; allowed: host_path, container_path, rw"),
])
def test_bad_data_mounts_named(mounts, message):
    data = sample_data()
    data["user_profiles"]["default"]["data_mounts"] = mounts
    msgs = problems_of(data)
    assert len(msgs) == 1 and msgs[0].startswith(message), msgs


def test_data_mount_may_not_cover_another_home_format():
    data = sample_data()
    data["user_profiles"]["alice"]["host_homedir_format_string"] = "/srv/homes/{username}/home"
    data["user_profiles"]["default"]["data_mounts"] = [{"host_path": "/a", "container_path": "/srv/homes/bob/home"}]
    msgs = problems_of(data)
    assert msgs == ("user_profiles.default.data_mounts[0].container_path: '/srv/homes/bob/home' would cover the "
                    "users' homes (/srv/homes/{username}/home); allowed: a path outside the homes, e.g. /shared",)


def test_missing_host_paths_named(tmp_path):
    data = sample_data()
    data["user_profiles"]["default"]["data_mounts"] = [
        {"host_path": str(tmp_path), "container_path": "/shared"},
        {"host_path": str(tmp_path / "gone"), "container_path": "/gone"}]
    assert missing_host_paths(parse_profiles(data)) == [
        f"user_profiles.default.data_mounts[1].host_path: {str(tmp_path / 'gone')!r} does not exist on this "
        "host; create it or remove the mount"]


def test_check_cli_and_hub_start_refuse_a_missing_host_path(tmp_path):
    import yaml
    data = sample_data()
    data["user_profiles"]["alice"]["data_mounts"] = [{"host_path": str(tmp_path / "gone"), "container_path": "/d"}]
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(data))
    for code in ("import sys; from profilespawner.check import main; sys.exit(main([sys.argv[1]]))",
                 "import sys, profilespawner; profilespawner.load_profiles_or_exit(sys.argv[1])"):
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
        assert r.returncode == 1, r
        assert f"user_profiles.alice.data_mounts[0].host_path: {str(tmp_path / 'gone')!r} does not exist" in r.stderr
