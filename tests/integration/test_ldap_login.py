"""LDAP logins for real: a real hub (tests/harness/hub.py) with the role's authenticator
(profilespawner.ldapauth.DirectoryLDAPAuthenticator = ldapauthenticator 2.0.2) against a real
slapd (tests/harness/ldap.py), driven in headless Chromium through the hub's own login page.

This machine's NSS is not pointed at the directory (it is shared; the ldap_client role's molecule
scenario, roles/ldap_client/molecule/default, converges nslcd into a host container for that). Here the directory's users
get local accounts with the directory's uid, gid and groups, which is what nslcd gives the
spawner on a server.
"""
import asyncio
import importlib
import json
import subprocess

import pytest
import requests
import yaml
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from profilespawner import labels
from tests.harness.browser import chromium, hub_login
from tests.harness.hub import Hub
from tests.harness.jupyterhub_role import converge, rendered
from tests.harness.ldap import GROUPS_SEED, PEOPLE, USERS, Directory
from tests.harness.profiles import sample_profiles
from tests.harness.users import remove_user

pytestmark = pytest.mark.integration

ALICE, BOB = USERS
GPU_GROUP = GROUPS_SEED[1]  # ldapgpu: ldapalice only


def ldap_config(directory: Directory) -> str:
    """What the role renders for jupyterhub_authenticator: ldap (template's LDAP branch)."""
    settings = {"server_address": "127.0.0.1", "server_port": directory.port,
                "tls_strategy": "insecure", "bind_dn_template": [f"uid={{username}},{PEOPLE}"]}
    lines = ['c.JupyterHub.authenticator_class = "profilespawner.ldapauth.DirectoryLDAPAuthenticator"']
    lines += [f"c.LDAPAuthenticator.{name} = {value!r}" for name, value in settings.items()]
    return "\n" + "\n".join(lines) + "\n"


def ensure_account(user, groups) -> None:
    """A local account mirroring the directory's entry (uid, primary gid, posixGroups)."""
    for group in groups:
        if subprocess.run(["getent", "group", group.name], capture_output=True).returncode:
            subprocess.run(["groupadd", "-g", str(group.gid), group.name], check=True)
    if subprocess.run(["getent", "passwd", user.name], capture_output=True).returncode:
        subprocess.run(["useradd", "--no-create-home", "-u", str(user.uid), "-g", str(user.gid),
                        "-s", "/bin/bash", user.name], check=True)
    members = [g.name for g in groups if user.name in g.members and g.gid != user.gid]
    if members:
        subprocess.run(["usermod", "-a", "-G", ",".join(members), user.name], check=True)


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    ldap = Directory(tmp_path_factory.mktemp("slapd")).start()
    ldap.seed()
    yield ldap
    ldap.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, directory, singleuser_image):
    for user in USERS:
        ensure_account(user, GROUPS_SEED)
    workdir = tmp_path_factory.mktemp("ldap-hub")
    profiles = sample_profiles(singleuser_image)
    # the @group profile of the directory's posixGroup: only Small for its members
    profiles["user_profiles"]["@" + GPU_GROUP.name] = {"allowed_resources": ["Small"]}
    (workdir / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    hub = Hub(workdir=workdir, profiles_file=workdir / "profiles.yaml",
              extra_config=ldap_config(directory)).start()
    yield hub
    hub.stop()
    for user in USERS:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={labels.USER}={user.name}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        remove_user(user.name)
    for group in GROUPS_SEED:
        subprocess.run(["groupdel", group.name], capture_output=True)


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def submit_login(driver, hub_url: str, username: str, password: str) -> None:
    driver.get(f"{hub_url}/hub/login")
    wait = WebDriverWait(driver, 30)
    wait.until(ec.presence_of_element_located((By.ID, "username_input"))).send_keys(username)
    driver.find_element(By.ID, "password_input").send_keys(password)
    driver.find_element(By.ID, "login_submit").click()


def post_login(hub_url: str, username: str, password: str) -> int:
    """The status of a form login posted without a browser (xsrf cookie and field included)."""
    session = requests.Session()
    session.get(f"{hub_url}/hub/login", timeout=30)
    reply = session.post(f"{hub_url}/hub/login", allow_redirects=False, timeout=30,
                         data={"username": username, "password": password,
                               "_xsrf": session.cookies.get("_xsrf", "")})
    return reply.status_code


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def test_the_ldap_password_logs_in_and_spawns_as_the_directorys_uid_with_the_group_profile(hub, browser):
    hub_login(browser, hub.url, ALICE.name, ALICE.password)
    browser.get(f"{hub.url}/hub/spawn")
    wait = WebDriverWait(browser, 180)
    form = wait.until(ec.presence_of_element_located((By.ID, "spawn_form")))
    offered = [o.get_attribute("value") for o in form.find_elements(
        By.CSS_SELECTOR, "[name=resource_profile] option")]
    assert offered == ["Small"], f"@{GPU_GROUP.name} profile not applied: {offered}"
    form.find_element(By.CSS_SELECTOR, "[type=submit]").click()
    wait.until(lambda d: f"/user/{ALICE.name}/" in d.current_url)
    model = hub.wait_ready(ALICE.name)
    assert model["servers"][""]["ready"]
    info = json.loads(subprocess.run(["docker", "inspect", f"jupyter-{ALICE.name}"],
                                     capture_output=True, text=True, check=True).stdout)[0]
    uid = subprocess.run(["docker", "exec", f"jupyter-{ALICE.name}", "id", "-u"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert uid == str(ALICE.uid), (uid, info["Config"].get("User"))


def test_a_wrong_password_gets_the_login_pages_error(hub, browser):
    submit_login(browser, hub.url, BOB.name, BOB.password + "-wrong")
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "Invalid username or password" in page_text(d))
    assert "/hub/login" in browser.current_url
    assert browser.find_elements(By.ID, "password_input"), "not the login page"
    assert "500" not in page_text(browser)
    assert post_login(hub.url, BOB.name, BOB.password + "-wrong") == 403
    assert BOB.name not in [u["name"] for u in hub.api("GET", "/users").json()]


def test_directory_down_fails_logins_clearly_and_keeps_running_servers(hub, directory, browser):
    if not hub.api("GET", f"/users/{ALICE.name}").json().get("servers"):  # run alone
        hub.api("POST", f"/users/{ALICE.name}")  # 201, or 409 when the first test made it
        reply = hub.api("POST", f"/users/{ALICE.name}/server", json={})
        assert reply.status_code in (201, 202), f"{reply.status_code} {reply.text}\n{hub.log()}"
    hub.wait_ready(ALICE.name)
    directory.stop()
    try:
        submit_login(browser, hub.url, BOB.name, BOB.password)
        WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: "cannot be reached" in page_text(d))
        text = page_text(browser)
        assert f"127.0.0.1:{directory.port}" in text, text
        assert browser.find_elements(By.ID, "password_input"), "not the login page"
        assert post_login(hub.url, BOB.name, BOB.password) == 424  # a failed dependency, not a 500
        assert "running servers are not affected" in text
        assert "cannot be reached" in hub.log(200)
        model = hub.api("GET", f"/users/{ALICE.name}").json()
        assert model["servers"][""]["ready"], model
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", f"jupyter-{ALICE.name}"],
                               capture_output=True, text=True).stdout.strip()
        assert state == "true"
    finally:
        directory.start()
    # back up: the same login works again, without a hub restart
    hub_login(browser, hub.url, BOB.name, BOB.password)
    assert "/hub/login" not in browser.current_url


