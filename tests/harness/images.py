"""Build the test images without a registry, cached by content.

The base image comes from debootstrap + `docker import`; the others are built FROM it. Extra CA
certificates (a TLS-intercepting proxy, a corporate CA) are copied into every build context, so
apt/pip inside the build trust what the host trusts; where there are none the folder is empty.

Run `python -m tests.harness.images` to build them all.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .dockerd import ensure_dockerd

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
CACHE_DIR = Path(os.environ.get("JBM_CACHE_DIR", "/var/cache/jbm"))
CA_DIR = Path(os.environ.get("JBM_EXTRA_CA_DIR", "/usr/local/share/ca-certificates"))
DEBIAN_MIRROR = os.environ.get("JBM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HASH_LABEL = "org.jupyterhub-baremetal.content-hash"

BASE_IMAGE = "local/debian:bookworm"
SINGLEUSER_IMAGE = "local/singleuser:latest"
SYSTEMD_IMAGE = "local/debian-systemd:bookworm"
REVERSE_PROXY_IMAGE = "local/reverse-proxy:bookworm"


def _inspect(image: str, fmt: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "-f", fmt, image],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def extra_ca_files() -> list[Path]:
    """The host's extra CA certificates (empty on machines without any)."""
    return sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []


def ensure_base_image() -> str:
    """Debian bookworm minbase from debootstrap, imported as an image (no registry needed)."""
    ensure_dockerd()
    if _inspect(BASE_IMAGE, "{{.Id}}"):
        return BASE_IMAGE
    rootfs = CACHE_DIR / "rootfs-bookworm"
    if not (rootfs / "bin" / "bash").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True,
                   stdout=subprocess.DEVNULL)
    if tar.wait() != 0:
        raise RuntimeError(f"tar of {rootfs} failed")
    return BASE_IMAGE


def _content_hash(context: Path, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()) + extra_ca_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_image(tag: str, context: Path, parent: str | None = None) -> str:
    """`docker build` the context FROM the base image (or `parent`, an image built here first),
    skipped when nothing it depends on changed."""
    base_id = _inspect(parent or ensure_base_image(), "{{.Id}}")
    wanted = _content_hash(context, base_id)
    if _inspect(tag, "{{index .Config.Labels \"" + HASH_LABEL + "\"}}") == wanted:
        return tag
    with tempfile.TemporaryDirectory(prefix="jbm-build-") as tmp:
        build_dir = Path(tmp) / "ctx"
        shutil.copytree(context, build_dir)
        (build_dir / "ca").mkdir(exist_ok=True)
        for ca in extra_ca_files():
            shutil.copy(ca, build_dir / "ca" / ca.name)
        subprocess.run(["docker", "build", "--network", "host", "--label", f"{HASH_LABEL}={wanted}",
                        "-t", tag, str(build_dir)], check=True, stdout=subprocess.DEVNULL)
    return tag


def ensure_singleuser_image() -> str:
    return build_image(SINGLEUSER_IMAGE, IMAGES_DIR / "singleuser")


# --- nbgrader (issue 11.5) ---------------------------------------------------------------------
NBGRADER_IMAGE = "local/singleuser-nbgrader:latest"


def ensure_nbgrader_image() -> str:
    """The singleuser image plus nbgrader (pinned in its Dockerfile), rebuilt when either changes."""
    return build_image(NBGRADER_IMAGE, IMAGES_DIR / "singleuser-nbgrader", parent=ensure_singleuser_image())


NBGRADER_STUDENT_IMAGE = "local/singleuser-nbgrader-student:latest"


def ensure_nbgrader_student_image() -> str:
    """The nbgrader image without the instructors' extensions (formgrader, create assignment)."""
    return build_image(NBGRADER_STUDENT_IMAGE, IMAGES_DIR / "singleuser-nbgrader-student",
                       parent=ensure_nbgrader_image())
# --- end nbgrader ---------------------------------------------------------------------------------


def ensure_systemd_image() -> str:
    return build_image(SYSTEMD_IMAGE, IMAGES_DIR / "systemd")


def ensure_reverse_proxy_image() -> str:
    """nginx and Caddy from Debian: the reverse-proxy machine in front of a hub in `proxy` mode."""
    return build_image(REVERSE_PROXY_IMAGE, IMAGES_DIR / "reverse-proxy")


def ensure_all() -> None:
    for ensure in (ensure_base_image, ensure_singleuser_image, ensure_systemd_image,
                   ensure_reverse_proxy_image):
        print(ensure(), flush=True)


if __name__ == "__main__":
    ensure_all()
