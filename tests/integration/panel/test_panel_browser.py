"""The resource panel in a real browser (Debian's headless Chromium via Selenium), logged in
through the hub's own login page (PAM, real system users), reading the real exporter.

Each user sees their own numbers and nobody else's; the API refuses cross-user reads; admins
see the table; nothing served carries a token.
"""
import json
import re
import os

import pytest
import requests
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.harness.browser import chromium, hub_login
from tests.integration.panel.support import ADMIN, PASSWORD, USERS

pytestmark = pytest.mark.integration

USER_A, USER_B = list(USERS)


def _number(text):
    try:
        return float(text)
    except ValueError:
        return -1.0


def fmt_bytes(n):
    """The page's bytes() formatting (static/panel.js)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} {units[i]}" if i == 0 else f"{n:.1f} {units[i]}"


def parse_bytes(text):
    number, unit = text.split()
    return float(number) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)


class Browser:
    """One browser session (own cookies) logged in as one user."""

    def __init__(self, hub, user):
        self.driver = chromium()
        self.hub = hub
        self.user = user
        self.served = {}  # url -> text, for the token scan

    def login(self):
        hub_login(self.driver, self.hub.url, self.user, PASSWORD, next_path="/hub/home")
        self.wait(lambda d: d.current_url.endswith("/hub/home"), "the hub's home page after login")
        self.keep()
        return self

    def wait(self, condition, what, timeout=90):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.3).until(condition)
        except TimeoutException:
            status = self.driver.find_elements(By.ID, "status")
            raise AssertionError(
                f"{self.user}: gave up waiting for {what}; at {self.driver.current_url}; page status: "
                f"{status[0].text if status else '-'}\n{self.driver.page_source[:3000]}") from None

    def keep(self):
        self.served[self.driver.current_url] = self.driver.page_source

    def text(self, element_id):
        return self.driver.find_element(By.ID, element_id).text

    def open_panel_from_home(self, expect_usage=True):
        """Follow the hub's nav-bar link; the panel logs in through the hub's OAuth."""
        self.driver.find_element(By.ID, "nav-resources").click()
        self.wait(lambda d: d.current_url == self.hub.panel_url, "the panel after the OAuth round trip")
        if expect_usage:
            self.wait(lambda d: _number(d.find_element(By.ID, "cpu-use").text) > 0.05,
                      "a busy CPU rate on the panel (two exporter samples while the loop runs)")
        self.keep()

    def fetch(self, path):
        """GET a panel URL from inside the panel page, as its script does (same origin, the
        browser's cookies, the page's XSRF token)."""
        status, body = self.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch(arguments[0], {credentials: 'same-origin',
                                 headers: {'X-XSRFToken': (document.getElementById('panel') || document.body).dataset.xsrf || ''}})
              .then(r => r.text().then(t => done([r.status, t])))
              .catch(e => done([0, String(e)]));""", self.hub.panel_url + path)
        self.served[self.hub.panel_url + path] = body
        return status, body

    def quit(self):
        self.driver.quit()


@pytest.fixture
def browser(panel_hub, busy_containers):
    sessions = []

    def login(user):
        b = Browser(panel_hub, user).login()
        sessions.append(b)
        return b

    yield login
    for b in sessions:
        b.quit()


def snapshot_of(exporter, user):
    return requests.get(f"{exporter}/api/snapshot", timeout=5).json()["users"][user]


