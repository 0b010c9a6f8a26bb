"""Make sure a Docker engine answers, starting one when none does (CI machines start empty)."""
import shutil
import subprocess
import time

DOCKERD_LOG = "/var/log/dockerd-test.log"


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def ensure_dockerd(timeout: float = 60.0) -> None:
    """Start dockerd (overlay2, as TESTBED.md) unless one already answers."""
    if docker_answers():
        return
    if not shutil.which("dockerd"):
        raise RuntimeError("dockerd is not installed: apt-get install docker.io")
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(
            ["dockerd", "--storage-driver=overlay2"],
            stdout=log, stderr=log, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(0.5)
    raise RuntimeError(f"dockerd did not answer within {timeout:.0f}s; see {DOCKERD_LOG}")
