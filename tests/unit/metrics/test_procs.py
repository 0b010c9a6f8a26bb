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
BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nx=bytearray(30*1024*1024)\nimport sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)\n"


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
    assert os.getuid() < 1000, "runs as root (uid 0) on the test bed"
    assert procs.user_processes("/proc", min_uid=1000, pids=[busy_child.pid]) == []


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


def _copy_process(src_pid: int, fake_proc, cgroup_text: str, uid: int) -> None:
    d = fake_proc / str(src_pid)
    d.mkdir()
    for name in ("stat", "statm", "status", "smaps_rollup"):
        shutil.copyfile(f"/proc/{src_pid}/{name}", d / name)
    (d / "cgroup").write_text(cgroup_text)
    os.chown(d, uid, uid)


def test_a_copied_proc_root_stands_in_and_container_processes_are_left_out(tmp_path, busy_child):
    fake = tmp_path / "proc"
    fake.mkdir()
    shutil.copyfile("/proc/stat", fake / "stat")   # psutil reads the boot time from here
    shutil.copyfile("/proc/meminfo", fake / "meminfo")
    _copy_process(busy_child.pid, fake, "0::/user.slice/user-1500.slice/session-4.scope\n", 1500)
    _copy_process(os.getpid(), fake, f"12:memory:/docker/{CID}\n0::/\n", 1501)
    (fake / "self").mkdir()  # non-numeric entries are not processes
    try:
        found = procs.user_processes(str(fake), min_uid=1000)
    finally:
        psutil.PROCFS_PATH = "/proc"
    assert [(p.pid, p.uid) for p in found] == [(busy_child.pid, 1500)]
    assert found[0].pss_bytes >= 30 * 1024 * 1024
    assert procs.meminfo(str(fake))["MemTotal"] == psutil.virtual_memory().total


def test_nobody_is_not_a_user(tmp_path, busy_child):
    fake = tmp_path / "proc"
    fake.mkdir()
    shutil.copyfile("/proc/stat", fake / "stat")
    _copy_process(busy_child.pid, fake, "0::/\n", procs.NOBODY)
    try:
        assert procs.user_processes(str(fake), min_uid=1000) == []
    finally:
        psutil.PROCFS_PATH = "/proc"


def test_pss_is_re_read_every_n_samples_staggered_by_pid():
    grower = subprocess.Popen([sys.executable, "-c",
                               "import sys\nx=[]\nfor line in sys.stdin:\n x.append(bytearray(40*2**20))\n print('ok', flush=True)\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        memo = {}
        skip = (1 - grower.pid) % 2 or 2   # a sample_no for which (sample_no + pid) % 2 != 0
        read = skip + 1                    # and the next one, for which it is 0
        first = procs.user_processes("/proc", min_uid=0, pids=[grower.pid], memo=memo, sample_no=0, pss_every=2)[0]
        grower.stdin.write("grow\n")
        grower.stdin.flush()
        assert grower.stdout.readline() == "ok\n"
        kept = procs.user_processes("/proc", min_uid=0, pids=[grower.pid], memo=memo, sample_no=skip, pss_every=2)[0]
        fresh = procs.user_processes("/proc", min_uid=0, pids=[grower.pid], memo=memo, sample_no=read, pss_every=2)[0]
        assert kept.pss_bytes == first.pss_bytes
        assert fresh.pss_bytes >= first.pss_bytes + 40 * 2 ** 20
        assert fresh.cpu_seconds >= kept.cpu_seconds
    finally:
        grower.kill()
        grower.wait()


def test_memo_forgets_exited_processes(busy_child):
    victim = subprocess.Popen(["sleep", "60"])
    memo = {}
    procs.user_processes("/proc", min_uid=0, memo=memo)
    assert victim.pid in {pid for pid, _ in memo}
    victim.kill()
    victim.wait()
    procs.user_processes("/proc", min_uid=0, memo=memo)
    assert victim.pid not in {pid for pid, _ in memo}
    assert busy_child.pid in {pid for pid, _ in memo}
