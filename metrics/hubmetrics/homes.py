"""Users' home use and quota on the homes' filesystem (its user quotas), read from the kernel.

quotactl(Q_GETNEXTQUOTA) walks every uid the filesystem's quota knows and gives, for each, the
bytes in use and the block limits: the kernel's own numbers, the ones it enforces (they include
space reserved for data not yet written back; the quota file that repquota reads lags behind
by up to the writeback delay). Needs CAP_SYS_ADMIN (other users' quotas) and the filesystem's
device node. Stdlib only (the VM tier runs this file with the guest's python3): ``usage`` and
``mount_of`` are pure, ``read_home_quotas`` is the thin shell.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re

KIB = 1024          # the kernel's quota block: limits are in 1 KiB blocks, use in bytes
Q_GETNEXTQUOTA = 0x800009
USRQUOTA = 0
MAX_IDS = 1_000_000  # a bound on the walk (more uids than any host has)


class NextDqblk(ctypes.Structure):
    """struct if_nextdqblk (linux/quota.h)."""
    _fields_ = [("bhardlimit", ctypes.c_uint64), ("bsoftlimit", ctypes.c_uint64), ("curspace", ctypes.c_uint64),
                ("ihardlimit", ctypes.c_uint64), ("isoftlimit", ctypes.c_uint64), ("curinodes", ctypes.c_uint64),
                ("btime", ctypes.c_uint64), ("itime", ctypes.c_uint64), ("valid", ctypes.c_uint32),
                ("id", ctypes.c_uint32)]


def _signed(n: int) -> int:
    """A 32-bit value as the C int the syscall takes."""
    return n - 2**32 if n >= 2**31 else n


def qcmd(cmd: int, kind: int) -> int:
    """QCMD(cmd, type) of linux/quota.h, as a C int."""
    return _signed((cmd << 8) | (kind & 0xFF))


def usage(block) -> tuple[int, int]:
    """(bytes used, quota in bytes: the hard block limit, else the soft one; 0: none)."""
    return int(block.curspace), int(block.bhardlimit or block.bsoftlimit) * KIB


def mount_of(path: str, mounts_text: str) -> tuple[str, str]:
    """(mount point, device) of the filesystem holding path, from /proc/self/mounts text: the
    longest mount point containing it, the last one mounted there."""
    best = ("/", "")
    found = False
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        device, mnt = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f) for f in fields[:2])
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and (not found or len(mnt) >= len(best[0])):
            best, found = (mnt, device), True
    return best


def read_home_quotas(filesystem: str, mounts: str = "/proc/self/mounts", libc=None) -> dict[int, tuple[int, int]]:
    """uid -> usage() of every uid with a quota entry on filesystem; OSError when the kernel
    cannot say (user quotas off there, no such device, no CAP_SYS_ADMIN)."""
    with open(mounts, encoding="utf-8") as f:
        mount_point, device = mount_of(os.path.realpath(filesystem), f.read())
    if libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
    call = libc.quotactl
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
    found: dict[int, tuple[int, int]] = {}
    next_id = 0
    for _ in range(MAX_IDS):
        block = NextDqblk()
        if call(qcmd(Q_GETNEXTQUOTA, USRQUOTA), device.encode(), _signed(next_id), ctypes.byref(block)) != 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                break   # no uid at or above next_id
            why = "user quotas are off there" if err == errno.ESRCH else os.strerror(err)
            raise OSError(err, f"user quotas of {mount_point} ({device or 'no device'}): {why} "
                               "(quotactl Q_GETNEXTQUOTA)")
        found[block.id] = usage(block)
        if block.id >= 2**32 - 1:
            break
        next_id = block.id + 1
    return found
