"""The spawn options form, driven in a real browser: log in, choose, move a slider, start, and
land in JupyterLab in a container that has exactly the chosen limit."""
import json
import subprocess

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.harness.browser import chromium, hub_login

pytestmark = pytest.mark.integration
USER, PASSWORD = "jbmform", "form-pass-7"


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_form_in_browser_starts_jupyterlab_with_chosen_limits(hub_factory, system_users, browser):
    system_users(USER, password=PASSWORD)
    hub = hub_factory()
    hub_login(browser, hub.url, USER, PASSWORD)
    browser.get(f"{hub.url}/hub/spawn")
    wait = WebDriverWait(browser, 30)
    profile = Select(wait.until(lambda d: d.find_element(By.NAME, "resource_profile")))
    assert profile.first_selected_option.get_attribute("value") == "Tiny"  # first allowed
    assert "can still be guaranteed" in browser.find_element(By.CLASS_NAME, "pss-free").text
    profile.select_by_value("Small")
    Select(browser.find_element(By.NAME, "image_profile")).select_by_value("SingleUser")
    cpu = browser.find_element(By.NAME, "cpu_limit")
    assert cpu.get_attribute("max") == "1"  # the slider follows the chosen profile
    for _ in range(3):  # 1.0 -> 0.7 cores in 0.1 steps, as a person with arrow keys
        cpu.send_keys(Keys.ARROW_LEFT)
    assert float(cpu.get_attribute("value")) == pytest.approx(0.7)
    browser.find_element(By.CSS_SELECTOR, "form#spawn_form [type=submit]").click()

    WebDriverWait(browser, 180).until(lambda d: f"/user/{USER}/lab" in d.current_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "jp-main-dock-panel"))

    inspect = json.loads(subprocess.run(["docker", "inspect", f"jupyter-{USER}"],
                                        capture_output=True, text=True, check=True).stdout)[0]
    host_config = inspect["HostConfig"]
    assert host_config["CpuQuota"] / host_config["CpuPeriod"] == pytest.approx(0.7)
    assert host_config["Memory"] == 1024**3
    assert inspect["Config"]["Labels"]["org.jupyterhub-baremetal.resource-profile"] == "Small"
