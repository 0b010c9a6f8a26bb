"""Accounts made at first login and the groups `@group` profiles see (profilespawner.identity)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from profilespawner import identity
import yaml

from profilespawner.profiles import effective_profile, parse_profiles

from .conftest import HubUser


def test_uid_is_derived_from_the_name_and_inside_the_range():
    first = identity.pick_uid("alice", 20000, 29999, set())
    assert 20000 <= first <= 29999
    assert identity.pick_uid("alice", 20000, 29999, {1000, 1001}) == first  # stable


def test_taken_uid_moves_to_the_next_free_one_wrapping():
    first = identity.pick_uid("alice", 20000, 20002, set())
    assert identity.pick_uid("alice", 20000, 20002, {first}) == 20000 + (first - 20000 + 1) % 3


def test_full_range_names_the_range():
    with pytest.raises(identity.AccountError, match="no free uid left in the account range 20000-20001"):
        identity.pick_uid("alice", 20000, 20001, {20000, 20001})


@pytest.mark.parametrize("lo,hi", [(999, 2000), (3000, 2000)])
def test_bad_range_names_what_is_allowed(lo, hi):
    with pytest.raises(identity.AccountError, match="allowed: 1000 <= account_uid_min <= account_uid_max"):
        identity.pick_uid("alice", lo, hi, set())


@given(st.text(min_size=1, max_size=40), st.sets(st.integers(20000, 20050)))
def test_pick_uid_never_returns_a_taken_uid(name, taken):
    if len(taken) == 51:
        return
    uid = identity.pick_uid(name, 20000, 20050, taken)
    assert 20000 <= uid <= 20050 and uid not in taken


def test_useradd_argv():
    assert identity.useradd_argv("alice", 20001, "/home/alice") == [
        "useradd", "--uid", "20001", "--user-group", "--create-home", "--home-dir", "/home/alice",
        "--shell", "/usr/sbin/nologin", "--comment", "JupyterHub user", "alice"]


@pytest.mark.parametrize("name", ["alice@example.org", "-rf", "a/b", "", "x" * 33, "Alice"])
def test_useradd_refuses_names_that_are_no_account(name):
    with pytest.raises(identity.AccountError, match="cannot be a system account; allowed: 1-32 characters"):
        identity.useradd_argv(name, 20001, "/home/x")


def test_hub_groups_drive_group_profiles_through_effective_profile():
    profiles = parse_profiles(yaml.safe_load("""
resource_profiles: {Small: {cpu_limit: 1, mem_limit: 1G}, Big: {cpu_limit: 2, mem_limit: 2G}}
image_profiles: {Lab: {image: lab:1}}
user_profiles:
  default: {allowed_resources: [Small], allowed_images: [Lab]}
  "@physics": {allowed_resources: [Big]}
"""))
    groups = identity.profile_groups(["alice"], ["physics"])
    assert groups == ["alice", "physics"]
    assert effective_profile(profiles, "alice", groups).allowed_resources == ("Big",)
    assert effective_profile(profiles, "alice", identity.profile_groups(["alice"], [])).allowed_resources == ("Small",)


# ---------------------------------------------------------------- the spawner's glue (no useradd run)





@pytest.fixture
def spawner_for(tmp_path, fresh_caches):
    from traitlets.config import Config

    from profilespawner.spawner import DockerSystemProfileSpawner

    def make(name, groups=(), **config):
        c = Config()
        c.DockerSystemProfileSpawner.profiles_file = str(tmp_path / "absent.yaml")
        c.DockerSystemProfileSpawner.resource_profiles = {"Small": {"cpu_limit": 1, "mem_limit": "1G"},
                                                          "Big": {"cpu_limit": 2, "mem_limit": "2G"}}
        c.DockerSystemProfileSpawner.image_profiles = {"Lab": {"image": "lab:1"}}
        c.DockerSystemProfileSpawner.user_profiles = {
            "default": {"allowed_resources": ["Small"], "allowed_images": ["Lab"]},
            "@physics": {"allowed_resources": ["Big"]}}
        for key, value in config.items():
            setattr(c.DockerSystemProfileSpawner, key, value)
        return DockerSystemProfileSpawner(user=HubUser(name, groups=groups), config=c)

    return make


def test_account_options_are_configurable_and_off_by_default(spawner_for):
    from profilespawner.spawner import DockerSystemProfileSpawner
    traits = DockerSystemProfileSpawner.class_traits()
    for name in ("create_system_users", "account_uid_min", "account_uid_max", "account_home_format"):
        assert traits[name].metadata.get("config") is True and len(traits[name].help) > 20
    assert traits["create_system_users"].default() is False


def test_hub_groups_choose_the_group_profile_without_a_unix_account(spawner_for):
    assert spawner_for("jbm-oidc-nobody", groups=["physics"])._effective_profile().allowed_resources == ("Big",)
    assert spawner_for("jbm-oidc-nobody")._effective_profile().allowed_resources == ("Small",)


def test_missing_account_is_403_without_create_and_a_bad_name_400_with_it(spawner_for):
    from tornado import web
    with pytest.raises(web.HTTPError) as off:
        spawner_for("jbm-oidc-nobody")._account()
    assert off.value.status_code == 403
    with pytest.raises(web.HTTPError) as bad:
        spawner_for("ann@example.org", create_system_users=True)._account()
    assert bad.value.status_code == 400
    assert "user name 'ann@example.org' cannot be a system account; allowed: 1-32 characters" in bad.value.log_message
