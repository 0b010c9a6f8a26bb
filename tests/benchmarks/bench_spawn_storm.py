"""Spawn storm: N users start their servers at once through the hub's REST API.

Time to ready (POST until the server answers through the proxy) is compared with the floor
measured in the same run: N plain `docker run`s of the same image with the same limits at once,
each until its own server answers. Target: p95 within 1.3x the floor.
Run: `python tests/benchmarks/bench_spawn_storm.py [--users 10 20]`.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.harness import dockerd, images, users  # noqa: E402
from tests.harness.hub import Hub  # noqa: E402
from tests.harness.profiles import sample_profiles  # noqa: E402

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


def floor_one(image: str, index: int) -> float:
    """`docker run` the image with the same limits and time it until its server answers."""
    name = f"bench-floor-{index}"
    start = time.monotonic()
    cid = subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--cpus", CPU, "--memory", MEM,
         "--memory-swap", MEM, "--init", "-p", "127.0.0.1::8888", image,
         "jupyter", "server", "--ip=0.0.0.0", "--port=8888", "--ServerApp.token=",
         "--ServerApp.allow_root=True"],
        capture_output=True, text=True, check=True).stdout.strip()
    port = subprocess.run(["docker", "port", cid, "8888/tcp"], capture_output=True, text=True,
                          check=True).stdout.split(":")[-1].strip()
    wait_http(f"http://127.0.0.1:{port}/api", start + 300)
    return time.monotonic() - start


def floor(image: str, count: int) -> list[float]:
    try:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda i: floor_one(image, i), range(count)))
    finally:
        names = [f"bench-floor-{i}" for i in range(count)]
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


def hub_one(hub: Hub, name: str) -> float:
    start = time.monotonic()
    reply = hub.api("POST", f"/users/{name}/server", json={"resource_profile": PROFILE})
    if reply.status_code not in (201, 202):
        raise RuntimeError(f"spawn {name}: {reply.status_code} {reply.text}")
    hub.wait_ready(name, timeout=300)
    token = hub.user_token(name)
    wait_http(f"{hub.url}/user/{name}/api", start + 300, {"Authorization": f"token {token}"})
    return time.monotonic() - start


def storm(hub: Hub, names: list[str]) -> list[float]:
    for name in names:
        hub.api("POST", f"/users/{name}")
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            return list(pool.map(lambda n: hub_one(hub, n), names))
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
    args = parser.parse_args()
    dockerd.ensure_dockerd()
    image = images.ensure_singleuser_image()
    names = [f"jbmbench{i:02d}" for i in range(max(args.users))]
    for name in names:
        users.ensure_user(name)
    with tempfile.TemporaryDirectory(prefix="jbm-bench-") as tmp:
        profiles = Path(tmp) / "profiles.yaml"
        profiles.write_text(yaml.safe_dump(sample_profiles(image)))
        hub = Hub(workdir=Path(tmp), profiles_file=profiles,
                  extra_config="c.JupyterHub.concurrent_spawn_limit = 100\n").start()
        try:
            print(f"{'users':>5} {'what':<22} {'p50 s':>7} {'p95 s':>7} {'p95 ratio':>9}")
            for count in args.users:
                base = floor(image, count)
                ours = storm(hub, names[:count])
                ratio = percentile(ours, 95) / percentile(base, 95)
                print(f"{count:>5} {'floor (docker run)':<22} {statistics.median(base):7.2f} "
                      f"{percentile(base, 95):7.2f} {1.0:9.2f}")
                print(f"{count:>5} {'hub spawn (REST API)':<22} {statistics.median(ours):7.2f} "
                      f"{percentile(ours, 95):7.2f} {ratio:9.2f}  (target <= 1.30)", flush=True)
        finally:
            hub.stop()
            for name in names:
                users.remove_user(name)


if __name__ == "__main__":
    main()
