"""Headless Chromium from Debian's packages, driven by Selenium through the system chromedriver.

The flags keep Chromium from calling out (the network here is closed) and let it run as root.
"""
import shutil
import tempfile
from urllib.parse import quote

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1024")


def chromium() -> webdriver.Chrome:
    """A fresh browser with an empty profile; the caller quits it."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='jbm-chromium-')}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def hub_login(driver: webdriver.Chrome, hub_url: str, username: str, password: str,
              timeout: float = 30, next_path: str = "") -> None:
    """Log in through the hub's own login page, as a person would (then go to `next_path`)."""
    driver.get(f"{hub_url}/hub/login" + (f"?next={quote(next_path, safe='')}" if next_path else ""))
    wait = WebDriverWait(driver, timeout)
    wait.until(EC.presence_of_element_located((By.ID, "username_input"))).send_keys(username)
    driver.find_element(By.ID, "password_input").send_keys(password)
    driver.find_element(By.ID, "login_submit").click()
    wait.until(lambda d: "/hub/login" not in d.current_url)
