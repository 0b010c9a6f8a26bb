"""A real Debian 12 VM (Debian's kernel, systemd PID 1, cgroup v2 unified) under qemu TCG.

The cgroup v2 tier: what a stock Debian 12 / Ubuntu 24.04 server is, and this machine (cgroup v1,
no systemd PID 1) is not. TESTBED.md "A real Debian 12 VM" is the recipe.

- `ensure_vm_image()` assembles the disk natively (debootstrap + a chroot apt-get, no emulation):
  raw ext4 from `mkfs.ext4 -d`, Debian's kernel and initrd copied out, a generated root SSH key,
  the host's Debian apt sources and extra CA certificates. Cached under
  /var/cache/jbm/vm/<hash>/, the hash over the recipe (packages, files, script, CA certificates,
  apt sources, mirror): rebuilt only when one of them changes.
- `ensure_snapshot()` boots that image once, waits for SSH and the boot to finish, and
  `savevm booted` through a QMP unix socket into `booted-<hash>.qcow2` next to the image (a qcow2
  overlay on the raw disk, keyed by the qemu version and machine options).
- `start_vm(name)` gives a VM of its own from that snapshot: qemu's `loadvm` only finds internal
  snapshots in the top image (an overlay on booted.qcow2 reports "Snapshot 'booted' does not exist
  in one or more devices"), so each VM gets a copy of booted.qcow2 (still copy-on-write over the
  raw disk) and `-loadvm booted`, then the guest clock is set (`hwclock --hctosys`).
  User-mode networking, the only port forwarded is SSH on 127.0.0.1.
- `link(a, b)` joins two running VMs by a private network (a swarm's hub and node): qemu's socket
  netdev and a second NIC hot-plugged through the monitor, static 10.10.10.1 and .2/24.

Cost on the 2-core development machine (measured 2026-12; the range is an idle machine vs one
shared with other test runs): image build 120-220 s (once per recipe; debootstrap's packages are
kept in vm/debs), first boot to SSH 23-38 s and savevm 0.5-2 s (once per image and qemu), a VM
from the snapshot 5-11 s (copy of booted.qcow2, ~550 MB, + loadvm + SSH + clock), the docker
role converged over SSH ~66 s (a second, idempotent converge 52-63 s), `docker save | docker
load` of local/debian:bookworm ~70 s (the guest CPU is ~12x slower than the host), tests/vm's
module ~4 min. `python -m tests.harness.vm` (`make vm-image`) builds both caches, starts one VM
from the snapshot and prints the timings (also kept in the image's timings.json).

Timings need the CPU: a qemu in the root cgroup next to containers with large cpu.shares (a
benchmark of another worktree running) got ~1% of a core and its loadvm did not finish in 5 min.

Fixtures (tests/vm/conftest.py): `vm` (module scope) is a VM as booted, the docker role NOT
converged; `converged_vm` (module scope) is a VM of its own with the docker role converged over
SSH and local/debian:bookworm loaded. Guest console and qemu logs stay in /var/tmp/jbm-vm/<name>-*/.
"""
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .images import CACHE_DIR, DEBIAN_MIRROR, extra_ca_files

VM_CACHE = CACHE_DIR / "vm"
RUN_ROOT = Path(os.environ.get("JBM_VM_RUN_DIR", "/var/tmp/jbm-vm"))
SUITE = "bookworm"
HOSTNAME = "jbm-vm"
DISK_SIZE = "8G"
SNAPSHOT = "booted"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1"
# The machine every VM runs as; a snapshot only loads into the same machine.
MACHINE = ["-m", "2048", "-smp", "2",
           "-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"]

# debootstrap --include: TESTBED.md's measured list (plus hwclock, in util-linux-extra).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "linux-image-amd64",
                 "iproute2", "python3", "python3-apt", "sudo", "ca-certificates",
                 "systemd-resolved", "procps", "kmod", "udev", "util-linux-extra")
# Installed natively in the chroot afterwards (apt resolves them better than debootstrap).
# apparmor: Debian's kernel enables it, and dockerd then needs apparmor_parser to start containers.
EXTRA_PACKAGES = ("docker.io", "apparmor", "python3-requests", "quota", "e2fsprogs", "iptables",
                  "ufw", "nfs-kernel-server", "nfs-common")

