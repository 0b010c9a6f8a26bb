"""Who a hub user is on the host: accounts made at first login and the groups profiles see.

Pure decisions (the uid, the useradd command, the groups); the spawner runs them. Logins whose
users have no host account (OpenID Connect, LTI) get one the first time they reach their
server, as TLJH's user-creating spawner does (tljh/user_creating_spawner.py), but with a uid
from a configured range instead of useradd's next free one: the uid is derived from the name,
so the same name gets the same uid on every host with the same accounts (and again if the
account is re-made), unless that uid is taken, when the next free one in the range is used.
"""
import hashlib
import re

# What useradd accepts and what is safe in a path and a container name: a POSIX portable
# user name (lower case after JupyterHub's normalisation), at most 32 characters.
USERNAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
USERNAME_ALLOWED = "1-32 characters: a-z, 0-9, '_', '.', '-', starting with a letter or '_'"


class AccountError(Exception):
    """An account that cannot be made; the message names the value and what is allowed."""


def check_uid_range(uid_min: int, uid_max: int) -> None:
    if not (1000 <= uid_min <= uid_max <= 2**31 - 2):
        raise AccountError(f"account uid range {uid_min}-{uid_max} is invalid; allowed: "
                           "1000 <= account_uid_min <= account_uid_max < 2147483647")


def pick_uid(name: str, uid_min: int, uid_max: int, taken) -> int:
    """The uid for a new account `name`: sha256(name) mod the range size, from uid_min, then the
    next one up (wrapping) that no account or group uses (`taken`: their uids and gids, so the
    user's own group can get the same number)."""
    check_uid_range(uid_min, uid_max)
    size = uid_max - uid_min + 1
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size
    taken = set(taken)
    for step in range(size):
        uid = uid_min + (start + step) % size
        if uid not in taken:
            return uid
    raise AccountError(f"no free uid left in the account range {uid_min}-{uid_max} for {name!r}; "
                       "widen account_uid_min/account_uid_max")


def check_account_name(name: str) -> None:
    """Refuse a user name that cannot be a host account, naming it and what is allowed."""
    if not USERNAME_PATTERN.match(name):
        raise AccountError(f"user name {name!r} cannot be a system account; allowed: {USERNAME_ALLOWED}")


def useradd_argv(name: str, uid: int, home: str, shell: str = "/usr/sbin/nologin") -> list:
    """The command making the account: its own group (same number when free), the home made
    from /etc/skel with login.defs' HOME_MODE (0700 on hosts of this project), no password
    (nobody logs in on the host; the hub's login is the IdP's)."""
    check_account_name(name)
    return ["useradd", "--uid", str(uid), "--user-group", "--create-home",
            "--home-dir", home, "--shell", shell, "--comment", "JupyterHub user", name]


def profile_groups(unix_groups, hub_groups) -> list:
    """The groups `@group` profiles see: the account's unix groups and the user's JupyterHub
    groups (an authenticator's managed groups, e.g. the IdP's groups claim), each name once."""
    return sorted(set(unix_groups) | set(hub_groups))
