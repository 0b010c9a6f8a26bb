"""CPU contention between user containers, judged by the kernel's own counters.

Used by the guarantee tests (here and in the cgroup v2 VM) and by bench_guarantees.py. Busy
containers run shell loops (the debootstrap base image has nothing more); the CPU each one got
is read from its cgroup (v1 cpuacct.usage or v2 cpu.stat usage_usec) at the start and the end
of a window, all containers in ONE shell call so no container is read later than another, with
the kernel's uptime as the clock (in a VM that is the guest's own time). Never wall time.

`shell(script) -> stdout` runs a script on the machine that runs the engine (this one, or the
VM over SSH); `engine` is a docker-py DockerClient for that engine.
"""
import subprocess
import time
from dataclasses import dataclass

from profilespawner import dockerargs
from profilespawner.request import SpawnRequest

# `threads` busy loops, then (with 0 threads) just stay up
BURN = "for i in $(seq {threads}); do (while :; do :; done) & done; wait; exec sleep 1000000"


def local_shell(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


def request(cpu_limit: float, cpu_guarantee: float = 0.0, mem_limit: int = 256 * 1024 ** 2,
            mem_guarantee: int = 0) -> SpawnRequest:
    return SpawnRequest("Bench", "Base", "", cpu_limit, mem_limit, cpu_guarantee, mem_guarantee)


@dataclass
class Burner:
    name: str
    req: SpawnRequest
    cgroup_dir: str = ""   # the container's cgroup, as /sys/fs/cgroup/<controller>/<...> or unified


def start_burners(engine, image: str, burners, cgroup_parent: str, threads: int = 2,
                  labels: dict | None = None, mem_capacity: int = 0, adjust=None):
    """Run one busy container per Burner with the spawner's Docker arguments (dockerargs.host_config);
    `adjust(host_config, request)` may rewrite them (a benchmark's alternative)."""
    created = []
    for b in burners:  # all created before any burns, so a slow engine is not starved by the first
        hc = dockerargs.host_config(b.req, pids_limit=64, cgroup_parent=cgroup_parent, mem_capacity=mem_capacity)
        if adjust:
            adjust(hc, b.req)
        created.append(engine.containers.create(image, ["sh", "-c", BURN.format(threads=threads)], name=b.name,
                                                labels=labels or {}, **hc))  # create_host_config's keys
    for container in created:
        container.start()
    return burners


def locate(shell, engine, burners) -> None:
    """Fill in each burner's cgroup directory from its init process's /proc/<pid>/cgroup."""
    pids = {b.name: engine.api.inspect_container(b.name)["State"]["Pid"] for b in burners}
    out = shell("; ".join(f"echo {name}; cat /proc/{pid}/cgroup" for name, pid in pids.items()))
    current = None
    found = {}
    for line in out.splitlines():
        if line in pids:
            current = line
            continue
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            found.setdefault(current, f"/sys/fs/cgroup{path}")
        elif "cpuacct" in controllers.split(","):
            found[current] = f"/sys/fs/cgroup/{controllers}{path}"
    for b in burners:
        if b.name not in found:
            raise RuntimeError(f"no cgroup found for container {b.name} in /proc/{pids[b.name]}/cgroup")
        b.cgroup_dir = found[b.name]


def usage(shell, burners) -> tuple[float, dict]:
    """(kernel uptime, {name: CPU seconds}) read in one shell call."""
    parts = ["cut -d' ' -f1 /proc/uptime"]
    for b in burners:
        if "cpuacct" in b.cgroup_dir:
            parts.append(f"echo $(( $(cat {b.cgroup_dir}/cpuacct.usage) / 1000 ))")
        else:
            parts.append(f"sed -n 's/^usage_usec //p' {b.cgroup_dir}/cpu.stat")
    values = shell("; ".join(parts)).split()
    if len(values) != len(burners) + 1:
        raise RuntimeError(f"expected {len(burners) + 1} counters, read {values!r}")
    return float(values[0]), {b.name: int(v) / 1e6 for b, v in zip(burners, values[1:], strict=True)}


def cores(shell, burners, window: float, warmup: float = 1.0) -> dict:
    """{name: cores used} over `window` seconds of the kernel's clock, after `warmup` seconds."""
    time.sleep(warmup)
    t0, u0 = usage(shell, burners)
    deadline = time.monotonic() + 20 * window + 60  # a slow VM's clock may run behind ours
    t1, u1 = t0, u0
    while t1 - t0 < window and time.monotonic() < deadline:
        time.sleep(max(0.2, (window - (t1 - t0)) / 2))
        t1, u1 = usage(shell, burners)
    if t1 - t0 < window:
        raise RuntimeError(f"the engine's clock advanced only {t1 - t0:.1f}s of a {window}s window")
    return {name: (u1[name] - u0[name]) / (t1 - t0) for name in u0}
