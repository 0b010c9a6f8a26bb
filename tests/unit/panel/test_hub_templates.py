"""The hub template overrides render in JupyterHub's own Jinja setup and add the links."""
from types import SimpleNamespace


import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader

from hubmetrics.panel import HUB_TEMPLATES_DIR



def hub_env():
    """The loader layout JupyterHub.init_tornado_settings builds for template_paths."""
    from jupyterhub.app import JupyterHub
    base = JupyterHub()._template_paths_default()[0]
    env = Environment(loader=ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
        FileSystemLoader([HUB_TEMPLATES_DIR, base]),
    ]), autoescape=True)
    return env


def render(name, services):
    user = SimpleNamespace(name="alice", json_escaped_name="alice", admin=False,
                           spawner=SimpleNamespace(options_form=""), all_spawners=lambda **kw: [])
    return hub_env().get_template(name).render(
        base_url="/hub/", prefix="/", user=user, services=services, parsed_scopes={},
        static_url=lambda p, **kw: "/hub/static/" + p, login_url="/hub/login",
        logout_url="/hub/logout", default_server=SimpleNamespace(active=False), url="/hub/spawn",
        spawner_options_form="<select name='profile'></select>", xsrf="x", version_hash="",
    )


RESOURCES = SimpleNamespace(name="resources", href="/services/resources/")
OTHER = SimpleNamespace(name="grafana", href="/services/grafana/")


@pytest.mark.parametrize("page", ["home.html", "spawn.html", "token.html"])
def test_nav_bar_links_to_the_panel(page):
    html = render(page, [OTHER, RESOURCES])
    assert 'id="nav-resources" href="/services/resources/"' in html
    assert "/services/grafana/" in html  # the hub's own services menu is kept


def test_home_and_spawn_link_to_the_panel_and_spawn_shows_capacity():
    assert 'id="home-resources"' in render("home.html", [RESOURCES])
    spawn = render("spawn.html", [RESOURCES])
    assert 'src="/services/resources/capacity"' in spawn
    assert "<select name='profile'></select>" in spawn  # the spawner's form is still there


def test_no_link_when_the_user_may_not_access_the_panel():
    for page in ("home.html", "spawn.html"):
        html = render(page, [OTHER])
        assert "/services/resources/" not in html
