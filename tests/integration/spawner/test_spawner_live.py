"""The profile spawner against the real Docker engine and a real JupyterHub + proxy.

Limits and guarantees are checked where the kernel enforces them: in docker inspect, in the
container's own cgroup files, by an OOM kill and by CPU time under a busy loop.
"""
import stat
import subprocess
from pathlib import Path

import docker
import pytest
import yaml

from profilespawner import dockerargs, labels, qos
from profilespawner.capacity import detect_host
from profilespawner.profiles import effective_profile, parse_profiles
from profilespawner.request import plan_spawn
from profilespawner.running import running_servers
from tests.harness.cgroups import v2_weight

from .support import (SCOPE, SCOPE_LABEL, SCOPE_VALUE, fitting_names, cgroup_file, container_exists, dexec,
                      inspect, shipped_profiles, spawn, spawn_ready, start_hub, stop_server, through_proxy)

pytestmark = pytest.mark.integration

G = 1024**3
M = 1024**2


# ------------------------------------------------------------------ spawning each shipped profile

@pytest.mark.parametrize("profile", fitting_names())
def test_shipped_profile_spawns_with_enforced_limits(hub_factory, system_users, singleuser_image, profile):
    data, _ = shipped_profiles(singleuser_image)
    user = f"h1p{profile.lower()}"
    account = system_users(user)
    hub = start_hub(hub_factory, data)
    spec = parse_profiles(data).resources[profile]
    spawn_ready(hub, user, {"resource_profile": profile, "cpu_guarantee": 0.5, "mem_guarantee": "1G"})

    # a profile larger than this host is named once in the hub log (at start), not again per spawner
    oversize = "resource_profiles.Extreme.cpu_limit: 36 cores is more than this host's"
    assert hub.log_path.read_text().count(oversize) == (1 if detect_host().cpus < 36 else 0), hub.log()

    # the server answers through the proxy, and code in it writes into the host home as the user
    assert through_proxy(hub, user, "api/status").status_code == 200
    reply = through_proxy(hub, user, "api/contents/from-server.txt", "PUT",
                          json={"type": "file", "format": "text", "content": f"hello {profile}"})
    assert reply.status_code in (200, 201), reply.text
    written = Path(account.pw_dir) / "from-server.txt"
    assert written.read_text() == f"hello {profile}"
    assert written.stat().st_uid == account.pw_uid

    name = f"jupyter-{user}"
    info = inspect(name)
    hc = info["HostConfig"]
    assert hc["CpuPeriod"] == 100_000 and hc["CpuQuota"] == int(spec.cpu_limit * 100_000)
    assert hc["Memory"] == spec.mem_limit and hc["MemorySwap"] == spec.mem_limit
    assert hc["MemoryReservation"] == G
    assert hc["CpuShares"] == 512
    assert hc["PidsLimit"] == 1024 and hc["Init"] is True
    assert hc["AutoRemove"] is False  # Docker 20.10 removes AutoRemove containers on its restart
    assert info["Config"]["User"] == f"{account.pw_uid}:{account.pw_gid}"
    assert info["Config"]["WorkingDir"] == account.pw_dir
    assert any(m["Source"] == account.pw_dir and m["Destination"] == account.pw_dir for m in info["Mounts"])
    assert f"MEM_LIMIT={spec.mem_limit}" in info["Config"]["Env"]
    lab = info["Config"]["Labels"]
    assert lab[labels.USER] == user and lab[labels.RESOURCE_PROFILE] == profile
    assert lab[labels.IMAGE_PROFILE] == "SingleUser" and lab[labels.MEM_GUARANTEE] == str(G)
    assert lab[labels.CPU_GUARANTEE] == "0.5" and lab[labels.GPUS] == ""

    # the container's own cgroup files
    assert int(cgroup_file(name, "memory/memory.limit_in_bytes", "memory.max")) == spec.mem_limit
    assert int(cgroup_file(name, "memory/memory.soft_limit_in_bytes", "memory.low")) == G
    quota = cgroup_file(name, "cpu/cpu.cfs_quota_us", "cpu.max").split()[0]
    assert int(quota) == int(spec.cpu_limit * 100_000)
    weight = int(cgroup_file(name, "cpu/cpu.shares", "cpu.weight"))
    shares = qos.cpu_shares(qos.BURSTABLE, 0.5)
    assert weight in (shares, v2_weight(shares))  # v1 shares or v2 weight


