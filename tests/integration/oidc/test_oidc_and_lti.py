"""OpenID Connect and LTI 1.1 on one hub (profilespawner.logins.CombinedAuthenticator), for
real: a person logs in at the login page through the real OpenID provider (npm oidc-provider on
loopback, headless Chromium) and spawns; the same person then arrives from the LMS (a launch
signed with oauthlib, LTI 1.1 on the wire): the same hub user, the same host account (uid), and
the launch's course chooses the image. Bad signatures and names no account can have are refused.

Only loopback and our own containers are reached; the course image is the cached test image
with a label (built here, removed at the end)."""
import pwd
import re
import secrets
import subprocess

import pytest
import requests

from tests.harness.browser import chromium
from tests.harness.hub import free_port
from tests.harness.lti import LMS, launch
from tests.harness.oidc import IdP
from tests.harness.profiles import sample_profiles
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.oidc.test_oidc_login import container_of, spawn_in_browser, wait_no_server
from tests.integration.spawner.support import SCOPE, dexec, inspect

pytestmark = pytest.mark.integration

UID_MIN, UID_MAX = 47200, 47299  # far from this machine's other accounts: a uid here is ours
ANN = "jbm-multi-ann"
USERS = {ANN: {"password": "ann-Secret-pw", "groups": ["jupyter"]}}
KEY, SECRET = "jbm-multi-consumer", secrets.token_hex(16)
MOODLE = LMS(KEY, SECRET, link_prefix="jbm-multi-link")
COURSE, COURSE_IMAGE = "jbm-multi-course-a", "jbm-multi/course-a:latest"


def remove_accounts():
    for name in USERS:
        subprocess.run(["userdel", "--remove", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def course_image(singleuser_image):
    dockerfile = f"FROM {singleuser_image}\nLABEL org.jupyterhub-baremetal.test.course={COURSE}\n"
    subprocess.run(["docker", "build", "-q", "-t", COURSE_IMAGE, "-"], input=dockerfile, text=True,
                   check=True, capture_output=True, timeout=120)
    yield COURSE_IMAGE
    subprocess.run(["docker", "rmi", COURSE_IMAGE], capture_output=True)


@pytest.fixture
def multi_hub(tmp_path, hub_factory, singleuser_image, course_image, monkeypatch):
    remove_accounts()  # a previous run that died left them
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))  # auth_state keeps the launch
    port = free_port()
    idp = IdP(tmp_path / "idp", f"http://127.0.0.1:{port}/hub/oauth_callback", USERS).start()
    profiles = sample_profiles(singleuser_image)
    profiles["image_profiles"]["CourseA"] = {"image": course_image, "description": "course A", "courses": [COURSE]}
    profiles["user_profiles"]["default"]["allowed_images"] = ["SingleUser", "CourseA"]
    hub = hub_factory(profiles=profiles, port=port, extra_config=SCOPE + f"""
c.JupyterHub.authenticator_class = "profilespawner.logins.CombinedAuthenticator"
c.CombinedAuthenticator.login_class = "oauthenticator.generic.GenericOAuthenticator"
c.CombinedAuthenticator.launch_classes = ["ltiauthenticator.lti11.auth.LTI11Authenticator"]
c.Authenticator.enable_auth_state = True
# refresh every login before each spawn: the provider's logins at the provider, launches not
c.CombinedAuthenticator.refresh_pre_spawn = True
{idp.hub_config()}c.GenericOAuthenticator.allow_all = False
c.LTI11Authenticator.consumers = {{{KEY!r}: {SECRET!r}}}
c.LTI11Authenticator.username_key = "lis_person_sourcedid"
c.DockerSystemProfileSpawner.create_system_users = True
c.DockerSystemProfileSpawner.account_uid_min = {UID_MIN}
c.DockerSystemProfileSpawner.account_uid_max = {UID_MAX}
""")
    yield hub, idp
    idp.stop()
    remove_accounts()


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def idp_login(driver, hub, idp, timeout=60):
    """The login page's button, the provider's form, back on the hub past the callback."""
    driver.get(f"{hub.url}/hub/login")
    wait = WebDriverWait(driver, timeout)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "a[href*='oauth_login']"))).click()
    wait.until(lambda d: d.current_url.startswith(f"{idp.issuer}/interaction/"))
    wait.until(ec.presence_of_element_located((By.ID, "login"))).send_keys(ANN)
    driver.find_element(By.ID, "password").send_keys(USERS[ANN]["password"])
    driver.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.current_url.startswith(hub.url) and "oauth_callback" not in d.current_url)


