"""Home use against the quota: repquota's report read (pure), the sampler re-reading it every
homes_every samples and marking the source stale when repquota fails."""
import subprocess

import pytest

from hubmetrics import homes
from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig

# repquota -u -n of quota 4.06 (Debian 12): a user over the soft limit has a grace column
REPORT = """\
*** Report for user quotas on device /dev/loop0
Block grace time: 7days; Inode grace time: 7days
                        Block limits                File limits
User            used    soft    hard  grace    used  soft  hard  grace
----------------------------------------------------------------------
#0        --      20       0       0              2     0     0
#2001     +-    8192    8192    8192  6days       3     0     0
#2002     --     100       0    4096              1     0     0
#2003     --      12     512       0              1    10    20
#2004     -+       4       0       0             11    10     0  7days

"""


def test_repquota_report_is_read_as_bytes_with_the_hard_limit_first():
    assert homes.parse_repquota(REPORT) == {
        0: (20 * 1024, 0), 2001: (8192 * 1024, 8192 * 1024), 2002: (100 * 1024, 4096 * 1024),
        2003: (12 * 1024, 512 * 1024), 2004: (4 * 1024, 0)}
    assert homes.parse_repquota("") == {}
    assert homes.repquota_args("/srv/homes") == ["repquota", "-u", "-n", "/srv/homes"]


def test_a_failing_repquota_is_an_oserror_naming_the_filesystem():
    def run(args, **kw):
        return subprocess.CompletedProcess(args, 1, "", "repquota: Cannot stat() given mountpoint /nope")

    with pytest.raises(OSError, match="repquota /nope: repquota: Cannot stat"):
        homes.read_home_quotas("/nope", run=run)


def sampler(fake_host, reader, **config):
    cfg = SamplerConfig(cgroup_root=fake_host["cgroup"], proc_root=fake_host["proc"], **config)
    return Sampler(cfg, directory=fake_host["directory"], nvml=Nvml(), read_homes=reader)


def test_sampler_reads_homes_every_n_samples_users_only(fake_host):
    calls = []

    def reader(path):
        calls.append(path)
        return {0: (1, 0), 4242425: (5 * 1024, 8 * 1024), 4242424: (7, 0)}  # uids without names

    s = sampler(fake_host, reader, home_filesystem="/srv/homes", homes_every=3)
    snaps = [s.sample() for _ in range(4)]
    assert calls == ["/srv/homes", "/srv/homes"]   # samples 1 and 4
    got = {h.user: (h.used_bytes, h.quota_bytes) for h in snaps[1].homes}
    assert got == {"4242424": (7, 0), "4242425": (5 * 1024, 8 * 1024)}   # root (uid 0 < min_uid) is not a user
    assert snaps[0].health.up("homes")
    assert snaps[0].to_json()["homes"]["4242424"] == {"used_bytes": 7, "quota_bytes": 0}


def test_sampler_without_a_homes_filesystem_reads_nothing(fake_host):
    snap = sampler(fake_host, lambda path: pytest.fail("read without a filesystem")).sample()
    assert snap.homes == () and "homes" not in dict(snap.health.source_up)
    assert snap.to_json()["homes"] == {}


def test_a_failing_read_marks_homes_stale_and_counts_an_error(fake_host):
    def reader(path):
        raise OSError("repquota /srv/homes: no quota")

    snap = sampler(fake_host, reader, home_filesystem="/srv/homes").sample()
    assert snap.homes == () and not snap.health.up("homes")
    assert dict(snap.health.errors_total)["homes"] == 1
    assert snap.to_json()["stale"]["homes"] is True
