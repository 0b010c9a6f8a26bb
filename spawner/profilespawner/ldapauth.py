"""LDAP logins (jupyterhub_authenticator: ldap): jupyterhub-ldapauthenticator's LDAPAuthenticator,
except that an unreachable directory is a clear 424 on the login page instead of a 500.

Its settings stay in LDAPAuthenticator's config section (a subclass reads its parent's), so
`c.LDAPAuthenticator.server_address = ...` configures this class. Groups for `@group` profiles
come from the host's NSS (nslcd, role ldap_client), not from here: the spawner reads the
account's unix groups, which are the directory's posixGroups.
"""
from __future__ import annotations

from ldap3.core.exceptions import LDAPCommunicationError
from ldapauthenticator import LDAPAuthenticator
from tornado import web
from traitlets import List, Unicode

from .errors import FAILED_DEPENDENCY


class GroupDNs(List):
    """ldapauthenticator's list of group DNs, also taking the set the role's config renders for
    every authenticator (`c.Authenticator.allowed_groups = set(...)`: a plain List refuses it,
    and the hub would not start)."""
    _cast_types = (tuple, set, frozenset)


def unreachable_message(address: str, port: int | None) -> str:
    """What a person logging in is told when the directory does not answer."""
    where = f"{address}:{port}" if port else address
    return (f"The login directory (LDAP server {where}) cannot be reached, so no one can log in "
            "right now; running servers are not affected. Try again later, or tell an "
            "administrator.")


class DirectoryLDAPAuthenticator(LDAPAuthenticator):
    """LDAPAuthenticator with a 424 and a plain message when the directory is down."""

    allowed_groups = GroupDNs(
        Unicode(), config=True, allow_none=True, default_value=None,
        help="Group DNs whose members may log in (LDAPAuthenticator.allowed_groups).")

    async def authenticate(self, handler, data):
        try:
            return await super().authenticate(handler, data)
        except LDAPCommunicationError as error:
            self.log.error("LDAP server %s:%s unreachable for the login of %r: %s",
                           self.server_address, self.server_port, data.get("username"), error)
            raise web.HTTPError(FAILED_DEPENDENCY, unreachable_message(self.server_address, self.server_port)) from None