FILES = {
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n",
    "etc/fstab": "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    "etc/systemd/network/20-en.network": "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
    # Keep services from starting inside the build chroot.
    "usr/sbin/policy-rc.d": "#!/bin/sh\nexit 101\n",
}

# Run in the chroot after the extra packages are in.
CONFIGURE = """set -eu
rm -f /usr/sbin/policy-rc.d
update-ca-certificates >/dev/null
systemctl enable systemd-networkd systemd-resolved ssh docker
# No getty but the serial console's; no timers that burn the emulated CPU.
systemctl mask getty@.service console-getty.service apt-daily.timer apt-daily-upgrade.timer \
  man-db.timer e2scrub_all.timer fstrim.timer
systemctl set-default multi-user.target
rm -f /var/cache/apt/archives/*.deb
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
"""

DEBIAN_HOSTS = {"deb.debian.org", "security.debian.org", "snapshot.debian.org",
                urlparse(DEBIAN_MIRROR).hostname}


def host_apt_sources() -> list[Path]:
    """The host's apt source files that name only Debian's mirrors (third-party repositories
    need keyrings the image lacks)."""
    candidates = [Path("/etc/apt/sources.list"),
                  *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
                  *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    chosen = []
    for path in candidates:
        if not path.is_file():
            continue
        lines = [line for line in path.read_text().splitlines()
                 if not line.lstrip().startswith("#")]
        hosts = {urlparse(url).hostname for url in re.findall(r"https?://\S+", "\n".join(lines))}
        if hosts and hosts <= DEBIAN_HOSTS:
            chosen.append(path)
    return chosen


def image_key() -> str:
    digest = hashlib.sha256()
    recipe = [SUITE, DEBIAN_MIRROR, DISK_SIZE, BASE_PACKAGES, EXTRA_PACKAGES, FILES, CONFIGURE]
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for path in extra_ca_files() + host_apt_sources():
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class VMImage:
    dir: Path

    disk = property(lambda self: self.dir / "disk.img")
    kernel = property(lambda self: self.dir / "vmlinuz")
    initrd = property(lambda self: self.dir / "initrd.img")
    key = property(lambda self: self.dir / "id_ed25519")


@contextlib.contextmanager
def _locked(path: Path):
    """One builder at a time across processes (other worktrees build the same cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise RuntimeError(f"the VM tier needs {', '.join(missing)} on PATH: apt-get install "
                           "qemu-system-x86 qemu-utils debootstrap openssh-client e2fsprogs")


def _run(cmd: list[str], what: str, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {shlex.join(cmd)}\n"
                           f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result


def _chroot_apt(rootfs: Path) -> None:
    """apt-get update + install the extra packages in the chroot, with /proc, /sys, /dev in."""
    mounts = [("proc", "proc", ["-t", "proc"]), ("sys", "sys", ["-t", "sysfs"]),
              ("dev", "dev", ["--bind"]), ("dev/pts", "dev/pts", ["--bind"])]
    mounted = []
    try:
        for source, target, opts in mounts:
            src = "/" + source if "--bind" in opts else source
            _run(["mount", *opts, src, str(rootfs / target)], f"mount {target}", 30)
            mounted.append(rootfs / target)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LC_ALL": "C"}
        _run(["chroot", str(rootfs), "apt-get", "-q", "update"], "apt-get update in the chroot",
             600, env=env)
        _run(["chroot", str(rootfs), "apt-get", "install", "-y", "-q", "--no-install-recommends",
              *EXTRA_PACKAGES], "apt-get install of the VM's extra packages", 1200, env=env)
        _run(["chroot", str(rootfs), "/bin/sh", "-c", CONFIGURE], "configuring the VM image",
             120, env=env)
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _remove_tree(path: Path) -> None:
    """rmtree, but never through a mount left behind (a bind of the host's /dev)."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    left = [m for m in mounts if m == str(path) or m.startswith(f"{path}/")]
    if left:
        raise RuntimeError(f"refusing to remove {path}: still mounted: {left}")
    shutil.rmtree(path)


def _build_image(out: Path) -> None:
    _require("debootstrap", "mkfs.ext4", "ssh-keygen", "chroot")
    rootfs = out / "rootfs"
    debs = VM_CACHE / "debs"  # downloaded packages, kept for the next recipe's build
    debs.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", f"--cache-dir={debs}", f"--include={','.join(BASE_PACKAGES)}", SUITE,
          str(rootfs), DEBIAN_MIRROR], "debootstrap of the VM image", 1800)
    for rel, content in FILES.items():
        (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / rel).write_text(content)
    (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)
    sources = host_apt_sources()
    if sources:
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        for path in sources:
            shutil.copy(path, rootfs / "etc/apt" / path.relative_to("/etc/apt"))
    for ca in extra_ca_files():
        shutil.copy(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
    resolv = rootfs / "etc/resolv.conf"  # the host's resolver while apt runs in the chroot
    resolv.unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", resolv)
    _chroot_apt(rootfs)
    key = out / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jbm-vm-root", "-f", str(key)],
         "ssh-keygen", 30)
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(key.with_suffix(".pub"), ssh_dir / "authorized_keys")
    (ssh_dir / "authorized_keys").chmod(0o600)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel or initrd in {rootfs / 'boot'} (linux-image-amd64?)")
    shutil.copy(kernels[-1], out / "vmlinuz")
    shutil.copy(initrds[-1], out / "initrd.img")
    _run(["truncate", "-s", DISK_SIZE, str(out / "disk.img")], "truncate", 30)
    _run(["mkfs.ext4", "-q", "-F", "-L", "jbm-vm", "-d", str(rootfs), str(out / "disk.img")],
         "mkfs.ext4 -d of the VM disk", 600)
    _remove_tree(rootfs)


