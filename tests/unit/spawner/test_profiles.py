import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import profilespawner
from profilespawner.profiles import (MaxPreallocate, ProfilesError, effective_profile, load_profiles,
                                     parse_profiles)

from .conftest import G, sample_data

EXAMPLE = Path(profilespawner.__file__).with_name("profiles.example.yaml")


def problems_of(data):
    with pytest.raises(ProfilesError) as err:
        parse_profiles(data)
    return err.value.problems


def test_sample_is_valid_and_immutable(profiles):
    tiny = profiles.resources["Tiny"]
    assert (tiny.cpu_limit, tiny.mem_limit, tiny.gpus) == (1.0, 2 * G, 0)
    assert profiles.resources["Small"].description  # generated when absent
    with pytest.raises(AttributeError):  # frozen dataclass: FrozenInstanceError
        tiny.cpu_limit = 5
    with pytest.raises(TypeError):
        profiles.resources["New"] = tiny


def test_shipped_example_is_valid():
    p = load_profiles(EXAMPLE)
    limits = {n: (r.cpu_limit, r.mem_limit // G) for n, r in p.resources.items()}
    assert limits["Tiny"] == (1, 2) and limits["Small"] == (2, 4) and limits["Normal"] == (5, 10)
    assert limits["Large"] == (10, 40) and limits["Extreme"] == (36, 80)


def test_contracts_example_message():
    data = sample_data()
    data["user_profiles"]["alice"]["allowed_resources"] = ["Tiny", "Hge"]
    assert problems_of(data) == (
        "user_profiles.alice.allowed_resources[1]: unknown resource profile 'Hge'; allowed: Tiny, Small, Extreme, GPU1",)


def test_missing_default():
    data = sample_data()
    del data["user_profiles"]["default"]
    (msg,) = problems_of(data)
    assert msg.startswith("user_profiles.default: missing")


def test_default_must_set_allowed_lists():
    data = sample_data()
    del data["user_profiles"]["default"]["allowed_images"]
    (msg,) = problems_of(data)
    assert msg.startswith("user_profiles.default.allowed_images: missing")


def test_unknown_image_profile():
    data = sample_data()
    data["user_profiles"]["@gpu-users"]["allowed_images"] = ["Nope"]
    (msg,) = problems_of(data)
    assert msg == "user_profiles.@gpu-users.allowed_images[0]: unknown image profile 'Nope'; allowed: SingleUser, Other"


@pytest.mark.parametrize("home", ["/home/user", "/home/{user}", "home/{username}", 42])
def test_home_template_must_hold_username(home):
    data = sample_data()
    data["user_profiles"]["alice"]["host_homedir_format_string"] = home
    (msg,) = problems_of(data)
    assert msg.startswith("user_profiles.alice.host_homedir_format_string: ")
    assert repr(home) in msg


@pytest.mark.parametrize("size", ["4X", "lots", "-2G", None])
def test_unparsable_size(size):
    data = sample_data()
    data["resource_profiles"]["Small"]["mem_limit"] = size
    (msg,) = problems_of(data)
    assert msg.startswith("resource_profiles.Small.mem_limit: ") and repr(size) in msg
    assert "512M" in msg  # says what is allowed


@pytest.mark.parametrize("cpu", [0, -1, "two", float("nan"), True, 0.005])
def test_bad_cpu_limit(cpu):
    data = sample_data()
    data["resource_profiles"]["Tiny"]["cpu_limit"] = cpu
    (msg,) = problems_of(data)
    assert msg.startswith("resource_profiles.Tiny.cpu_limit: ") and "from 0.01" in msg


def test_zero_mem_limit():
    data = sample_data()
    data["resource_profiles"]["Tiny"]["mem_limit"] = 0
    (msg,) = problems_of(data)
    assert msg.startswith("resource_profiles.Tiny.mem_limit: ")


@pytest.mark.parametrize("gpus", [-1, 1.5, "one"])
def test_bad_gpu_count(gpus):
    data = sample_data()
    data["resource_profiles"]["Tiny"]["gpus"] = gpus
    (msg,) = problems_of(data)
    assert msg.startswith("resource_profiles.Tiny.gpus: ") and repr(gpus) in msg


def test_max_preallocate_above_anything():
    data = sample_data()
    data["user_profiles"]["default"]["max_preallocate"] = {"cpu_guarantee": 40, "mem_guarantee": "100G"}
    msgs = problems_of(data)
    assert len(msgs) == 2
    assert msgs[0].startswith("user_profiles.default.max_preallocate.cpu_guarantee: 40 is above") and "36" in msgs[0]
    assert msgs[1].startswith("user_profiles.default.max_preallocate.mem_guarantee: '100G' is above") and "80G" in msgs[1]


def test_negative_preallocate():
    data = sample_data()
    data["user_profiles"]["default"]["max_preallocate"] = {"cpu_guarantee": -1}
    (msg,) = problems_of(data)
    assert msg.startswith("user_profiles.default.max_preallocate.cpu_guarantee: -1")


def test_unknown_keys_named():
    data = sample_data()
    data["user_profiles"]["alice"]["allowed_resource"] = ["Tiny"]
    data["resource_profiles"]["Tiny"]["memory"] = "1G"
    msgs = problems_of(data)
    assert ("resource_profiles.Tiny.memory: unknown key; allowed: cpu_limit, mem_limit, cpu_guarantee, mem_guarantee, "
            "gpus, description, tmp_size, disk_quota") in msgs
    assert any(m.startswith("user_profiles.alice.allowed_resource: unknown key") for m in msgs)


def test_all_problems_collected_not_just_first():
    data = sample_data()
    del data["user_profiles"]["default"]
    data["resource_profiles"]["Tiny"]["mem_limit"] = "huge"
    data["user_profiles"]["alice"]["allowed_images"] = ["Nope"]
    msgs = problems_of(data)
    assert len(msgs) == 3
    assert str(ProfilesError(msgs)).count("\n") == 3


def test_missing_sections():
    msgs = problems_of({"resource_profiles": {}})
    assert any(m.startswith("image_profiles: missing") for m in msgs)
    assert any(m.startswith("user_profiles: missing") for m in msgs)
    assert any(m.startswith("resource_profiles: empty") for m in msgs)


# ------------------------------------------------------------------ merge rule

def test_merge_default_only(profiles):
    eff = effective_profile(profiles, "bob", [])
    assert eff.allowed_resources == ("Tiny", "Small")
    assert eff.allowed_images == ("SingleUser",)
    assert eff.max_preallocate == MaxPreallocate(0.5, G)


def test_merge_group_over_default_keys_replaced_whole(profiles):
    eff = effective_profile(profiles, "bob", ["staff", "gpu-users"])
    assert eff.allowed_resources == ("Tiny", "GPU1")  # replaced, not unioned with default
    assert eff.allowed_images == ("SingleUser",)  # from default: the group entry lacks it


def test_merge_user_over_group(profiles):
    eff = effective_profile(profiles, "alice", ["gpu-users"])
    assert eff.allowed_resources == ("Tiny", "Small", "Extreme")
    assert eff.allowed_images == ("Other", "SingleUser")


def test_merge_groups_sorted_by_name():
    data = sample_data()
    data["user_profiles"]["@aaa"] = {"allowed_resources": ["Small"]}
    data["user_profiles"]["@zzz"] = {"allowed_resources": ["Tiny"], "allowed_images": ["Other"]}
    p = parse_profiles(data)
    eff = effective_profile(p, "carol", ["zzz", "aaa"])
    assert eff.allowed_resources == ("Small",)  # @aaa wins over @zzz whatever the order given
    assert eff.allowed_images == ("Other",)  # @aaa lacks it: next group


# ------------------------------------------------------------------ files and the checker

def test_load_json_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(sample_data()))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(sample_data()))
    assert load_profiles(tmp_path / "p.json") == load_profiles(tmp_path / "p.yaml")


