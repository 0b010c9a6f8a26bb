"""The panel's page is the hub's page (JupyterHub's page.html) with the panel inside it."""
import base64
import hashlib
import re

from hubmetrics.panel import hubpage


def render(user="alice", admin=False):
    ns = hubpage.page_namespace("/hub/", "/", "/services/resources/", {"name": user, "admin": admin,
                                                                       "scopes": ["admin-ui"] if admin else []}, "XS")
    return hubpage.environment().get_template("panel.html").render(
        **ns, panel_static=lambda p: "/services/resources/static/" + p, user_name=user, is_admin=admin,
        hub_prefix="/hub/", interval_ms=1000, xsrf="XS")


def test_panel_extends_the_hubs_page_html():
    html = render()
    assert '<link rel="stylesheet" href="/hub/static/css/style.min.css" />' in html  # the hub's look
    assert 'class="navbar' in html and 'href="/hub/logout"' in html and 'src="/hub/logo"' in html
    assert 'id="nav-resources" href="/services/resources/"' in html  # hubmetrics' hub nav link
    assert 'id="panel"' in html and 'data-xsrf="XS"' in html and "/services/resources/static/panel.js" in html
    assert 'href="/hub/admin"' not in html
    assert 'href="/hub/admin"' in render("root", admin=True)


def test_the_one_inline_script_is_allowed_by_its_hash_only():
    html = render('al"ice<')
    (body,) = [b for b in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.S)]
    assert "window.jhdata" in body
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    assert hubpage.inline_script_hashes(html) == [f"'sha256-{digest}'"]
    assert 'al"ice<' not in html  # the name is escaped everywhere
