"""dockerspawner's contract through a real hub and Docker: the operator's own settings are
named when the profiles replace them, combine with ours where they can (extra_host_config
lists, a stricter pids_limit), never weaken our security defaults, and profiles may live in
jupyterhub_config.py (pharma253's DockerSystemProfileSpawner style)."""
import pytest

from profilespawner import labels

from .support import container_exists, inspect, shipped_profiles, spawn, spawn_ready, start_hub

pytestmark = pytest.mark.integration

M = 1024**2


def test_operator_settings_are_kept_or_named_and_inline_profiles_work(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    inline = {
        "resource_profiles": {"Inline": {"cpu_limit": 0.5, "mem_limit": "384M"}},
        "image_profiles": {"InlineImage": {"image": singleuser_image}},
        "user_profiles": {"default": {"allowed_resources": ["Inline"], "allowed_images": ["InlineImage"]}},
    }
    user = "h1contract"
    system_users(user)
    hub = start_hub(hub_factory, data, extra=f"""
c.DockerSystemProfileSpawner.profiles_file = "/nonexistent/profiles.yaml"   # so the inline ones apply
c.DockerSystemProfileSpawner.resource_profiles = {inline["resource_profiles"]!r}
c.DockerSystemProfileSpawner.image_profiles = {inline["image_profiles"]!r}
c.DockerSystemProfileSpawner.user_profiles = {inline["user_profiles"]!r}
c.DockerSpawner.image = "site/never-used:1"
c.DockerSpawner.mem_limit = "8G"
c.DockerSpawner.extra_host_config = {{"pids_limit": 64, "cap_drop": ["NET_RAW"], "dns": ["192.0.2.53"]}}
""")
    spawn_ready(hub, user, {})
    info = inspect(f"jupyter-{user}")
    hc = info["HostConfig"]
    assert info["Config"]["Labels"][labels.RESOURCE_PROFILE] == "Inline"
    assert info["Config"]["Image"] == singleuser_image
    assert hc["Memory"] == 384 * M and hc["CpuQuota"] == 50_000
    assert hc["PidsLimit"] == 64                       # the operator's stricter limit is kept
    assert "NET_RAW" in hc["CapDrop"] and "ALL" in hc["CapDrop"]  # combined, not replaced
    assert "no-new-privileges" in hc["SecurityOpt"] and hc["ReadonlyRootfs"] is True
    assert hc["Dns"] == ["192.0.2.53"]
    log = hub.log_path.read_text()
    assert "c.DockerSpawner.image = 'site/never-used:1' is ignored" in log
    assert "c.DockerSpawner.mem_limit = '8G' is ignored" in log
    assert "extra_host_config['pids_limit'] = 64 is stricter than pids_limit = 1024; keeping 64" in log


def test_operator_setting_that_weakens_isolation_is_refused_by_name(hub_factory, system_users, singleuser_image):
    data, _ = shipped_profiles(singleuser_image)
    user = "h1privileged"
    system_users(user)
    hub = start_hub(hub_factory, data, extra='\nc.DockerSpawner.extra_host_config = {"privileged": True}\n')
    r = spawn(hub, user, {})
    assert r.status_code in (201, 202, 409), r.text
    message = "extra_host_config['privileged'] = True is refused"
    import time
    deadline = time.monotonic() + 60
    while message not in hub.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert message in hub.log_path.read_text(), hub.log()
    assert not container_exists(f"jupyter-{user}")
