"""The exporter's test bed in the converged VM (tests/vm/conftest.py): hubmetrics and the
packages it needs copied from this machine's venv into the VM (same Python 3.11 ABI;
requests/urllib3 are Debian's), user containers with the spawner's own Docker arguments and labels
(dockerargs.host_config / container_labels), and carol logged in over SSH.

Used by test_exporter_v2.py and by record_v2_tree.py (the unit tests' recorded cgroup v2 tree).
- jupyter-alice: burstable (0.5 CPU, 256M; guaranteed 0.25, 64M) in the users' slice, busy, with
  16 MiB of page cache it wrote (inactive file: working set < usage);
- jupyter-alice-lab: best effort (0.25 CPU, 128M) in jupyterhub-users-besteffort.slice, busy;
- jupyter-bob: guaranteed (0.5 CPU, 320M) holding 64M, with one OOM kill at its own limit;
- carol (uid 1501): an SSH login (pam_systemd puts it in user.slice/user-1501.slice; the VM image
  lacks libpam-systemd, so it is installed from Debian's mirror first, ~40 s; while it is on,
  root's SSH commands run in user-0.slice instead of ssh.service, so the bed turns it off again
  after and checks that they are back where they were), running a
  bounded duty-cycled loop; where logind or pam_systemd is missing, a
  `systemd-run --uid --slice=user-1501.slice` unit stands in (`Bed.session` says which).
"""
from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from profilespawner import dockerargs
from profilespawner.request import SpawnRequest

M = 1024 ** 2
IMAGE = "local/debian:bookworm"
TEST_LABEL = {"jbm-vm-test": "exporter-v2"}
LIB = "/opt/hubmetrics-test"          # where the copied packages live in the VM
PROBE = f"{LIB}/exporter_probe.py"
PORT = 9945
UNIT = "hubmetrics-test"
SSH_USER, SSH_UID = "carol", 1501
CG = "/sys/fs/cgroup"
USERS_SLICE = "jupyterhub-users.slice"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BURN = "for i in $(seq {threads}); do (while :; do :; done) & done; wait; exec sleep 1000000"
# 16 MiB of page cache written by the container, charged to it and inactive: working set < memory.current
CACHE = "head -c 16777216 /dev/zero > /tmp/cache; "
HOLD = "perl -e '$x = \"a\" x ({mb} * 1024 * 1024); print \"held\\n\"; sleep 100000'"
# carol's session: some CPU every 0.3 s, bounded (about 10 minutes at most)
SESSION_LOOP = ("i=0; while [ $i -lt 2000 ]; do j=0; while [ $j -lt 2000 ]; do j=$((j+1)); done; "
                "sleep 0.3; i=$((i+1)); done")


@dataclass
class Server:
    name: str
    user: str
    req: SpawnRequest
    command: str
    id: str = ""
    cgroup: str = ""   # /sys/fs/cgroup/... in the VM


@dataclass
class Bed:
    vm: object
    servers: list
    ssh_uid: int
    slice_dir: str
    session: str                  # "pam_systemd" (a real SSH login) or "systemd-run" (stand-in)
    ssh_proc: subprocess.Popen | None = None
    notes: list = field(default_factory=list)

    def cgroups(self) -> dict:
        out = {s.name: s.cgroup for s in self.servers}
        out[SSH_USER] = self.slice_dir
        return out


def site_packages_tar() -> bytes:
    """hubmetrics (this worktree's) and the venv's pure-python/abi3 packages it imports."""
    import docker
    import prometheus_client
    import psutil
    import pynvml
    buf = io.BytesIO()
    skip = lambda info: None if "__pycache__" in info.name else info  # noqa: E731
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(REPO / "metrics" / "hubmetrics", "hubmetrics", filter=skip)
        for module in (docker, prometheus_client, psutil):
            tar.add(Path(module.__file__).parent, Path(module.__file__).parent.name, filter=skip)
        tar.add(pynvml.__file__, "pynvml.py")
        tar.add(HERE / "exporter_probe.py", "exporter_probe.py")
    return buf.getvalue()


def probe(vm, mode: str, request: dict, timeout: float = 600) -> dict:
    out = vm.ssh(f"PYTHONPATH={LIB} python3 {PROBE} {mode}", input=json.dumps(request).encode(),
                 timeout=timeout)
    return json.loads(out.stdout)


