"""A real OOM kill: a hub-labelled container with a 64 MiB limit where perl asks for 200 MiB.
The kernel kills perl (the container's shell lives on), the exporter's snapshot tells the user
which limit it was, and the resource panel's view of that snapshot says it in words."""
import asyncio
import json
import subprocess

import pytest

from hubmetrics import labels
from hubmetrics.panel import views
from hubmetrics.panel.sampler import Sampler as PanelSampler
from tests.integration.metrics.conftest import PREFIX, _docker, free_port, remove_test_containers
from tests.integration.metrics.test_exporter_live import EXPORTER, _snapshot, wait_for

pytestmark = pytest.mark.integration
USER = f"{PREFIX}-oom"
PERL = "perl -e '$x = \"a\" x (200*1024*1024)'; echo perl-exited $?; sleep infinity"


@pytest.fixture
def exporter_daemon():
    port = free_port()
    daemon = subprocess.Popen([EXPORTER, "--listen", f"127.0.0.1:{port}", "--interval", "0.5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _snapshot(port), "the first snapshot")
        yield port
    finally:
        daemon.terminate()
        daemon.wait(timeout=15)


def test_an_oom_kill_reaches_the_snapshot_and_the_panel(base_image, exporter_daemon):
    remove_test_containers()
    name = f"{PREFIX}-jupyter-{USER}"
    try:
        cid = _docker("run", "-d", "--name", name, "--memory", "64m", "--memory-swap", "64m",
                      "--label", f"{labels.USER}={USER}", "--label", f"{labels.MEM_LIMIT}={64 * 2 ** 20}",
                      "--label", f"{labels.CPU_LIMIT}=1", "--label", f"{labels.CPU_GUARANTEE}=0",
                      "--label", f"{labels.MEM_GUARANTEE}=0", "--label", f"{labels.GPUS}=",
                      base_image, "sh", "-c", f"sleep 2; {PERL}")
        wait_for(lambda: "perl-exited" in _docker("logs", cid), "perl to be killed", timeout=60)
        assert "perl-exited 137" in _docker("logs", cid)   # SIGKILL: the kernel's OOM killer
        snap = wait_for(lambda: (s := _snapshot(exporter_daemon)) and s["users"].get(USER, {}).get("oom_events")
                        and s, "the kill in the snapshot")
        mine = snap["users"][USER]
        assert mine["oom_kills_total"] >= 1
        event = mine["oom_events"][-1]
        assert event["container"] == name
        assert event["limit"] == "container" and event["limit_bytes"] == 64 * 2 ** 20

        panel = PanelSampler(f"http://127.0.0.1:{exporter_daemon}/api/snapshot", 1.0, 10)
        assert asyncio.run(panel.sample_once()), panel.error
        me = views.me_view(panel.snapshot, panel.history, USER)   # what api/me answers to this user
        messages = [e["message"] for e in me["usage"]["oom_events"]]
        assert messages and messages[-1].endswith("because your server reached its 64 MiB memory limit.")
        other = views.me_view(panel.snapshot, panel.history, f"{PREFIX}-someone-else")
        assert name not in json.dumps(other)
    finally:
        remove_test_containers()
