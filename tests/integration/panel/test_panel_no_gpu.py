"""The real panel (its tornado app, templates and script) in headless Chromium, reading an
exporter snapshot of a host without NVIDIA driver, as the exporter writes it there: the page and
the spawn page's capacity line say "no GPUs on this machine" and nothing about stale data.
The hub's login is stood in for (a fixed user): who-sees-what is tested through the real hub in
test_panel_browser.py."""
import asyncio
import threading
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from hubmetrics.panel import handlers
from hubmetrics.panel.app import ResourcePanel
from tests.harness.browser import chromium
from tests.harness.hub import free_port
from tests.unit.panel.conftest import FakeExporter, snapshot, use

pytestmark = pytest.mark.integration
PREFIX = "/services/resources/"


@pytest.fixture
def panel_without_gpus(monkeypatch):
    fake = FakeExporter()
    snap = snapshot(time.time(), users={"alice": use(cpu_seconds=1.0, mem=64 << 20, name="alice")},
                    cpus=1, gpus_total=0, gpus_free=0, nvml_available=False, nvml_absent=True)
    snap["stale"] = {"cgroups": False, "docker": False, "nvml": True}  # what the exporter says there
    fake.serve(snap)
    monkeypatch.setattr(handlers.BaseHandler, "get_current_user", lambda self: {"name": "alice", "admin": False})
    port = free_port()
    panel = ResourcePanel(snapshot_url=fake.url, service_prefix=PREFIX, sample_interval=0.5,
                          service_url=f"http://127.0.0.1:{port}")
    ready, loops = threading.Event(), []

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = IOLoop.current()
        sampler = panel.make_sampler()
        HTTPServer(panel.make_app(sampler)).listen(port, "127.0.0.1")
        sampler.start()
        loops.append(loop)
        ready.set()
        loop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{port}{PREFIX}"
    loops[0].add_callback(loops[0].stop)
    thread.join(10)
    fake.close()


@pytest.fixture
def driver():
    d = chromium()
    yield d
    d.quit()


@pytest.mark.parametrize("page", ["", "capacity"])
def test_no_gpus_is_said_plainly_not_as_stale_data(panel_without_gpus, driver, page):
    driver.get(panel_without_gpus + page)
    WebDriverWait(driver, 30, poll_frequency=0.2).until(
        lambda d: d.find_element(By.ID, "host-gpus").text not in ("", "–"))
    WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: "Measured" in d.find_element(By.ID, "status").text)
    assert driver.find_element(By.ID, "host-gpus").text == "no GPUs on this machine"
    status = driver.find_element(By.ID, "status")
    assert "stale" not in status.text and "error" not in status.get_attribute("class"), status.text
    if page == "capacity":  # the whole line reads right on a one-CPU host without GPUs
        line = driver.find_element(By.ID, "capacity-line").text
        assert line.startswith("This machine now: 1 CPU, ") and "GPUs free" not in line, line
        assert "memory free, no GPUs on this machine" in line, line
