"""Per-user home quotas, enforced for real: the `quotas` role converged over SSH onto an ext4
filesystem (a loop-mounted image in /etc/fstab, as an admin would have it) at the homes' path,
the spawner's own quota code (profilespawner/quota.py, run by the guest's python3) setting a
user's limit, writes past it failing with EDQUOT as the user and from a container running as
the user's uid, and the exporter's own reader (hubmetrics/homes.py) agreeing with `quota -u`.

This machine's kernel has no quota format (no QFMT_V2); Debian's has it as a module, so the
whole test runs in the VM. Root bypasses quotas: every write that must fail runs as the user.
"""
import json
from pathlib import Path

import pytest

from tests.harness import playbooks
from tests.harness.playbooks import recap

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "quotas.yml"
HOMES = "/srv/homes"
IMAGE = "/var/lib/jbm-homes.img"
USER, UID = "quser", 2001
HOME = f"{HOMES}/{USER}"
LIMIT = 8 * 1024 ** 2          # the profile's disk_quota, 8M
ROLE_VARS = {"quotas_homes_path": HOMES, "quotas_services": []}  # no hub or exporter units here
PY = "import sys, json; sys.path.insert(0, '/root'); "


@pytest.fixture(scope="module")
def quota_vm(vm, tmp_path_factory):
    """The VM with a 64M ext4 at HOMES (in /etc/fstab, no quota yet), the role converged once
    (that a second run changes nothing is its molecule scenario's idempotence, in the same VM)."""
    vm.ssh(f"truncate -s 64M {IMAGE} && mkfs.ext4 -q -F {IMAGE} && mkdir -p {HOMES} "
           f"&& echo '{IMAGE} {HOMES} ext4 loop 0 2' >> /etc/fstab && mount {HOMES}", timeout=600)
    workdir = tmp_path_factory.mktemp("vm-quotas-role")
    inventory = vm.inventory(workdir / "inventory.ini")
    vm.run = playbooks.run_playbook(workdir, inventory, ROLE_VARS, PLAYBOOK, timeout=900)
    assert vm.run.returncode == 0, vm.run.stdout[-6000:] + vm.run.stderr[-3000:]
    vm.ssh(f"useradd -u {UID} -U -M -d {HOME} -s /bin/sh {USER} && install -d -m 700 -o {USER} -g {USER} {HOME}")
    vm.put(REPO / "spawner" / "profilespawner" / "quota.py", "/root/quota.py")
    vm.put(REPO / "metrics" / "hubmetrics" / "homes.py", "/root/homes.py")
    return vm


def as_user(vm, command):
    return vm.ssh(f"runuser -u {USER} -- sh -c {json.dumps(command)}", check=False, timeout=600)


def test_role_turns_user_quotas_on(quota_vm):
    first = recap(quota_vm.run.stdout, quota_vm.name)
    print(f"quotas role: {first}")
    assert first["changed"] > 0
    state = quota_vm.ssh(f"quotaon -p -u {HOMES}", check=False).stdout
    assert f"user quota on {HOMES}" in state and state.strip().endswith("is on"), state
    fstab = quota_vm.ssh(f"findmnt --fstab -n -o OPTIONS --mountpoint {HOMES}").stdout.split(",")
    assert "usrquota" in [o.strip() for o in fstab]
    assert "usrquota" in quota_vm.ssh(f"findmnt -n -o OPTIONS --target {HOMES}").stdout


def test_the_spawners_code_refuses_a_filesystem_without_quotas(quota_vm):
    done = quota_vm.ssh("python3", "-c", PY + "import quota\n"
                        "try:\n quota.apply_quota(2001, 1 << 20, '/root')\n"
                        "except quota.QuotaError as e:\n print('REFUSED', e.filesystem, e.message)",
                        check=False)
    assert done.stdout.startswith("REFUSED / user quotas are off on /"), done.stdout + done.stderr


