"""Spawn storm: N users start their servers at once through the hub's REST API.

Time to ready (POST until the server answers through the proxy, with the user's token) is
compared with the floor measured in the same run: N `docker run`s at once of the same image with
the same limits running the image's own server as the hub runs it (jupyterhub-singleuser, as the
user's uid in their home, reaching the same hub's API), each until it answers. Target: p95 within
1.3x the floor. For reference the ratio to `docker run ... jupyter server` (no hub at all, as
root) is printed too: jupyterhub-singleuser itself needs about a third more CPU to start.
Each run also prints where the time goes (medians, seconds from the request): the container
created and started (Docker's own timestamps), the server's "is running at" log line, and for
the hub the moment the hub marked the server ready.
Run: `python tests/benchmarks/bench_spawn_storm.py [--users 10 20]`.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import psutil
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.harness import dockerd, images, users  # noqa: E402
from tests.harness.hub import Hub  # noqa: E402
from tests.harness.profiles import sample_profiles  # noqa: E402

PHASES: dict[str, dict[str, dict]] = {}  # path -> container -> phase -> seconds
PROFILE = "Tiny"  # 0.5 CPU, 512M: the same limits for the hub's spawns and the floor's runs
CPU, MEM = "0.5", "512m"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def wait_http(url: str, deadline: float, headers: dict | None = None) -> None:
    while time.monotonic() < deadline:
        try:
            if requests.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def docker_time(stamp: str) -> float:
    """Docker's RFC 3339 nanosecond timestamp as epoch seconds."""
    day, _, rest = stamp.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    whole = datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()
    return whole + float(f"0.{fraction or 0}")


def container_phases(container: str, start: float) -> dict[str, float]:
    """Seconds from `start` (epoch) to Docker's create and start, and to the server's log line
    saying it runs; read before the container goes away."""
    info = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True,
                                     text=True, check=True).stdout)[0]
    phases = {"created": docker_time(info["Created"]) - start,
              "started": docker_time(info["State"]["StartedAt"]) - start}
    logs = subprocess.run(["docker", "logs", "--timestamps", container], capture_output=True,
                          text=True).stderr.splitlines()
    running = [line.split(" ", 1)[0] for line in logs if "is running at" in line]
    if running:
        phases["listening"] = docker_time(running[0]) - start
    return phases


def floor_one(image: str, command: str, account, hub: Hub) -> float:
    """`docker run` the image with the same limits as the hub's spawns and time it until its
    server answers. command "singleuser": the image's own server as the hub runs it (its default
    command, jupyterhub-singleuser, as the user's uid in their home, checking the hub's API at
    start); "plain": `jupyter server` as root, no hub involved."""
    name = f"bench-floor-{account.pw_name}"
    prefix = f"/user/{account.pw_name}/"
    if command == "singleuser":
        env = {"JUPYTERHUB_API_TOKEN": "floor", "JUPYTERHUB_USER": account.pw_name,
               "JUPYTERHUB_API_URL": f"http://{hub.hub_ip}:{hub.hub_port}/hub/api",
               "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_BASE_URL": "/",
               "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{prefix}", "HOME": account.pw_dir}
        how = [f"--user={account.pw_uid}:{account.pw_gid}", "-v", f"{account.pw_dir}:{account.pw_dir}",
               "-w", account.pw_dir, *(f"--env={k}={v}" for k, v in env.items()), image]
        path = f"{prefix}api"
    else:
        how = [image, "jupyter", "server", "--ip=0.0.0.0", "--port=8888", "--ServerApp.token=",
               "--ServerApp.allow_root=True"]
        path = "/api"
    start, epoch = time.monotonic(), time.time()
    cid = subprocess.run(
        ["docker", "run", "-d", "--name", name, "--cpus", CPU, "--memory", MEM,
         "--memory-swap", MEM, "--init", "-p", "127.0.0.1::8888", *how],
        capture_output=True, text=True, check=True).stdout.strip()
    port = subprocess.run(["docker", "port", cid, "8888/tcp"], capture_output=True, text=True,
                          check=True).stdout.split(":")[-1].strip()
    try:
        wait_http(f"http://127.0.0.1:{port}{path}", start + 300)
    except TimeoutError:
        logs = subprocess.run(["docker", "logs", "--tail", "20", cid], capture_output=True, text=True)
        raise RuntimeError(f"{name} did not answer at {path}:\n{logs.stdout}{logs.stderr}") from None
    elapsed = time.monotonic() - start
    PHASES.setdefault(command, {})[name] = {**container_phases(cid, epoch), "answered": elapsed}
    return elapsed


def floor(image: str, command: str, accounts: list, hub: Hub) -> list[float]:
    try:
        with ThreadPoolExecutor(len(accounts)) as pool:
            return list(pool.map(lambda a: floor_one(image, command, a, hub), accounts))
    finally:
        names = [f"bench-floor-{a.pw_name}" for a in accounts]
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


