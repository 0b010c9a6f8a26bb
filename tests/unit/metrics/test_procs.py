"""Users' processes outside containers: real processes, a copied /proc standing in for a host,
and processes that exit while they are read."""
import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from hubmetrics import procs

CID = "3f1c0b7a9d2e4f56" * 4
BURN = ("import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nx=bytearray(30*1024*1024)\n"
        "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)\n")


@pytest.fixture
def busy_child():
    """A real process that used ~0.3 s CPU and holds 30 MiB."""
    child = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    yield child
    child.kill()
    child.wait()


def test_reads_cpu_and_pss_of_a_real_process(busy_child):
    found = {p.pid: p for p in procs.user_processes("/proc", min_uid=0, pids=[busy_child.pid])}
    p = found[busy_child.pid]
    assert p.uid == os.getuid()
    assert p.cpu_seconds >= 0.3
    assert p.pss_bytes >= 30 * 1024 * 1024
    assert p.start_time == pytest.approx(psutil.Process(busy_child.pid).create_time() - psutil.boot_time(), abs=0.05)


def test_system_uids_are_not_users(busy_child):
    """A process whose uid is below min_uid (the first user uid) is not a user's."""
    me = os.getuid()
    assert procs.user_processes("/proc", min_uid=me + 1, pids=[busy_child.pid]) == []
    assert [p.uid for p in procs.user_processes("/proc", min_uid=me, pids=[busy_child.pid])] == [me]