def test_a_write_past_the_quota_fails_with_edquot_as_the_user(quota_vm):
    done = quota_vm.ssh("python3", "-c", PY + f"import quota; print(quota.apply_quota({UID}, {LIMIT}, '{HOME}'))")
    assert done.stdout.strip() == HOMES
    dd = as_user(quota_vm, f"dd if=/dev/zero of={HOME}/big bs=1M count=12")
    assert dd.returncode != 0 and "Disk quota exceeded" in dd.stderr, dd.stdout + dd.stderr
    size = int(quota_vm.ssh(f"stat -c %s {HOME}/big").stdout)
    print(f"as {USER}: dd of 12M into an {LIMIT >> 20}M quota stopped at {size} bytes: {dd.stderr.strip()!r}")
    assert LIMIT - 2 * 1024 ** 2 < size <= LIMIT, size   # it stopped at the quota, not at the disk
    # root is not held by quotas: the same write as root goes through (so the above was the quota)
    quota_vm.ssh(f"dd if=/dev/zero of={HOMES}/root-big bs=1M count=12 && rm {HOMES}/root-big")


def test_the_exporters_reader_agrees_with_quota(quota_vm):
    mine = json.loads(quota_vm.ssh("python3", "-c", PY + f"import homes; print(json.dumps(homes.read_home_quotas('{HOMES}')))").stdout)
    used, limit = mine[str(UID)]
    # quota -w: "/dev/loop0  8192*  8192  8192  7days  3  0  0" (KiB; * over the soft limit)
    line = quota_vm.ssh(f"quota -u -w -p {USER}").stdout.strip().splitlines()[-1].split()
    assert (-(-used // 1024), limit) == (int(line[1].rstrip("*")), int(line[3]) * 1024), line
    assert limit == LIMIT
    print(f"exporter's reader: uid {UID} uses {used} bytes of {limit}; quota -u: {line}")
    assert used >= LIMIT - 2 * 1024 ** 2   # the file written above


def test_a_container_running_as_the_uid_is_held_by_the_quota(quota_vm, base_image):
    quota_vm.load_image(base_image)
    quota_vm.ssh(f"rm -f {HOME}/big")
    run = quota_vm.ssh(f"docker run --rm --user {UID}:{UID} --network none -v {HOME}:{HOME} {base_image} "
                       f"dd if=/dev/zero of={HOME}/from-container bs=1M count=12", check=False, timeout=900)
    assert run.returncode != 0 and "Disk quota exceeded" in run.stderr, run.stdout + run.stderr
    owner, size = quota_vm.ssh(f"stat -c %u:%s {HOME}/from-container").stdout.strip().split(":")
    assert owner == str(UID) and int(size) <= LIMIT, (owner, size)
    print(f"container as uid {UID}: stopped at {size} bytes: {run.stderr.strip()[-120:]!r}")


# The units' hardening against what quotas need: the drop-ins of the quotas role are required.
APPLY = PY + f"import quota\ntry:\n print('SET', quota.apply_quota({UID}, {LIMIT}, '{HOME}'))\n" \
    "except quota.QuotaError as e:\n print('REFUSED', e.message)"
READ = PY + f"import homes\ntry:\n print('READ', homes.read_home_quotas('{HOMES}')[{UID}])\n" \
    "except OSError as e:\n print('FAILED', e)"
EXPORTER_CAPS = "CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE CAP_SYS_PTRACE"   # systemd/hubmetrics-exporter.service


def in_unit(vm, code, *properties):
    cmd = ["systemd-run", "--wait", "--pipe", "--quiet"] + [f"--property={p}" for p in properties]
    return vm.ssh(*cmd, "python3", "-c", code, check=False, timeout=600).stdout.strip()


def test_the_hub_unit_needs_private_devices_off_to_set_quotas(quota_vm):
    hidden = in_unit(quota_vm, APPLY, "PrivateDevices=yes")   # jupyterhub.service as shipped
    assert hidden.startswith("REFUSED "), hidden              # refused, never silently unlimited
    assert in_unit(quota_vm, APPLY, "PrivateDevices=no") == f"SET {HOMES}"   # with the role's drop-in


def test_the_exporter_unit_needs_cap_sys_admin_to_read_quotas(quota_vm):
    without = in_unit(quota_vm, READ, f"CapabilityBoundingSet={EXPORTER_CAPS}")
    assert without.startswith("FAILED ") and "Operation not permitted" in without, without
    added = in_unit(quota_vm, READ, f"CapabilityBoundingSet={EXPORTER_CAPS}", "CapabilityBoundingSet=CAP_SYS_ADMIN")
    assert added.startswith("READ ("), added


# --- Homes on shared storage (a swarm's nodes): the nfs_server and nfs_client roles ---------------
# The VM exports the quota'd homes and mounts them back at NFS_MOUNT, as a node mounts the hub's
# (same path there; one machine needs two). The NFS server enforces the exported filesystem's
# quotas, and root_squash keeps root on a node out of the users' homes.
NFS_PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "nfs.yml"
NFS_MOUNT = "/mnt/nfs-homes"
NFS_VARS = {"nfs_server_homes_path": HOMES, "nfs_server_clients": ["127.0.0.1"], "nfs_client_server": "127.0.0.1",
            "nfs_client_mount_path": NFS_MOUNT}


@pytest.fixture(scope="module")
def nfs_vm(quota_vm, tmp_path_factory):
    quota_vm.ssh(f"rm -f {HOME}/big {HOME}/from-container")   # the quota tests' files: room again
    workdir = tmp_path_factory.mktemp("vm-nfs-roles")
    inventory = quota_vm.inventory(workdir / "inventory.ini")
    quota_vm.nfs_run = playbooks.run_playbook(workdir, inventory, NFS_VARS, NFS_PLAYBOOK, timeout=900)
    assert quota_vm.nfs_run.returncode == 0, quota_vm.nfs_run.stdout[-6000:] + quota_vm.nfs_run.stderr[-3000:]
    return quota_vm


def test_nfs_roles_export_and_mount_the_homes(nfs_vm):
    """Both roles on one VM (server and client over loopback); that a second run changes nothing
    is each role's molecule scenario's idempotence."""
    first = recap(nfs_vm.nfs_run.stdout, nfs_vm.name)
    print(f"nfs roles: {first}")
    assert first["changed"] > 0
    exports = nfs_vm.ssh("exportfs -v").stdout
    assert HOMES in exports and "127.0.0.1" in exports and "root_squash" in exports, exports
    fstype, source = nfs_vm.ssh(f"findmnt -n -o FSTYPE,SOURCE --mountpoint {NFS_MOUNT}").stdout.split()
    assert (fstype, source) == ("nfs4", f"127.0.0.1:{HOMES}")
    fstab = nfs_vm.ssh(f"findmnt --fstab -n -o SOURCE,OPTIONS --mountpoint {NFS_MOUNT}").stdout
    assert f"127.0.0.1:{HOMES}" in fstab and "_netdev" in fstab, fstab


def test_through_nfs_a_user_writes_as_their_uid_and_the_quota_holds(nfs_vm):
    nfs_home = f"{NFS_MOUNT}/{USER}"
    nfs_vm.ssh("python3", "-c", PY + f"import quota; quota.apply_quota({UID}, {LIMIT}, '{HOME}')")  # the spawner's
    small = as_user(nfs_vm, f"echo hello > {nfs_home}/over-nfs && stat -c %u {HOME}/over-nfs")
    assert small.returncode == 0 and small.stdout.strip() == str(UID), small.stdout + small.stderr
    dd = as_user(nfs_vm, f"dd if=/dev/zero of={nfs_home}/big-nfs bs=1M count=12 conv=fsync")
    assert dd.returncode != 0 and "Disk quota exceeded" in dd.stderr, dd.stdout + dd.stderr
    # the disk space the file holds on the exported filesystem (its length may run ahead of it:
    # the client sends writes in parallel, and one past the quota can still extend the file)
    blocks, block = map(int, nfs_vm.ssh(f"stat -c '%b %B' {HOME}/big-nfs").stdout.split())
    print(f"as {USER} over NFS: dd of 12M into an {LIMIT >> 20}M quota stopped with {blocks * block} bytes "
          f"on disk: {dd.stderr.strip()[-80:]!r}")
    assert blocks * block <= LIMIT, blocks * block
    nfs_vm.ssh(f"rm -f {HOME}/big-nfs {HOME}/over-nfs")


def test_root_on_a_node_is_nobody_in_the_homes(nfs_vm):
    """root_squash: root of the mounting machine cannot enter a user's home (0700) over NFS,
    while the same root on the hub's own filesystem can."""
    through_nfs = nfs_vm.ssh(f"touch {NFS_MOUNT}/{USER}/from-root", check=False)
    assert through_nfs.returncode != 0 and "Permission denied" in through_nfs.stderr, through_nfs.stderr
    nfs_vm.ssh(f"touch {HOME}/from-root && rm {HOME}/from-root")
