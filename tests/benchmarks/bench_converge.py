"""Converge site.yml from a bare systemd host image, then re-run it: wall seconds, changed tasks.

The re-run is what an operator pays after every profile change, so it is compared with the
floor measured in the same run: a playbook of one no-op task over the same docker connection
to the same host (fact gathering and connection set-up only). Target: the re-run changes
nothing and takes under 60 s.
Run: `python tests/benchmarks/bench_converge.py [--keep]` (uses ansible/sandbox/sandbox.py).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST_NAME = "jbm-bench-converge"
RERUN_TARGET_SECONDS = 60.0


def load_sandbox():
    spec = importlib.util.spec_from_file_location("jbm_sandbox", ROOT / "ansible/sandbox/sandbox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def noop_floor(sandbox, container: str) -> float:
    """Seconds of a one-task playbook (facts + a ping) against the same host and inventory."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as play:
        play.write("- hosts: jupyterhub\n  tasks:\n    - ansible.builtin.ping:\n")
    try:
        start = time.monotonic()
        subprocess.run([sandbox.ansible_playbook(), "-i", str(sandbox.INVENTORY), play.name,
                        "-e", json.dumps({"jbm_sandbox_container": container,
                                          "jbm_python_source_url": "unused"})],
                       check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, "ANSIBLE_CONFIG": str(sandbox.ANSIBLE_CFG)})
        return time.monotonic() - start
    finally:
        os.unlink(play.name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the host container afterwards")
    args = parser.parse_args(argv)
    sandbox = load_sandbox()
    tarball = sandbox.ensure_python_tarball()
    server, base_url = sandbox.serve_directory(tarball.parent, sandbox.bridge_gateway())
    host = sandbox.start_host(HOST_NAME)
    try:
        url = f"{base_url}/{tarball.name}"
        first = sandbox.converge(HOST_NAME, url)
        if first.returncode != 0:
            print(first.output[-4000:], file=sys.stderr)
            return 1
        rerun = sandbox.converge(HOST_NAME, url)
        floor = noop_floor(sandbox, HOST_NAME)
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
