"""CPU guarantees under contention: one guaranteed busy server beside N busy best-effort ones.

For N = 1, 3 and 7 best-effort servers (limit 2 cores each, 2 busy threads each) beside one
server guaranteed 1 core (limit 2), measured by the kernel's counters (tests/harness/contention.py)
over a window, with the spawner's own Docker arguments. Printed per N: the guaranteed server's
cores against its guarantee, and what the best-effort servers got together, for
- classes: this product (QoS classes: weights by guarantee, best effort in one low-weight parent);
- flat: the previous release (weights by guarantee, best effort at Docker's default weight, one parent);
- dockerspawner: no weights at all (dockerspawner ignores cpu_guarantee).
Run: `python tests/benchmarks/bench_guarantees.py [--window S] [--n N] [--vm]` (--vm: instead, the same on
cgroup v2 in the Debian 12 VM of tests/harness/vm.py, with the docker role's slices and 2x the window;
only the VM, so that this machine's busy containers do not starve the qemu next to them). No timed
assertions. Every container it starts (jbm-bench-*) is removed, also those a killed run left.
"""
import argparse
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from profilespawner import qos  # noqa: E402
from tests.harness import contention  # noqa: E402
from tests.harness.cgroups import ensure_users_parent  # noqa: E402
from tests.harness.dockerd import ensure_dockerd  # noqa: E402
from tests.harness.images import BASE_IMAGE, ensure_base_image  # noqa: E402

GUARANTEE = 1.0
LIMIT = 2.0


def flat(hc, req, parent):
    """The previous release: one parent, best effort at Docker's default weight."""
    hc["cgroup_parent"] = parent
    hc["cpu_shares"] = 1024 if req.qos == qos.BESTEFFORT else qos.cpu_shares(req.qos, req.cpu_guarantee)


def unweighted(hc, req, parent):
    """dockerspawner: cpu_guarantee is not passed to Docker; everyone has the default weight."""
    hc["cgroup_parent"] = parent
    hc["cpu_shares"] = 1024


MODES = {"classes": None, "flat": flat, "dockerspawner": unweighted}


def run(engine, shell, parent, n, mode, window):
    burners = [contention.Burner("jbm-bench-g", contention.request(LIMIT, GUARANTEE))]
    burners += [contention.Burner(f"jbm-bench-be{i}", contention.request(LIMIT)) for i in range(n)]
    adjust = MODES[mode]
    try:
        contention.start_burners(engine, BASE_IMAGE, burners, parent,
                                 adjust=(lambda hc, req: adjust(hc, req, parent)) if adjust else None)
        contention.locate(shell, engine, burners)
        got = contention.cores(shell, burners, window)
    finally:
        for b in burners:
            try:
                engine.containers.get(b.name).remove(force=True)
            except docker.errors.NotFound:
                pass
    return got["jbm-bench-g"], sum(v for k, v in got.items() if k != "jbm-bench-g")


def bench(engine, shell, parent, window, where, counts=(1, 3, 7)):
    print(f"\n{where}: one server guaranteed {GUARANTEE:g} core (limit {LIMIT:g}) beside N best-effort "
          f"servers (limit {LIMIT:g}), all busy; {window:g} s windows")
    print(f"{'N':>3} | {'mode':<13} | {'guaranteed got':>14} | {'of guarantee':>12} | {'best effort got':>15}")
    for n in counts:
        results = {mode: run(engine, shell, parent, n, mode, window) for mode in MODES}
        for mode, (g, be) in results.items():
            print(f"{n:>3} | {mode:<13} | {g:>11.2f} cores | {g / GUARANTEE:>11.2f}x | {be:>10.2f} cores")
        ours = results["classes"][0]
        print(f"{'':>3} | ratio: classes / flat {ours / max(results['flat'][0], 1e-9):.2f}x, "
              f"classes / dockerspawner {ours / max(results['dockerspawner'][0], 1e-9):.2f}x "
              f"(target: classes >= 0.9x of the guarantee)")


def remove_bench_containers(engine):
    for container in engine.containers.list(all=True, filters={"name": "jbm-bench-"}):
        container.remove(force=True)


def main():
    # a timeout's SIGTERM must still remove the busy containers (the finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench_guarantees: terminated"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--n", type=int, action="append", choices=(1, 3, 7), dest="counts",
                        help="only this N (repeatable; default: 1, 3 and 7)")
    parser.add_argument("--vm", action="store_true",
                        help="run on cgroup v2 in the Debian 12 VM instead of this machine")
    args = parser.parse_args()
    counts = tuple(args.counts or (1, 3, 7))
    ensure_dockerd()
    ensure_base_image()
    if args.vm:
        with converged_vm() as (engine, shell):
            bench(engine, shell, "jupyterhub-users.slice", args.window * 2,
                  "Debian 12 VM (cgroup v2, systemd driver, the docker role's slices, users' slice 1 core)",
                  counts)
        return
    remove_bench_containers(docker.from_env())  # left by a run that was killed
    try:
        bench(docker.from_env(), contention.local_shell, ensure_users_parent("jbm-bench"), args.window,
              "this machine (cgroupfs driver, harness users' parent)", counts)
    finally:
        remove_bench_containers(docker.from_env())


@contextlib.contextmanager
def converged_vm():
    """The VM tier's machine with the docker role converged (as tests/vm's converged_vm)."""
    from tests.harness.vm import start_vm
    from tests.vm.conftest import converge_docker
    with tempfile.TemporaryDirectory() as workdir, start_vm("bench-guarantees") as vm:
        converged = converge_docker(vm, Path(workdir))
        if converged.returncode != 0:
            sys.exit(f"the docker role did not converge in the VM:\n{converged.stdout[-3000:]}")
        vm.load_image(BASE_IMAGE)
        # the emulated guest's engine is slow, more so on a loaded machine (as tests/vm's vm_engine)
        engine = docker.DockerClient(base_url=f"unix://{vm.docker_socket()}", timeout=600)
        try:
            remove_bench_containers(engine)
            yield engine, lambda script: vm.ssh(script, timeout=300).stdout
        finally:
            remove_bench_containers(engine)
            engine.close()


if __name__ == "__main__":
    main()
