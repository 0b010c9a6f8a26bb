"""The panel's pages in the hub's own look: Jinja2 templates extending JupyterHub's page.html
(as services and extensions do), with the hub's stylesheet, navigation bar and static files.

WHY: the panel is a separate service, but a user following "Resources" from the hub should see
the hub's page. The loader is the hub's own layout (our templates, then hubmetrics' hub
templates, which add the "Resources" link, then JupyterHub's, also under "templates/"), so the
navigation bar is the one the hub shows. page.html carries one inline script (require.config and
window.jhdata); its hash goes into the Content-Security-Policy, so no other inline script runs.
"""

import base64
import hashlib
import json
import os
import re
from types import SimpleNamespace

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub.utils import url_path_join

from .hubconfig import HUB_TEMPLATES_DIR, SERVICE_NAME

HERE = os.path.dirname(os.path.abspath(__file__))
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def jupyterhub_templates():
    """JupyterHub's own templates directory (as JupyterHub finds it)."""
    from jupyterhub._data import DATA_FILES_PATH

    return os.path.join(DATA_FILES_PATH, "templates")


def environment():
    base = jupyterhub_templates()
    return Environment(loader=ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
        FileSystemLoader([os.path.join(HERE, "templates"), HUB_TEMPLATES_DIR, base]),
    ]), autoescape=True)


def page_namespace(hub_prefix, base_prefix, service_prefix, user_model, xsrf):
    """What JupyterHub's page.html reads, for the logged-in user (no token, no other user)."""
    name = user_model["name"]
    return dict(
        base_url=hub_prefix,
        prefix=base_prefix,
        static_url=lambda path, include_version=True: url_path_join(hub_prefix, "static", path),
        user=SimpleNamespace(name=name, json_escaped_name=json.dumps(name)[1:-1].replace("<", "\\u003c"), admin=bool(user_model.get("admin"))),
        admin_access=bool(user_model.get("admin")),
        parsed_scopes=set(user_model.get("scopes") or ()),
        services=[SimpleNamespace(name=SERVICE_NAME, href=service_prefix)],
        no_spawner_check=True,
        xsrf_token=xsrf,
        version_hash="",
        logo_url="",
        login_url=url_path_join(hub_prefix, "login"),
        logout_url=url_path_join(hub_prefix, "logout"),
        announcement=None,
    )


def inline_script_hashes(html):
    """CSP source expressions ('sha256-...') of the inline scripts in html."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]
