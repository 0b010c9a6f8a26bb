"""Per-user home quotas, enforced for real: the `quotas` role converged over SSH onto an ext4
filesystem (a loop-mounted image in /etc/fstab, as an admin would have it) at the homes' path,
the spawner's own quota code (profilespawner/quota.py, run by the guest's python3) setting a
user's limit, writes past it failing with EDQUOT as the user and from a container running as
the user's uid, and the exporter's own reader (hubmetrics/homes.py) agreeing with `quota -u`.

This machine's kernel has no quota format (no QFMT_V2); Debian's has it as a module, so the
whole test runs in the VM. Root bypasses quotas: every write that must fail runs as the user.

Then the homes on shared storage, as a swarm has them: the quota'd VM is the hub and a second VM
the node, on a private link (hot-plugged, tests/harness/vm.py `link`); the `nfs_server` and
`nfs_client` roles converged over SSH, the user with the same uid on both (this machine's
kernel has no NFS either). The node VM, the link and each converge print their times (-s).
"""
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness import playbooks
from tests.harness.playbooks import recap
from tests.harness.vm import link, start_vm
from tests.vm.conftest import _module_vm_name

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


TINY_IMAGE = "jbm-vm/tiny"   # the guest's own sh, dd and cat: no image load into the slow guest


def tiny_image(vm) -> str:
    """An image of the guest's own sh, dd and cat and their libc (`docker import`, seconds where
    loading local/debian:bookworm takes minutes in the emulated guest)."""
    vm.ssh(f"docker image inspect {TINY_IMAGE} >/dev/null 2>&1 || tar -C / -ch usr/bin/sh usr/bin/dash usr/bin/dd "
           f"usr/bin/cat lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 | docker import - {TINY_IMAGE} "
           ">/dev/null", timeout=120)
    return TINY_IMAGE


