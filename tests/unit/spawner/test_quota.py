"""Home quotas, the pure parts: the profile's disk_quota validated once, the setquota command,
the homes' filesystem found from /proc/self/mounts, quotaon's answer read; and the thin shell
(apply_quota) refusing, never silently skipping, when user quotas are off."""
import subprocess

import pytest

from profilespawner import quota
from profilespawner.profiles import ProfilesError, parse_profiles

from .conftest import G, sample_data

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/sdb1 /srv/homes ext4 rw,relatime,quota,usrquota 0 0
/dev/sdc1 /srv/homes\\040old ext4 rw,relatime 0 0
tmpfs /srv/homes/scratch tmpfs rw 0 0
"""


def profile_with(**extra):
    data = sample_data()
    data["resource_profiles"]["Tiny"].update(extra)
    return data


def test_disk_quota_is_parsed_as_a_size_and_named_in_the_description():
    profiles = parse_profiles(profile_with(disk_quota="20G"))
    assert profiles.resources["Tiny"].disk_quota == 20 * G
    assert parse_profiles(sample_data()).resources["Tiny"].disk_quota is None
    data = profile_with(disk_quota="1.5G")
    del data["resource_profiles"]["Tiny"]["description"]
    assert parse_profiles(data).resources["Tiny"].description.endswith(", 1.5 GiB home")


@pytest.mark.parametrize("value, why", [("20GB", "is not a size"), ("-1G", "is not a size"), (True, "is not a size"),
                                        (20, "is below 1M"), ("1023K", "is below 1M")])
def test_bad_disk_quota_names_field_value_and_what_is_allowed(value, why):
    with pytest.raises(ProfilesError) as err:
        parse_profiles(profile_with(disk_quota=value))
    (msg,) = err.value.problems
    assert msg.startswith(f"resource_profiles.Tiny.disk_quota: {value!r} {why}"), msg
    assert "allowed: a size of at least 1M such as 20G" in msg


def test_setquota_arguments_are_kib_soft_and_hard_no_inode_limits():
    assert quota.setquota_args(1001, 20 * G, "/srv/homes") == \
        ["setquota", "-u", "1001", "20971520", "20971520", "0", "0", "/srv/homes"]
    assert quota.setquota_args(7, 1025, "/")[3] == "2"  # rounded up: never less than asked


@pytest.mark.parametrize("path, expected", [
    ("/srv/homes/alice", "/srv/homes"), ("/srv/homes", "/srv/homes"), ("/srv/homesick/bob", "/"),
    ("/srv/homes old/carol", "/srv/homes old"), ("/srv/homes/scratch/x", "/srv/homes/scratch"), ("/home/a", "/"),
])
def test_the_homes_filesystem_is_the_longest_mount_point_holding_the_path(path, expected):
    assert quota.mount_point(path, MOUNTS) == expected


def test_a_mount_over_the_same_point_wins():
    assert quota.mount_point("/h/a", "/dev/a /h ext4 rw 0 0\n/dev/b /h xfs rw 0 0\n") == "/h"
    assert quota.mount_point("/x", "") == "/"


@pytest.mark.parametrize("output, on", [
    ("user quota on /srv/homes (/dev/sdb1) is on\n", True),
    ("user quota on /srv/homes (/dev/sdb1) is off\n", False),
    ("group quota on / (/dev/sda1) is on\nuser quota on / (/dev/sda1) is off\n", False),
    ("quotaon: Mountpoint (or device) / not found or has no quota enabled.\n", False),
    ("", False),
])
def test_quotaon_state_is_read(output, on):
    assert quota.user_quota_on(output) is on


class FakeRun:
    """subprocess.run's stand-in: answers per command name, records the calls."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, args, **kwargs):
        self.calls.append(args)
        answer = self.answers[args[0]]
        if isinstance(answer, BaseException):
            raise answer
        rc, out, err = answer
        return subprocess.CompletedProcess(args, rc, out, err)


@pytest.fixture
def mounts(tmp_path):
    home = tmp_path / "homes" / "alice"
    home.mkdir(parents=True)
    path = tmp_path / "mounts"
    path.write_text(f"/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 {tmp_path / 'homes'} ext4 rw,usrquota 0 0\n")
    return str(home), str(path), str(tmp_path / "homes")


def test_apply_quota_checks_then_sets(mounts):
    home, table, fs = mounts
    run = FakeRun({"quotaon": (0, f"user quota on {fs} (/dev/sdb1) is on\n", ""), "setquota": (0, "", "")})
    assert quota.apply_quota(1001, 2 * G, home, run=run, mounts=table) == fs
    assert run.calls == [["quotaon", "-p", "-u", fs], quota.setquota_args(1001, 2 * G, fs)]


@pytest.mark.parametrize("answers, says", [
    ({"quotaon": (0, "user quota on {fs} (/dev/sdb1) is off\n", "")}, "user quotas are off on {fs}"),
    ({"quotaon": (1, "", "quotaon: Mountpoint (or device) {fs} not found or has no quota enabled.")},
     "user quotas are off on {fs} (quotaon -p: quotaon: Mountpoint"),
    ({"quotaon": FileNotFoundError()}, "quotaon is not installed (the quota package"),
    ({"quotaon": (0, "user quota on {fs} (/dev/sdb1) is on\n", ""), "setquota": (1, "", "setquota: Cannot set quota")},
     "setquota failed on {fs}: setquota: Cannot set quota"),
])
def test_apply_quota_refuses_instead_of_leaving_the_home_unlimited(mounts, answers, says):
    home, table, fs = mounts
    answers = {k: (v if isinstance(v, BaseException) else (v[0], v[1].format(fs=fs), v[2].format(fs=fs)))
               for k, v in answers.items()}
    with pytest.raises(quota.QuotaError) as err:
        quota.apply_quota(1001, G, home, run=FakeRun(answers), mounts=table)
    assert err.value.filesystem == fs
    assert err.value.message.startswith(says.format(fs=fs)), err.value.message
