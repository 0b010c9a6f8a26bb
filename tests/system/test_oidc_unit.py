"""Accounts at first login under the hub's hardened unit, for real in a systemd host container:
the spawner's useradd (profilespawner.identity.useradd_argv) run with the unit's own [Service]
settings (systemd/jupyterhub.service, ProtectSystem=full: /etc read-only) fails, and succeeds
with the jupyterhub role's drop-in for jupyterhub_create_system_users (ProtectSystem=true: /usr and /boot stay read-only, /etc is writable)."""
import re
from pathlib import Path

import pytest
import yaml

from profilespawner import identity
from tests.harness.systemd_host import keep_hosts, start_systemd_host

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
HOST = "jbm-oidc-unit"
# lines of the unit that name the installed hub (templated paths, the hub's command, restarts)
NOT_HARDENING = ("WorkingDirectory=", "EnvironmentFile=", "Environment=", "ExecStart=", "Restart",
                 "TimeoutStopSec=")


def hub_unit_as_oneshot(argv):
    """The hub's unit with its hardening, running `argv` once instead of the hub."""
    lines = [line for line in (ROOT / "systemd/jupyterhub.service").read_text().splitlines()
             if not line.startswith(NOT_HARDENING) and not line.startswith("#")]
    text = "\n".join(lines).replace("[Service]", "[Service]\nType=oneshot\nExecStart=" + " ".join(f'"{a}"' for a in argv))
    assert "ProtectSystem=full" in text
    return text.replace("[Install]\nWantedBy=multi-user.target", "")


def role_drop_in():
    """The drop-in the jupyterhub role writes when jupyterhub_create_system_users is on."""
    tasks = yaml.safe_load((ROOT / "roles/jupyterhub/tasks/main.yml").read_text())
    task = next(t for t in tasks if t.get("name") == "Let the hub make host accounts (unit drop-in)")
    return task["ansible.builtin.copy"]["content"].replace("{{ ansible_managed }}", "managed"), \
        task["ansible.builtin.copy"]["dest"]


@pytest.fixture(scope="module")
def host():
    h = start_systemd_host(HOST)
    yield h
    if not keep_hosts():
        h.remove()


def run_unit(host, unit_text, drop_in=None):
    host.exec("sh", "-c", "cat > /etc/systemd/system/jupyterhub.service", input=unit_text)
    host.exec("rm", "-rf", "/etc/systemd/system/jupyterhub.service.d")
    if drop_in:
        content, dest = drop_in
        host.exec("mkdir", "-p", str(Path(dest).parent))
        host.exec("sh", "-c", f"cat > {dest}", input=content)
    host.exec("systemctl", "daemon-reload")
    return host.exec("systemctl", "start", "jupyterhub.service", check=False, timeout=60)


def test_useradd_needs_the_role_drop_in_under_the_hardened_unit(host):
    name, uid = "jbmoidcunit", 47301
    argv = identity.useradd_argv(name, uid, f"/home/{name}")
    argv[0] = "/usr/sbin/useradd"
    unit = hub_unit_as_oneshot(argv)

    refused = run_unit(host, unit)
    assert refused.returncode != 0
    journal = host.exec("journalctl", "-u", "jupyterhub", "--no-pager", "-n", "20", check=False).stdout
    assert re.search(r"(cannot lock|Read-only file system|cannot open) /etc/(passwd|group)", journal), journal
    assert host.exec("getent", "passwd", name, check=False).returncode != 0

    done = run_unit(host, unit, role_drop_in())
    assert done.returncode == 0, host.exec("journalctl", "-u", "jupyterhub", "--no-pager", "-n", "20").stdout
    show = host.exec("systemctl", "show", "jupyterhub", "-p", "ProtectSystem", "-p", "ProtectHome").stdout
    assert "ProtectSystem=yes" in show  # /usr and /boot stay read-only
    entry = host.exec("getent", "passwd", name).stdout.strip().split(":")
    assert entry[2] == str(uid) and entry[5] == f"/home/{name}"
    assert host.exec("stat", "-c", "%u", f"/home/{name}").stdout.strip() == str(uid)
