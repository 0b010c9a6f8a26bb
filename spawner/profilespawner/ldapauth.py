"""LDAP logins (jupyterhub_authenticator: ldap): jupyterhub-ldapauthenticator's LDAPAuthenticator,
except that
- the directory's certificate is verified (StartTLS and ldaps): ldapauthenticator hands
  `tls_kwargs` to ldap3.Tls, whose default is `validate=ssl.CERT_NONE`, so without this any
  machine on the path could pose as the directory and read every password. The system's CA
  bundle is used unless `tls_kwargs` names a `ca_certs_file`; `validate` may be written as
  `required`, `optional` or `none` (or CERT_*, or the ssl constant);
- an unreachable directory, or one whose certificate is not trusted, is a clear 424 on the
  login page instead of a 500.

Its settings stay in LDAPAuthenticator's config section (a subclass reads its parent's), so
`c.LDAPAuthenticator.server_address = ...` configures this class. Groups for `@group` profiles
come from the host's NSS (nslcd, role ldap_client), not from here: the spawner reads the
account's unix groups, which are the directory's posixGroups.
"""
from __future__ import annotations

import ssl

from ldap3.core.exceptions import LDAPCommunicationError, LDAPStartTLSError
from ldapauthenticator import LDAPAuthenticator
from tornado import web
from traitlets import List, TraitError, Unicode, default, validate

from .errors import FAILED_DEPENDENCY


class GroupDNs(List):
    """ldapauthenticator's list of group DNs, also taking the set the role's config renders for
    every authenticator (`c.Authenticator.allowed_groups = set(...)`: a plain List refuses it,
    and the hub would not start)."""
    _cast_types = (tuple, set, frozenset)


VALIDATE = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def verified_tls_kwargs(kwargs: dict) -> dict:
    """ldap3.Tls arguments that verify the server's certificate unless `validate` says otherwise."""
    value = kwargs.get("validate", ssl.CERT_REQUIRED)
    if isinstance(value, str):
        key = value.lower().removeprefix("cert_")
        if key not in VALIDATE:
            raise TraitError(f"LDAPAuthenticator.tls_kwargs['validate'] = {value!r} is not allowed: "
                             f"use one of {', '.join(VALIDATE)} (or CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE)")
        value = VALIDATE[key]
    elif value not in VALIDATE.values():
        raise TraitError(f"LDAPAuthenticator.tls_kwargs['validate'] = {value!r} is not allowed: "
                         f"use one of {', '.join(VALIDATE)}")
    return {**kwargs, "validate": value}


def unreachable_message(address: str, port: int | None, error: Exception | None = None) -> str:
    """What a person logging in is told when the directory does not answer, or answers with a
    certificate this hub does not trust."""
    where = f"{address}:{port}" if port else address
    if error is not None and "certificate verify failed" in str(error).lower():
        return (f"The login directory (LDAP server {where}) cannot be reached safely: its certificate is "
                "not trusted, so no one can log in right now; running servers are not affected. An "
                "administrator must give the CA that signed it "
                "(jupyterhub_ldap_settings.tls_kwargs.ca_certs_file).")
    return (f"The login directory (LDAP server {where}) cannot be reached, so no one can log in "
            "right now; running servers are not affected. Try again later, or tell an "
            "administrator.")


class DirectoryLDAPAuthenticator(LDAPAuthenticator):
    """LDAPAuthenticator that verifies the directory's certificate, with a 424 and a plain
    message when the directory is down or not trusted."""

    allowed_groups = GroupDNs(
        Unicode(), config=True, allow_none=True, default_value=None,
        help="Group DNs whose members may log in (LDAPAuthenticator.allowed_groups).")

    @default("tls_kwargs")
    def _default_tls_kwargs(self):
        return verified_tls_kwargs({})

    @validate("tls_kwargs")
    def _verify_certificates(self, proposal):
        return verified_tls_kwargs(proposal.value)

    async def authenticate(self, handler, data):
        try:
            return await super().authenticate(handler, data)
        except (LDAPCommunicationError, LDAPStartTLSError) as error:  # down, or not trusted
            self.log.error("LDAP server %s:%s unreachable for the login of %r: %s",
                           self.server_address, self.server_port, data.get("username"), error)
            raise web.HTTPError(FAILED_DEPENDENCY,
                                unreachable_message(self.server_address, self.server_port, error)) from None
