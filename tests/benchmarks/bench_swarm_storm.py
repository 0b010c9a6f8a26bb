"""Swarm spawn storm: K users start at once on a 2-node swarm, against the same storm on one node.

Same run, same swarm (tests/harness/swarm.py), same hub (DockerSwarmProfileSpawner), same
requests: each user asks a guarantee of half a node's declared capacity, so best fit spreads
the storm over both nodes; then node 2 is drained and node 1's capacity doubled, and the same
storm lands on node 1 alone. Time to ready is POST until the server answers through the proxy.
Both nodes share this machine's cores, so this measures what distribution costs (placement, the
manager, a second engine), not capacity gained. Prints medians, p95 and the ratios; no timed
assertions. Run: `python tests/benchmarks/bench_swarm_storm.py [--users 4]`.
"""
import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spawn_storm import percentile, wait_http, wait_ready_event  # noqa: E402

from tests.harness import dockerd, images, users  # noqa: E402
from tests.harness import swarm as harness  # noqa: E402
from tests.harness.hub import Hub  # noqa: E402

G = 1024 ** 3


def profiles(image: str, guarantee: float) -> dict:
    return {
        "resource_profiles": {"Tiny": {"cpu_limit": 0.5, "mem_limit": "512M", "cpu_guarantee": guarantee}},
        "image_profiles": {"SingleUser": {"image": image}},
        "user_profiles": {"default": {"allowed_resources": ["Tiny"], "allowed_images": ["SingleUser"],
                                      "host_homedir_format_string": f"{harness.HOMES}/{{username}}",
                                      "max_preallocate": {"cpu_guarantee": guarantee}}},
    }


def one(hub: Hub, name: str, token: str) -> float:
    start = time.monotonic()
    reply = hub.api("POST", f"/users/{name}/server", json={})
    if reply.status_code not in (201, 202):
        raise RuntimeError(f"spawn {name}: {reply.status_code} {reply.text}")
    wait_ready_event(hub, name)
    wait_http(f"{hub.url}/user/{name}/api", start + 300, {"Authorization": f"token {token}"})
    return time.monotonic() - start


def storm(hub: Hub, swarm: harness.Swarm, names: list[str]) -> tuple[list[float], dict[str, int]]:
    tokens = {name: hub.user_token(name) for name in names}
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            times = list(pool.map(lambda n: one(hub, n, tokens[n]), names))
        where: dict[str, int] = {}
        for name in names:
            node, _ = swarm.service_container(f"jupyter-{name}")
            where[node.name] = where.get(node.name, 0) + 1
        return times, where
    finally:
        for name in names:
            hub.api("DELETE", f"/users/{name}/server")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(hub.api("GET", f"/users/{n}").json()["servers"] for n in names):
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4, help="K users per storm (even)")
    args = parser.parse_args()
    dockerd.ensure_dockerd()
    image = images.ensure_singleuser_image()
    names = [f"jbmswb{i:02d}" for i in range(args.users)]
    accounts = {name: users.ensure_user(name) for name in names}
    per_node = args.users // 2
    started = time.monotonic()
    swarm = harness.start_swarm(2, [image], accounts, [("1", 4 * G, ""), ("1", 4 * G, "")])
    print(f"swarm of 2 up in {time.monotonic() - started:.0f}s", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="jbm-swarm-bench-") as tmp:
            profiles_file = Path(tmp) / "profiles.yaml"
            profiles_file.write_text(yaml.safe_dump(profiles(image, round(1 / per_node, 3))))
            hub = Hub(workdir=Path(tmp), profiles_file=profiles_file,
                      extra_config=harness.hub_config() + "c.JupyterHub.concurrent_spawn_limit = 100\n")
            hub.start()
            try:
                for name in names:
                    hub.api("POST", f"/users/{name}")
                two, where_two = storm(hub, swarm, names)
                manager = swarm.manager
                manager.docker("node", "update", "--availability", "drain", swarm.nodes[1].node_id)
                manager.docker("node", "update", *harness.node_labels("2", 8 * G, ""), swarm.nodes[0].node_id)
                one_node, where_one = storm(hub, swarm, names)
            finally:
                hub.stop()
                swarm.remove_services()
    finally:
        harness.stop_swarm()
        harness.remove_homes()
        for name in names:
            users.remove_user(name)
    print(f"{'storm':>10} {'K':>3} {'median s':>9} {'p95 s':>7} {'max s':>7}  placement")
    for label, times, where in (("two nodes", two, where_two), ("one node", one_node, where_one)):
        print(f"{label:>10} {len(times):>3} {statistics.median(times):>9.2f} {percentile(times, 95):>7.2f} "
              f"{max(times):>7.2f}  {where}")
    print(f"ratio two/one: median {statistics.median(two) / statistics.median(one_node):.2f}, "
          f"p95 {percentile(two, 95) / percentile(one_node, 95):.2f}")


if __name__ == "__main__":
    main()
