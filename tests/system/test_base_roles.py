"""The base host roles (docker, node, sshd, firewall) converged for real (python: site/test_install.py).

A systemd host container with Docker inside (tests/harness/systemd_host.py) plays the server;
ansible-playbook reaches it over the community.docker.docker connection, and over real SSH for
the firewall's lockout check. Everything asserted is read back from the live host: the
converge's recap, `sshd -T`, packets dropped by ufw, the cgroup of a container its dockerd ran.
"""
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from profilespawner import qos
from tests.harness import playbooks
from tests.harness.images import BASE_IMAGE, ensure_base_image
from tests.harness.playbooks import recap
from tests.harness.systemd_host import start_systemd_host

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "system" / "playbooks" / "base_roles.yml"
IMAGE_CONTEXT = REPO / "tests" / "system" / "base" / "image-context"
HOST_NAME = "h4-base-roles"
# The inner dockerd's bridge, fixed so it cannot collide with the machine's own 172.17.0.0/16.
INNER_BRIDGE_IP = "10.213.7.1/24"
INNER_BRIDGE_CIDR = "10.213.7.0/24"
# The users' network (role docker), where user containers run and ufw lets in to the hub API.
USERS_NETWORK = "jupyterhub-users"
USERS_CIDR, USERS_GATEWAY = "10.213.8.0/24", "10.213.8.1"
EXTRA_CA_SUBJECT = "jbm-h4-test-ca"


def run_playbook(workdir: Path, inventory: Path, extra_vars: dict | None = None,
                 playbook: Path = PLAYBOOK) -> subprocess.CompletedProcess:
    return playbooks.run_playbook(workdir, inventory, extra_vars, playbook)


def make_ca_certificate(directory: Path) -> Path:
    """A throwaway self-signed CA certificate, to check it reaches the host's bundle."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / "jbm-h4-test-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={EXTRA_CA_SUBJECT}", "-keyout", str(directory / "key.pem"),
                    "-out", str(cert)], check=True, capture_output=True)
    (directory / "key.pem").unlink()
    return cert


def base_vars(ca_dir: Path) -> dict:
    """The test site: the machine (172.17.0.1) is in the admin network; root may log in."""
    return {
        "admin_networks": ["172.17.0.0/16"],
        "docker_users_network_subnet": USERS_CIDR,
        "docker_users_network_gateway": USERS_GATEWAY,
        "docker_daemon_options": {"bip": INNER_BRIDGE_IP},
        "sshd_allow_users": ["root", "alice"],
        "sshd_permit_root_login": "prohibit-password",
        "extra_ca_certificates_dir": str(ca_dir),
        "docker_images_build": [{"name": "local/h4-prebuilt", "tag": "test",
                                 "path": str(IMAGE_CONTEXT)}],
    }


@pytest.fixture(scope="module")
def converged(tmp_path_factory, systemd_image):
    """A systemd host with Docker inside, converged once with the base roles (that a second run
    changes nothing is each role's molecule scenario and the site's re-run, tests/system/site)."""
    workdir = tmp_path_factory.mktemp("base-roles")
    ca_dir = workdir / "extra-ca"
    make_ca_certificate(ca_dir)
    host = start_systemd_host(HOST_NAME, docker_inside=True)
    inventory = workdir / "inventory.ini"
    inventory.write_text(
        "[base]\n"
        f"{HOST_NAME} ansible_connection=community.docker.docker "
        "ansible_python_interpreter=/usr/bin/python3\n")
    variables = base_vars(ca_dir)
    try:
        first = run_playbook(workdir, inventory, variables)
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
        yield {"host": host, "workdir": workdir, "inventory": inventory, "vars": variables,
               "first": first}
    finally:
        host.remove()


def test_first_converge_changes_the_host(converged):
    counts = recap(converged["first"].stdout, HOST_NAME)
    assert counts["changed"] > 0 and counts["failed"] == 0, counts


def test_sshd_allows_only_the_listed_users(converged):
    host = converged["host"]
    effective = host.exec("sshd", "-T").stdout.splitlines()
    assert "allowusers root" in effective
    assert "allowusers alice" in effective
    assert "passwordauthentication no" in effective
    assert "permitrootlogin without-password" in effective
    dropin = host.exec("cat", "/etc/ssh/sshd_config.d/10-jupyterhub-baremetal.conf").stdout
    assert "AllowUsers root alice" in dropin
    assert host.exec("systemctl", "is-active", "ssh").stdout.strip() == "active"


def role_only_playbook(workdir: Path, role: str) -> Path:
    """A one-role playbook, so a check of one role does not re-run the others."""
    playbook = workdir / f"{role}_only.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"Converge only the {role} role", "hosts": "all", "roles": [{"role": role}]}]))
    return playbook


def test_sshd_refuses_to_lock_out_the_connecting_user(converged):
    workdir = converged["workdir"]
    result = run_playbook(workdir, converged["inventory"],
                          {**converged["vars"], "sshd_allow_users": ["alice"]},
                          playbook=role_only_playbook(workdir, "sshd"))
    assert result.returncode != 0
    assert "The connecting user root" in result.stdout
    assert "would no longer be allowed" in result.stdout
    dropin = converged["host"].exec(
        "cat", "/etc/ssh/sshd_config.d/10-jupyterhub-baremetal.conf").stdout
    assert "AllowUsers root alice" in dropin  # the old drop-in stays


def tcp_answer(ip: str, port: int, timeout: float = 4.0) -> str:
    """'open', 'refused' or 'dropped' (no answer at all: a firewall DROP)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "dropped"


