"""Benchmark: what one hubmetrics sample costs, against what people use instead, in the same run.

    python tests/benchmarks/bench_exporter.py [--levels 10,50,100] [--processes 2000]
    python tests/benchmarks/bench_exporter.py --vm [--processes 2000] [--vm-containers 50]

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
  --vm            instead of all the above: a real cgroup v2 systemd host, the converged VM of
                  tests/vm (Debian 12, systemd PID 1, the docker role's users' slice). In the guest:
                  --processes sleepers in 4 users' user-<uid>.slice (systemd-run units), 50 hub
                  containers (--vm-containers) in jupyterhub-users.slice with the spawner's Docker
                  arguments and labels; our real Sampler (real Docker directory, users from their
                  slices) against the host's prometheus-process-exporter binary copied in, both
                  measured by their own CPU counters in the guest, plus our /proc path for reference.
Targets (ratios measured in the same run, no timed assertion): ours <= 0.05 x process-exp on this
host (cgroup v1, no systemd: /proc is scanned), ours <= 0.02 x process-exp in the systemd layout
and in the --vm run, ours:ctr <= 2 x ctr raw, RSS < 50 MB. Everything it started is removed at
the end (containers hmbench-*, users hmbench-u*, processes, the process-exporter; with --vm the
VM itself, and the guest's units, users and containers first, also at start).
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
        from tests.harness import users
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
        if self.users:
            from tests.harness import users
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


# --- --vm: the same comparison inside a real cgroup v2 systemd host (the converged VM) ----------
# The host side (vm_main/vm_bench) boots the VM, copies hubmetrics + its packages, this file and
# the host's prometheus-process-exporter (a Go binary linked only against glibc, Debian 12 like the
# guest) into it, starts the containers through the forwarded Docker socket and the processes as
# systemd units in user slices; the measuring (vm_inner) runs in the VM with the guest's Python.
VM_LIB = "/opt/hmbench"
VM_USERS = 4
VM_UID0 = 2100
VM_PROBES = {"samples": SAMPLES, "proc_samples": 3, "scrapes": 3}


def vm_inner(request_json: str) -> int:
    """In the VM: our Sampler (real Docker directory, cgroup v2, users from their slices) against
    process-exporter over the same processes; CPU from each one's own counters. Prints JSON."""
    import json
    req = json.loads(request_json)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the ssh session ending: clean up in `finally`
        signal.signal(sig, _interrupted)
    result = {}
    sampler = Sampler(SamplerConfig(pss_every=6))
    try:
        for _ in range(2):
            snap = sampler.sample()
        result["process_source"] = snap.health.process_source
        result["cgroup_mode"] = snap.health.cgroup_mode
        result["containers_seen"] = sum(1 for c in snap.containers if c.info.name.startswith(PREFIX))
        result["slice_users_seen"] = sum(1 for u in snap.users if u.process_count)
        result["slice_tasks_seen"] = sum(u.process_count for u in snap.users)
        start = time.process_time()
        for _ in range(req["samples"]):
            sampler.sample()
        result["ours_s"] = (time.process_time() - start) / req["samples"]
        known = sampler.directory.current()
        start = time.process_time()
        for _ in range(req["samples"]):
            sampler._read_containers(known)
        result["ours_containers_s"] = (time.process_time() - start) / req["samples"]
        result["ctr_raw_s"] = measure_container_raw(sampler)
    finally:
        sampler.close()
    proc_sampler = Sampler(SamplerConfig(pss_every=6, user_processes="proc"))
    try:  # the /proc scan the slices replace, for reference (fewer samples: it is the slow one)
        for _ in range(2):
            proc_sampler.sample()
        start = time.process_time()
        for _ in range(req["proc_samples"]):
            proc_sampler.sample()
        result["ours_proc_s"] = (time.process_time() - start) / req["proc_samples"]
    finally:
        proc_sampler.close()
    config = Path(tempfile.mkdtemp(prefix="hmbench-")) / "process-exporter.yml"
    config.write_text('process_names:\n  - name: "{{.Username}}"\n    cmdline:\n    - ".+"\n')
    port = free_port()
    pe = subprocess.Popen([req["process_exporter"], "-config.path", str(config), "-web.listen-address",
                           f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    Path(req["process_exporter"]).with_name("pe.pid").write_text(f"{pe.pid}\n")  # for the host's cleanup
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url, timeout=120)
        result["process_exporter_s"] = measure_process_exporter(pe, url, req["scrapes"])
    finally:
        pe.terminate()
        try:
            pe.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pe.kill()
            pe.wait()
        shutil.rmtree(config.parent, ignore_errors=True)
    result["processes"] = sum(1 for name in os.listdir("/proc") if name.isdigit())
    print(json.dumps(result))
    return 0


def _vm_clean(vm, engine) -> None:
    """Remove what this bench (or a killed earlier run) started in the VM."""
    import docker.errors

    def remove(c):
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # the guest's dockerd takes seconds per removal
        list(pool.map(remove, engine.containers.list(all=True, filters={"name": f"{PREFIX}-"})))
    units = " ".join(f"{PREFIX}-u{i}" for i in range(VM_USERS))
    users_ = "; ".join(f"userdel {PREFIX}-u{i} 2>/dev/null" for i in range(VM_USERS))
    vm.ssh(f"systemctl stop {units} 2>/dev/null; systemctl reset-failed {units} 2>/dev/null; {users_}; "
           f"test -f {VM_LIB}/pe.pid && kill $(cat {VM_LIB}/pe.pid) 2>/dev/null; rm -rf {VM_LIB}; true", timeout=300)


def vm_bench(vm, engine, processes: int, containers: int) -> dict:
    """Set up `processes` sleepers in VM_USERS users' slices and `containers` hub containers in
    the users' slice, measure in the VM, remove everything (also at start)."""
    import json
    from profilespawner import dockerargs
    from profilespawner.request import SpawnRequest
    from tests.vm.exporter_bed import site_packages_tar
    _vm_clean(vm, engine)
    try:
        vm.ssh(f"mkdir -p {VM_LIB} && tar -C {VM_LIB} -xz", input=site_packages_tar(), timeout=300)
        vm.put(Path(__file__), f"{VM_LIB}/bench_exporter.py")
        vm.put(shutil.which("prometheus-process-exporter") or "/usr/bin/prometheus-process-exporter",
               f"{VM_LIB}/prometheus-process-exporter")
        per_user = processes // VM_USERS
        for i in range(VM_USERS):
            uid = VM_UID0 + i
            loop = f"for i in $(seq {per_user}); do sleep 1000000 & done; wait"
            vm.ssh(f"useradd -M -u {uid} {PREFIX}-u{i} && systemd-run --unit={PREFIX}-u{i} --uid={uid} "
                   f"--slice=user-{uid}.slice -p TasksMax={per_user + 50} sh -c '{loop}'", timeout=120)
        req = SpawnRequest("Bench", "Base", IMAGE, 0.1, 16 * 2 ** 20)

        def run(i):
            user = f"{PREFIX}-hub{i}"
            hc = dockerargs.host_config(req, pids_limit=64, cgroup_parent="jupyterhub-users.slice")
            return engine.containers.run(IMAGE, ["sleep", "infinity"], name=f"{PREFIX}-c{i:03d}", detach=True,
                                         labels=dockerargs.container_labels(req, user), **hc).id
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(run, range(containers)))
        slices = " ".join(f"/sys/fs/cgroup/user.slice/user-{VM_UID0 + i}.slice/pids.current" for i in range(VM_USERS))
        tasks = 0
        for _ in range(300):  # bounded: the sleepers start at the guest's pace
            tasks = sum(int(x) for x in vm.ssh(f"cat {slices}").stdout.split())
            if tasks >= per_user * VM_USERS:
                break
            time.sleep(1)
        request = dict(VM_PROBES, process_exporter=f"{VM_LIB}/prometheus-process-exporter")
        out = vm.ssh(f"cd / && PYTHONPATH={VM_LIB} python3 {VM_LIB}/bench_exporter.py --vm-inner "
                     f"'{json.dumps(request)}'", timeout=3600)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["slice_tasks"] = tasks
        print(f"# measured in the VM: {json.dumps(result)}", flush=True)  # before the slow cleanup
        return result
    finally:
        _vm_clean(vm, engine)