def ensure_vm_image() -> VMImage:
    """The VM's disk, kernel, initrd and root key; built only when the recipe changed."""
    key = image_key()
    final = VM_CACHE / key
    with _locked(VM_CACHE / f"{key}.lock"):
        if not (final / "disk.img").exists():
            partial = VM_CACHE / f"{key}.partial"
            if partial.exists():
                for sub in ("proc", "sys", "dev/pts", "dev"):  # a build killed mid-chroot
                    subprocess.run(["umount", "-l", str(partial / "rootfs" / sub)],
                                   capture_output=True)
                _remove_tree(partial)
            partial.mkdir(parents=True)
            started = time.monotonic()
            _build_image(partial)
            _record(partial, "image_build_s", time.monotonic() - started)
            partial.rename(final)
    return VMImage(final)


def _record(directory: Path, name: str, seconds: float) -> None:
    """Measured times, kept next to the image (timings.json) for the docs and reports."""
    path = directory / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 1)
    path.write_text(json.dumps(timings, indent=1) + "\n")


def timings(image: VMImage) -> dict:
    path = image.dir / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _snapshot_key() -> str:
    _require("qemu-system-x86_64", "qemu-img", "ssh", "scp")
    version = _run(["qemu-system-x86_64", "--version"], "qemu-system-x86_64 --version", 30)
    return hashlib.sha256(json.dumps([version.stdout, MACHINE, KERNEL_CMDLINE]).encode()
                          ).hexdigest()[:12]


def ensure_snapshot(image: VMImage | None = None) -> Path:
    """booted-<key>.qcow2 next to the image: the disk and RAM of a booted VM (`savevm booted`)."""
    image = image or ensure_vm_image()
    path = image.dir / f"booted-{_snapshot_key()}.qcow2"
    with _locked(image.dir / "snapshot.lock"):
        if path.exists():
            return path
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk),
              str(partial)], "qemu-img create of the snapshot overlay", 60)
        started = time.monotonic()
        vm = VM._launch("snapshot", image, _run_dir("snapshot"), partial, loadvm=False)
        try:
            vm.wait_ssh(timeout=300)
            _record(image.dir, "first_boot_ssh_s", time.monotonic() - started)
            state = vm.ssh("timeout 240 systemctl is-system-running --wait", check=False,
                           timeout=260).stdout.strip()
            if state not in ("running", "degraded"):
                raise RuntimeError(f"the VM's boot did not finish (state {state!r}); "
                                   f"see {vm.console}")
            vm.ssh("docker info >/dev/null && sync && echo 3 > /proc/sys/vm/drop_caches",
                   timeout=120)
            saving = time.monotonic()
            vm.monitor("stop")
            vm.monitor(f"savevm {SNAPSHOT}", timeout=300)
            _record(image.dir, "savevm_s", time.monotonic() - saving)
            _record(image.dir, "first_boot_total_s", time.monotonic() - started)
        finally:
            vm.stop()
        partial.rename(path)
    return path