def test_ufw_drops_a_closed_port_and_lets_ssh_through(converged):
    host = converged["host"]
    status = host.exec("ufw", "status", "verbose").stdout
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status
    # A real listener on the exporter's port inside the host: reachable from inside ...
    host.exec("sh", "-c", "nohup python3 -m http.server 9945 --bind 0.0.0.0 "
              ">/dev/null 2>&1 &")
    inside = host.exec("python3", "-c", (
        "import socket,time\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', 9945), 2).close(); print('open'); break\n"
        "    except OSError: time.sleep(0.1)\n"))
    assert inside.stdout.strip() == "open"
    # ... but not from the machine (172.17.0.1): ufw drops it without an answer.
    assert tcp_answer(host.ip, 9945) == "dropped"
    # SSH from the admin network (the machine is 172.17.0.1 in 172.17.0.0/16) gets through.
    with socket.create_connection((host.ip, 22), timeout=10) as conn:
        conn.settimeout(10)
        assert conn.recv(64).startswith(b"SSH-2.0-")


def test_ufw_denies_internal_ports_to_containers_and_allows_the_hub_api(converged):
    rules = converged["host"].exec("ufw", "status").stdout
    assert re.search(rf"^9945/tcp\s+DENY\s+{re.escape(USERS_CIDR)}", rules, re.MULTILINE)
    hub_api = rf"^{re.escape(USERS_GATEWAY)} 8081/tcp\s+ALLOW\s+{re.escape(USERS_CIDR)}"
    assert re.search(hub_api, rules, re.MULTILINE), rules
    assert re.search(r"^22/tcp\s+ALLOW\s+172\.17\.0\.0/16", rules, re.MULTILINE)
    assert INNER_BRIDGE_CIDR not in rules, "docker0 is not where users' containers run"
    lines = rules.splitlines()
    deny_at = next(i for i, line in enumerate(lines) if line.startswith("9945/tcp"))
    allow_at = next(i for i, line in enumerate(lines) if re.match(hub_api, line))
    assert deny_at < allow_at


@pytest.mark.parametrize("bad, named", [
    (["172.17.0.0/16", "not-a-cidr"], "admin_networks[1]: 'not-a-cidr' is not a CIDR network"),
    (["10.0.0.1/8"], "admin_networks[0]: '10.0.0.1/8' is not a CIDR network"),
])
def test_a_bad_admin_network_stops_the_play_before_any_change(converged, bad, named):
    result = run_playbook(converged["workdir"], converged["inventory"],
                          {**converged["vars"], "admin_networks": bad})
    assert result.returncode != 0
    assert named in result.stdout
    counts = recap(result.stdout, HOST_NAME)
    assert counts["changed"] == 0 and counts["failed"] == 1
    assert "Install the Docker engine" not in result.stdout  # stopped in the preflight play


def test_firewall_refuses_to_cut_off_the_ssh_connection_it_runs_over(converged):
    """Over real SSH, from 172.17.0.1, with an admin network that does not contain it."""
    host, workdir = converged["host"], converged["workdir"]
    key = workdir / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host.exec("sh", "-c", "install -d -m 700 /root/.ssh && cat >> /root/.ssh/authorized_keys",
              input=(workdir / "id_ed25519.pub").read_text())
    inventory = workdir / "inventory-ssh.ini"
    inventory.write_text(
        "[base]\n"
        f"{HOST_NAME} ansible_host={host.ip} ansible_user=root "
        f"ansible_ssh_private_key_file={key} ansible_python_interpreter=/usr/bin/python3 "
        "ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no'\n")
    playbook = role_only_playbook(workdir, "firewall")
    before = host.exec("ufw", "status").stdout
    result = run_playbook(workdir, inventory, {**converged["vars"],
                                               "admin_networks": ["192.0.2.0/24"]},
                          playbook=playbook)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "This play connects from 172.17.0.1, which is not in admin_networks" in result.stdout
    assert host.exec("ufw", "status").stdout == before
    # The same play from an admin network goes through over SSH (the check is not a blanket no).
    ok = run_playbook(workdir, inventory, converged["vars"], playbook=playbook)
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert recap(ok.stdout, HOST_NAME)["changed"] == 0