def user_ssh(vm, user: str, remote: str) -> subprocess.Popen:
    cmd = [user + "@127.0.0.1" if word == "root@127.0.0.1" else word for word in vm.ssh_command()]
    return subprocess.Popen(cmd + ["--", remote], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _clean_vm(vm, engine) -> None:
    """What an earlier (killed) run of this module may have left in the VM."""
    for c in engine.containers.list(all=True, filters={"label": "jbm-vm-test=exporter-v2"}):
        c.remove(force=True)
    vm.ssh(f"systemctl stop {UNIT} {UNIT}-session 2>/dev/null; systemctl reset-failed {UNIT} "
           f"{UNIT}-session 2>/dev/null; loginctl terminate-user {SSH_USER} 2>/dev/null; "
           f"pkill -KILL -u {SSH_USER} 2>/dev/null; sleep 1; userdel -r {SSH_USER} 2>/dev/null; true",
           timeout=120)


def servers() -> list[Server]:
    def req(profile, cpu_limit, mem_limit, cpu_guarantee, mem_guarantee):
        return SpawnRequest(profile, "Base", IMAGE, cpu_limit, mem_limit, cpu_guarantee, mem_guarantee)
    return [
        Server("jupyter-alice", "alice", req("Small", 0.5, 256 * M, 0.25, 64 * M), CACHE + BURN.format(threads=1)),
        Server("jupyter-alice-lab", "alice", req("Tiny", 0.25, 128 * M, 0, 0), BURN.format(threads=1)),
        Server("jupyter-bob", "bob", req("Fixed", 0.5, 320 * M, 0.5, 320 * M), HOLD.format(mb=64)),
    ]


PAM_SYSTEMD = "libpam-systemd"   # a stock Debian server has it (systemd Recommends it); the image lacks it
PAM_ON = "grep -q pam_systemd /etc/pam.d/common-session"


def login_cgroup(vm) -> str:
    """Where a root SSH command of the other tests runs: /system.slice/ssh.service without
    pam_systemd, /user.slice/user-0.slice/session-<n>.scope with it (the number dropped)."""
    line = vm.ssh("cat /proc/self/cgroup", timeout=120).stdout.strip().removeprefix("0::")
    return line.rsplit("/session-", 1)[0] + "/session-N.scope" if "/session-" in line else line


def _start_session(vm, bed_notes: list) -> tuple[str, subprocess.Popen | None]:
    """carol's login: a real SSH session if logind + pam_systemd are there, else a stand-in.
    pam_systemd is installed from Debian's mirror when missing (~40 s in the guest)."""
    logind = vm.ssh("systemctl is-active systemd-logind", check=False).stdout.strip()
    if vm.ssh(PAM_ON, check=False).returncode != 0 and vm.ssh(
            f"dpkg-query -W -f='${{Status}}' {PAM_SYSTEMD} | grep -q 'ok installed'", check=False).returncode == 0:
        # installed, and turned off by an earlier bed of this VM
        vm.ssh("DEBIAN_FRONTEND=noninteractive pam-auth-update --package --enable systemd", timeout=120)
        bed_notes.append("pam-auth-update --enable systemd")
    if vm.ssh(PAM_ON, check=False).returncode != 0:
        got = vm.ssh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {PAM_SYSTEMD} "
                     f"|| (apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                     f"--no-install-recommends {PAM_SYSTEMD})", check=False, timeout=900)
        bed_notes.append(f"apt-get install {PAM_SYSTEMD}: exit {got.returncode}")
    pam = vm.ssh("ls /lib/x86_64-linux-gnu/security/pam_systemd.so /usr/lib/x86_64-linux-gnu/security/"
                 "pam_systemd.so 2>/dev/null; grep -h pam_systemd /etc/pam.d/common-session", check=False).stdout
    bed_notes.append(f"logind: {logind or 'absent'}; pam_systemd: {'present' if 'pam_systemd.so' in pam else 'absent'}")
    if "pam_systemd.so" in pam:
        proc = user_ssh(vm, SSH_USER, f"exec sh -c {shlex.quote(SESSION_LOOP)}")
        for _ in range(120):  # bounded: the slow guest's login may take seconds
            where = vm.ssh(f"for p in $(pgrep -u {SSH_USER}); do cat /proc/$p/cgroup; done", check=False).stdout
            if f"user-{SSH_UID}.slice/session-" in where:
                return "pam_systemd", proc
            if proc.poll() is not None:
                break
            time.sleep(1)
        proc.kill()
        proc.wait(timeout=30)
        bed_notes.append(f"the SSH session did not land in user-{SSH_UID}.slice: {where!r} "
                         f"{proc.stderr.read().decode(errors='replace')[-500:]}")
    vm.ssh(f"systemd-run --unit={UNIT}-session --uid={SSH_UID} --gid={SSH_UID} --slice=user-{SSH_UID}.slice "
           f"sh -c {shlex.quote(SESSION_LOOP)}", timeout=120)
    return "systemd-run", None


