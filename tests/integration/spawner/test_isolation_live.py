"""Default-deny containers, bounded writes, shared data and hub restarts, measured for real.

A real hub (tests/harness/hub.py) spawns the JupyterLab test image on the real engine; what the
kernel does is read back inside the container: /proc/1/status, a setuid-root program's
effective uid, errno of writes, the memory cgroup's usage while /tmp fills.
"""
import errno
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .support import container_exists, dexec, inspect, spawn, spawn_ready, start_hub, stop_server, through_proxy

pytestmark = pytest.mark.integration

M = 1024**2
G = 1024**3
TMP = 256 * M

# Fill /tmp with 1.9 GiB in 1 MiB writes; print what was written, the errno that stopped it and
# how much the memory cgroup's usage rose (tmpfs pages are charged to the container).
FILL_TMP = r"""
import errno, os, sys
def usage():
    for path in ('/sys/fs/cgroup/memory/memory.usage_in_bytes', '/sys/fs/cgroup/memory.current'):
        try:
            return int(open(path).read())
        except OSError:
            pass
before, written, err = usage(), 0, 0
chunk = b'x' * (1024 * 1024)
with open('/tmp/fill', 'wb', buffering=0) as f:
    try:
        while written < int(1.9 * 1024**3):
            written += f.write(chunk)
    except OSError as e:
        err = e.errno
rose = usage() - before
os.unlink('/tmp/fill')
print(written, err, rose, usage() - before)
"""

WRITE = "import sys\ntry:\n    open(sys.argv[1], 'w').write('x')\n    print(0)\nexcept OSError as e:\n    print(e.errno)"


def status_fields(name):
    r = dexec(name, "cat", "/proc/1/status")
    assert r.returncode == 0, r.stderr
    return dict(line.split(":\t", 1) for line in r.stdout.splitlines() if ":\t" in line)


def write_errno(name, path):
    r = dexec(name, "python3", "-c", WRITE, path)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def suid_id(home):
    """A setuid-root copy of id(1) in the user's home (home filesystems are not nosuid)."""
    target = Path(home) / "suid-id"
    shutil.copy("/usr/bin/id", target)
    os.chown(target, 0, 0)
    os.chmod(target, 0o4755)
    return str(target)


def isolation_profiles(image, shared, scratch):
    return {
        "resource_profiles": {"Iso": {"cpu_limit": 1, "mem_limit": "1G", "tmp_size": "256M"}},
        "image_profiles": {
            "SingleUser": {"image": image, "description": "JupyterLab"},
            "Legacy": {"image": image, "description": "JupyterLab, old style",
                       "allow_privilege_escalation": True, "cap_add": ["NET_RAW"], "read_only_root": False},
        },
        "user_profiles": {"default": {
            "allowed_resources": ["Iso"], "allowed_images": ["SingleUser", "Legacy"],
            "data_mounts": [{"host_path": str(shared), "container_path": "/shared"},
                            {"host_path": str(scratch), "container_path": "/scratch", "rw": True}]}},
    }