def test_load_broken_yaml_names_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("resource_profiles: [\n")
    with pytest.raises(ProfilesError) as err:
        load_profiles(f)
    assert str(f) in str(err.value) and "YAML" in str(err.value)


def run_check(path):
    return subprocess.run([sys.executable, "-m", "profilespawner.check", str(path)], capture_output=True, text=True)


def test_check_cli_ok_warns_oversize(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(sample_data()))
    r = run_check(f)
    assert r.returncode == 0
    assert "warning: resource_profiles.Extreme.cpu_limit: 36 cores is more than this host's" in r.stderr
    assert "Tiny" not in r.stderr


def test_check_cli_fails_with_each_problem(tmp_path):
    data = sample_data()
    data["user_profiles"]["alice"]["allowed_resources"] = ["Tiny", "Hge"]
    data["resource_profiles"]["Small"]["mem_limit"] = "4X"
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data))
    r = run_check(f)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any("user_profiles.alice.allowed_resources[1]: unknown resource profile 'Hge'" in line for line in lines)
    assert any("resource_profiles.Small.mem_limit: '4X' is not a size" in line for line in lines)


def test_load_profiles_or_exit(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"resource_profiles": {}}))
    with pytest.raises(SystemExit) as err:
        profilespawner.load_profiles_or_exit(f)
    assert err.value.code == 1
    assert "refusing to start" in capsys.readouterr().err


def test_load_profiles_or_exit_warns_oversize(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(sample_data()))
    profiles = profilespawner.load_profiles_or_exit(f)
    assert "Extreme" in profiles.resources
    err = capsys.readouterr().err
    assert "warning" in err and "resource_profiles.Extreme.cpu_limit: 36 cores" in err