def hub_users(hub):
    return sorted(u["name"] for u in hub.api("GET", "/users").json())


def test_oidc_login_and_lti_launch_are_one_user_and_one_account(multi_hub, browser):
    hub, idp = multi_hub
    # the login page offers the OpenID Connect login
    page = requests.get(f"{hub.url}/hub/login", timeout=30).text
    assert "/hub/oauth_login" in page and 'name="password"' not in page, page[:2000]

    # 1. OpenID Connect: the account is made at the first spawn
    idp_login(browser, hub, idp)
    spawn_in_browser(browser, hub, ANN)
    uid = pwd.getpwnam(ANN).pw_uid
    assert UID_MIN <= uid <= UID_MAX
    assert hub.api("GET", f"/users/{ANN}").json()["groups"] == ["jupyter"]  # the IdP's groups
    hub.api("DELETE", f"/users/{ANN}/server")
    assert wait_no_server(hub, ANN)

    # 2. the same person from the LMS (login name as the LMS spells it: normalised the same)
    session, reply = launch(hub.url, MOODLE.signed_launch(hub.url, COURSE, "4711", person="JBM-Multi-Ann"))
    assert reply.status_code == 302, f"{reply.status_code} {reply.text[:500]}\n{hub.log()}"
    assert hub_users(hub) == [ANN]  # no second hub user
    model = hub.api("GET", f"/users/{ANN}").json()
    assert (model.get("auth_state") or {}).get("context_id") == COURSE, model
    assert model["groups"] == ["jupyter"]  # a launch carries no groups: the IdP's stay
    form = session.get(f"{hub.url}/hub/spawn", timeout=30)
    assert form.status_code == 200 and f"Image for your course {COURSE}" in form.text, form.text[:2000]
    xsrf = re.search(r'xsrf_token: "([^"]+)"', form.text).group(1)
    reply = session.post(f"{hub.url}/hub/spawn", data={"_xsrf": xsrf, "resource_profile": "Tiny"},
                         allow_redirects=False, timeout=60)
    assert reply.status_code in (302, 303), f"{reply.status_code} {reply.text[:800]}\n{hub.log()}"
    hub.wait_ready(ANN, timeout=120)
    container = container_of(ANN)
    assert inspect(container)["Config"]["Image"] == COURSE_IMAGE  # the course's image
    assert dexec(container, "id", "-u").stdout.strip() == str(uid)  # the same host account
    assert pwd.getpwnam(ANN).pw_uid == uid


def test_bad_launches_are_refused(multi_hub):
    hub, _ = multi_hub
    tampered = MOODLE.signed_launch(hub.url, COURSE, "4711", person=ANN).replace(COURSE, "jbm-multi-course-b")
    _, reply = launch(hub.url, tampered)
    assert reply.status_code == 401 and "oauth_signature" in reply.text, reply.text[:500]
    _, reply = launch(hub.url, MOODLE.signed_launch(hub.url, COURSE, "4711", person=ANN, secret="not-the-secret"))
    assert reply.status_code == 401, reply.text[:500]
    # a good signature, but a login name no host account can have: 400 naming it
    _, reply = launch(hub.url, MOODLE.signed_launch(hub.url, COURSE, "4711", person="Ann Smith"))
    assert reply.status_code == 400, f"{reply.status_code} {reply.text[:800]}"
    assert "LTI11Authenticator: user name" in reply.text and "ann smith" in reply.text, reply.text[:2000]
    assert "allowed: 1-32 characters" in reply.text, reply.text[:2000]
    assert hub_users(hub) == []
