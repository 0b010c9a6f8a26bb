"""OpenID Connect logins for real: GenericOAuthenticator against npm oidc-provider (panva) on
loopback, in headless Chromium. Redirected to the provider, log in there with a password, back
on the hub, spawn: the server runs as a host account made at first login (a uid from the
configured range, a home), the IdP's groups are the hub groups and choose the `@group` profile.
Logout stops the server only with shutdown_on_logout."""
import grp
import os
import pwd
import subprocess
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from profilespawner import identity, labels
from tests.harness.browser import chromium
from tests.harness.hub import free_port
from tests.harness.oidc import IdP
from tests.harness.profiles import sample_profiles
from tests.integration.spawner.support import SCOPE, dexec, inspect

pytestmark = pytest.mark.integration

UID_MIN, UID_MAX = 47100, 47199  # far from this machine's other accounts: a uid here is ours
ANN, BOB = "jbm-oidc-ann", "jbm-oidc-bob"
USERS = {ANN: {"password": "ann-Secret-pw", "groups": ["jupyter", "physics"]},
         BOB: {"password": "bob-Secret-pw", "groups": ["visitors"]}}


def remove_accounts():
    for name in USERS:
        subprocess.run(["userdel", "--remove", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def accounts():
    remove_accounts()  # a previous run that died left them
    yield
    remove_accounts()


@pytest.fixture
def oidc_hub(tmp_path, hub_factory, singleuser_image, accounts):
    """hub(shutdown_on_logout) -> (hub, idp): a real hub logging in through a real provider."""
    idps = []

    def make(shutdown_on_logout=False):
        port = free_port()
        idp = IdP(tmp_path / f"idp{len(idps)}", f"http://127.0.0.1:{port}/hub/oauth_callback", USERS).start()
        idps.append(idp)
        profiles = sample_profiles(singleuser_image)
        profiles["user_profiles"]["@physics"] = {"allowed_resources": ["Small"]}
        hub = hub_factory(profiles=profiles, port=port, extra_config=SCOPE + f"""
c.JupyterHub.authenticator_class = "generic-oauth"
c.Authenticator.allow_all = False
{idp.hub_config()}c.DockerSystemProfileSpawner.create_system_users = True
c.DockerSystemProfileSpawner.account_uid_min = {UID_MIN}
c.DockerSystemProfileSpawner.account_uid_max = {UID_MAX}
c.JupyterHub.shutdown_on_logout = {shutdown_on_logout!r}
""")
        return hub, idp

    yield make
    for idp in idps:
        idp.stop()


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def idp_login(driver, hub, idp, user, timeout=60, admitted=True):
    """Go to the hub, get redirected to the provider, log in there; back on the hub (past the
    callback when `admitted`, else on the callback's answer)."""
    driver.get(f"{hub.url}/hub/oauth_login")
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.current_url.startswith(f"{idp.issuer}/interaction/"))
    wait.until(ec.presence_of_element_located((By.ID, "login"))).send_keys(user)
    driver.find_element(By.ID, "password").send_keys(USERS[user]["password"])
    driver.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.current_url.startswith(hub.url))
    if admitted:
        wait.until(lambda d: "oauth_callback" not in d.current_url)


def spawn_in_browser(driver, hub, user, timeout=180):
    driver.get(f"{hub.url}/hub/spawn")
    wait = WebDriverWait(driver, timeout)
    form = wait.until(ec.presence_of_element_located((By.ID, "spawn_form")))
    form.find_element(By.CSS_SELECTOR, "[type=submit]").click()
    wait.until(lambda d: f"/user/{user}/" in d.current_url)
    return hub.wait_ready(user)


def container_of(user):
    """The user's container (by label: dockerspawner escapes '-' in container names)."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={labels.USER}={user}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] if out else None


def server_of(hub, user):
    return hub.api("GET", f"/users/{user}").json().get("servers", {}).get("")


def wait_no_server(hub, user, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server_of(hub, user):
            return True
        time.sleep(0.5)
    return False


def test_oidc_login_creates_account_groups_and_profile(oidc_hub, browser):
    hub, idp = oidc_hub()
    with pytest.raises(KeyError):
        pwd.getpwnam(ANN)
    idp_login(browser, hub, idp, ANN)
    model = spawn_in_browser(browser, hub, ANN)

    account = pwd.getpwnam(ANN)
    assert UID_MIN <= account.pw_uid <= UID_MAX
    taken = ({p.pw_uid for p in pwd.getpwall() if p.pw_name != ANN}
             | {g.gr_gid for g in grp.getgrall() if g.gr_name != ANN})
    assert account.pw_uid == identity.pick_uid(ANN, UID_MIN, UID_MAX, taken)  # derived from the name
    assert os.path.isdir(account.pw_dir) and os.stat(account.pw_dir).st_uid == account.pw_uid
    assert os.stat(account.pw_dir).st_mode & 0o777 == 0o700
    assert sorted(model["groups"]) == ["jupyter", "physics"]  # the IdP's groups claim
    container = container_of(ANN)
    assert container, "no container for the user"
    r = dexec(container, "id", "-u")
    assert r.stdout.strip() == str(account.pw_uid), (r.stdout, r.stderr)
    # @physics allows only Small: the group profile from the hub group applies
    assert inspect(container)["Config"]["Labels"][labels.RESOURCE_PROFILE] == "Small"

    # logout with shutdown_on_logout off (the default): the server keeps running
    browser.get(f"{hub.url}/hub/logout")
    time.sleep(3)
    assert server_of(hub, ANN), "the server stopped at logout although shutdown_on_logout is off"

    # a second login (a fresh browser: the provider asks for the password again) keeps the uid
    hub.api("DELETE", f"/users/{ANN}/server")
    assert wait_no_server(hub, ANN)
    second = chromium()
    try:
        idp_login(second, hub, idp, ANN)
        spawn_in_browser(second, hub, ANN)
    finally:
        second.quit()
    assert pwd.getpwnam(ANN).pw_uid == account.pw_uid


def test_user_outside_allowed_groups_gets_403(oidc_hub, browser):
    hub, idp = oidc_hub()
    idp_login(browser, hub, idp, BOB, admitted=False)
    WebDriverWait(browser, 30).until(lambda d: "403" in d.page_source)
    assert "/hub/oauth_callback" in browser.current_url
    assert hub.api("GET", f"/users/{BOB}").status_code == 404  # never became a hub user
    with pytest.raises(KeyError):
        pwd.getpwnam(BOB)  # and no host account was made


def test_logout_stops_the_server_with_shutdown_on_logout(oidc_hub, browser):
    hub, idp = oidc_hub(shutdown_on_logout=True)
    idp_login(browser, hub, idp, ANN)
    spawn_in_browser(browser, hub, ANN)
    browser.get(f"{hub.url}/hub/logout")
    assert wait_no_server(hub, ANN, timeout=60), "the server still runs after logout"
    assert container_of(ANN) is None