def wait_ready_event(hub: Hub, name: str) -> None:
    """Follow the hub's progress stream (as the spawn page does) until it says ready: one
    request per spawn, where polling the hub's API would take CPU from the spawns."""
    with hub.api("GET", f"/users/{name}/server/progress", stream=True, timeout=300) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[len("data:"):])
                if event.get("ready"):
                    return
                if event.get("failed"):
                    raise RuntimeError(f"spawn {name} failed: {event.get('message')}")
    raise RuntimeError(f"the progress stream of {name} ended before the server was ready")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the hub and its proxy)."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def hub_one(hub: Hub, name: str, token: str) -> float:
    start, epoch = time.monotonic(), time.time()
    reply = hub.api("POST", f"/users/{name}/server", json={"resource_profile": PROFILE})
    if reply.status_code not in (201, 202):
        raise RuntimeError(f"spawn {name}: {reply.status_code} {reply.text}")
    wait_ready_event(hub, name)
    ready = time.monotonic() - start
    wait_http(f"{hub.url}/user/{name}/api", start + 300, {"Authorization": f"token {token}"})
    elapsed = time.monotonic() - start
    PHASES.setdefault("hub", {})[name] = {
        **container_phases(f"jupyter-{name}", epoch), "hub ready": ready, "answered": elapsed}
    return elapsed


def print_phases(count: int) -> None:
    for path in ("singleuser", "plain", "hub"):
        records = list(PHASES.pop(path, {}).values())
        keys = [k for k in ("created", "started", "listening", "hub ready", "answered")
                if all(k in r for r in records)]
        medians = "  ".join(f"{k} {statistics.median(r[k] for r in records):.2f}" for k in keys)
        print(f"{count:>5}   {path} phases, median s from request: {medians}")


def storm(hub: Hub, names: list[str]) -> list[float]:
    for name in names:
        hub.api("POST", f"/users/{name}")
    tokens = {name: hub.user_token(name) for name in names}  # made ahead: not part of a spawn
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            return list(pool.map(lambda n: hub_one(hub, n, tokens[n]), names))
    finally:
        for name in names:
            hub.api("DELETE", f"/users/{name}/server")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and subprocess.run(
                ["docker", "ps", "-q", "--filter", "name=jupyter-jbmbench"],
                capture_output=True, text=True).stdout.strip():
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--dockerspawner-pace", action="store_true",
                        help="run the hub with dockerspawner's single Docker thread and without "
                             "the spawner's readiness check, to see what they bring")
    args = parser.parse_args()
    dockerd.ensure_dockerd()
    image = images.ensure_singleuser_image()
    names = [f"jbmbench{i:02d}" for i in range(max(args.users))]
    accounts = [users.ensure_user(name) for name in names]
    with tempfile.TemporaryDirectory(prefix="jbm-bench-") as tmp:
        profiles = Path(tmp) / "profiles.yaml"
        profiles.write_text(yaml.safe_dump(sample_profiles(image)))
        hub = Hub(workdir=Path(tmp), profiles_file=profiles,
                  extra_config="c.JupyterHub.concurrent_spawn_limit = 100\n" + (
                      "c.DockerSystemProfileSpawner.docker_api_threads = 1\n"
                      "c.DockerSystemProfileSpawner.ready_poll_interval = 0\n"
                      if args.dockerspawner_pace else "")).start()
        try:
            print(f"{'users':>5} {'what':<34} {'p50 s':>7} {'p95 s':>7} {'p95 ratio':>9}")
            for count in args.users:
                image_server = floor(image, "singleuser", accounts[:count], hub)
                plain = floor(image, "plain", accounts[:count], hub)
                hub_cpu = cpu_seconds(hub.process.pid)
                ours = storm(hub, names[:count])
                hub_cpu = cpu_seconds(hub.process.pid) - hub_cpu
                base = percentile(image_server, 95)
                for what, times in (("floor: docker run, image's server", image_server),
                                    ("docker run, plain jupyter server", plain),
                                    ("hub spawn (REST API)", ours)):
                    print(f"{count:>5} {what:<34} {statistics.median(times):7.2f} "
                          f"{percentile(times, 95):7.2f} {percentile(times, 95) / base:9.2f}")
                print(f"{count:>5} hub spawn p95 / floor p95 = {percentile(ours, 95) / base:.2f} "
                      f"(target <= 1.30); / plain jupyter server p95 = "
                      f"{percentile(ours, 95) / percentile(plain, 95):.2f}")
                print_phases(count)
                print(f"{count:>5}   hub + proxy CPU during the storm: {hub_cpu:.1f} s")
                sys.stdout.flush()
        finally:
            hub.stop()
            for name in names:
                users.remove_user(name)


if __name__ == "__main__":
    main()
