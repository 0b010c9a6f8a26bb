"""A tiny local HTTP server standing in for the exporter's /api/snapshot (unit tests only).

The integration tests read the real exporter; here the panel's HTTP client,
parsing and history are exercised over a real socket with snapshots we control.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def snapshot(time, users=None, **host):
    """A snapshot shaped like docs/contracts.md."""
    return {
        "time": time,
        "host": {"cpus": 2, "memory_total_bytes": 8 << 30, "memory_available_bytes": 6 << 30,
                 "gpus_total": 2, "gpus_free": 1, "nvml_available": True, **host},
        "users": users or {},
        "stale": {"docker": False, "nvml": False},
    }


def use(cpu_seconds=0.0, mem=0, mem_limit=2 << 30, cpu_limit=1.0, gpus=(), gpu_mem=0, name="x"):
    return {"cpu_seconds_total": cpu_seconds, "memory_working_set_bytes": mem,
            "memory_limit_bytes": mem_limit, "memory_guarantee_bytes": 0,
            "cpu_limit_cores": cpu_limit, "cpu_guarantee_cores": 0.0,
            "gpu_memory_used_bytes": gpu_mem, "gpus": list(gpus), "containers": [f"jupyter-{name}"]}


class FakeExporter:
    """Serves `self.body` (bytes) with `self.status` at /api/snapshot."""

    def __init__(self):
        fake = self
        self.body = json.dumps(snapshot(1.0)).encode()
        self.status = 200
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests += 1
                if self.path != "/api/snapshot":
                    self.send_error(404)
                    return
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/snapshot"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, snap):
        self.body = json.dumps(snap).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_exporter():
    fake = FakeExporter()
    yield fake
    fake.close()
