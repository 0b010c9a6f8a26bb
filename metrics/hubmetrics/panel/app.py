"""The resource panel as a JupyterHub service: configuration and the tornado app.

WHY: JupyterHub starts managed services with JUPYTERHUB_* environment variables
(prefix, URL, OAuth client); this app reads them like jupyterhub's own
service examples do, and adds its few options as traitlets.
"""

import os
import secrets
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from traitlets import Float, List, Unicode, default, validate
from traitlets.config import Application, TraitError

from .handlers import HostAPIHandler, MeAPIHandler, PageHandler, UsersAPIHandler
from .hubpage import environment
from .sampler import Cluster

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SNAPSHOT_URL = "http://127.0.0.1:9945/api/snapshot"


class ResourcePanel(Application):
    """Serve each user's resource use under the hub at /services/<name>/."""

    name = "hubmetrics-panel"
    description = __doc__

    aliases = {
        "snapshot-url": "ResourcePanel.snapshot_url",
        "snapshot-urls": "ResourcePanel.snapshot_urls",
        "sample-interval": "ResourcePanel.sample_interval",
        "history-seconds": "ResourcePanel.history_seconds",
        "log-level": "Application.log_level",
    }

    snapshot_url = Unicode(
        DEFAULT_SNAPSHOT_URL,
        config=True,
        help="The exporter's snapshot JSON (docs/contracts.md); the exporter listens on loopback.",
    )
    snapshot_urls = List(
        Unicode(),
        config=True,
        help="Every node's exporter snapshot on a swarm (one per node, the hub's own first; the metrics "
             "role renders them from the inventory as metrics_snapshot_urls). Empty (default): only "
             "snapshot_url, one server.",
    )
    sample_interval = Float(
        5.0, config=True, help="Seconds between two snapshot fetches (and history points)."
    )
    history_seconds = Float(
        600.0, config=True, help="How far back the in-memory history reaches, in seconds."
    )
    service_prefix = Unicode(
        config=True,
        help="URL prefix the proxy routes to this service; set by the hub as JUPYTERHUB_SERVICE_PREFIX.",
    )
    service_url = Unicode(
        config=True,
        help="Where this service listens; set by the hub as JUPYTERHUB_SERVICE_URL.",
    )
    hub_prefix = Unicode(
        config=True, help="The hub's URL prefix for links back (JUPYTERHUB_BASE_URL + 'hub/')."
    )

    @default("service_prefix")
    def _default_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/resources/")

    @default("service_url")
    def _default_service_url(self):
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:9946")

    @default("hub_prefix")
    def _default_hub_prefix(self):
        return url_path_join(os.environ.get("JUPYTERHUB_BASE_URL", "/"), "hub/")

    @validate("snapshot_url", "service_url")
    def _check_url(self, proposal):
        url = urlparse(proposal.value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise TraitError(
                f"{proposal.trait.name} {proposal.value!r} is not a URL; "
                "allowed: http://HOST[:PORT]/PATH or https://..."
            )
        return proposal.value

    @validate("snapshot_urls")
    def _check_urls(self, proposal):
        for value in proposal.value:
            url = urlparse(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise TraitError(f"snapshot_urls item {value!r} is not a URL; allowed: http://HOST[:PORT]/PATH or https://...")
        return proposal.value

    def urls(self):
        """The exporters read: snapshot_urls, else snapshot_url alone."""
        return list(self.snapshot_urls) or [self.snapshot_url]

    @validate("sample_interval", "history_seconds")
    def _check_positive(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"{proposal.trait.name} must be > 0 seconds, got {proposal.value!r}")
        return proposal.value

    @validate("service_prefix")
    def _check_prefix(self, proposal):
        value = proposal.value
        if not value.startswith("/"):
            raise TraitError(f"service_prefix {value!r} must start with '/'")
        return value if value.endswith("/") else value + "/"

    def history_points(self):
        return max(2, round(self.history_seconds / self.sample_interval))

    def make_sampler(self):
        return Cluster(self.urls(), self.sample_interval, self.history_points())

    def make_app(self, sampler):
        prefix = self.service_prefix
        settings = dict(
            cookie_secret=secrets.token_bytes(32),  # only signs OAuth state cookies
            template_path=os.path.join(HERE, "templates"),
            static_path=os.path.join(HERE, "static"),
            static_url_prefix=url_path_join(prefix, "static/"),
            login_url=url_path_join(self.hub_prefix, "login"),
            xsrf_cookies=False,  # GET-only service
        )
        page = dict(sampler=sampler, hub_prefix=self.hub_prefix)
        hub_page = dict(page, base_prefix=os.environ.get("JUPYTERHUB_BASE_URL", "/"), service_prefix=prefix,
                        jinja=environment())
        return web.Application(
            [
                (prefix, PageHandler, dict(hub_page, template="panel.html")),
                (url_path_join(prefix, "capacity"), PageHandler, dict(page, template="capacity.html")),
                (url_path_join(prefix, "api/me"), MeAPIHandler, dict(sampler=sampler)),
                (url_path_join(prefix, "api/users"), UsersAPIHandler, dict(sampler=sampler)),
                (url_path_join(prefix, "api/host"), HostAPIHandler, dict(sampler=sampler)),
                (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
                (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
            ],
            **settings,
        )

    def start(self):
        sampler = self.make_sampler()
        app = self.make_app(sampler)
        url = urlparse(self.service_url)
        server = HTTPServer(app, xheaders=True)
        server.listen(url.port or 80, url.hostname)
        self.log.info(
            "Resource panel at %s (prefix %s), reading %s every %ss",
            self.service_url,
            self.service_prefix,
            ", ".join(self.urls()),
            self.sample_interval,
        )
        sampler.start()
        IOLoop.current().start()


main = ResourcePanel.launch_instance
