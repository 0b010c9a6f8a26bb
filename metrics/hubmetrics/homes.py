"""Users' home use and quota on the homes' filesystem (ext4 user quotas), read with repquota.

The kernel keeps each uid's use and limits on a filesystem with quotas on; ``repquota -u -n``
prints them for every uid it knows (blocks of 1 KiB). Stdlib only (the VM tier runs this file
with the guest's python3): ``parse_repquota`` is pure, ``read_home_quotas`` the thin shell.
"""
from __future__ import annotations

import re
import subprocess

KIB = 1024
TIMEOUT = 30
# "#1001     --   10240   20480   20480              3     0     0" (-n: numeric ids; the
# flags are +/- for the block and inode soft limits; a grace column follows a number over its
# soft limit, so only the first five fields are read)
_LINE = re.compile(r"^#(\d+)\s+[-+]{2}\s+(\d+)\s+(\d+)\s+(\d+)(?:\s|$)")


def repquota_args(filesystem: str) -> list[str]:
    return ["repquota", "-u", "-n", filesystem]


def parse_repquota(text: str) -> dict[int, tuple[int, int]]:
    """uid -> (bytes used, quota in bytes: the hard block limit, else the soft one; 0: none)."""
    found = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            uid, used, soft, hard = (int(g) for g in match.groups())
            found[uid] = (used * KIB, (hard or soft) * KIB)
    return found


def read_home_quotas(filesystem: str, run=subprocess.run) -> dict[int, tuple[int, int]]:
    """parse_repquota of the filesystem's report; OSError when repquota cannot give it."""
    try:
        done = run(repquota_args(filesystem), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        raise OSError(f"repquota {filesystem}: no answer within {TIMEOUT}s") from e
    if done.returncode != 0:
        raise OSError(f"repquota {filesystem}: {(done.stderr or done.stdout).strip() or done.returncode}")
    return parse_repquota(done.stdout)