def vm_main(args) -> int:
    import docker
    from tests.harness.images import ensure_base_image
    from tests.harness.vm import start_vm
    from tests.vm.conftest import converge_docker
    signal.signal(signal.SIGTERM, _interrupted)
    work = Path(tempfile.mkdtemp(prefix="hmbench-vm-"))
    try:
        with start_vm("bench-exporter-vm") as vm:
            done = converge_docker(vm, work)
            if done.returncode:
                raise SystemExit(done.stdout[-3000:] + done.stderr[-2000:])
            vm.load_image(ensure_base_image())
            engine = docker.DockerClient(base_url=f"unix://{vm.docker_socket()}", timeout=300)
            try:
                result = vm_bench(vm, engine, args.processes, args.vm_containers)
            finally:
                engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return print_vm(result, args.processes, args.vm_containers)


def print_vm(r: dict, processes: int, containers: int) -> int:
    ratio = r["ours_s"] / r["process_exporter_s"]
    print(f"\ncgroup v2 systemd VM (Debian 12, qemu TCG; {r['processes']} processes in the guest): "
          f"{processes} processes in {VM_USERS} users' slices ({r['slice_tasks']} tasks), {containers} containers")
    head = ("seen ctrs", "slice users", "source", "ours ms", "ours:ctr ms", "ctr raw ms", "ours /proc ms",
            "proc-exp ms", "ours/proc-exp", "/proc/proc-exp")
    print("  ".join(f"{h:>13}" for h in head))
    cells = (r["containers_seen"], r["slice_users_seen"], r["process_source"], f"{r['ours_s'] * 1e3:.1f}",
             f"{r['ours_containers_s'] * 1e3:.1f}", f"{r['ctr_raw_s'] * 1e3:.1f}", f"{r['ours_proc_s'] * 1e3:.0f}",
             f"{r['process_exporter_s'] * 1e3:.0f}", f"{ratio:.4f}", f"{r['ours_proc_s'] / r['process_exporter_s']:.3f}")
    print("  ".join(f"{str(c):>13}" for c in cells))
    ok = ratio <= 0.02 and r["process_source"] == "user_slices" and r["containers_seen"] == containers
    print(f"target: ours/proc-exp <= 0.02 (users from their slices, all containers seen) -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # so that `finally` cleans up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="10,50,100", help="container counts (default 10,50,100)")
    parser.add_argument("--processes", type=int, default=2000, help="host processes under test users (default 2000)")
    parser.add_argument("--users", type=int, default=4, help="test users owning them (default 4)")
    parser.add_argument("--slice-users", type=int, default=200,
                        help="users in the systemd-layout run (default 200; 0: skip it)")
    parser.add_argument("--vm", action="store_true",
                        help="measure inside a converged cgroup v2 systemd VM instead (tests/harness/vm.py)")
    parser.add_argument("--vm-containers", type=int, default=50, help="containers in the --vm run (default 50)")
    parser.add_argument("--vm-inner", metavar="JSON", help=argparse.SUPPRESS)  # the part run in the VM
    args = parser.parse_args()
    levels = sorted(int(x) for x in args.levels.split(","))

    if args.vm:
        return vm_main(args)
    if args.vm_inner:
        return vm_inner(args.vm_inner)
    from tests.harness.dockerd import ensure_dockerd
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
