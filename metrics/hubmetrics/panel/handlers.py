"""Tornado handlers of the resource panel: one page, a JSON API, the OAuth callback.

WHY: the hub authenticates (HubOAuth cookie, set through the hub's own login);
these handlers only ask views.py what the authenticated name may see. No handler
takes a user name from the request, and nothing rendered contains a token.
"""

import json

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from . import hubpage, views

CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'; form-action 'self'"


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Shared: the sampler, security headers, the authenticated user's model."""

    def initialize(self, sampler):
        self.sampler = sampler

    def set_default_headers(self):
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    @property
    def user_name(self):
        return self.current_user["name"]

    @property
    def is_admin(self):
        return bool(self.current_user.get("admin"))


class APIHandler(BaseHandler):
    """JSON endpoints: 403 instead of a login redirect, and no query parameters.

    Refusing parameters makes it explicit that nobody picks whose numbers to
    read: the answer depends only on who is logged in.
    """

    def get_login_url(self):
        raise web.HTTPError(403, "not logged in to the resources service")

    def prepare(self):
        if self.request.query_arguments:
            names = ", ".join(sorted(self.request.query_arguments))
            raise web.HTTPError(400, f"this endpoint takes no query parameters, got: {names}")

    def write_error(self, status_code, **kwargs):
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def write_json(self, data):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class MeAPIHandler(APIHandler):
    """The logged-in user's own use and history (from the node their server runs on, named in
    `node`), the host's and every node's free capacity (`cluster`)."""

    @web.authenticated
    def get(self):
        s = self.sampler.for_user(self.user_name)  # the node running the user's server
        view = views.me_view(s.snapshot, s.history, self.user_name, s.error)
        view["node"] = views.node_name(s.snapshot, s.url) if views.runs_on(s.snapshot, self.user_name) else None
        view["cluster"] = views.cluster_view(self.sampler.nodes())
        self.write_json(view)


class UsersAPIHandler(APIHandler):
    """Every user's use; admins only."""

    @web.authenticated
    def get(self):
        if not self.is_admin:
            raise web.HTTPError(403, "only hub admins may list every user's use")
        self.write_json(views.cluster_admin_view(
            [(s.url, s.snapshot, s.error, s.history) for s in self.sampler.samplers]))


class HostAPIHandler(APIHandler):
    """The machine's capacity and free resources, and every node's free guarantee capacity (a
    swarm), for any logged-in user."""

    @web.authenticated
    def get(self):
        s = self.sampler
        self.write_json(dict(views.capacity_view(s.snapshot, s.error), cluster=views.cluster_view(s.nodes())))


class PageHandler(BaseHandler):
    """The HTML page; its script polls api/me (and api/users for admins)."""

    def initialize(self, sampler, template, hub_prefix, base_prefix="/", service_prefix="/services/resources/",
                   jinja=None):
        super().initialize(sampler)
        self.template = template
        self.hub_prefix = hub_prefix
        self.base_prefix = base_prefix
        self.service_prefix = service_prefix
        self.jinja = jinja  # set: a Jinja2 page extending the hub's page.html (hubpage.py)

    @web.authenticated
    def get(self):
        # JupyterHub accepts cookie auth on fetch() requests only with this XSRF token
        # (tied to the browser's session; not an API token). Reading it sets its cookie.
        xsrf = self.xsrf_token.decode("ascii") if isinstance(self.xsrf_token, bytes) else self.xsrf_token
        ns = dict(
            user_name=self.user_name,
            is_admin=self.is_admin,
            hub_prefix=self.hub_prefix,
            interval_ms=int(self.sampler.interval_seconds * 1000),
            xsrf=xsrf,
        )
        if self.jinja is None:
            self.render(self.template, **ns)
            return
        html = self.jinja.get_template(self.template).render(
            **hubpage.page_namespace(self.hub_prefix, self.base_prefix, self.service_prefix, self.current_user, xsrf),
            panel_static=self.static_url, **ns)
        hashes = " ".join(hubpage.inline_script_hashes(html))
        self.set_header("Content-Security-Policy", f"{CSP}; script-src 'self' {hashes}")
        self.finish(html)
