"""Two real users' containers burning CPU and memory, a third user logged in outside any
container, and the fake NVML reporting GPU processes that live in the two containers."""
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hubmetrics import labels

PREFIX = "hmtest"
# bash holds MiB of 'a' in a variable, then spins; minbase Debian has no python.
BURN = 'x=$(head -c {mib}M /dev/zero | tr "\\0" a); echo ready; while :; do :; done'


@dataclass(frozen=True)
class UserContainer:
    user: str
    uid: int
    name: str
    id: str
    init_pid: int
    mib: int
    gpu: str


def _docker(*args, check=True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def remove_test_containers() -> None:
    ids = _docker("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def cgroup_file(container_id: str, controller: str, name: str) -> str:
    """The test's own read of the container's cgroup (cgroupfs driver, v1 on the test bed)."""
    return Path(f"/sys/fs/cgroup/{controller}/docker/{container_id}/{name}").read_text()


@pytest.fixture(scope="module")
def burning_containers(base_image):
    from tests.harness import users
    remove_test_containers()
    made = []
    out = []
    try:
        for user, mib, gpu in ((f"{PREFIX}-alice", 60, "0"), (f"{PREFIX}-bob", 150, "1")):
            entry = users.ensure_user(user)
            made.append(user)
            name = f"{PREFIX}-jupyter-{user}"
            cid = _docker(
                "run", "-d", "--name", name, "--user", f"{entry.pw_uid}:{entry.pw_gid}",
                "--memory", "512m", "--memory-reservation", "128m", "--cpus", "0.5",
                "--label", f"{labels.USER}={user}", "--label", f"{labels.RESOURCE_PROFILE}=Tiny",
                "--label", f"{labels.IMAGE_PROFILE}=Debian", "--label", f"{labels.CPU_LIMIT}=0.5",
                "--label", f"{labels.MEM_LIMIT}={512 * 2 ** 20}", "--label", f"{labels.CPU_GUARANTEE}=0.25",
                "--label", f"{labels.MEM_GUARANTEE}={128 * 2 ** 20}", "--label", f"{labels.GPUS}={gpu}",
                base_image, "bash", "-c", BURN.format(mib=mib))
            pid = int(_docker("inspect", "-f", "{{.State.Pid}}", cid))
            out.append(UserContainer(user, entry.pw_uid, name, cid, pid, mib, gpu))
        deadline = time.monotonic() + 60
        for c in out:
            while "ready" not in _docker("logs", c.id) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "ready" in _docker("logs", c.id), f"{c.name} did not start burning"
        yield out
    finally:
        remove_test_containers()
        for user in made:
            users.remove_user(user)


@pytest.fixture(scope="module")
def ssh_user_process():
    """A process of a real user outside any container (as an SSH session would be)."""
    from tests.harness import users
    entry = users.ensure_user(f"{PREFIX}-carol")
    child = subprocess.Popen(
        ["/usr/bin/python3", "-c", "import time; x = bytearray(40 * 2**20); print('ready', flush=True); time.sleep(600)"],
        user=entry.pw_uid, group=entry.pw_gid, stdout=subprocess.PIPE, text=True, cwd="/")
    assert child.stdout.readline() == "ready\n"
    yield entry, child
    child.kill()
    child.wait()
    users.remove_user(entry.pw_name)


@pytest.fixture(scope="module")
def fake_nvml_dir(tmp_path_factory):
    from tests.fakenvml.build import build
    return build(tmp_path_factory.mktemp("fakenvml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DockerSocketProxy:
    """A unix socket forwarding to the real Docker socket, which the test can cut: the daemon
    becomes unreachable for the exporter while the containers keep running."""

    def __init__(self, path: str, target: str = "/var/run/docker.sock"):
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(16)
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.server.close()
        os.unlink(self.path)
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
