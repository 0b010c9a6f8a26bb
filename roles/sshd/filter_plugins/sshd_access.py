"""Would sshd let this user in? The AllowUsers/AllowGroups rules of sshd_config(5), for the
role's lockout check.

WHY a filter: sshd's patterns are shell-style (`*`, `?`) and both lists must pass when both are
set; doing that in Jinja is unreadable. Only the USER part of USER@HOST entries is compared
(the host part depends on where the admin connects from, which sshd checks at login).
"""
from fnmatch import fnmatchcase


def sshd_user_allowed(user, groups, allow_users, allow_groups):
    """True when `user` (member of `groups`) passes AllowUsers and AllowGroups."""
    user = str(user)
    if allow_users:
        patterns = [str(entry).split("@", 1)[0] for entry in allow_users]
        if not any(fnmatchcase(user, pattern) for pattern in patterns):
            return False
    if allow_groups:
        if not any(fnmatchcase(str(group), str(pattern))
                   for group in groups or [] for pattern in allow_groups):
            return False
    return True


class FilterModule:
    """Filter: sshd_user_allowed."""

    def filters(self):
        return {"sshd_user_allowed": sshd_user_allowed}