def test_allowed_groups_admit_the_groups_members_only(tmp_path, directory, singleuser_image):
    """jupyterhub_allowed_groups with LDAP: group DNs, rendered as the role renders them for
    every authenticator (a set in c.Authenticator.allowed_groups)."""
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(sample_profiles(singleuser_image)))
    extra = (ldap_config(directory) + "c.Authenticator.allow_all = False\n"
             f"c.Authenticator.allowed_groups = set([{GPU_GROUP.dn!r}])\n")
    hub = Hub(workdir=tmp_path, profiles_file=tmp_path / "profiles.yaml", extra_config=extra).start()
    try:
        assert post_login(hub.url, ALICE.name, ALICE.password) == 302  # in ldapgpu
        assert post_login(hub.url, BOB.name, BOB.password) == 403      # right password, not a member
    finally:
        hub.stop()


def test_the_roles_rendered_config_logs_in_against_the_directory(tmp_path, directory, singleuser_image, monkeypatch):
    """The jupyterhub role's preflight and template with jupyterhub_authenticator: ldap
    (tests/harness/jupyterhub_role.py), loaded as the hub loads it: its authenticator, built
    from that config, binds to the real slapd."""
    run = converge(tmp_path, jupyterhub_authenticator="ldap", jupyterhub_allow_all=False,
                   jupyterhub_allowed_groups=[GPU_GROUP.dn], jupyterhub_profiles=sample_profiles(singleuser_image),
                   jupyterhub_ldap_settings={"server_address": "127.0.0.1", "server_port": directory.port,
                                             "tls_strategy": "insecure",
                                             "bind_dn_template": [f"uid={{username}},{PEOPLE}"]})
    assert run.returncode == 0, run.stdout[-3000:]
    config = rendered(tmp_path, monkeypatch)
    module, name = config.JupyterHub.authenticator_class.rsplit(".", 1)
    authenticator = getattr(importlib.import_module(module), name)(config=config)
    assert authenticator.allowed_groups == [GPU_GROUP.dn]

    async def login(user, password):
        model = await authenticator.get_authenticated_user(None, {"username": user, "password": password})
        return model and model["name"]
    assert asyncio.run(login(ALICE.name, ALICE.password)) == ALICE.name
    assert asyncio.run(login(ALICE.name, "wrong")) is None
    assert asyncio.run(login(BOB.name, BOB.password)) is None  # not in the allowed group
