"""LDAP logins over TLS for real: the role's authenticator
(profilespawner.ldapauth.DirectoryLDAPAuthenticator) against a real slapd with a certificate from
its own CA (tests/harness/ldap.py), over StartTLS and over ldaps://. The certificate is verified:
an impostor's (here: one the hub was not told to trust) gets a 424 naming the problem and the
setting that fixes it, never a login and never a 500.

(ldapauthenticator 2.0.2 alone hands ldap3.Tls its default validate=CERT_NONE: it would log in
through any certificate, which test_ldapauthenticator_alone_would_trust_any_certificate shows.)
"""
import asyncio

import pytest
from ldapauthenticator import LDAPAuthenticator
from tornado import web

from profilespawner.ldapauth import DirectoryLDAPAuthenticator
from tests.harness.ldap import PEOPLE, USERS, Directory

pytestmark = pytest.mark.integration

ALICE = USERS[0]


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    ldap = Directory(tmp_path_factory.mktemp("slapd-tls"), tls=True).start()
    ldap.seed()
    yield ldap
    ldap.stop()


def login(directory, cls=DirectoryLDAPAuthenticator, password=ALICE.password, **settings):
    auth = cls(server_address="127.0.0.1", bind_dn_template=[f"uid={{username}},{PEOPLE}"], **settings)
    return asyncio.run(auth.authenticate(None, {"username": ALICE.name, "password": password}))


def test_starttls_with_the_sites_ca_logs_in(directory):
    user = login(directory, server_port=directory.port, tls_strategy="before_bind",
                 tls_kwargs={"ca_certs_file": str(directory.ca_cert)})
    assert user and user["name"] == ALICE.name
    assert login(directory, server_port=directory.port, tls_strategy="before_bind", password="wrong",
                 tls_kwargs={"ca_certs_file": str(directory.ca_cert)}) is None


def test_ldaps_with_the_sites_ca_logs_in(directory):
    user = login(directory, server_port=directory.tls_port, tls_strategy="on_connect",
                 tls_kwargs={"ca_certs_file": str(directory.ca_cert), "validate": "required"})
    assert user and user["name"] == ALICE.name


@pytest.mark.parametrize("strategy", ["before_bind", "on_connect"])
def test_a_certificate_the_hub_does_not_trust_is_a_424_naming_the_fix(directory, strategy):
    port = directory.port if strategy == "before_bind" else directory.tls_port
    with pytest.raises(web.HTTPError) as refused:  # the system's CA bundle: our CA is not in it
        login(directory, server_port=port, tls_strategy=strategy)
    assert refused.value.status_code == 424
    message = refused.value.log_message
    assert f"127.0.0.1:{port}" in message and "certificate is not trusted" in message, message
    assert "tls_kwargs.ca_certs_file" in message


def test_ldapauthenticator_alone_would_trust_any_certificate(directory):
    """Why the subclass verifies: upstream's default logs in through an untrusted certificate."""
    user = login(directory, cls=LDAPAuthenticator, server_port=directory.port, tls_strategy="before_bind")
    assert user and user["name"] == ALICE.name


def test_validate_accepts_words_and_refuses_anything_else_by_name():
    import ssl
    assert DirectoryLDAPAuthenticator().tls_kwargs == {"validate": ssl.CERT_REQUIRED}
    assert DirectoryLDAPAuthenticator(tls_kwargs={"validate": "CERT_NONE"}).tls_kwargs["validate"] == ssl.CERT_NONE
    with pytest.raises(Exception, match=r"tls_kwargs\['validate'\] = 'always' is not allowed: use one of required"):
        DirectoryLDAPAuthenticator(tls_kwargs={"validate": "always"})
