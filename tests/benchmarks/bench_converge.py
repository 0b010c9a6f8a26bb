"""Converge site.yml from a bare systemd host image, then re-run it: wall seconds, changed tasks.

The re-run is what an operator pays after every profile change, so it is compared with the
floor measured in the same run: a playbook of one no-op task over the same docker connection
to the same host (fact gathering and connection set-up only). Target: the re-run changes
nothing and takes under 60 s.
Run: `python tests/benchmarks/bench_converge.py [--keep]` (uses tests/harness/sandbox.py).
"""
import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import playbooks, sandbox  # noqa: E402
from tests.harness.hub import bridge_gateway  # noqa: E402

HOST_NAME = "jbm-bench-converge"
RERUN_TARGET_SECONDS = 60.0


def noop_floor(container: str) -> float:
    """Seconds of a one-task playbook (facts + a ping) against the same host and inventory."""
    with tempfile.TemporaryDirectory() as workdir:
        play = Path(workdir) / "ping.yml"
        play.write_text("- hosts: jupyterhub\n  tasks:\n    - ansible.builtin.ping:\n")
        run = playbooks.run_playbook(Path(workdir), sandbox.INVENTORY,
                                     {"jbm_sandbox_container": container, "jbm_python_source_url": "unused"},
                                     play, config=playbooks.ANSIBLE_CFG)
        assert run.returncode == 0, run.output[-3000:]
        return run.seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the host container afterwards")
    args = parser.parse_args(argv)
    tarball = sandbox.ensure_python_tarball()
    server, base_url = sandbox.serve_directory(tarball.parent, bridge_gateway())
    host = sandbox.start_host(HOST_NAME)
    try:
        url = f"{base_url}/{tarball.name}"
        first = sandbox.converge(HOST_NAME, url)
        if first.returncode != 0:
            print(first.output[-4000:], file=sys.stderr)
            return 1
        rerun = sandbox.converge(HOST_NAME, url)
        floor = noop_floor(HOST_NAME)
    finally:
        server.shutdown()
        if not args.keep:
            host.remove()
    first_changed = first.recap["sandbox"]["changed"]
    rerun_changed = rerun.recap["sandbox"]["changed"]
    print(f"first converge (bare host, CPython without PGO): {first.seconds:7.1f} s, "
          f"{first_changed} tasks changed")
    print(f"re-run:                                          {rerun.seconds:7.1f} s, "
          f"{rerun_changed} tasks changed {rerun.changed_tasks or ''}")
    print(f"floor (one no-op task, same connection):         {floor:7.1f} s")
    print(f"ratio re-run / floor: {rerun.seconds / floor:.1f}x; "
          f"ratio first / re-run: {first.seconds / rerun.seconds:.1f}x")
    met = rerun_changed == 0 and rerun.seconds < RERUN_TARGET_SECONDS
    print(f"target (re-run changes nothing, < {RERUN_TARGET_SECONDS:.0f} s): "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 2


if __name__ == "__main__":
    sys.exit(main())
