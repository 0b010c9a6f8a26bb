"""The options form driven in a real browser (headless Chromium from Debian's packages):
log in through PAM, pick a profile and an image, move a slider, start, land in JupyterLab."""
import json
import subprocess

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from profilespawner import labels
from tests.harness.browser import chromium, hub_login

from .support import shipped_profiles, start_hub

pytestmark = pytest.mark.integration


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_form_in_browser_spawns_chosen_profile(hub_factory, system_users, singleuser_image, browser):
    data, fitting = shipped_profiles(singleuser_image)
    assert fitting[:2] == ["Tiny", "Small"]
    data["image_profiles"]["Lab"] = {"image": singleuser_image, "description": "JupyterLab, second entry"}
    data["user_profiles"]["default"]["allowed_images"] = ["SingleUser", "Lab"]
    user, password = "h1browser", "h1-Secret-pw"
    system_users(user, password=password)
    hub = start_hub(hub_factory, data)
    wait = WebDriverWait(browser, 180)

    hub_login(browser, hub.url, user, password)
    browser.get(f"{hub.url}/hub/spawn")
    form = wait.until(ec.presence_of_element_located((By.ID, "spawn_form")))

    profile = Select(form.find_element(By.NAME, "resource_profile"))
    assert profile.first_selected_option.get_attribute("value") == "Tiny"  # first allowed preselected
    cpu = form.find_element(By.NAME, "cpu_limit")
    assert float(cpu.get_attribute("max")) == 1.0
    profile.select_by_value("Small")
    assert float(cpu.get_attribute("max")) == 2.0  # the script moved the bound with the profile
    assert float(cpu.get_attribute("value")) == 2.0
    Select(form.find_element(By.NAME, "image_profile")).select_by_value("Lab")
    cpu.send_keys(Keys.LEFT * 5)  # five 0.1-core steps down: 1.5 cores
    assert float(cpu.get_attribute("value")) == pytest.approx(1.5)
    guarantee = form.find_element(By.NAME, "mem_guarantee")
    guarantee.send_keys(Keys.RIGHT * 4)  # four 64 MiB steps up: 256 MiB guaranteed
    form.find_element(By.CSS_SELECTOR, "[type=submit]").click()

    wait.until(lambda d: f"/user/{user}/lab" in d.current_url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#main, .jp-LabShell, #jp-main-dock-panel")))

    info = json.loads(subprocess.run(["docker", "inspect", f"jupyter-{user}"], capture_output=True,
                                     text=True, check=True).stdout)[0]
    lab = info["Config"]["Labels"]
    assert lab[labels.RESOURCE_PROFILE] == "Small" and lab[labels.IMAGE_PROFILE] == "Lab"
    assert info["HostConfig"]["CpuQuota"] == 150_000
    assert info["HostConfig"]["MemoryReservation"] == 256 * 1024**2
