"""`hubmetrics-exporter`: the daemon. A sample loop (own thread) and an HTTP server that only
reads the latest snapshot: `/metrics` (Prometheus text) and `/api/snapshot` (JSON, see
docs/contracts.md). Listens on loopback unless told otherwise.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import ProcessCollector

from .collector import SnapshotCollector
from .sampler import Sampler, SamplerConfig
from .snapshot import Snapshot

log = logging.getLogger("hubmetrics.exporter")
DEFAULT_LISTEN = "127.0.0.1:9945"


class SampleLoop:
    """Samples every `interval` seconds in a thread; `latest` is the last finished snapshot."""

    def __init__(self, sampler: Sampler, interval: float):
        self.sampler = sampler
        self.interval = interval
        self.latest: Snapshot | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def sample_once(self) -> Snapshot:
        self.latest = self.sampler.sample()
        return self.latest

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except Exception:  # a bug in one sample must not stop the exporter
                log.exception("sample failed; serving the previous snapshot")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sampler.close()


def make_registry(latest) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest))
    ProcessCollector(namespace="hubmetrics", registry=registry)  # the exporter's own CPU and RSS
    return registry


def make_handler(registry: CollectorRegistry, latest):
    class Handler(BaseHTTPRequestHandler):
        server_version = "hubmetrics"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/api/snapshot":
                snap = latest()
                if snap is None:
                    self._send(503, "application/json", b'{"error": "no sample yet"}')
                else:
                    self._send(200, "application/json", json.dumps(snap.to_json()).encode())
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", b"hubmetrics exporter: /metrics /api/snapshot\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

    return Handler


def parse_listen(value: str) -> tuple[str, int]:
    """`ADDR:PORT` (IPv6 as `[::1]:9945`) -> (addr, port), or a clear error."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"--listen {value!r}: expected ADDR:PORT, e.g. 127.0.0.1:9945 or [::1]:9945")
    return host, int(port)


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"--interval {value!r}: expected a number of seconds > 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hubmetrics-exporter", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=parse_listen, default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help=f"where to serve /metrics and /api/snapshot (default {DEFAULT_LISTEN})")
    p.add_argument("--interval", type=positive_float, default=5.0, metavar="SECONDS",
                   help="seconds between samples (default 5)")
    p.add_argument("--once", action="store_true",
                   help="sample once, print the Prometheus exposition to stdout and exit")
    p.add_argument("--cgroup-root", default="/sys/fs/cgroup", help="cgroup mount (default /sys/fs/cgroup)")
    p.add_argument("--proc-root", default="/proc", help="proc mount (default /proc)")
    p.add_argument("--min-uid", type=int, default=1000,
                   help="lowest uid counted as a real user for processes outside containers (default 1000)")
    p.add_argument("--pss-every", type=int, default=6, metavar="N",
                   help="re-read the PSS of users' processes outside containers every N samples, staggered "
                        "(default 6: every 30 s at the default interval); CPU is read every sample")
    p.add_argument("--user-processes", choices=["auto", "slices", "proc"], default="auto",
                   help="where users' processes outside containers are read: their systemd user slices "
                        "(a few files per user), /proc (every process), or auto (default): slices where "
                        "systemd runs the host")
    p.add_argument("--home-filesystem", default=os.environ.get("HUBMETRICS_HOME_FILESYSTEM", ""), metavar="PATH",
                   help="mount point of the homes' filesystem whose user quotas are read (quotactl) "
                        "(jupyterhub_user_home_bytes, jupyterhub_user_home_quota_bytes; default "
                        "$HUBMETRICS_HOME_FILESYSTEM, which the quotas role sets; empty: none)")
    p.add_argument("--node-name", default=os.environ.get("HUBMETRICS_NODE_NAME") or socket.gethostname(),
                   metavar="NAME",
                   help="this node's name: the `node` label of every per-user, per-container and per-GPU series "
                        "and `node.name` in /api/snapshot (default $HUBMETRICS_NODE_NAME, else the host name; the "
                        "metrics role sets the inventory host name)")
    p.add_argument("--users-slice", default="jupyterhub-users.slice", metavar="UNIT",
                   help="the systemd slice of the users' containers, whose MemoryMax and CPUQuota are the node's "
                        "guarantee capacity in /api/snapshot (default jupyterhub-users.slice; without it the host's "
                        "CPUs and memory)")
    p.add_argument("--run-root", default="/run", help="where systemd's runtime marker systemd/system is (default /run)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.pss_every < 1:
        build_parser().error(f"--pss-every {args.pss_every}: expected a whole number >= 1")
    if not args.node_name.strip():
        build_parser().error("--node-name '': expected a non-empty name (e.g. the inventory host name)")
    if not args.users_slice.endswith(".slice"):
        build_parser().error(f"--users-slice {args.users_slice!r}: expected a systemd slice unit name ending in .slice")
    config = SamplerConfig(cgroup_root=args.cgroup_root, proc_root=args.proc_root, min_uid=args.min_uid,
                           pss_every=args.pss_every, user_processes=args.user_processes,
                           run_root=args.run_root, home_filesystem=args.home_filesystem,
                           node_name=args.node_name.strip(), users_slice=args.users_slice)
    if args.once:
        from .containers import ContainerDirectory
        sampler = Sampler(config, directory=ContainerDirectory(watch_events=False))
        snap = sampler.sample()
        sampler.close()
        sys.stdout.write(generate_latest(make_registry(lambda: snap)).decode())
        return 0

    loop = SampleLoop(Sampler(config), args.interval)
    loop.sample_once()  # serve a full snapshot from the first scrape on
    registry = make_registry(lambda: loop.latest)
    server_class = ThreadingHTTPServer
    if ":" in args.listen[0]:
        server_class = type("ThreadingHTTPServerV6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    server = server_class(args.listen, make_handler(registry, lambda: loop.latest))
    server.daemon_threads = True
    loop.start()
    stop = threading.Event()

    def shutdown(signum, _frame):
        log.info("signal %d: stopping", signum)
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("serving on %s:%d every %.1f s (cgroup %s)", *args.listen, args.interval,
             loop.latest.health.cgroup_mode if loop.latest else "?")
    server.serve_forever()
    loop.stop()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