@contextlib.contextmanager
def exporter_bed(vm, vm_engine):
    """The containers, carol's session and the copied packages in the VM; all removed after.
    pam_systemd, if the bed turned it on, is turned off again (`pam-auth-update --disable`), so
    the other modules sharing the session VM find root's SSH commands where they were (checked)."""
    _clean_vm(vm, vm_engine)
    pam_was_on = vm.ssh(PAM_ON, check=False).returncode == 0
    root_login = login_cgroup(vm)
    made = servers()
    ssh_proc = None
    try:
        vm.ssh(f"rm -rf {LIB} && mkdir -p {LIB} && tar -C {LIB} -xz", input=site_packages_tar(), timeout=300)
        vm.ssh(f"useradd -m -u {SSH_UID} -s /bin/sh {SSH_USER} && usermod -p '*' {SSH_USER} && "
               f"install -d -m 700 -o {SSH_USER} -g {SSH_USER} /home/{SSH_USER}/.ssh && "
               f"install -m 600 -o {SSH_USER} -g {SSH_USER} /root/.ssh/authorized_keys /home/{SSH_USER}/.ssh/",
               timeout=120)
        for s in made:
            hc = dockerargs.host_config(s.req, pids_limit=64, cgroup_parent=USERS_SLICE, mem_capacity=1200 * M)
            c = vm_engine.containers.run(IMAGE, ["sh", "-c", s.command], name=s.name, detach=True,
                                         labels={**dockerargs.container_labels(s.req, s.user), **TEST_LABEL}, **hc)
            s.id = c.id
        for s in made:
            pid = vm_engine.api.inspect_container(s.id)["State"]["Pid"]
            rel = vm.ssh(f"cat /proc/{pid}/cgroup").stdout.strip().removeprefix("0::")
            s.cgroup = CG + rel
        bob = next(s for s in made if s.user == "bob")
        for _ in range(180):  # bounded wait for the 64M to be held
            if int(vm.ssh(f"cat {bob.cgroup}/memory.current").stdout) >= 64 * M:
                break
            time.sleep(1)
        # the OOM killer's victim must be this one, not the holder (the container's main process)
        hog = vm_engine.containers.get(bob.id).exec_run(
            ["sh", "-c", "echo 1000 > /proc/self/oom_score_adj; exec perl -e '$x = \"a\" x (400 * 1024 * 1024)'"])
        if hog.exit_code != 137:   # killed at its own 320M limit
            raise RuntimeError(f"the 400M ask in jupyter-bob was not OOM-killed: {hog.exit_code} {hog.output!r}")
        notes = []
        session, ssh_proc = _start_session(vm, notes)
        b = Bed(vm, made, SSH_UID, f"{CG}/user.slice/user-{SSH_UID}.slice", session, ssh_proc, notes)
        print(f"carol's session: {session}; {'; '.join(notes)}")
        yield b
    finally:
        if ssh_proc is not None:
            ssh_proc.kill()
            ssh_proc.wait(timeout=30)
        _clean_vm(vm, vm_engine)
        vm.ssh(f"rm -rf {LIB}", check=False, timeout=60)
        if not pam_was_on:
            vm.ssh("DEBIAN_FRONTEND=noninteractive pam-auth-update --package --disable systemd", timeout=120)
        now = login_cgroup(vm)
        if now != root_login:
            raise RuntimeError(f"root's SSH commands ran in {root_login} before the exporter's bed and "
                               f"in {now} after it: later tests on the shared VM would see another layout")
