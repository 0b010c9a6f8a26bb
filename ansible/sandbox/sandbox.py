"""`make sandbox`: a throwaway JupyterHub server on this machine, installed by the real playbook.

Starts a systemd host container with its own dockerd inside (tests/harness/systemd_host.py,
TESTBED.md), converges ansible/site.yml into it over the docker connection, loads the
single-user image into its dockerd, creates a test user with a password and prints the hub's
URL and the login. Nothing on the machine changes beyond that container, the cached CPython
tarball and the images. The functions are tests/harness/sandbox.py's, which the system tests
use too.

    python3 ansible/sandbox/sandbox.py            # (re)create and converge jbm-sandbox
    python3 ansible/sandbox/sandbox.py --reuse    # converge the running sandbox again
    python3 ansible/sandbox/sandbox.py --destroy  # remove it
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.hub import bridge_gateway  # noqa: E402
from tests.harness.sandbox import (DEFAULT_NAME, TEST_USER, converge, create_user,  # noqa: E402
                                   ensure_python_tarball, hub_url, load_singleuser_image,
                                   serve_directory, start_host)
from tests.harness.systemd_host import SystemdHost  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="container name (default %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="converge the running container again")
    parser.add_argument("--destroy", action="store_true", help="remove the sandbox and exit")
    parser.add_argument("--password", default="demo-password", help="the test user's password")
    args = parser.parse_args(argv)

    host = SystemdHost(args.name)
    if args.destroy:
        host.remove()
        print(f"removed {args.name}")
        return 0
    tarball = ensure_python_tarball()
    server, base_url = serve_directory(tarball.parent, bridge_gateway())
    try:
        running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", args.name],
                                 capture_output=True, text=True).stdout.strip() == "true"
        if not (args.reuse and running):
            print(f"starting the systemd host container {args.name} ...", flush=True)
            host = start_host(args.name)
        result = converge(args.name, f"{base_url}/{tarball.name}", echo=True)
    finally:
        server.shutdown()
    if result.returncode != 0:
        print(f"\nsandbox: the playbook failed (exit {result.returncode}); the container "
              f"{args.name} is kept for inspection (docker exec -it {args.name} bash).",
              file=sys.stderr)
        return result.returncode
    load_singleuser_image(host)
    create_user(host, TEST_USER, args.password)
    print(f"""
jupyterhub-baremetal sandbox is ready ({result.seconds:.0f} s).
  Hub:      {hub_url(host)}
  Login:    {TEST_USER} / {args.password}
  Shell:    docker exec -it {args.name} bash   (journalctl -u jupyterhub)
  Remove:   python3 ansible/sandbox/sandbox.py --destroy
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
