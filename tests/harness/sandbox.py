"""The sandbox: a systemd host container (Docker inside) with site.yml converged into it by the
one playbook runner (tests/harness/playbooks.py). `make sandbox` (ansible/sandbox/sandbox.py)
and the system tests both use these functions: one source for "start a server and converge it".
"""
import functools
import http.server
import subprocess
import tempfile
import threading
from pathlib import Path

from .images import CACHE_DIR, DEBIAN_MIRROR, SINGLEUSER_IMAGE, ensure_singleuser_image
from .playbooks import ANSIBLE_CFG, REPO, SITE, Run, run_playbook
from .systemd_host import SystemdHost, start_systemd_host

INVENTORY = REPO / "ansible" / "sandbox" / "inventory.yml"
DEFAULT_NAME = "jbm-sandbox"
PYTHON_SRC_DIR = CACHE_DIR / "python-src"
PYTHON_TARBALL = "python3.11_3.11.2.orig.tar.gz"   # == python.org's Python-3.11.2.tgz
TEST_USER = "demo"
TEST_GROUP = "jupyterhub-users"                      # jupyterhub_allowed_groups


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

def converge(container: str, python_source_url: str, extra_vars: dict | None = None,
             echo: bool = False, limit_tags: str | None = None, more_inventory: Path | None = None) -> Run:
    """Run site.yml against the container with the sandbox inventory and the site's ansible.cfg;
    `more_inventory`: another inventory merged into it (a swarm's [jupyterhub_nodes])."""
    variables = {"jbm_sandbox_container": container, "jbm_python_source_url": python_source_url,
                 **(extra_vars or {})}
    workdir = Path(tempfile.mkdtemp(prefix=f"converge-{container}-"))
    return run_playbook(workdir, [INVENTORY, *([more_inventory] if more_inventory else [])], variables,
                        SITE, config=ANSIBLE_CFG, tags=limit_tags, echo=echo)


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