def test_a_network_removed_from_admin_networks_loses_ssh(converged):
    host, workdir = converged["host"], converged["workdir"]
    playbook = role_only_playbook(workdir, "firewall")
    wider = {**converged["vars"], "admin_networks": ["172.17.0.0/16", "192.0.2.0/24"]}
    assert run_playbook(workdir, converged["inventory"], wider, playbook=playbook).returncode == 0
    assert re.search(r"^22/tcp\s+ALLOW\s+192\.0\.2\.0/24", host.exec("ufw", "status").stdout,
                     re.MULTILINE)
    back = run_playbook(workdir, converged["inventory"], converged["vars"], playbook=playbook)
    assert back.returncode == 0, back.stdout[-3000:]
    rules = host.exec("ufw", "status").stdout
    assert "192.0.2.0/24" not in rules
    assert re.search(r"^22/tcp\s+ALLOW\s+172\.17\.0\.0/16", rules, re.MULTILINE)


def slice_expectations(host) -> tuple[int, int]:
    """(MemoryMax bytes, CFS quota us per 100 ms) the role must derive from the host's facts."""
    meminfo = host.exec("cat", "/proc/meminfo").stdout
    memtotal_mb = int(re.search(r"MemTotal:\s+(\d+) kB", meminfo).group(1)) // 1024
    vcpus = int(host.exec("sh", "-c", "grep -c ^processor /proc/cpuinfo").stdout)
    reserve_mb = min(max(2048, -(-memtotal_mb * 10 // 100)), memtotal_mb // 2)
    reserve_cpus = min(max(1.0, vcpus * 0.10), vcpus / 2)
    quota_percent = round((vcpus - reserve_cpus) * 100)
    return (memtotal_mb - reserve_mb) * 1024 * 1024, quota_percent * 1000


def ensure_inner_image(host) -> None:
    """The Debian base image inside the host's own dockerd (no registry: docker save | load)."""
    if host.exec("docker", "image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        host.load_image(ensure_base_image())


def test_users_containers_reach_the_hub_api_but_not_the_exporter(converged, base_image):
    """From a container on the users' network to listeners on all the host's addresses."""
    host = converged["host"]
    ensure_inner_image(host)
    gateway = USERS_GATEWAY
    for port in (8081, 9945):
        host.exec("sh", "-c", f"ss -ltn | grep -q ':{port} ' || nohup python3 -m http.server "
                  f"{port} --bind 0.0.0.0 >/dev/null 2>&1 &")
    probe = ("for port in 8081 9945; do "
             f"if timeout 5 bash -c \"exec 3<>/dev/tcp/{gateway}/$port\" 2>/dev/null; "
             "then echo $port open; else echo $port closed; fi; done")
    answers = None
    for _ in range(3):  # the listeners may take a moment to bind
        answers = host.exec("docker", "run", "--rm", "--network", USERS_NETWORK, BASE_IMAGE,
                            "bash", "-c", probe).stdout
        if "8081 open" in answers:
            break
    assert "8081 open" in answers
    assert "9945 closed" in answers


def test_docker_runs_user_containers_under_the_capped_slice(converged, base_image):
    host = converged["host"]
    info = json.loads(host.exec("docker", "info", "--format", "{{json .}}").stdout)
    assert info["CgroupDriver"] == "systemd"
    assert info["LoggingDriver"] == "journald"
    assert info["LiveRestoreEnabled"] is True
    memory_max, cpu_quota_us = slice_expectations(host)
    shown = host.exec("systemctl", "show", "jupyterhub-users.slice",
                      "-p", "MemoryMax", "-p", "CPUQuotaPerSecUSec").stdout
    assert f"MemoryMax={memory_max}" in shown

    host.exec("docker", "rm", "-f", "h4-probe", check=False)
    ensure_inner_image(host)
    host.exec("docker", "run", "-d", "--name", "h4-probe", "--cgroup-parent",
              "jupyterhub-users.slice", BASE_IMAGE, "sleep", "600")
    pid = host.exec("docker", "inspect", "-f", "{{.State.Pid}}", "h4-probe").stdout.strip()
    cgroups = dict(line.split(":", 2)[1:] for line in
                   host.exec("cat", f"/proc/{pid}/cgroup").stdout.splitlines())
    memory_cgroup = cgroups.get("memory") or cgroups[""]
    assert "/jupyterhub.slice/jupyterhub-users.slice/docker-" in memory_cgroup
    slice_dir = memory_cgroup.split("/jupyterhub-users.slice/")[0] + "/jupyterhub-users.slice"
    limit = host.exec("cat", f"/sys/fs/cgroup/memory{slice_dir}/memory.limit_in_bytes").stdout
    assert int(limit) == memory_max
    quota = host.exec("cat", f"/sys/fs/cgroup/cpu,cpuacct{slice_dir}/cpu.cfs_quota_us",
                      check=False)
    if quota.returncode != 0:
        quota = host.exec("cat", f"/sys/fs/cgroup/cpu{slice_dir}/cpu.cfs_quota_us")
    assert int(quota.stdout) == cpu_quota_us
    host.exec("docker", "rm", "-f", "h4-probe", check=False)


def test_qos_slices_weigh_what_the_classes_need(converged, base_image):
    """The best-effort slice the spawner derives exists under the users' slice with the least
    CPU weight; the users' slice and the slice above it outweigh the OS's slices."""
    host = converged["host"]
    ensure_inner_image(host)
    besteffort = qos.besteffort_parent("jupyterhub-users.slice")
    shown = [line for line in host.exec("systemctl", "show", "-p", "CPUWeight", "jupyterhub.slice",
                                        "jupyterhub-users.slice", besteffort, "system.slice").stdout.splitlines()
             if line]
    assert shown == ["CPUWeight=10000", "CPUWeight=10000", "CPUWeight=1", "CPUWeight=[not set]"], shown
    host.exec("docker", "rm", "-f", "h4-be", check=False)
    host.exec("docker", "run", "-d", "--name", "h4-be", "--cgroup-parent", besteffort, "--cpu-shares",
              str(qos.cpu_shares(qos.BESTEFFORT, 0)), BASE_IMAGE, "sleep", "600")
    pid = host.exec("docker", "inspect", "-f", "{{.State.Pid}}", "h4-be").stdout.strip()
    cgroups = dict(line.split(":", 2)[1:] for line in host.exec("cat", f"/proc/{pid}/cgroup").stdout.splitlines())
    cpu_cgroup = cgroups.get("cpu,cpuacct") or cgroups.get("cpu") or cgroups[""]
    assert f"/jupyterhub.slice/jupyterhub-users.slice/{besteffort}/docker-" in cpu_cgroup, cpu_cgroup
    slice_dir = cpu_cgroup.rsplit("/", 1)[0]
    controller = "cpu,cpuacct" if "cpu,cpuacct" in cgroups else "cpu"
    # systemd maps CPUWeight to v1 shares as weight x 1024 / 100
    assert int(host.exec("cat", f"/sys/fs/cgroup/{controller}{slice_dir}/cpu.shares").stdout) == 10
    users_dir = slice_dir.rsplit("/", 1)[0]
    assert int(host.exec("cat", f"/sys/fs/cgroup/{controller}{users_dir}/cpu.shares").stdout) == 102400
    host.exec("docker", "rm", "-f", "h4-be", check=False)


def test_extra_ca_certificates_reach_the_host_and_the_prebuilt_image(converged):
    host = converged["host"]
    installed = host.exec("cat", "/usr/local/share/ca-certificates/jbm-h4-test-ca.crt").stdout
    assert installed == (converged["workdir"] / "extra-ca" / "jbm-h4-test-ca.crt").read_text()
    bundle = host.exec("openssl", "crl2pkcs7", "-nocrl", "-certfile",
                       "/etc/ssl/certs/ca-certificates.crt").stdout
    subjects = host.exec("openssl", "pkcs7", "-print_certs", "-noout", input=bundle).stdout
    assert f"CN = {EXTRA_CA_SUBJECT}" in subjects
    host.exec("docker", "rm", "-f", "h4-prebuilt", check=False)
    host.exec("docker", "create", "--name", "h4-prebuilt", "local/h4-prebuilt:test")
    copied = host.exec("docker", "cp",
                       "h4-prebuilt:/usr/local/share/ca-certificates/jbm-h4-test-ca.crt", "-")
    host.exec("docker", "rm", "-f", "h4-prebuilt", check=False)
    assert installed.strip() in copied.stdout  # `docker cp ... -` streams a tar of the file


def test_configurable_http_proxy_runs_on_the_installed_node(converged):
    host = converged["host"]
    chp = "/opt/jupyterhub/chp/node_modules/.bin/configurable-http-proxy"
    assert host.exec(chp, "--version").stdout.strip() == "4.6.3"
    major = int(host.exec("node", "--version").stdout.strip().lstrip("v").split(".")[0])
    assert major >= 10
