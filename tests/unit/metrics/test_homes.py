"""Home use against the quota: the kernel's quota walk read (pure parts, a fake libc, the real
syscall's refusal here), the sampler re-reading it every
homes_every samples and marking the source stale when repquota fails."""
import ctypes
import errno

import pytest

from hubmetrics import homes
from hubmetrics.nvml import Nvml
from hubmetrics.sampler import Sampler, SamplerConfig

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
/dev/loop0 /srv/homes ext4 rw,relatime,quota,usrquota 0 0
/dev/loop1 /srv/homes\\040b ext4 rw 0 0
/dev/loop2 /srv/homes ext4 rw,usrquota 0 0
"""


@pytest.mark.parametrize("path, expected", [
    ("/srv/homes", ("/srv/homes", "/dev/loop2")), ("/srv/homes/alice", ("/srv/homes", "/dev/loop2")),
    ("/srv/homes b/x", ("/srv/homes b", "/dev/loop1")), ("/srv/homesick", ("/", "/dev/sda1")), ("/x", ("/", "/dev/sda1")),
])
def test_the_device_is_the_last_mounted_on_the_longest_mount_point(path, expected):
    assert homes.mount_of(path, MOUNTS) == expected


def test_usage_is_bytes_used_and_the_hard_limit_else_the_soft_one():
    block = homes.NextDqblk(bhardlimit=8192, bsoftlimit=4096, curspace=5000)
    assert homes.usage(block) == (5000, 8192 * 1024)
    assert homes.usage(homes.NextDqblk(bsoftlimit=512, curspace=1)) == (1, 512 * 1024)
    assert homes.usage(homes.NextDqblk(curspace=7)) == (7, 0)


class FakeLibc:
    """quotactl over a table uid -> NextDqblk fields: GETNEXTQUOTA semantics, or one errno."""

    def __init__(self, table=None, err=0):
        self.table, self.err, self.calls = dict(table or {}), err, []

        def quotactl(cmd, device, uid, ref):
            self.calls.append((cmd, device, uid))
            nxt = [u for u in sorted(self.table) if u >= uid % 2**32]
            if self.err or not nxt:
                ctypes.set_errno(self.err or errno.ENOENT)
                return -1
            ctypes.memmove(ctypes.addressof(ref._obj),
                           ctypes.byref(homes.NextDqblk(id=nxt[0], **self.table[nxt[0]])), ctypes.sizeof(homes.NextDqblk))
            return 0

        self.quotactl = quotactl


@pytest.fixture
def mounts(tmp_path):
    (tmp_path / "homes").mkdir()
    path = tmp_path / "mounts"
    path.write_text(f"/dev/sda1 / ext4 rw 0 0\n/dev/loop7 {tmp_path / 'homes'} ext4 rw,usrquota 0 0\n")
    return str(tmp_path / "homes"), str(path)


def test_every_uid_is_walked_on_the_homes_device(mounts):
    fs, table = mounts
    libc = FakeLibc({0: {"curspace": 20480}, 2001: {"curspace": 8 << 20, "bhardlimit": 8192, "bsoftlimit": 8192},
                     4294967294: {"curspace": 4096}})
    assert homes.read_home_quotas(fs, mounts=table, libc=libc) == {
        0: (20480, 0), 2001: (8 << 20, 8 << 20), 4294967294: (4096, 0)}
    assert [c[2] for c in libc.calls] == [0, 1, 2002, -1]   # the next id after each one, then the end
    assert {c[:2] for c in libc.calls} == {(homes.qcmd(homes.Q_GETNEXTQUOTA, homes.USRQUOTA), b"/dev/loop7")}
    assert homes.read_home_quotas(fs, mounts=table, libc=FakeLibc({})) == {}


def test_quotas_off_is_an_oserror_naming_the_filesystem(mounts):
    fs, table = mounts
    with pytest.raises(OSError, match=f"user quotas of {fs} \\(/dev/loop7\\): user quotas are off there"):
        homes.read_home_quotas(fs, mounts=table, libc=FakeLibc(err=errno.ESRCH))


def test_this_kernel_answers_with_an_error_not_numbers():
    # the real syscall on this machine's root filesystem (no user quotas here): an OSError
    with pytest.raises(OSError):
        homes.read_home_quotas("/")


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
