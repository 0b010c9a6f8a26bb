"""The sampler against a local HTTP server shaped like the exporter."""
from hubmetrics.panel.sampler import Sampler
from tests.unit.panel.conftest import snapshot, use


async def test_samples_feed_snapshot_and_history(fake_exporter):
    s = Sampler(fake_exporter.url, 1, 10)
    fake_exporter.serve(snapshot(1.0, {"alice": use(cpu_seconds=1.0)}))
    assert await s.sample_once()
    fake_exporter.serve(snapshot(3.0, {"alice": use(cpu_seconds=2.0)}))
    assert await s.sample_once()
    assert s.error is None and s.snapshot["time"] == 3.0
    assert s.history.latest_cpu_cores("alice") == 0.5


async def test_exporter_error_keeps_the_last_good_snapshot(fake_exporter):
    s = Sampler(fake_exporter.url, 1, 10)
    fake_exporter.serve(snapshot(1.0, {"alice": use()}))
    await s.sample_once()
    fake_exporter.status = 500
    assert not await s.sample_once()
    assert "HTTP 500" in s.error and fake_exporter.url in s.error
    assert s.snapshot["time"] == 1.0
    fake_exporter.status = 200
    fake_exporter.body = b"not json"
    assert not await s.sample_once()
    assert "invalid JSON" in s.error
    fake_exporter.body = b'{"time": "soon", "host": {}, "users": {}}'
    assert not await s.sample_once()
    assert "'time'" in s.error and "'soon'" in s.error
    fake_exporter.serve(snapshot(2.0))
    assert await s.sample_once() and s.error is None


async def test_unreachable_exporter_is_reported(fake_exporter):
    url = fake_exporter.url
    fake_exporter.close()
    s = Sampler(url, 1, 10)
    assert not await s.sample_once()
    assert "unreachable" in s.error and url in s.error
    assert s.snapshot is None
