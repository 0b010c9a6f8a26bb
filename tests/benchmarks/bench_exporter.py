"""Benchmark: what one hubmetrics sample costs, against what people use instead, in the same run.

    python tests/benchmarks/bench_exporter.py [--levels 10,50,100] [--processes 2000]

Starts real containers (`sleep infinity` from local/debian:bookworm, with the spawner's labels,
16 MiB each) and 2,000 host processes under a few test users, then at 10, 50 and 100 containers
measures:
  ours            CPU seconds per sample of the real Sampler (steady state, average over 12
                  samples = two PSS rounds at the default --pss-every 6), and the RSS of the real
                  daemon `hubmetrics-exporter` after a few samples;
  ours/containers the container part alone (labels cache + cgroup files): grows with containers;
  ctr raw         os.open/os.read of every file the container part reads (limits included), the
                  cheapest Python can do for the same files: ours:ctr <= 2x ctr raw;
  process-exp     prometheus-process-exporter (Debian) grouping by user: CPU per scrape, from
                  /proc/<pid>/stat before and after three scrapes;
  docker stats    `docker stats --no-stream`: wall seconds per call, and CPU of the CLI + dockerd;
  floor           a plain Python loop reading /proc/<pid>/stat and status of every process plus
                  every container's cgroup files (open().read(), as anyone would write it);
                  "floor raw" does the same with os.open/os.read, the cheapest Python can do.
  systemd layout  (--slice-users N, default 200) the same Sampler over a synthetic cgroup v2 tree
                  of a systemd host: N users' user.slice/user-<uid>.slice holding the 2,000 pids
                  and 50 containers, so users' processes come from the slices instead of /proc;
                  against process-exporter over the same (real) processes.
Targets (ratios measured in the same run, no timed assertion): ours <= 0.05 x process-exp on this
host (cgroup v1, no systemd: /proc is scanned), ours <= 0.02 x process-exp in the systemd layout,
ours:ctr <= 2 x ctr raw, RSS < 50 MB. Everything it started is removed at the end (containers
hmbench-*, users hmbench-u*, processes, the process-exporter).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "metrics"))

from hubmetrics import cgroups, labels  # noqa: E402
from hubmetrics.nvml import Nvml  # noqa: E402
from hubmetrics.snapshot import ContainerInfo  # noqa: E402
from hubmetrics.sampler import Sampler, SamplerConfig  # noqa: E402
from tests.harness import users  # noqa: E402
from tests.harness.dockerd import ensure_dockerd  # noqa: E402

PREFIX = "hmbench"
IMAGE = "local/debian:bookworm"
TICKS = os.sysconf("SC_CLK_TCK")
SAMPLES = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Bed:
    """Everything the benchmark starts, so that all of it is removed whatever happens."""

    def __init__(self):
        self.users: list[str] = []
        self.sleepers: list[subprocess.Popen] = []
        self.containers: list[str] = []
        self.daemons: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="hmbench-"))

    def make_users(self, n: int):
        for i in range(n):
            name = f"{PREFIX}-u{i}"
            users.ensure_user(name, create_home=False)
            self.users.append(name)
        import pwd
        return [pwd.getpwnam(u) for u in self.users]

    def spawn_sleepers(self, count: int, entries) -> None:
        for i in range(count):
            e = entries[i % len(entries)]
            self.sleepers.append(subprocess.Popen(["sleep", "infinity"], user=e.pw_uid, group=e.pw_gid,
                                                  cwd="/", stdin=subprocess.DEVNULL))

    def start_containers(self, upto: int) -> None:
        todo = range(len(self.containers), upto)

        def run(i):
            user = f"{PREFIX}-u{i % max(1, len(self.users))}"
            out = subprocess.run(
                ["docker", "run", "-d", "--name", f"{PREFIX}-c{i:03d}", "--memory", "16m", "--cpus", "0.1",
                 "--label", f"{labels.USER}={user}", "--label", f"{labels.CPU_LIMIT}=0.1",
                 "--label", f"{labels.MEM_LIMIT}={16 * 2 ** 20}", "--label", f"{labels.CPU_GUARANTEE}=0",
                 "--label", f"{labels.MEM_GUARANTEE}=0", "--label", f"{labels.GPUS}=",
                 IMAGE, "sleep", "infinity"], capture_output=True, text=True, check=True)
            return out.stdout.strip()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            self.containers += list(pool.map(run, todo))

    def cleanup(self) -> None:
        for d in self.daemons:
            if d.poll() is None:
                d.terminate()
                try:
                    d.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    d.kill()
        for p in self.sleepers:
            p.kill()
        for p in self.sleepers:
            p.wait()
        names = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{PREFIX}-"],
                               capture_output=True, text=True).stdout.split()
        for i in range(0, len(names), 50):
            subprocess.run(["docker", "rm", "-f", *names[i:i + 50]], capture_output=True)
        for u in self.users:
            users.remove_user(u)
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_process_exporter(bed: Bed) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus-process-exporter")
    if binary is None:
        raise SystemExit("prometheus-process-exporter is missing: apt-get install prometheus-process-exporter")
    config = bed.tmp / "process-exporter.yml"
    config.write_text('process_names:\n  - name: "{{.Username}}"\n    cmdline:\n    - ".+"\n')
    port = free_port()
    proc = subprocess.Popen([binary, "-config.path", str(config), "-web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bed.daemons.append(proc)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url)
    return proc, url


def measure_process_exporter(proc: subprocess.Popen, url: str, scrapes: int = 3) -> float:
    wait_http(url)  # warm
    before = proc_cpu(proc.pid)
    for _ in range(scrapes):
        wait_http(url)
    return (proc_cpu(proc.pid) - before) / scrapes


def measure_ours(sampler: Sampler, n: int) -> tuple[float, float, int]:
    for _ in range(2):
        snap = sampler.sample()  # the new containers' labels and cgroup paths are cached here
    seen = sum(1 for c in snap.containers if c.info.name.startswith(PREFIX))
    start = time.process_time()
    for _ in range(SAMPLES):
        sampler.sample()
    per_sample = (time.process_time() - start) / SAMPLES
    known = sampler.directory.current()
    start = time.process_time()
    for _ in range(SAMPLES):
        sampler._read_containers(known)
    containers_part = (time.process_time() - start) / SAMPLES
    return per_sample, containers_part, seen


def measure_container_raw(sampler: Sampler) -> float:
    """The floor of the container part: every file it reads, with os.open/os.read, nothing else."""
    paths = [f for cg in sampler._where.values() for f in cgroups.files(cg)]

    def once():
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.read(fd, 65536)
            finally:
                os.close(fd)
    once()
    start = time.process_time()
    for _ in range(SAMPLES):
        once()
    return (time.process_time() - start) / SAMPLES


class StaticDirectory:
    """The synthetic containers of the systemd layout, as Docker would have listed them."""

    def __init__(self, infos):
        self.known, self.up = {i.id: i for i in infos}, True

    def current(self):
        return dict(self.known)

    def invalidate(self, cid=None):
        pass

    def close(self):
        pass


def systemd_layout(bed: Bed, users: int, containers: int) -> Sampler:
    """A cgroup v2 tree as a systemd host has it: the bench's sleepers spread over `users` user
    slices (the numbers are the kernel's formats, not live), `containers` hub containers."""
    from tests.unit.metrics.cgroup_trees import Numbers, v2_container, v2_root, v2_user_slice
    root = v2_root(bed.tmp / "systemd-cgroup")
    (bed.tmp / "run" / "systemd" / "system").mkdir(parents=True)
    pids = [p.pid for p in bed.sleepers]
    for i in range(users):
        v2_user_slice(root, 20000 + i, Numbers(cpu_usec=1_000_000 * i, procs=tuple(pids[i::users])), sessions=1)
    infos = []
    for i in range(containers):
        cid = f"{i:064x}"
        v2_container(root, f"jupyterhub.slice/jupyterhub-users.slice/docker-{cid}.scope", Numbers(procs=(1,)))
        infos.append(ContainerInfo(id=cid, name=f"jupyter-s{i}", user=f"s{i}", cgroup_parent="jupyterhub-users.slice"))
    return Sampler(SamplerConfig(cgroup_root=str(root), run_root=str(bed.tmp / "run"), pss_every=6),
                   directory=StaticDirectory(infos), nvml=Nvml())


def measure_systemd(sampler: Sampler) -> tuple[float, float, int]:
    for _ in range(2):
        snap = sampler.sample()
    assert snap.health.process_source == "user_slices", snap.health.process_source
    start = time.process_time()
    for _ in range(SAMPLES):
        sampler.sample()
    per_sample = (time.process_time() - start) / SAMPLES
    return per_sample, measure_container_raw(sampler), sum(1 for u in snap.users if u.process_count)


def measure_daemon_rss(bed: Bed) -> float:
    port = free_port()
    exe = shutil.which("hubmetrics-exporter") or str(Path(sys.executable).with_name("hubmetrics-exporter"))
    proc = subprocess.Popen([exe, "--listen", f"127.0.0.1:{port}", "--interval", "0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bed.daemons.append(proc)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        time.sleep(4)  # about eight samples
        wait_http(f"http://127.0.0.1:{port}/metrics")
        return proc_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def dockerd_pid() -> int | None:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def measure_docker_stats() -> tuple[float, float]:
    dpid = dockerd_pid()
    d0 = proc_cpu(dpid) if dpid else 0.0
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["docker", "stats", "--no-stream"], capture_output=True, check=True)
    wall = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cli + ((proc_cpu(dpid) - d0) if dpid else 0.0)


def _container_files(cid: str) -> list[str]:
    mem, cpu, pids = (f"/sys/fs/cgroup/{c}/docker/{cid}" for c in ("memory", "cpuacct", "pids"))
    return [f"{mem}/memory.usage_in_bytes", f"{mem}/memory.stat", f"{mem}/memory.limit_in_bytes",
            f"{mem}/memory.soft_limit_in_bytes", f"{mem}/memory.oom_control", f"{cpu}/cpuacct.usage",
            f"{pids}/pids.current"]


def floor_plain(container_files: list[str]) -> None:
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    f.read()
                with open(f"/proc/{name}/status") as f:
                    f.read()
            except OSError:
                pass
    for path in container_files:
        with open(path) as f:
            f.read()


def floor_raw(container_files: list[str]) -> None:
    def rb(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.read(fd, 65536)
        finally:
            os.close(fd)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                rb(f"/proc/{name}/stat")
                rb(f"/proc/{name}/status")
            except OSError:
                pass
    for path in container_files:
        rb(path)


def measure_floor(fn, container_ids: list[str], loops: int = 5) -> float:
    files = [p for cid in container_ids for p in _container_files(cid)]
    fn(files)
    start = time.process_time()
    for _ in range(loops):
        fn(files)
    return (time.process_time() - start) / loops


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # so that `finally` cleans up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="10,50,100", help="container counts (default 10,50,100)")
    parser.add_argument("--processes", type=int, default=2000, help="host processes under test users (default 2000)")
    parser.add_argument("--users", type=int, default=4, help="test users owning them (default 4)")
    parser.add_argument("--slice-users", type=int, default=200,
                        help="users in the systemd-layout run (default 200; 0: skip it)")
    args = parser.parse_args()
    levels = sorted(int(x) for x in args.levels.split(","))

    ensure_dockerd()
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        raise SystemExit(f"image {IMAGE} is missing: python -m tests.harness.images")
    bed = Bed()
    signal.signal(signal.SIGTERM, _interrupted)
    rows = []
    try:
        t0 = time.monotonic()
        entries = bed.make_users(args.users)
        bed.spawn_sleepers(args.processes, entries)
        pe_proc, pe_url = start_process_exporter(bed)
        sampler = Sampler(SamplerConfig(pss_every=6))
        print(f"# setup: {args.processes} processes under {args.users} users, "
              f"{sum(1 for _ in Path('/proc').iterdir() if _.name.isdigit())} processes on the host", flush=True)
        for n in levels:
            bed.start_containers(n)
            time.sleep(1)
            ours, ours_containers, seen = measure_ours(sampler, n)
            ctr_raw = measure_container_raw(sampler)
            rss = measure_daemon_rss(bed)
            pe = measure_process_exporter(pe_proc, pe_url)
            ds_wall, ds_cpu = measure_docker_stats()
            floor = measure_floor(floor_plain, bed.containers)
            raw = measure_floor(floor_raw, bed.containers)
            rows.append((n, seen, ours, ours_containers, ctr_raw, rss, pe, ds_wall, ds_cpu, floor, raw))
            print(f"# {n} containers measured ({time.monotonic() - t0:.0f} s)", flush=True)
        sampler.close()
        systemd_row = None
        if args.slice_users:
            sd = systemd_layout(bed, args.slice_users, 50)
            sd_ours, sd_raw, sd_users = measure_systemd(sd)
            sd.close()
            systemd_row = (args.slice_users, sd_users, sd_ours, sd_raw, measure_process_exporter(pe_proc, pe_url))
    finally:
        bed.cleanup()

    print()
    print(f"this host: cgroup {cgroups.detect_mode('/sys/fs/cgroup')}, users' processes from /proc "
          f"(no systemd), {args.processes} processes under {args.users} users")
    head = ("containers", "seen", "ours ms", "ours:ctr ms", "ctr raw ms", "ctr/raw", "RSS MB", "proc-exp ms",
            "dstats s", "dstats cpu s", "floor ms", "floor raw ms", "ours/proc-exp", "ours/floor")
    print("  ".join(f"{h:>12}" for h in head))
    ok = True
    for n, seen, ours, ctr, craw, rss, pe, dw, dc, fl, raw in rows:
        r_pe, r_fl, r_ctr = ours / pe, ours / fl, ctr / craw
        ok &= r_pe <= 0.05 and r_ctr <= 2 and rss < 50
        cells = (n, seen, f"{ours * 1e3:.1f}", f"{ctr * 1e3:.2f}", f"{craw * 1e3:.2f}", f"{r_ctr:.2f}", f"{rss:.1f}",
                 f"{pe * 1e3:.0f}", f"{dw:.2f}", f"{dc:.2f}", f"{fl * 1e3:.1f}", f"{raw * 1e3:.1f}", f"{r_pe:.3f}",
                 f"{r_fl:.2f}")
        print("  ".join(f"{str(c):>12}" for c in cells))
    print(f"targets: ours/proc-exp <= 0.05, ours:ctr <= 2 x ctr raw, RSS < 50 MB -> {'met' if ok else 'NOT met'}")
    if systemd_row:
        users_n, seen_users, sd_ours, sd_raw, sd_pe = systemd_row
        print(f"\nsystemd layout: {args.processes} processes in {users_n} users' slices (synthetic cgroup v2 tree), "
              "50 containers; process-exporter over the same processes")
        print("  ".join(f"{h:>12}" for h in ("slice users", "seen", "ours ms", "ctr raw ms", "proc-exp ms",
                                               "ours/proc-exp")))
        r = sd_ours / sd_pe
        print("  ".join(f"{str(c):>12}" for c in (users_n, seen_users, f"{sd_ours * 1e3:.2f}", f"{sd_raw * 1e3:.2f}",
                                                  f"{sd_pe * 1e3:.0f}", f"{r:.4f}")))
        print(f"target: ours/proc-exp <= 0.02 -> {'met' if r <= 0.02 else 'NOT met'}")
        ok &= r <= 0.02
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        print(f"container part: {first[3] * 1e3:.2f} ms at {first[0]} -> {last[3] * 1e3:.2f} ms at {last[0]} containers "
              f"({last[3] / max(first[3], 1e-9):.1f}x for {last[0] / first[0]:.0f}x containers, same processes)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