BURN = r"""
import os, sys, time, multiprocessing
def usage():
    try:
        return int(open('/sys/fs/cgroup/cpuacct/cpuacct.usage').read()) / 1e9
    except OSError:
        for line in open('/sys/fs/cgroup/cpu.stat'):
            if line.startswith('usage_usec'):
                return int(line.split()[1]) / 1e6
def burn(until):
    while time.monotonic() < until:
        pass
if __name__ == '__main__':
    window = float(sys.argv[1])
    u0, t0 = usage(), time.monotonic()
    procs = [multiprocessing.Process(target=burn, args=(t0 + window,)) for _ in range(int(sys.argv[2]))]
    [p.start() for p in procs]; [p.join() for p in procs]
    print(usage() - u0, time.monotonic() - t0)
"""


def test_memory_limit_oom_kills_and_cpu_quota_holds(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    user = "h1burn"
    system_users(user)
    hub = start_hub(hub_factory, data)
    spawn_ready(hub, user, {"resource_profile": "Tiny", "cpu_limit": "0.5", "mem_limit": "512M"})
    name = f"jupyter-{user}"

    # a process allocating (and touching) more than the limit is killed by the kernel's OOM killer
    oom = dexec(name, "python3", "-c", "b = bytearray(900 * 1024 * 1024); print('survived')")
    assert oom.returncode == 137, (oom.returncode, oom.stdout, oom.stderr)
    assert "survived" not in oom.stdout
    oom_control = dexec(name, "cat", "/sys/fs/cgroup/memory/memory.oom_control").stdout
    if oom_control:  # cgroup v1
        assert int(dict(line.split() for line in oom_control.splitlines())["oom_kill"]) >= 1
    # ... and only that process: the server is still up
    assert inspect(name)["State"]["Running"]
    assert through_proxy(hub, user, "api/status").status_code == 200

    # CPU time of 2 busy processes over a window stays within quota (0.5 core) plus slack;
    # unlimited they would get up to 2 cores. The lower bound shows the loop really ran.
    r = dexec(name, "python3", "-c", BURN, "4", "2")
    assert r.returncode == 0, r.stderr
    used, wall = map(float, r.stdout.split())
    assert used <= 0.5 * wall * 1.1 + 0.1, (used, wall)
    assert used >= 0.05 * wall, (used, wall)


# ------------------------------------------------------------------ refusals

FORGED = [
    ({"resource_profile": "Huge"}, "resource_profile"),
    ({"resource_profile": "Large"}, "resource_profile"),  # exists, not allowed for default users
    ({"image_profile": "DataScience"}, "image_profile"),
    ({"cpu_limit": 64}, "cpu_limit"),
    ({"cpu_limit": -1}, "cpu_limit"),
    ({"cpu_limit": 0}, "cpu_limit"),
    ({"cpu_limit": "NaN"}, "cpu_limit"),
    ({"cpu_limit": "abc"}, "cpu_limit"),
    ({"mem_limit": "1T"}, "mem_limit"),
    ({"mem_limit": "lots"}, "mem_limit"),
    ({"mem_limit": 0}, "mem_limit"),
    ({"cpu_guarantee": 0.9}, "cpu_guarantee"),  # above max_preallocate 0.5
    ({"cpu_limit": 0.2, "cpu_guarantee": 0.3}, "cpu_guarantee"),  # above limit
    ({"mem_guarantee": "-1G"}, "mem_guarantee"),
    ({"mem_limit": "512M", "mem_guarantee": "1G"}, "mem_guarantee"),
    ({"gpus": 1}, "gpus"),
    ({"image": "evil/root-shell"}, "image"),
    # below Docker's minimums: once a quota of 0 ("no limit") or Docker's own refusal (a 500)
    ({"cpu_limit": 1e-7}, "cpu_limit"),
    ({"cpu_limit": 0.005}, "cpu_limit"),
    ({"mem_limit": "5M"}, "mem_limit"),
    ({"mem_guarantee": "1M"}, "mem_guarantee"),
    # overflowing and non-finite JSON numbers: once a bare "Invalid user options"
    ({"cpu_limit": 10 ** 400}, "cpu_limit"),
    ({"cpu_guarantee": 10 ** 400}, "cpu_guarantee"),
    ({"mem_limit": 10 ** 400}, "mem_limit"),
]


def test_forged_options_get_400_and_no_container(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    user = "h1forge"
    system_users(user)
    hub = start_hub(hub_factory, data)
    for options, field in FORGED:
        r = spawn(hub, user, options)
        assert r.status_code == 400, (options, r.status_code, r.text)
        assert r.json()["message"].startswith(f"{field}: "), (options, r.text)
        assert not container_exists(f"jupyter-{user}"), options
    # NaN as a JSON number (Python's json and tornado accept it) and a wrapped user_options body
    r = spawn(hub, user, raw='{"cpu_limit": NaN}')
    assert r.status_code == 400 and "cpu_limit" in r.json()["message"], r.text
    r = spawn(hub, user, raw='{"user_options": {"cpu_limit": Infinity}}')
    assert r.status_code == 400 and "cpu_limit" in r.json()["message"], r.text
    assert not container_exists(f"jupyter-{user}")
    assert hub.api("GET", f"/users/{user}").json()["servers"] == {}


def test_empty_request_revalidates_stale_options(hub_factory, system_users, singleuser_image):
    data, fitting = shipped_profiles(singleuser_image)
    assert "Small" in fitting
    user = "h1stale"
    system_users(user)
    hub = start_hub(hub_factory, data)
    spawn_ready(hub, user, {"resource_profile": "Small"})
    stop_server(hub, user)
    # the admin takes Small away; the remembered options must not be used unchecked
    data["user_profiles"]["default"]["allowed_resources"] = ["Tiny"]
    hub.profiles_file.write_text(yaml.safe_dump(data))
    hub.restart()
    r = spawn(hub, user)  # no body: JupyterHub re-uses the last options
    assert r.status_code == 400 and r.json()["message"].startswith("resource_profile: 'Small'"), r.text
    assert not container_exists(f"jupyter-{user}")
    # so does "{}" (JupyterHub treats an empty body like no body) ...
    r = spawn(hub, user, {})
    assert r.status_code == 400 and r.json()["message"].startswith("resource_profile: 'Small'"), r.text
    # ... while explicit empty user_options mean the defaults
    spawn_ready(hub, user, {"user_options": {}})
    assert inspect(f"jupyter-{user}")["Config"]["Labels"][labels.RESOURCE_PROFILE] == "Tiny"


def test_user_without_system_account_gets_clear_error(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    hub = start_hub(hub_factory, data)
    user = "h1ghost"
    system_users(user)
    assert hub.api("POST", f"/users/{user}").status_code == 201
    subprocess.run(["userdel", "--remove", user], check=True)  # the account goes, the hub user stays
    for _ in range(2):  # twice: the first failure leaves nothing pending behind
        r = spawn(hub, user, {})
        assert r.status_code == 403, r.text
        assert "no system account" in r.json()["message"] and user in r.json()["message"]
        assert hub.api("GET", f"/users/{user}").json()["servers"] == {}
    assert not container_exists(f"jupyter-{user}")
    assert not Path(f"/home/{user}").exists()  # no home is made for a missing account


def test_missing_home_is_created_owned_and_private(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    data["user_profiles"]["default"]["host_homedir_format_string"] = "/srv/h1homes/{username}"
    user = "h1nohome"
    account = system_users(user, create_home=False)
    home = Path(f"/srv/h1homes/{user}")
    subprocess.run(["rm", "-rf", str(home)], check=True)
    hub = start_hub(hub_factory, data)
    try:
        spawn_ready(hub, user, {})
        st = home.stat()
        assert (st.st_uid, st.st_gid) == (account.pw_uid, account.pw_gid)
        assert stat.S_IMODE(st.st_mode) == 0o700
        # the same path inside the container
        r = dexec(f"jupyter-{user}", "sh", "-c", "pwd; echo $HOME; touch inside", user=str(account.pw_uid))
        assert r.stdout.split() == [str(home), str(home)], r
        assert (home / "inside").stat().st_uid == account.pw_uid
    finally:
        stop_server(hub, user)
        subprocess.run(["rm", "-rf", "/srv/h1homes"])


def test_bad_profiles_file_refuses_hub_start(hub_factory, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    del data["user_profiles"]["default"]
    data["resource_profiles"]["Tiny"]["mem_limit"] = "2X"
    with pytest.raises(RuntimeError) as err:  # the harness config validates, as the installed one
        hub_factory(profiles=data)
    assert "user_profiles.default: missing" in str(err.value)
    assert "resource_profiles.Tiny.mem_limit: '2X' is not a size" in str(err.value)


# ------------------------------------------------------------------ hub restart, admission


def test_hub_restart_keeps_server_and_admission_state(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    first, second = "h1keep", "h1late"
    system_users(first)
    system_users(second)
    # other tests run user containers with guarantees on this engine: this hub counts only its own
    hub = hub_factory(profiles=data, extra_config=SCOPE + "\nc.DockerSystemProfileSpawner.guarantee_cpu_capacity = 0.6\n")
    spawn_ready(hub, first, {"cpu_guarantee": 0.5})
    before = inspect(f"jupyter-{first}")["Id"]

    hub.restart()
    assert inspect(f"jupyter-{first}")["Id"] == before
    assert inspect(f"jupyter-{first}")["State"]["Running"]
    assert hub.api("GET", f"/users/{first}").json()["servers"][""]["ready"]
    assert through_proxy(hub, first, "api/status").status_code == 200

    # the new hub process knows nothing in memory: the guarantee is read back from the container
    r = spawn(hub, second, {"cpu_guarantee": 0.5})
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    assert "cpu_guarantee: cannot guarantee 0.5 CPUs: 0.5 of 0.6 CPUs are already guaranteed" in msg
    assert "0.1 free" in msg
    assert not container_exists(f"jupyter-{second}")
    spawn_ready(hub, second, {"cpu_guarantee": 0.1})
    assert inspect(f"jupyter-{second}")["Config"]["Labels"][SCOPE_LABEL] == SCOPE_VALUE


# ------------------------------------------------------------------ GPUs (no GPU here: create only)

@pytest.fixture
def gpu_holder(base_image):
    """A real running container labelled as a user server holding GPU_A (as after a restart)."""
    name = "h1-gpu-holder"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", f"{labels.USER}=h1holder",
                    "--label", f"{SCOPE_LABEL}={SCOPE_VALUE}",
                    "--label", f"{labels.GPUS}={GPU_A}", base_image, "sleep", "infinity"],
                   check=True, capture_output=True)
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


GPU_A, GPU_B = "GPU-h1test-aaaa", "GPU-h1test-bbbb"  # UUID-style ids only these tests use


def gpu_profiles(image):
    data, _ = shipped_profiles(image)
    data["resource_profiles"]["GPU1"] = {"cpu_limit": 1, "mem_limit": "1G", "gpus": 1}
    data["user_profiles"]["h1gpu"] = {"allowed_resources": ["GPU1"]}
    return data


def test_gpu_device_request_on_real_create(gpu_holder, singleuser_image):
    client = docker.APIClient(version="auto")
    profiles = parse_profiles(gpu_profiles(singleuser_image))
    running = running_servers(client.containers(filters={"label": labels.USER}))
    req = plan_spawn(profiles, effective_profile(profiles, "h1gpu", []), {}, detect_host(), running,
                     gpu_devices=[GPU_A, GPU_B])
    assert req.gpu_ids == (GPU_B,)  # GPU_A is held by the running container
    name = "h1-gpu-create"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    try:
        created = client.create_container(
            singleuser_image, name=name, labels=dockerargs.container_labels(req, "h1gpu"),
            host_config=client.create_host_config(**dockerargs.host_config(req)))
        hc = client.inspect_container(created["Id"])["HostConfig"]
        assert hc["DeviceRequests"] == [{"Driver": "nvidia", "Count": 0, "DeviceIDs": [GPU_B],
                                         "Capabilities": [["gpu"]], "Options": {}}]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_no_free_gpu_is_refused_through_the_hub(hub_factory, system_users, gpu_holder, singleuser_image):
    user = "h1gpu"
    system_users(user)
    hub = hub_factory(profiles=gpu_profiles(singleuser_image),
                      extra_config=SCOPE + f"\nc.DockerSystemProfileSpawner.gpu_devices = [{GPU_A!r}]\n")
    r = spawn(hub, user, {})
    assert r.status_code == 409, r.text
    assert r.json()["message"].startswith("gpus: 1 GPUs asked but only 0 of 1 are free"), r.text
    assert f"{GPU_A} (held by h1holder)" in r.json()["message"]
    assert not container_exists(f"jupyter-{user}")


def test_free_gpu_reaches_docker_as_device_request(hub_factory, system_users, gpu_holder, singleuser_image):
    """With a free GPU the spawner's create carries the device request; this machine has no
    NVIDIA runtime, so Docker itself refuses to start it, naming the nvidia driver."""
    user = "h1gpu"
    system_users(user)
    hub = hub_factory(profiles=gpu_profiles(singleuser_image),
                      extra_config=SCOPE + f"\nc.DockerSystemProfileSpawner.gpu_devices = [{GPU_A!r}, {GPU_B!r}]\n")
    r = spawn(hub, user, {})
    assert r.status_code == 424, r.text  # a failed dependency named, not a 500
    assert "no NVIDIA container runtime" in r.json()["message"] and GPU_B in r.json()["message"], r.text
    assert 'device driver "nvidia"' in hub.log(400), hub.log()
    assert f"gpu_ids=({GPU_B!r},)" in hub.log(400)
    assert not container_exists(f"jupyter-{user}")  # the failed container is cleaned up
    assert hub.api("GET", f"/users/{user}").json()["servers"] == {}


def test_concurrent_spawns_cannot_both_take_the_last_guarantee(hub_factory, system_users, singleuser_image):
    from concurrent.futures import ThreadPoolExecutor

    data, _ = shipped_profiles(singleuser_image)
    users = ["h1race1", "h1race2", "h1race3"]
    for user in users:
        system_users(user)
    hub = start_hub(hub_factory, data, "\nc.DockerSystemProfileSpawner.guarantee_mem_capacity = '1G'\n")
    for user in users:
        hub.api("POST", f"/users/{user}")
    with ThreadPoolExecutor(len(users)) as pool:
        replies = list(pool.map(lambda u: spawn(hub, u, {"mem_guarantee": "768M"}), users))
    codes = sorted(r.status_code for r in replies)
    assert codes[:1] in ([201], [202]) and codes[1:] == [409, 409], [(r.status_code, r.text) for r in replies]
    winner = users[[r.status_code for r in replies].index(codes[0])]
    assert [u for u in users if container_exists(f"jupyter-{u}")] == [winner]