def test_a_container_running_as_the_uid_is_held_by_the_quota(quota_vm):
    quota_vm.ssh(f"rm -f {HOME}/big")
    run = quota_vm.ssh(f"docker run --rm --user {UID}:{UID} --network none -v {HOME}:{HOME} {tiny_image(quota_vm)} "
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
# Two VMs on a private link, as a swarm's hub and worker: quota_vm is the hub and exports the
# quota'd homes, a second VM is the node and mounts them at the same path (the roles' defaults).
# The NFS server enforces the exported filesystem's quotas, root_squash keeps root on a node out
# of the users' homes, and only the listed node may mount. The user has the same uid on both.
NFS_PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "nfs.yml"
HUB_IP, NODE_IP, OUTSIDER_IP = "10.10.10.1", "10.10.10.2", "10.10.10.3"


@pytest.fixture(scope="module")
def node_vm(request, quota_vm):
    """A second VM from the snapshot, the swarm's worker: linked to the hub (quota_vm) by a
    private network hot-plugged after loadvm (tests/harness/vm.py `link`), the hub at HUB_IP, the
    node at NODE_IP; the user made with the hub's uid (fixed uids, as the product requires).
    Stopped at the module's end."""
    started = time.monotonic()
    with start_vm(_module_vm_name(request, "node")) as node:
        booted = time.monotonic()
        addresses = link(quota_vm, node)
        assert addresses == (HUB_IP, NODE_IP), addresses
        linked = time.monotonic()
        node.ssh(f"useradd -u {UID} -U -M -d {HOME} -s /bin/sh {USER}")
        print(f"\nnode VM {node.name}: started in {booted - started:.1f}s, linked to {quota_vm.name} "
              f"({HUB_IP} <-> {NODE_IP}) in {linked - booted:.1f}s")
        yield node


@pytest.fixture(scope="module")
def nfs(quota_vm, node_vm, tmp_path_factory):
    """nfs_server on the hub, then nfs_client on the node, in one ansible-playbook run over SSH
    (the playbook's two plays, as site.yml orders them) with the hub in [jupyterhub] and the node
    in [jupyterhub_nodes] (each host's swarm_node_address its link address); only the homes' path
    is set, the rest are the roles' defaults. `runs` maps each VM's name to the run."""
    quota_vm.ssh(f"rm -f {HOME}/big {HOME}/from-container")   # the quota tests' files: room again
    workdir = tmp_path_factory.mktemp("vm-nfs-roles")
    inventories = [quota_vm.inventory(workdir / "hub.ini", "jupyterhub", swarm_node_address=HUB_IP),
                   node_vm.inventory(workdir / "node.ini", "jupyterhub_nodes", swarm_node_address=NODE_IP)]
    run = playbooks.run_playbook(workdir, inventories, {"nfs_server_homes_path": HOMES}, NFS_PLAYBOOK, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    print(f"nfs_server on {quota_vm.name} and nfs_client on {node_vm.name} converged in {run.seconds:.0f}s")
    runs = {quota_vm.name: run, node_vm.name: run}
    return SimpleNamespace(hub=quota_vm, node=node_vm, runs=runs)


def test_nfs_roles_export_to_the_node_only_and_it_mounts_the_homes(nfs):
    """That a second run changes nothing is each role's molecule scenario's idempotence."""
    for host, run in nfs.runs.items():
        counts = recap(run.stdout, host)
        print(f"{host}: {counts}")
        assert counts["changed"] > 0 and counts["failed"] == 0, counts
    exports = nfs.hub.ssh("exportfs -v").stdout
    entries = re.findall(r"(\S+)\s+([^\s(]+)\(([^)]*)\)", exports)   # path, client, options
    assert [(path, client) for path, client, _ in entries] == [(HOMES, NODE_IP)], exports
    assert "root_squash" in entries[0][2].split(","), exports
    fstype, source, options = nfs.node.ssh(f"findmnt -n -o FSTYPE,SOURCE,OPTIONS --mountpoint {HOMES}").stdout.split()
    assert (fstype, source) == ("nfs4", f"{HUB_IP}:{HOMES}"), (fstype, source)
    assert {f"addr={HUB_IP}", f"clientaddr={NODE_IP}"} <= set(options.split(",")), options   # over the link
    fstab = nfs.node.ssh(f"findmnt --fstab -n -o SOURCE,OPTIONS --mountpoint {HOMES}").stdout
    assert f"{HUB_IP}:{HOMES}" in fstab and "_netdev" in fstab, fstab


def test_on_the_node_a_user_writes_as_their_uid_and_the_quota_holds(nfs):
    nfs.hub.ssh("python3", "-c", PY + f"import quota; quota.apply_quota({UID}, {LIMIT}, '{HOME}')")  # the spawner's
    small = as_user(nfs.node, f"echo hello > {HOME}/over-nfs")
    assert small.returncode == 0, small.stdout + small.stderr
    owner = nfs.hub.ssh(f"stat -c %u {HOME}/over-nfs").stdout.strip()   # on the hub's disk
    assert owner == str(UID), owner
    dd = as_user(nfs.node, f"dd if=/dev/zero of={HOME}/big-nfs bs=1M count=12 conv=fsync")
    assert dd.returncode != 0 and "Disk quota exceeded" in dd.stderr, dd.stdout + dd.stderr
    # the disk space the file holds on the exported filesystem (its length may run ahead of it:
    # the client sends writes in parallel, and one past the quota can still extend the file)
    blocks, block = map(int, nfs.hub.ssh(f"stat -c '%b %B' {HOME}/big-nfs").stdout.split())
    print(f"as {USER} (uid {UID}) on the node: dd of 12M into an {LIMIT >> 20}M quota stopped with "
          f"{blocks * block} bytes on the hub's disk: {dd.stderr.strip()[-80:]!r}")
    assert blocks * block <= LIMIT, blocks * block
    nfs.hub.ssh(f"rm -f {HOME}/big-nfs {HOME}/over-nfs")


def test_root_on_the_node_is_nobody_in_the_homes(nfs):
    """root_squash: root on the node cannot enter a user's home (0700) over NFS, while root on
    the hub, on its own filesystem, can."""
    on_node = nfs.node.ssh(f"touch {HOME}/from-root", check=False)
    assert on_node.returncode != 0 and "Permission denied" in on_node.stderr, on_node.stdout + on_node.stderr
    nfs.hub.ssh(f"touch {HOME}/from-root && rm {HOME}/from-root")


def test_a_machine_not_in_the_export_list_cannot_mount(nfs):
    """A third machine on the link, OUTSIDER_IP: a network namespace on the node with a macvlan
    of its own on the link interface (its own MAC and address; its own NFS client, so its own
    TCP connection from OUTSIDER_IP, and its own hostname, so its own NFSv4 client id). It
    reaches the hub's port 2049 and its mount is refused by the server; exported to it for a
    moment (exportfs, the role's options), the same mount succeeds: the export list decides."""
    interface = nfs.node.ssh(f"ip -o -4 addr show to {NODE_IP}").stdout.split()[1]
    nfs.node.ssh(f"ip netns add outsider && ip link add out0 link {interface} type macvlan mode bridge "
                 f"&& ip link set out0 netns outsider && ip -n outsider addr add {OUTSIDER_IP}/24 dev out0 "
                 f"&& ip -n outsider link set out0 up && mkdir -p /mnt/outsider "
                 f"&& ip netns exec outsider timeout 30 bash -c 'exec 3<>/dev/tcp/{HUB_IP}/2049'", timeout=120)
    mount = (f"ip netns exec outsider unshare --uts sh -c 'hostname outsider && timeout 120 mount -t nfs4 "
             f"{HUB_IP}:{HOMES} /mnt/outsider && findmnt -n -o OPTIONS /mnt/outsider && umount /mnt/outsider'")
    try:
        refused = nfs.node.ssh(mount, check=False, timeout=200)
        assert refused.returncode != 0 and "access denied by server" in refused.stderr, refused.stdout + refused.stderr
        options = nfs.hub.ssh("exportfs -v").stdout.split(f"{NODE_IP}(", 1)[1].split(")", 1)[0]
        nfs.hub.ssh(f"exportfs -o {options} {OUTSIDER_IP}:{HOMES}")
        try:
            allowed = nfs.node.ssh(mount, check=False, timeout=200)
        finally:
            nfs.hub.ssh(f"exportfs -u {OUTSIDER_IP}:{HOMES}")
        assert allowed.returncode == 0 and f"clientaddr={OUTSIDER_IP}" in allowed.stdout, allowed.stdout + allowed.stderr
        print(f"{OUTSIDER_IP}, not exported to: {refused.stderr.strip()!r}; exported to for a moment: mounted")
    finally:
        nfs.node.ssh("ip netns del outsider", check=False)
    after = nfs.hub.ssh("exportfs -v").stdout   # the node's export as the role made it, the outsider's gone
    assert NODE_IP in after and OUTSIDER_IP not in after, after


SWARM_POOL = "10.204.0.0/16"


def test_a_swarm_task_on_the_node_works_in_the_users_home_on_the_hub(nfs):
    """The two VMs form a swarm over the link (the hub the manager, as the swarm role makes it),
    and a service pinned to the node runs as the user's uid with every capability dropped and the
    home bound from the node's NFS mount, as the swarm spawner's services are: its file lands on
    the hub's disk as the user's, and its writes past the quota fail there (EDQUOT)."""
    hub, node = nfs.hub, nfs.node
    hub.ssh("python3", "-c", PY + f"import quota; quota.apply_quota({UID}, {LIMIT}, '{HOME}')")  # the spawner's
    started = time.monotonic()
    hub.ssh(f"docker swarm init --advertise-addr {HUB_IP} --listen-addr {HUB_IP}:2377 "
            f"--default-addr-pool {SWARM_POOL} >/dev/null", timeout=120)
    try:
        token = hub.ssh("docker swarm join-token -q worker").stdout.strip()
        node.ssh(f"docker swarm join --advertise-addr {NODE_IP} --token {token} {HUB_IP}:2377", timeout=120)
        node_id = node.ssh("docker info -f '{{.Swarm.NodeID}}'").stdout.strip()
        image = tiny_image(node)   # on the node only: --no-resolve-image, no registry
        formed = time.monotonic()
        script = (f"echo from-task > {HOME}/from-task && cat {HOME}/from-task; "
                  f"dd if=/dev/zero of={HOME}/big-task bs=1M count=12 conv=fsync; echo dd-exit=$?")
        hub.ssh(f"docker service create -d --name jupyter-{USER} --no-resolve-image --restart-condition none "
                f"--constraint node.id=={node_id} --user {UID}:{UID} --cap-drop ALL --workdir {HOME} "
                f"--mount type=bind,source={HOME},target={HOME} {image} sh -c '{script}'", timeout=120)
        for _ in range(120):   # bounded: the task's state, from the manager, a second apart
            states = hub.ssh(f"docker service ps --format '{{{{.Node}}}} {{{{.CurrentState}}}} {{{{.Error}}}}' "
                             f"jupyter-{USER}").stdout.strip()
            if states.split(" ", 2)[1:2] in (["Complete"], ["Failed"], ["Rejected"]):
                break
            time.sleep(1)
        logs = hub.ssh(f"docker service logs --raw jupyter-{USER} 2>&1", timeout=120).stdout   # its stdout and stderr
        print(f"swarm of the two VMs formed in {formed - started:.0f}s; task: {states!r}; its output: {logs!r}")
        assert states.split(" ", 2)[1] == "Complete", states
        assert "from-task" in logs and "Disk quota exceeded" in logs and "dd-exit=1" in logs, logs
        owner, content = hub.ssh(f"stat -c %u {HOME}/from-task && cat {HOME}/from-task").stdout.split()
        assert (owner, content) == (str(UID), "from-task")   # on the hub's disk, the user's
        blocks, block = map(int, hub.ssh(f"stat -c '%b %B' {HOME}/big-task").stdout.split())
        assert blocks * block <= LIMIT, blocks * block
    finally:
        hub.ssh(f"docker service rm jupyter-{USER}; rm -f {HOME}/from-task {HOME}/big-task", check=False)
        node.ssh("docker swarm leave --force", check=False, timeout=120)
        hub.ssh("docker swarm leave --force", check=False, timeout=120)
