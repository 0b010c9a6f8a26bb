"""The LDAP authenticator's own decisions (profilespawner.ldapauth), without a directory: the
message of a directory that does not answer, and the group DNs the role's config renders."""
from traitlets.config import Config

from profilespawner.ldapauth import DirectoryLDAPAuthenticator, unreachable_message


def test_the_unreachable_message_names_the_server_and_reassures_about_running_servers():
    message = unreachable_message("ldap.example.org", 636)
    assert "ldap.example.org:636" in message and "running servers are not affected" in message
    assert unreachable_message("ldap.example.org", None).startswith(
        "The login directory (LDAP server ldap.example.org)")


def test_allowed_groups_rendered_as_a_set_for_every_authenticator_become_the_ldap_list():
    config = Config()
    config.Authenticator.allowed_groups = {"cn=jupyter,ou=groups,dc=example,dc=org"}
    config.LDAPAuthenticator.bind_dn_template = ["uid={username},ou=people,dc=example,dc=org"]
    authenticator = DirectoryLDAPAuthenticator(config=config)
    assert authenticator.allowed_groups == ["cn=jupyter,ou=groups,dc=example,dc=org"]
    config.LDAPAuthenticator.allowed_groups = ["cn=staff,dc=example,dc=org"]  # LDAP's own wins
    assert DirectoryLDAPAuthenticator(config=config).allowed_groups == ["cn=staff,dc=example,dc=org"]
