"""Polls the exporter's /api/snapshot on an interval and feeds the history.

WHY: browsers poll the panel, the panel polls the exporter; one fetch per
interval serves every browser, and the exporter is never exposed beyond
loopback. A failing exporter never breaks the panel: the last good snapshot
stays, and the error is reported next to it.
"""

import json
import logging
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.ioloop import IOLoop, PeriodicCallback

from .history import History

log = logging.getLogger(__name__)


class SnapshotError(Exception):
    """The exporter could not be read or answered something that is not a snapshot."""


def parse_snapshot(body):
    """Decode and minimally check a snapshot per docs/contracts.md."""
    try:
        snapshot = json.loads(body)
    except ValueError as e:
        raise SnapshotError(f"exporter answered invalid JSON: {e}") from None
    if not isinstance(snapshot, dict):
        raise SnapshotError(f"exporter snapshot must be a JSON object, got {type(snapshot).__name__}")
    for key, kind, kind_name in (
        ("time", (int, float), "a number"),
        ("host", dict, "an object"),
        ("users", dict, "an object"),
    ):
        value = snapshot.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SnapshotError(f"exporter snapshot key {key!r} must be {kind_name}, got {value!r:.80}")
    return snapshot


class _Periodic:
    """`sample_once` now and then every `interval_seconds` on the running IOLoop."""
    _callback = None

    def start(self):
        """Sample now and then every interval on the running IOLoop."""
        self._callback = PeriodicCallback(self.sample_once, self.interval_seconds * 1000)
        self._callback.start()
        IOLoop.current().add_callback(self.sample_once)

    def stop(self):
        if self._callback is not None:
            self._callback.stop()


class Sampler(_Periodic):
    """Holds the latest snapshot, the history, and the last error."""

    def __init__(self, url, interval_seconds, history_points, timeout_seconds=5.0):
        self.url = url
        self.interval_seconds = float(interval_seconds)
        self.timeout_seconds = float(timeout_seconds)
        self.history = History(history_points)
        self.snapshot = None
        self.error = None
        self.last_attempt = None

    async def sample_once(self):
        """Fetch one snapshot; on failure keep the previous one and record why."""
        self.last_attempt = time.time()
        try:
            response = await AsyncHTTPClient().fetch(
                self.url, request_timeout=self.timeout_seconds, follow_redirects=False
            )
            snapshot = parse_snapshot(response.body)
        except HTTPClientError as e:
            self.error = f"exporter at {self.url} answered HTTP {e.code}"
        except SnapshotError as e:
            self.error = str(e)
        except OSError as e:
            self.error = f"exporter at {self.url} unreachable: {e.strerror or e}"
        else:
            self.snapshot = snapshot
            self.history.add(snapshot)
            self.error = None
            return True
        log.warning("%s", self.error)
        return False


class Cluster(_Periodic):
    """One Sampler per node's exporter (a swarm; one server: just one), fetched together.

    The first URL is the hub's own node: its snapshot, history and error stand for "the
    machine" wherever one node is meant (the page's interval, a user without a server). A
    user's own numbers come from the node whose exporter lists their server (`for_user`).
    """

    def __init__(self, urls, interval_seconds, history_points, timeout_seconds=5.0):
        urls = list(urls)
        if not urls:
            raise ValueError("snapshot_urls: empty; allowed: one or more exporter snapshot URLs")
        self.samplers = [Sampler(url, interval_seconds, history_points, timeout_seconds) for url in urls]
        self.interval_seconds = float(interval_seconds)

    @property
    def primary(self):
        return self.samplers[0]

    # what a single Sampler offers, for the node the hub runs on
    snapshot = property(lambda self: self.primary.snapshot)
    history = property(lambda self: self.primary.history)
    error = property(lambda self: self.primary.error)

    def for_user(self, user):
        """The sampler of the node running the user's server, else the hub's own. A node that
        stopped answering keeps its last snapshot and its error: a user whose server was there
        sees their last numbers with that error, not "no server"."""
        from .views import runs_on
        listed = [s for s in self.samplers if runs_on(s.snapshot, user)]
        return next((s for s in listed if s.error is None), listed[0] if listed else self.primary)

    def nodes(self):
        """(url, snapshot, error) per node, for views.cluster_view."""
        return [(s.url, s.snapshot, s.error) for s in self.samplers]

    async def sample_once(self):
        """Fetch every node's snapshot at once; one slow or dead node delays the others by at
        most its timeout and never fails them."""
        import asyncio
        return await asyncio.gather(*(s.sample_once() for s in self.samplers))
