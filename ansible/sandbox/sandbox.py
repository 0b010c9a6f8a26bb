"""`make sandbox`: a throwaway JupyterHub server on this machine, installed by the real playbook.

Starts a systemd host container with its own dockerd inside (tests/harness/systemd_host.py,
TESTBED.md), converges ansible/site.yml into it over the docker connection, loads the
single-user image into its dockerd, creates a test user with a password and prints the hub's
URL and the login. Nothing on the machine changes beyond that container, the cached CPython
tarball and the images. The system tests import these functions (one source for "start a
server and converge it").

    python3 ansible/sandbox/sandbox.py            # (re)create and converge jbm-sandbox
    python3 ansible/sandbox/sandbox.py --reuse    # converge the running sandbox again
    python3 ansible/sandbox/sandbox.py --destroy  # remove it
"""
import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.images import CACHE_DIR, DEBIAN_MIRROR, SINGLEUSER_IMAGE  # noqa: E402
from tests.harness.hub import bridge_gateway  # noqa: E402
from tests.harness.images import ensure_singleuser_image  # noqa: E402
from tests.harness.systemd_host import SystemdHost, start_systemd_host  # noqa: E402

SITE = ROOT / "ansible" / "site.yml"
ANSIBLE_CFG = ROOT / "ansible" / "ansible.cfg"
INVENTORY = Path(__file__).resolve().parent / "inventory.yml"
DEFAULT_NAME = "jbm-sandbox"
PYTHON_SRC_DIR = CACHE_DIR / "python-src"
PYTHON_TARBALL = "python3.11_3.11.2.orig.tar.gz"   # == python.org's Python-3.11.2.tgz
TEST_USER = "demo"
TEST_GROUP = "jupyterhub-users"                      # jupyterhub_allowed_groups
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


# --- CPython source, served to the sandbox ---------------------------------------------------

def ensure_python_tarball() -> Path:
    """Debian's orig tarball of CPython 3.11.2 in the cache (python.org is unreachable here).

    apt-get source with a private sources list and lists dir, so the machine's apt is untouched.
    """
    tarball = PYTHON_SRC_DIR / PYTHON_TARBALL
    if tarball.exists():
        return tarball
    PYTHON_SRC_DIR.mkdir(parents=True, exist_ok=True)
    sources = PYTHON_SRC_DIR / "deb-src.list"
    sources.write_text(f"deb-src {DEBIAN_MIRROR} bookworm main\n"
                       f"deb-src {DEBIAN_MIRROR} bookworm-updates main\n")
    lists = PYTHON_SRC_DIR / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    opts = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={lists}"]
    subprocess.run(["apt-get", *opts, "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", *opts, "source", "--download-only", "python3.11"],
                   cwd=PYTHON_SRC_DIR, check=True, stdout=subprocess.DEVNULL)
    return tarball


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_directory(directory: Path, address: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A plain HTTP server for `directory` on `address` (random port), in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{address}:{server.server_address[1]}"


# --- converging ------------------------------------------------------------------------------

@dataclass
class Converge:
    """One ansible-playbook run: its exit code, output, recap and the tasks that changed."""
    returncode: int
    output: str
    seconds: float
    recap: dict = field(default_factory=dict)

    @property
    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported `changed` (the default callback's TASK headers)."""
        names, current = [], None
        for line in self.output.splitlines():
            header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if header:
                current = header.group(1)
            elif line.startswith("changed:") and current and current not in names:
                names.append(current)
        return names


def ansible_playbook() -> str:
    """ansible-playbook of the Python running this script (its venv), else from PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def converge(container: str, python_source_url: str, extra_vars: dict | None = None,
             echo: bool = False, limit_tags: str | None = None) -> Converge:
    """Run site.yml against the container with the sandbox inventory."""
    variables = {"jbm_sandbox_container": container, "jbm_python_source_url": python_source_url,
                 **(extra_vars or {})}
    cmd = [ansible_playbook(), "-i", str(INVENTORY), str(SITE), "-e", json.dumps(variables)]
    if limit_tags:
        cmd += ["--tags", limit_tags]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_CFG), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if echo:
            print(line, end="", flush=True)
    proc.wait()
    output = "".join(lines)
    result = Converge(proc.returncode, output, time.monotonic() - start)
    for match in RECAP.finditer(output):
        keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
        result.recap[match.group(1)] = dict(zip(keys, map(int, match.groups()[1:])))
    return result


# --- the sandbox -----------------------------------------------------------------------------

def start_host(name: str) -> SystemdHost:
    """A fresh systemd host container with Docker-in-host capabilities."""
    return start_systemd_host(name, docker_inside=True)


def load_singleuser_image(host: SystemdHost) -> None:
    """Copy local/singleuser:latest into the sandbox's dockerd (no registry here)."""
    ensure_singleuser_image()
    host.load_image(SINGLEUSER_IMAGE)


def create_user(host: SystemdHost, username: str, password: str, groups=(TEST_GROUP,)) -> None:
    """A real account with a password (checked by the hub's PAM) in the allowed group."""
    if host.exec("id", username, check=False).returncode != 0:
        host.exec("useradd", "--create-home", "--shell", "/bin/bash", username)
    if groups:
        host.exec("usermod", "-a", "-G", ",".join(groups), username)
    host.exec("chpasswd", input=f"{username}:{password}\n")


def hub_url(host: SystemdHost, port: int = 8000) -> str:
    return f"http://{host.ip}:{port}/"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="container name (default %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="converge the running container again")
    parser.add_argument("--destroy", action="store_true", help="remove the sandbox and exit")
    parser.add_argument("--password", default="demo-password", help="the test user's password")
    args = parser.parse_args(argv)

    host = SystemdHost(args.name)
    if args.destroy:
        host.remove()
        print(f"removed {args.name}")
        return 0
    tarball = ensure_python_tarball()
    server, base_url = serve_directory(tarball.parent, bridge_gateway())
    try:
        running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", args.name],
                                 capture_output=True, text=True).stdout.strip() == "true"
        if not (args.reuse and running):
            print(f"starting the systemd host container {args.name} ...", flush=True)
            host = start_host(args.name)
        result = converge(args.name, f"{base_url}/{tarball.name}", echo=True)
    finally:
        server.shutdown()
    if result.returncode != 0:
        print(f"\nsandbox: the playbook failed (exit {result.returncode}); the container "
              f"{args.name} is kept for inspection (docker exec -it {args.name} bash).",
              file=sys.stderr)
        return result.returncode
    load_singleuser_image(host)
    create_user(host, TEST_USER, args.password)
    print(f"""
jupyterhub-baremetal sandbox is ready ({result.seconds:.0f} s).
  Hub:      {hub_url(host)}
  Login:    {TEST_USER} / {args.password}
  Shell:    docker exec -it {args.name} bash   (journalctl -u jupyterhub)
  Remove:   python3 ansible/sandbox/sandbox.py --destroy
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
