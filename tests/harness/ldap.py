"""A real OpenLDAP directory (Debian's slapd) for the LDAP tests: a temporary slapd.conf with an
mdb database, seeded with ldapadd with posixAccount users and posixGroup groups, as an
institute's directory holds them (the hub binds as the user; nslcd reads them anonymously).

It listens on loopback (the integration tier) and optionally on more addresses of this machine
(the docker bridge's gateway, for a systemd host container of the system tier). `make deps`
installs slapd and ldap-utils.
"""
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .hub import free_port
from .processes import stop_group, wait_until_ready

SUFFIX = "dc=jbm,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "jbm-ldap-admin"
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


@dataclass(frozen=True)
class LdapUser:
    name: str
    password: str
    uid: int
    gid: int

    @property
    def dn(self) -> str:
        return f"uid={self.name},{PEOPLE}"


@dataclass(frozen=True)
class LdapGroup:
    name: str
    gid: int
    members: tuple[str, ...] = ()

    @property
    def dn(self) -> str:
        return f"cn={self.name},{GROUPS}"


# uids far from the machine's own accounts (useradd starts at 1000) and from other tests'.
USERS = (LdapUser("ldapalice", "alice-secret-1", 27001, 27000),
         LdapUser("ldapbob", "bob-secret-2", 27002, 27000))
GROUPS_SEED = (LdapGroup("ldapusers", 27000, ("ldapalice", "ldapbob")),
               LdapGroup("ldapgpu", 27100, ("ldapalice",)))


def seed_ldif(users=USERS, groups=GROUPS_SEED, home_root: str = "/home") -> str:
    """The directory's content: the suffix, people and groups."""
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: jbm\no: jbm\n",
               f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
               f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n"]
    for user in users:
        entries.append(
            f"dn: {user.dn}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {user.name}\ncn: {user.name}\nsn: {user.name}\nuidNumber: {user.uid}\n"
            f"gidNumber: {user.gid}\nhomeDirectory: {home_root}/{user.name}\n"
            f"loginShell: /bin/bash\nuserPassword: {user.password}\n")
    for group in groups:
        entries.append(f"dn: {group.dn}\nobjectClass: posixGroup\ncn: {group.name}\n"
                       f"gidNumber: {group.gid}\n"
                       + "".join(f"memberUid: {member}\n" for member in group.members))
    return "\n".join(entries)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key): a throwaway CA and the directory's
    certificate for 127.0.0.1 and localhost, as a site's own CA would issue it."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=jbm-ldap-test-ca",
         "-keyout", ca_key, "-out", ca_cert],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
         "-extfile", extensions, "-out", cert],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca_cert, cert, key


def slapd_conf(workdir: Path, tls: tuple[Path, Path, Path] | None = None) -> str:
    includes = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
    if tls:
        ca_cert, cert, key = tls
        includes += (f"TLSCACertificateFile {ca_cert}\nTLSCertificateFile {cert}\n"
                     f"TLSCertificateKeyFile {key}\n")
    return f"""{includes}
pidfile {workdir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {workdir}/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
"""


@dataclass
class Directory:
    """One slapd in a work directory; `addresses` are the IPs it listens on. With `tls`, it has a
    certificate from its own CA (`ca_cert`): StartTLS on `port`, and ldaps:// on `tls_port`."""
    workdir: Path
    addresses: tuple[str, ...] = ("127.0.0.1",)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    tls: bool = False
    tls_port: int = field(default_factory=free_port)
    ca_cert: Path | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 20.0) -> "Directory":
        (self.workdir / "db").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "slapd.conf"
        certificates = make_certificates(self.workdir) if self.tls else None
        self.ca_cert = certificates[0] if certificates else None
        conf.write_text(slapd_conf(self.workdir, certificates))
        urls = " ".join(f"ldap://{address}:{self.port}/" for address in self.addresses)
        if self.tls:
            urls += " " + " ".join(f"ldaps://{address}:{self.tls_port}/" for address in self.addresses)
        log = open(self.workdir / "slapd.log", "ab")
        # -d 0: stay in the foreground (the test owns the process), log to stderr
        self.process = subprocess.Popen([SLAPD, "-d", "0", "-h", urls, "-f", str(conf)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def listening():
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        wait_until_ready(self.process, listening, timeout, "slapd", self.log, interval=0.1)
        return self

    def seed(self, ldif: str | None = None) -> None:
        subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
                       input=ldif if ldif is not None else seed_ldif(), text=True,
                       capture_output=True, check=True)

    def stop(self, timeout: float = 10.0) -> None:
        stop_group(self.process, timeout)
        self.process = None

    def log(self) -> str:
        path = self.workdir / "slapd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