def assert_own_numbers(b, exporter, user, other):
    """The page shows `user`'s limits, GPU and a plausible CPU rate, and nothing of `other`."""
    mine = snapshot_of(exporter, user)
    assert b.text("user-name") == user
    assert b.text("mem-limit") == fmt_bytes(mine["memory_limit_bytes"])
    assert b.text("cpu-limit") == f"{mine['cpu_limit_cores']:.2f}"
    assert b.text("gpu-ids") == "GPUs: " + ", ".join(mine["gpus"])
    assert b.text("gpu-use") == fmt_bytes(mine["gpu_memory_used_bytes"])
    cpu = float(b.text("cpu-use"))
    assert 0.05 < cpu <= mine["cpu_limit_cores"] * 1.2, f"{user} CPU {cpu} vs limit {mine['cpu_limit_cores']}"
    shown_mem = parse_bytes(b.text("mem-use"))
    assert shown_mem == pytest.approx(mine["memory_working_set_bytes"], rel=0.25)
    assert b.text("host-cpus") == str(os.cpu_count())
    page = b.driver.page_source
    assert other not in page
    theirs = snapshot_of(exporter, other)
    assert "GPUs: " + ", ".join(theirs["gpus"]) not in page
    assert not b.driver.find_elements(By.ID, "admin")


def test_each_user_sees_only_their_own_numbers(browser, exporter):
    a = browser(USER_A)
    a.open_panel_from_home()
    assert_own_numbers(a, exporter, USER_A, USER_B)
    b = browser(USER_B)
    b.open_panel_from_home()
    assert_own_numbers(b, exporter, USER_B, USER_A)


def test_api_refuses_cross_user_reads(browser, panel_hub):
    a = browser(USER_A)
    a.open_panel_from_home()
    status, body = a.fetch("api/me")
    me = json.loads(body)
    assert status == 200 and me["user"] == USER_A and me["usage"]["containers"]
    assert USER_B not in body
    assert len(me["history"]) >= 2
    status, body = a.fetch(f"api/me?user={USER_B}")
    assert status == 400 and USER_B not in body.replace("got: user", "")
    status, body = a.fetch("api/users")
    assert status == 403 and USER_B not in body
    # without the browser's cookie: no numbers at all
    for path in ("api/me", "api/users", "api/host"):
        reply = requests.get(panel_hub.panel_url + path, timeout=10, allow_redirects=False)
        assert reply.status_code == 403, path
    page = requests.get(panel_hub.panel_url, timeout=10, allow_redirects=False)
    assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["Location"]


def test_admin_sees_every_user(browser):
    admin = browser(ADMIN)
    admin.open_panel_from_home(expect_usage=False)
    admin.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#users-table tbody tr")) >= len(USERS),
               "the admin table")
    rows = {r.get_attribute("data-user") for r in
            admin.driver.find_elements(By.CSS_SELECTOR, "#users-table tbody tr")}
    assert set(USERS) <= rows
    # the admin runs nothing: their own part says so instead of showing empty numbers
    assert admin.driver.find_element(By.ID, "no-server").is_displayed()
    assert not admin.driver.find_element(By.ID, "usage-details").is_displayed()
    status, body = admin.fetch("api/users")
    assert status == 200 and set(USERS) <= set(json.loads(body)["users"])


def test_spawn_page_shows_free_capacity(browser):
    admin = browser(ADMIN)  # has no server, so /hub/spawn shows the form
    d = admin.driver
    d.get(f"{admin.hub.url}/hub/spawn")
    admin.wait(lambda d: d.find_elements(By.ID, "spawn-resources"), "the capacity box on the spawn page")
    admin.keep()
    assert d.find_element(By.CSS_SELECTOR, "#spawn-resources a").get_attribute("href") == admin.hub.panel_url
    d.switch_to.frame(d.find_element(By.CSS_SELECTOR, "#spawn-resources iframe"))
    admin.wait(lambda d: d.find_element(By.ID, "host-cpus").text == str(os.cpu_count()),
               "the host's CPUs in the capacity frame")
    assert "GiB" in d.find_element(By.ID, "host-mem").text
    assert d.find_element(By.ID, "host-gpus").text == "0 of 2"  # both fake GPUs held by containers
    admin.keep()
    d.switch_to.default_content()