def _run_dir(name: str) -> Path:
    """A directory per VM under /var/tmp/jbm-vm (disk copy, sockets, console log); those of
    VMs older than two days are removed."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    for old in RUN_ROOT.iterdir():
        if old.is_dir() and time.time() - old.stat().st_mtime > 2 * 86400:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=RUN_ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """qemu gets SIGTERM when the test process dies (no VM outlives its session)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class VM:
    """A running VM: root over real OpenSSH on a loopback port."""
    name: str
    image: VMImage
    run_dir: Path
    port: int
    process: subprocess.Popen
    _forwards: dict = field(default_factory=dict)

    console = property(lambda self: self.run_dir / "console.log")
    qmp_socket = property(lambda self: self.run_dir / "qmp.sock")
    key = property(lambda self: self.image.key)

    @classmethod
    def _launch(cls, name: str, image: VMImage, run_dir: Path, disk: Path,
                loadvm: bool, detached: bool = False) -> "VM":
        """qemu for the VM; it dies with this process unless `detached` (a session of its own,
        for a server that outlives its creator: tests/harness/molecule.py)."""
        port = _free_port()
        cmd = ["qemu-system-x86_64", "-name", name, *MACHINE, "-nodefaults", "-display", "none",
               "-kernel", str(image.kernel), "-initrd", str(image.initrd),
               "-append", KERNEL_CMDLINE,
               "-drive", f"file={disk},format=qcow2,if=virtio,cache=unsafe",
               "-serial", f"file:{run_dir / 'console.log'}",
               "-qmp", f"unix:{run_dir / 'qmp.sock'},server=on,wait=off",
               "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
               "-device", "virtio-net-pci,netdev=n0"]
        if loadvm:
            cmd += ["-loadvm", SNAPSHOT]
        with open(run_dir / "qemu.log", "wb") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                       preexec_fn=None if detached else _die_with_parent,
                                       start_new_session=detached)
        return cls(name, image, run_dir, port, process)

    def _failure(self, what: str) -> RuntimeError:
        qemu_log = (self.run_dir / "qemu.log").read_text(errors="replace")[-2000:]
        console = self.console.read_text(errors="replace")[-3000:] if self.console.exists() else ""
        return RuntimeError(f"VM {self.name}: {what} (qemu exit {self.process.poll()}); "
                            f"console {self.console}\nqemu: {qemu_log}\nconsole tail:\n{console}")

    def ssh_command(self, *extra: str) -> list[str]:
        return ["ssh", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", *extra, "root@127.0.0.1"]

    def ssh(self, *cmd: str, check: bool = True, input: str | bytes | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a command as root in the VM: one shell string, or argv words (quoted for you)."""
        remote = cmd[0] if len(cmd) == 1 else shlex.join(cmd)
        result = subprocess.run(self.ssh_command() + ["--", remote], capture_output=True,
                                text=not isinstance(input, bytes), input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"VM {self.name}: `{remote}` failed (exit {result.returncode}):\n"
                               f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return result

    def wait_ssh(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failure("qemu exited before SSH answered")
            try:  # a slow guest (a busy host) may need long for one key exchange
                if self.ssh("true", check=False, timeout=45).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(1)
        raise self._failure(f"SSH on 127.0.0.1:{self.port} did not answer within {timeout:.0f}s")

    def monitor(self, command: str, timeout: float = 30) -> str:
        """One human-monitor command over the QMP unix socket; its output."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.qmp_socket))
            stream = sock.makefile("rw")

            def call(execute: str, **arguments) -> dict:
                stream.write(json.dumps({"execute": execute, "arguments": arguments}) + "\n")
                stream.flush()
                for _ in range(1000):  # skip asynchronous events
                    reply = json.loads(stream.readline() or '{"error": "monitor closed"}')
                    if "return" in reply or "error" in reply:
                        return reply
                return {"error": "no reply"}

            stream.readline()  # the greeting
            call("qmp_capabilities")
            reply = call("human-monitor-command", **{"command-line": command})
        output = reply.get("return", "")
        if "error" in reply or re.search(r"^Error|does not exist|failed", output, re.I | re.M):
            raise self._failure(f"monitor command {command!r}: {reply}")
        return output

    def sync_clock(self) -> None:
        """After loadvm the guest clock is the snapshot's: read the (current) RTC, check it."""
        self.ssh("hwclock --hctosys", timeout=60)
        skew = abs(float(self.ssh("date +%s.%N", timeout=30).stdout) - time.time())
        if skew > 30:
            raise self._failure(f"guest clock is {skew:.0f}s off after hwclock --hctosys")

    def put(self, local: str | Path, remote: str) -> None:
        """Copy a file or directory into the VM (scp)."""
        cmd = ["scp", "-q", "-r", "-i", str(self.key), "-P", str(self.port), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", str(local), f"root@127.0.0.1:{remote}"]
        _run(cmd, f"copying {local} to VM {self.name}:{remote}", 600)

    def load_image(self, tag: str) -> None:
        """`docker save TAG | ssh docker load`: an image of the machine's engine into the VM's."""
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        load = subprocess.run(self.ssh_command() + ["docker", "load"], stdin=save.stdout,
                              capture_output=True, text=True, timeout=900)
        save.stdout.close()
        if save.wait(timeout=60) != 0 or load.returncode != 0:
            raise RuntimeError(f"VM {self.name}: docker save {tag} | docker load failed: "
                               f"{load.stderr[-2000:]}")

    def docker_socket(self, timeout: float = 30) -> str:
        """A local unix socket forwarded (ssh -L) to the VM's /var/run/docker.sock."""
        path = self.run_dir / "docker.sock"
        if "docker" in self._forwards and self._forwards["docker"].poll() is None:
            return str(path)
        forward = subprocess.Popen(
            self.ssh_command("-N", "-o", "ExitOnForwardFailure=yes",
                             "-o", "StreamLocalBindUnlink=yes",
                             "-L", f"{path}:/var/run/docker.sock"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._forwards["docker"] = forward
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if forward.poll() is not None:
                raise RuntimeError(f"VM {self.name}: ssh -L for docker.sock exited: "
                                   f"{forward.stderr.read().decode(errors='replace')}")
            if path.exists():
                return str(path)
            time.sleep(0.2)
        raise RuntimeError(f"VM {self.name}: {path} did not appear within {timeout:.0f}s")

    def inventory(self, path: str | Path, group: str = "vm", **host_vars: str) -> Path:
        """An Ansible inventory that reaches this VM over SSH as root; `host_vars` are added to
        its line (e.g. swarm_node_address, its address on a private link)."""
        path = Path(path)
        extra = "".join(f" {key}={value}" for key, value in host_vars.items())
        path.write_text(
            f"[{group}]\n{self.name} ansible_host=127.0.0.1 ansible_port={self.port} "
            f"ansible_user=root ansible_ssh_private_key_file={self.key} "
            "ansible_python_interpreter=/usr/bin/python3 "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null'{extra}\n")
        return path

    def attach_link(self, netdev: str, address: str, timeout: float = 120) -> str:
        """Hot-plug a second NIC on a qemu socket netdev (`netdev`: `listen=127.0.0.1:PORT`, or
        `connect=...` to a VM that listens) with a static `address` ("10.10.10.1/24"); the
        guest's name of the interface. One link per VM.

        Hot-plugged, after loadvm: the snapshot was saved with one NIC, and a VM started with
        another device on its command line no longer loads it. systemd-networkd configures the
        link (a runtime .network file matching its MAC, ahead of the image's DHCP on en*): an
        `ip addr add` can lose the race with networkd taking up the new link, which drops
        addresses it did not set."""
        ip = address.split("/")[0]
        mac = "52:54:00:%02x:%02x:%02x" % tuple(int(octet) for octet in ip.split(".")[1:])
        self.ssh("mkdir -p /run/systemd/network && printf '[Match]\\nMACAddress=%s\\n\\n"
                 "[Network]\\nAddress=%s\\nLinkLocalAddressing=no\\n' "
                 f"{mac} {address} > /run/systemd/network/10-link.network "
                 "&& networkctl reload", timeout=60)
        self.monitor(f"netdev_add socket,id=link0,{netdev}")
        self.monitor(f"device_add virtio-net-pci,netdev=link0,id=link0nic,mac={mac}")
        waited = self.ssh(  # at most `timeout` checks, a second apart
            f"for i in $(seq {int(timeout)}); do ip -o -4 addr show | grep -q ' {ip}/' && break; "
            f"sleep 1; done; ip -o link | grep -i {mac}; ip -o -4 addr show | grep ' {ip}/'",
            check=False, timeout=timeout + 60)
        found = re.match(r"\d+: (\w+):", waited.stdout)
        if waited.returncode != 0 or not found:
            raise self._failure(f"no interface with {mac} and {address} within {timeout:.0f}s "
                                f"of device_add: {waited.stdout}{waited.stderr}")
        return found.group(1)

    def stop(self) -> None:
        """Quit qemu and remove the VM's disk; the console log stays in run_dir."""
        for forward in self._forwards.values():
            forward.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                forward.wait(timeout=5)
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.monitor("quit", timeout=5)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for disk in self.run_dir.glob("*.qcow2"):
            disk.unlink()

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_vm(name: str, timeout: float = 240, detached: bool = False) -> VM:
    """A VM of its own, resumed from the booted snapshot (usable as a context manager);
    `detached`: its qemu outlives this process (VM._launch)."""
    image = ensure_vm_image()
    snapshot = ensure_snapshot(image)
    run_dir = _run_dir(name)
    disk = run_dir / "disk.qcow2"
    shutil.copyfile(snapshot, disk)
    vm = VM._launch(name, image, run_dir, disk, loadvm=True, detached=detached)
    try:
        vm.wait_ssh(timeout=timeout)
        vm.sync_clock()
    except BaseException:
        vm.stop()
        raise
    return vm


def link(listener: VM, connector: VM, subnet: str = "10.10.10", timeout: float = 120
         ) -> tuple[str, str]:
    """A private link between two running VMs, as a swarm's hub and worker have: qemu's socket
    netdev (TESTBED.md "Two VMs on a private link"), hot-plugged (VM.attach_link); `listener`
    gets SUBNET.1/24, `connector` SUBNET.2/24. Their addresses, once a TCP connection from the
    connector to the listener's SSH port went across (bounded wait). Measured: 13-24 s for the
    two hot-plugs and the first connection, the more on a busy machine (a ping across: ~3 ms)."""
    port = _free_port()
    first, second = f"{subnet}.1", f"{subnet}.2"
    listener.attach_link(f"listen=127.0.0.1:{port}", f"{first}/24", timeout)
    connector.attach_link(f"connect=127.0.0.1:{port}", f"{second}/24", timeout)
    across = connector.ssh(  # at most `timeout` tries, each bounded
        f"for i in $(seq {int(timeout)}); do timeout 5 bash -c 'exec 3<>/dev/tcp/{first}/22' "
        "&& echo connected && break; sleep 1; done", check=False, timeout=timeout * 7 + 60)
    if "connected" not in across.stdout:
        raise connector._failure(f"no TCP connection to {first}:22 across the link within "
                                 f"{timeout:.0f} tries: {across.stderr[-1000:]}")
    return first, second


def main() -> None:
    started = time.monotonic()
    image = ensure_vm_image()
    print(f"VM image {image.dir} ({time.monotonic() - started:.0f}s)", flush=True)
    started = time.monotonic()
    snapshot = ensure_snapshot(image)
    print(f"VM snapshot {snapshot} ({time.monotonic() - started:.0f}s)", flush=True)
    started = time.monotonic()
    with start_vm("jbm-vm-check") as vm:
        kernel = vm.ssh("uname -r").stdout.strip()
        _record(image.dir, "loadvm_ssh_s", time.monotonic() - started)
    print(f"VM from snapshot: kernel {kernel}, ready in {time.monotonic() - started:.1f}s; "
          f"measured {timings(image)}", flush=True)


if __name__ == "__main__":
    main()
