"""Per-user disk quotas on the homes' filesystem (ext4 user quotas), applied at each spawn.

The profile's ``disk_quota`` becomes the uid's block limit (soft = hard, in KiB; inode limits
stay 0, none) on the filesystem holding the home, through the quota package's ``setquota``. A
profile that asks for a quota on a filesystem whose user quotas are off is refused (QuotaError):
never a silent unlimited home.

Stdlib only (the VM tier runs this file with the guest's python3): the pure functions build the
commands and read their output, ``apply_quota`` is the thin shell that runs them.
"""

import os
import re
import subprocess

KIB = 1024
TIMEOUT = 30  # seconds a quota command may take (it only talks to the kernel)
HOW_TO_ENABLE = ("turn user quotas on for that filesystem (the quotas role: quotas_enabled: true, "
                 "quotas_homes_path: {path}), or remove disk_quota from the resource profile")


class QuotaError(Exception):
    """The quota cannot be applied; ``filesystem`` is the mount point, ``message`` says why."""

    def __init__(self, filesystem, message):
        self.filesystem = filesystem
        self.message = message
        super().__init__(message)


def _unescape(field):
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_point(path, mounts_text):
    """The mount point of the filesystem holding the absolute, resolved ``path``, from the text
    of /proc/self/mounts (the longest mount point containing it; the last one mounted wins)."""
    best = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        mnt = _unescape(fields[1])
        inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
        if inside and (best is None or len(mnt) >= len(best)):
            best = mnt
    return best or "/"


def limit_kib(nbytes):
    """A limit in bytes as setquota's 1 KiB blocks, rounded up (never below what was asked)."""
    return -(-int(nbytes) // KIB)


def setquota_args(uid, nbytes, filesystem):
    """setquota's command line: uid's block soft and hard limit = nbytes, no inode limits."""
    blocks = str(limit_kib(nbytes))
    return ["setquota", "-u", str(int(uid)), blocks, blocks, "0", "0", filesystem]


def quota_state_args(filesystem):
    """The command that prints whether user quotas are enforced on filesystem."""
    return ["quotaon", "-p", "-u", filesystem]


def user_quota_on(output):
    """From ``quotaon -p -u`` output ("user quota on /home (/dev/sda2) is on"): enforced?"""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("user quota on "):
            return line.endswith(" is on")
    return False


def _run(run, args, filesystem):
    try:
        return run(args, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise QuotaError(filesystem, f"{args[0]} is not installed (the quota package; the quotas role "
                                     "installs it)") from None
    except subprocess.TimeoutExpired:
        raise QuotaError(filesystem, f"{' '.join(args)} did not finish within {TIMEOUT}s") from None


def apply_quota(uid, nbytes, home, run=subprocess.run, mounts="/proc/self/mounts"):
    """Set uid's block limit to nbytes on the filesystem of the existing directory home;
    returns that filesystem's mount point. Raises QuotaError when user quotas are off there
    or setquota fails. Needs root (CAP_SYS_ADMIN) and the filesystem's device node."""
    with open(mounts, encoding="utf-8") as f:
        filesystem = mount_point(os.path.realpath(home), f.read())
    state = _run(run, quota_state_args(filesystem), filesystem)
    if not user_quota_on(state.stdout):
        said = (state.stdout + state.stderr).strip() or f"exit status {state.returncode}"
        raise QuotaError(filesystem, f"user quotas are off on {filesystem} (quotaon -p: {said})")
    done = _run(run, setquota_args(uid, nbytes, filesystem), filesystem)
    if done.returncode != 0:
        raise QuotaError(filesystem, f"setquota failed on {filesystem}: "
                                     f"{(done.stderr or done.stdout).strip() or done.returncode}")
    return filesystem