def test_no_token_in_anything_served(browser, panel_hub):
    collected = {}
    for user in (USER_A, ADMIN):
        b = browser(user)
        b.open_panel_from_home(expect_usage=user != ADMIN)
        for path in ("api/me", "api/users", "api/host", "capacity", "static/panel.js", "static/panel.css"):
            b.fetch(path)
        b.driver.get(f"{panel_hub.url}/hub/spawn")
        b.keep()
        collected.update({(user, url): text for url, text in b.served.items()})
    tokens = {"panel service token": panel_hub.panel_token, "prometheus token": panel_hub.metrics_token,
              "harness admin token": panel_hub.token}
    assert len(collected) >= 16
    for url, text in collected.items():
        for what, token in tokens.items():
            assert token not in text, f"{what} served at {url}"


def test_panel_page_is_the_hubs_page(browser):
    a = browser(USER_A)
    a.open_panel_from_home()
    d = a.driver
    sheets = [e.get_attribute("href") for e in d.find_elements(By.CSS_SELECTOR, "link[rel=stylesheet]")]
    assert any(s.split("?")[0].endswith("/hub/static/css/style.min.css") for s in sheets), sheets
    assert d.find_element(By.CSS_SELECTOR, "nav.navbar #nav-resources").is_displayed()
    assert d.find_element(By.CSS_SELECTOR, "nav.navbar img[src$='/hub/logo']")
    # the hub's inline script ran (its hash is in the CSP) and its stylesheet applies
    assert d.execute_script("return window.jhdata && window.jhdata.base_url") == "/hub/"
    assert d.execute_script("return getComputedStyle(document.querySelector('nav.navbar')).display") == "flex"


def test_history_charts_have_scales_units_and_the_current_value(browser):
    a = browser(USER_A)
    a.open_panel_from_home()
    d = a.driver
    a.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-cpu polyline")) == 1, "the CPU chart's line")
    for chart, unit in (("chart-cpu", r"\d\.\d\d cores"), ("chart-mem", r"\d+(\.\d)? (B|KiB|MiB|GiB)")):
        ticks = [t.text for t in d.find_elements(By.CSS_SELECTOR, f"#{chart} text.y-tick")]
        assert len(ticks) == 3 and all(re.fullmatch(unit, t) for t in ticks), ticks
        times = [t.text for t in d.find_elements(By.CSS_SELECTOR, f"#{chart} text.x-tick")]
        assert len(times) == 2 and times[1] == "now" and re.fullmatch(r"−\d+ (s|min)", times[0]), times
        assert re.fullmatch(unit, a.text(f"{chart}-now")), a.text(f"{chart}-now")
    # the chart's scale reaches the limit (the dashed line), the current value is the table's
    assert d.find_elements(By.CSS_SELECTOR, "#chart-cpu line.limit")
    top = d.find_elements(By.CSS_SELECTOR, "#chart-cpu text.y-tick")[2].text
    assert float(top.split()[0]) >= float(a.text("cpu-limit"))


def test_capacity_line_on_the_spawn_page_has_no_scroll_bar(browser):
    admin = browser(ADMIN)
    d = admin.driver
    d.get(f"{admin.hub.url}/hub/spawn")
    admin.wait(lambda d: d.find_elements(By.ID, "spawn-resources"), "the capacity box on the spawn page")
    frame = d.find_element(By.CSS_SELECTOR, "#spawn-resources iframe")
    d.switch_to.frame(frame)
    admin.wait(lambda d: d.find_element(By.ID, "host-cpus").text == str(os.cpu_count()), "the capacity line")
    overflow = d.execute_script("var e = document.documentElement;"
                                "return [e.scrollHeight - e.clientHeight, e.scrollWidth - e.clientWidth,"
                                " getComputedStyle(document.body).overflow];")
    d.switch_to.default_content()
    assert overflow[0] <= 0 and overflow[1] <= 0 and overflow[2] == "hidden", overflow
    assert frame.get_attribute("scrolling") == "no"
