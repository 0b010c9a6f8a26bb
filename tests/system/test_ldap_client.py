"""The ldap_client role converged for real into a systemd host container, against a real slapd
(tests/harness/ldap.py) on this machine's docker bridge: the host then resolves the directory's
users and groups through nslcd, as the spawner reads them (pwd, os.getgrouplist, grp), so a
container runs as the directory's uid and the `@group` profiles apply.

Only this role is converged (not the whole site, which test_site.py covers): the spawn itself,
as the resolved uid with the group profile, is in tests/integration/test_ldap_login.py.
"""
import json

import pytest

from tests.harness import playbooks
from tests.harness.hub import bridge_gateway, free_port
from tests.harness.ldap import GROUPS_SEED, SUFFIX, USERS, Directory
from tests.harness.systemd_host import keep_hosts, start_systemd_host

pytestmark = pytest.mark.system

PLAYBOOK = playbooks.REPO / "tests" / "system" / "playbooks" / "ldap_client.yml"
HOST_NAME = "jbm-ldap-client"
ALICE, BOB = USERS
USERS_GROUP, GPU_GROUP = GROUPS_SEED

# What the spawner does with an account (spawner.py _account, _unix_groups), run on the host.
RESOLVE = """
import grp, json, os, pwd, sys
account = pwd.getpwnam(sys.argv[1])
groups = sorted(grp.getgrgid(g).gr_name for g in os.getgrouplist(account.pw_name, account.pw_gid))
print(json.dumps({"uid": account.pw_uid, "gid": account.pw_gid, "home": account.pw_dir,
                  "groups": groups}))
"""


@pytest.fixture(scope="module")
def directory(tmp_path_factory, docker_engine):
    # on loopback (seeding) and on the bridge's gateway, where the host container reaches it
    ldap = Directory(tmp_path_factory.mktemp("slapd"), addresses=("127.0.0.1", bridge_gateway()),
                     port=free_port()).start()
    ldap.seed()
    yield ldap
    ldap.stop()


@pytest.fixture(scope="module")
def host(systemd_image):
    host = start_systemd_host(HOST_NAME)
    yield host
    if not keep_hosts():
        host.remove()


@pytest.fixture(scope="module")
def converge(tmp_path_factory, host, directory):
    workdir = tmp_path_factory.mktemp("ldap-client")
    inventory = workdir / "inventory.ini"
    inventory.write_text(f"{HOST_NAME} ansible_connection=community.docker.docker "
                         "ansible_python_interpreter=/usr/bin/python3\n")
    # the directory's address and TLS come from the hub's LDAP settings (one place)
    site = {"ldap_client_enabled": True, "ldap_client_base": SUFFIX,
            "jupyterhub_ldap_settings": {"server_address": bridge_gateway(),
                                         "server_port": directory.port, "tls_strategy": "insecure",
                                         "bind_dn_template": ["uid={username},ou=people," + SUFFIX]}}

    def run(**overrides):
        return playbooks.run_playbook(workdir, inventory, {**site, **overrides}, PLAYBOOK,
                                      timeout=600)
    first = run()
    assert first.returncode == 0, first.output[-4000:]
    return run, first


def resolve(host, name: str) -> dict:
    return json.loads(host.exec("python3", "-c", RESOLVE, name).stdout)


def test_a_second_converge_changes_nothing(converge):
    run, first = converge
    assert first.changed_tasks, "the first converge changed nothing"
    second = run()
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed_tasks == [], second.changed_tasks


def test_the_host_resolves_the_directorys_uid_home_and_groups(converge, host):
    passwd = host.exec("getent", "passwd", ALICE.name).stdout.strip()
    assert passwd == f"{ALICE.name}:*:{ALICE.uid}:{ALICE.gid}:{ALICE.name}:/home/{ALICE.name}:/bin/bash"
    ids = host.exec("id", ALICE.name).stdout
    assert f"uid={ALICE.uid}({ALICE.name})" in ids and f"{GPU_GROUP.gid}({GPU_GROUP.name})" in ids, ids
    # (`*`: nslcd cannot read userPassword, the ACL lets anonymous only bind with it)
    # as the spawner reads it: the @ldapgpu profile applies to alice, not to bob
    assert resolve(host, ALICE.name) == {"uid": ALICE.uid, "gid": ALICE.gid,
                                         "home": f"/home/{ALICE.name}",
                                         "groups": sorted([USERS_GROUP.name, GPU_GROUP.name])}
    assert resolve(host, BOB.name)["groups"] == [USERS_GROUP.name]
    # local accounts keep priority: the directory comes after `files`
    nsswitch = host.exec("grep", "-E", "^(passwd|group):", "/etc/nsswitch.conf").stdout.split("\n")
    assert all(line.split()[1:] == ["files", "ldap"] for line in nsswitch if line), nsswitch
    assert host.exec("getent", "passwd", "root").stdout.startswith("root:x:0:0:")


def test_nslcd_reads_the_hubs_directory(converge, host, directory):
    conf = host.exec("cat", "/etc/nslcd.conf").stdout
    assert f"uri ldap://{bridge_gateway()}:{directory.port}/\n" in conf and "ssl off\n" in conf, conf


def test_a_missing_directory_address_stops_the_play_before_any_change(converge):
    run, _ = converge
    result = run(ldap_client_uri=[], ldap_client_base="")
    assert result.returncode != 0
    assert "ldap_client_uri=[] must be a" in result.output, result.output[-3000:]
    assert 'ldap_client_base="" must be' in result.output
    assert "Install nslcd" not in result.output