def test_default_deny_container_bounded_writes_and_shared_data(hub_factory, system_users, singleuser_image,
                                                               tmp_path):
    user = "h1iso"
    account = system_users(user)
    shared, scratch = tmp_path / "shared", tmp_path / "scratch"
    shared.mkdir(mode=0o755)
    (shared / "README").write_text("shared data\n")
    scratch.mkdir()
    os.chown(scratch, account.pw_uid, account.pw_gid)
    hub = start_hub(hub_factory, isolation_profiles(singleuser_image, shared, scratch))
    spawn_ready(hub, user, {"image_profile": "SingleUser"})
    name = f"jupyter-{user}"

    hc = inspect(name)["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["ReadonlyRootfs"] is True
    assert hc["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={TMP},mode=1777"}

    # least privilege, as the kernel sees the server process
    status = status_fields(name)
    assert status["NoNewPrivs"].strip() == "1" and int(status["CapBnd"], 16) == 0
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    # a setuid-root program gains nothing: id -u still prints the user's uid
    program = suid_id(account.pw_dir)
    r = dexec(name, program, "-u")
    assert r.returncode == 0 and r.stdout.strip() == str(account.pw_uid), (r.stdout, r.stderr)

    # the writable layer is bounded at zero: writes into the image fail with EROFS
    assert write_errno(name, "/made-by-user") == errno.EROFS
    assert write_errno(name, "/var/tmp/made-by-user") == errno.EROFS
    # /tmp: 1.9 GiB is stopped at tmp_size with ENOSPC, and the memory cgroup paid for it
    r = dexec(name, "python3", "-c", FILL_TMP, timeout=300)
    assert r.returncode == 0, r.stderr
    written, err, rose, after_unlink = map(int, r.stdout.split())
    assert err == errno.ENOSPC and written == TMP, (written, err)
    assert rose >= 0.95 * TMP, rose            # charged to the container's memory ...
    assert after_unlink < 0.5 * TMP, after_unlink  # ... and given back when the file goes

    # shared data: the read-only mount is readable and refuses writes, the rw one takes them
    assert dexec(name, "cat", "/shared/README").stdout == "shared data\n"
    assert write_errno(name, "/shared/new") == errno.EROFS
    assert write_errno(name, "/scratch/new") == 0
    assert (scratch / "new").read_text() == "x" and (scratch / "new").stat().st_uid == account.pw_uid
    assert not (shared / "new").exists()

    # JupyterLab works on the read-only root: it answers and writes into the home
    assert through_proxy(hub, user, "api/status").status_code == 200
    reply = through_proxy(hub, user, "api/contents/ro-root.txt", "PUT",
                          json={"type": "file", "format": "text", "content": "fine"})
    assert reply.status_code in (200, 201), reply.text
    assert (Path(account.pw_dir) / "ro-root.txt").read_text() == "fine"

    # the image profile's opt-outs: setuid works again (euid 0), NET_RAW in the bounding set,
    # a writable root (only where the image lets the user write; / itself is root's)
    stop_server(hub, user)
    spawn_ready(hub, user, {"image_profile": "Legacy"})
    hc = inspect(name)["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and hc["CapAdd"] == ["NET_RAW"]
    assert not hc["SecurityOpt"] and hc["ReadonlyRootfs"] is False
    status = status_fields(name)
    assert status["NoNewPrivs"].strip() == "0" and int(status["CapBnd"], 16) == 1 << 13  # CAP_NET_RAW
    r = dexec(name, program, "-u")
    assert r.returncode == 0 and r.stdout.strip() == "0", (r.stdout, r.stderr)
    assert write_errno(name, "/made-by-user") == errno.EACCES  # no longer EROFS
    stop_server(hub, user)
    assert not container_exists(name)


def test_hub_refuses_to_start_without_a_data_mounts_host_path(hub_factory, singleuser_image, tmp_path):
    gone = tmp_path / "not-there"
    profiles = isolation_profiles(singleuser_image, gone, tmp_path)
    with pytest.raises(RuntimeError) as e:
        start_hub(hub_factory, profiles)
    assert "jupyterhub exited with 1" in str(e.value)
    assert f"user_profiles.default.data_mounts[0].host_path: {str(gone)!r} does not exist on this host" in str(e.value)


# ------------------------------------------------------------------ restarts and exited servers

# the server comes up SLOW seconds after its container starts, so the hub can be killed while
# the spawn is pending with the container already running
SLOW = 20
SLOW_START = (f'\nc.DockerSystemProfileSpawner.cmd = ["sh", "-c", '
              f'"sleep {SLOW}; exec /usr/local/bin/start-singleuser.sh \\"$@\\"", "start"]\n')


def server_model(hub, user):
    return hub.api("GET", f"/users/{user}").json().get("servers", {}).get("")


def test_hub_killed_mid_spawn_adopts_the_running_container(hub_factory, system_users, singleuser_image):
    user = "h1isorst"
    system_users(user)
    data = {"resource_profiles": {"Small": {"cpu_limit": 1, "mem_limit": "1G"}},
            "image_profiles": {"SingleUser": {"image": singleuser_image}},
            "user_profiles": {"default": {"allowed_resources": ["Small"], "allowed_images": ["SingleUser"]}}}
    hub = start_hub(hub_factory, data, SLOW_START)
    name = f"jupyter-{user}"
    r = spawn(hub, user, {})
    assert r.status_code == 202, (r.status_code, r.text)  # pending: the server sleeps first
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (inspect(name) or {}).get("State", {}).get("Running"):
        time.sleep(0.2)
    assert inspect(name)["State"]["Running"], hub.log()
    model = server_model(hub, user)
    assert model["pending"] == "spawn" and not model["ready"], model
    container_id = inspect(name)["Id"]

    os.killpg(hub.process.pid, signal.SIGKILL)  # the hub and its proxy, no clean-up at all
    hub.process.wait()
    hub.process = None
    restarted = time.monotonic()
    hub.start()
    hub.wait_ready(user, timeout=60)  # the hub's http_timeout is 120 s: a stranded user fails here
    recovered = time.monotonic() - restarted
    print(f"spawn recovered {recovered:.1f}s after the hub restart began")
    assert inspect(name)["Id"] == container_id  # adopted, not recreated
    assert through_proxy(hub, user, "api/status").status_code == 200
    assert "does not appear to be running" not in hub.log(400)

    # the user can stop and spawn again at once
    stop_server(hub, user)
    assert not container_exists(name)
    r = spawn(hub, user, {})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, timeout=90)


def test_server_that_died_with_the_hub_is_cleaned_up_and_the_user_spawns_at_once(hub_factory, system_users,
                                                                                   singleuser_image):
    """The hub is killed and the container stops while it is down: the next hub forgets the
    server (no stuck 'pending') and the user's next spawn replaces the dead container at once."""
    user = "h1isocln"
    system_users(user)
    data = {"resource_profiles": {"Small": {"cpu_limit": 1, "mem_limit": "1G"}},
            "image_profiles": {"SingleUser": {"image": singleuser_image}},
            "user_profiles": {"default": {"allowed_resources": ["Small"], "allowed_images": ["SingleUser"]}}}
    hub = start_hub(hub_factory, data)
    name = f"jupyter-{user}"
    spawn_ready(hub, user, {})
    first = inspect(name)["Id"]
    os.killpg(hub.process.pid, signal.SIGKILL)
    hub.process.wait()
    hub.process = None
    subprocess.run(["docker", "stop", "-t", "0", name], capture_output=True, check=True)
    restarted = time.monotonic()
    hub.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server_model(hub, user):
        time.sleep(0.3)
    assert not server_model(hub, user), (server_model(hub, user), hub.log())
    print(f"dead server forgotten {time.monotonic() - restarted:.1f}s after the hub restart began")
    # JupyterHub stops only servers that poll() as running, so the exited container stays (its
    # logs tell why it died) until the next spawn removes it
    assert inspect(name)["State"]["Running"] is False
    spawn_ready(hub, user, {})
    assert inspect(name)["Id"] != first
    stop_server(hub, user)
    assert not container_exists(name)


def test_server_that_exited_by_itself_spawns_again_and_stop_removes_it(hub_factory, system_users,
                                                                       singleuser_image):
    user = "h1isoexit"
    system_users(user)
    hub = start_hub(hub_factory, None)
    name = f"jupyter-{user}"
    spawn_ready(hub, user, {"resource_profile": "Tiny"})
    first = inspect(name)["Id"]
    assert subprocess.run(["docker", "stop", "-t", "2", name], capture_output=True).returncode == 0
    assert inspect(name)["State"]["Running"] is False  # exited, not removed (no AutoRemove)
    r = spawn(hub, user, {"resource_profile": "Tiny"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user)
    assert inspect(name)["Id"] != first and inspect(name)["State"]["Running"]
    assert through_proxy(hub, user, "api/status").status_code == 200
    stop_server(hub, user)
    assert not container_exists(name)