def test_processes_exiting_mid_sample_are_skipped(busy_child):
    """An exited pid, a zombie (exited, not yet reaped) and a live one in the same sample."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        found = procs.user_processes("/proc", min_uid=0, pids=[gone.pid, zombie.pid, busy_child.pid])
    finally:
        zombie.wait()
    assert [p.pid for p in found] == [busy_child.pid]


def test_a_process_vanishing_between_listing_and_reading(busy_child):
    """Kill the process after /proc was listed: the sample goes on without it."""
    victim = subprocess.Popen(["sleep", "60"])
    pids = procs.list_pids("/proc")
    assert victim.pid in pids
    victim.kill()
    victim.wait()
    found = {p.pid for p in procs.user_processes("/proc", min_uid=0, pids=pids)}
    assert victim.pid not in found
    assert busy_child.pid in found


def _copy_process(src_pid: int, fake_proc, cgroup_text: str, uid: int, own) -> None:
    d = fake_proc / str(src_pid)
    d.mkdir()
    for name in ("stat", "statm", "status", "smaps_rollup"):
        shutil.copyfile(f"/proc/{src_pid}/{name}", d / name)
    (d / "cgroup").write_text(cgroup_text)
    own(d, uid)


def test_a_copied_proc_root_stands_in_and_container_processes_are_left_out(tmp_path, busy_child, own):
    fake = tmp_path / "proc"
    fake.mkdir()
    shutil.copyfile("/proc/stat", fake / "stat")   # psutil reads the boot time from here
    shutil.copyfile("/proc/meminfo", fake / "meminfo")
    _copy_process(busy_child.pid, fake, "0::/user.slice/user-1500.slice/session-4.scope\n", 1500, own)
    _copy_process(os.getpid(), fake, f"12:memory:/docker/{CID}\n0::/\n", 1501, own)
    (fake / "self").mkdir()  # non-numeric entries are not processes
    try:
        found = procs.user_processes(str(fake), min_uid=1000)
    finally:
        psutil.PROCFS_PATH = "/proc"
    assert [(p.pid, p.uid) for p in found] == [(busy_child.pid, 1500)]
    assert found[0].pss_bytes >= 30 * 1024 * 1024
    assert procs.meminfo(str(fake))["MemTotal"] == psutil.virtual_memory().total


def test_nobody_is_not_a_user(tmp_path, busy_child, own):
    fake = tmp_path / "proc"
    fake.mkdir()
    shutil.copyfile("/proc/stat", fake / "stat")
    _copy_process(busy_child.pid, fake, "0::/\n", procs.NOBODY, own)
    try:
        assert procs.user_processes(str(fake), min_uid=1000) == []
    finally:
        psutil.PROCFS_PATH = "/proc"


GROWER = ("import sys, time\nx=[]\nprint('ok', flush=True)\nfor line in sys.stdin:\n x.append(bytearray(40*2**20))\n"
          " t=time.process_time()\n while time.process_time()-t<0.1: pass\n print('ok', flush=True)\n")


def test_pss_of_a_running_process_is_re_read_every_n_samples_staggered_by_pid():
    grower = subprocess.Popen([sys.executable, "-c", GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    table = procs.ProcessTable("/proc", min_uid=0, pss_every=2)
    try:
        assert grower.stdout.readline() == "ok\n"
        table.sample_no = grower.pid % 2  # (sample_no + pid) % 2: 0 (first read), 1 (skip), 0 (its turn)
        first = table.scan([grower.pid])[0]
        grower.stdin.write("grow\n")
        grower.stdin.flush()
        assert grower.stdout.readline() == "ok\n"
        kept = table.scan([grower.pid])[0]      # used CPU, but not its turn
        fresh = table.scan([grower.pid])[0]     # its turn
        assert kept.pss_bytes == first.pss_bytes
        # the 40 MiB it touched, less what its shared pages lost when another process mapped the
        # same libraries in between (PSS divides them among the sharers): a kept value still fails
        assert fresh.pss_bytes >= first.pss_bytes + 36 * 2 ** 20, (first.pss_bytes, fresh.pss_bytes)
        assert fresh.cpu_seconds > first.cpu_seconds
    finally:
        table.close()
        grower.kill()
        grower.wait()


def test_an_idle_process_pss_is_re_read_only_every_idle_period(busy_child, monkeypatch):
    """busy_child sleeps now: no CPU, so no reason to walk its page tables every pss_every."""
    reads = []
    real = procs._pss
    monkeypatch.setattr(procs, "_pss", lambda base, pid: reads.append(pid) or real(base, pid))
    table = procs.ProcessTable("/proc", min_uid=0, pss_every=2)
    try:
        for _ in range(2 * procs.PSS_IDLE_FACTOR + 1):
            assert [p.pid for p in table.scan([busy_child.pid])] == [busy_child.pid]
        assert len(reads) == 2  # the first sample, and once the idle period ran out
    finally:
        table.close()


def test_a_table_forgets_exited_processes_and_closes_their_files(busy_child):
    victim = subprocess.Popen(["sleep", "60"])
    table = procs.ProcessTable("/proc", min_uid=0)
    try:
        table.scan()
        fd = table.known[victim.pid].fd
        assert fd >= 0 and busy_child.pid in table.known
        victim.kill()
        victim.wait()
        assert victim.pid not in {p.pid for p in table.scan()}
        assert victim.pid not in table.known and busy_child.pid in table.known
        with pytest.raises(OSError):
            os.fstat(fd)  # closed
    finally:
        table.close()


def test_a_held_stat_file_is_the_process_not_the_pid(busy_child):
    """The fd refers to the process it was opened for: once that one is gone, reading it fails
    (so a reused pid never reads as the old process's numbers)."""
    victim = subprocess.Popen(["sleep", "60"])
    table = procs.ProcessTable("/proc", min_uid=0, verify_every=1000)
    try:
        table.scan([victim.pid])
        victim.kill()
        victim.wait()
        assert table.scan([victim.pid]) == []
        assert victim.pid not in table.known
    finally:
        table.close()


def test_out_of_descriptors_reads_by_path_and_checks_the_start_time(busy_child):
    table = procs.ProcessTable("/proc", min_uid=0, verify_every=1000)
    try:
        table.scan([busy_child.pid])
        k = table.known[busy_child.pid]
        os.close(k.fd)
        k.fd = -2  # as if os.open had failed with EMFILE
        assert [p.pid for p in table.scan([busy_child.pid])] == [busy_child.pid]
        k.start += 1  # what a reused pid looks like: another start time
        assert table.scan([busy_child.pid]) == []
        assert busy_child.pid not in table.known
    finally:
        table.close()


def test_system_processes_are_classified_once_and_re_verified(tmp_path, busy_child, monkeypatch):
    stats = []
    real = os.stat
    monkeypatch.setattr(procs.os, "stat", lambda path, *a, **kw: stats.append(path) or real(path, *a, **kw))
    table = procs.ProcessTable("/proc", min_uid=1 << 30, verify_every=3)
    table.sample_no = (1 - busy_child.pid) % 3   # (sample_no + pid) % 3 == 1 in the first sample
    try:
        for _ in range(6):
            assert table.scan([busy_child.pid]) == []   # "root's": below min_uid
        assert len(stats) == 3   # classified in the first sample, re-verified in the 3rd and 6th
    finally:
        table.close()
