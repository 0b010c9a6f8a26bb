"""Helpers for the spawner's integration tests (real hub, real Docker engine)."""
import json
import os
import subprocess
import time
from pathlib import Path

import requests
import yaml

import profilespawner
from profilespawner.capacity import detect_host

EXAMPLE = Path(profilespawner.__file__).with_name("profiles.example.yaml")


# Other tests run labelled user containers with guarantees and GPUs on this same engine; our
# hubs count only their own containers (scope_labels), as separate hubs on one engine would.
SCOPE_LABEL, SCOPE_VALUE = "org.jupyterhub-baremetal.test-scope", f"h1-{os.getpid()}"
SCOPE = f"\nc.DockerSystemProfileSpawner.scope_labels = {{{SCOPE_LABEL!r}: {SCOPE_VALUE!r}}}\n"


def start_hub(hub_factory, profiles, extra=""):
    return hub_factory(profiles=profiles, extra_config=SCOPE + extra)


def fitting_names(data=None):
    """Resource profiles of the shipped example that fit this machine (and need no GPU)."""
    data = data or yaml.safe_load(EXAMPLE.read_text())
    host = detect_host()
    return [name for name, spec in data["resource_profiles"].items()
            if spec["cpu_limit"] <= host.cpus and not spec.get("gpus")
            and profilespawner.sizes.parse_size(spec["mem_limit"]) <= host.mem_bytes]


def shipped_profiles(image):
    """The shipped example profiles, with the test image and only the resource profiles that fit
    this machine (the others would be capped, which is tested in unit tests)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    fitting = fitting_names(data)
    data["image_profiles"] = {"SingleUser": {"image": image, "description": "JupyterLab"}}
    data["user_profiles"] = {"default": {**data["user_profiles"]["default"],
                                         "allowed_resources": fitting, "allowed_images": ["SingleUser"]}}
    return data, fitting


def inspect(name):
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def container_exists(name):
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^/{name}$"], capture_output=True, text=True)
    return bool(out.stdout.strip())


def dexec(name, *cmd, user=None, timeout=120):
    args = ["docker", "exec"] + (["-u", user] if user else []) + [name, *cmd]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def cgroup_file(name, v1, v2):
    """A file of the container's own cgroup, read from inside it (v1 or v2 layout)."""
    r = dexec(name, "cat", f"/sys/fs/cgroup/{v1}")
    if r.returncode != 0:
        r = dexec(name, "cat", f"/sys/fs/cgroup/{v2}")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def spawn(hub, user, options=None, raw=None):
    hub.api("POST", f"/users/{user}")  # 201 or 409 (exists): both fine
    if raw is not None:
        return hub.api("POST", f"/users/{user}/server", data=raw, headers={"Content-Type": "application/json"})
    return hub.api("POST", f"/users/{user}/server", json=options if options is not None else None)


def spawn_ready(hub, user, options):
    r = spawn(hub, user, options)
    assert r.status_code in (201, 202), f"{r.status_code} {r.text}\n{hub.log()}"
    return hub.wait_ready(user)


def stop_server(hub, user):
    hub.api("DELETE", f"/users/{user}/server")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        server = hub.api("GET", f"/users/{user}").json().get("servers", {}).get("")
        if not server:
            return
        time.sleep(0.3)
    raise AssertionError(f"{user}'s server did not stop")


def through_proxy(hub, user, path, method="GET", **kwargs):
    token = hub.user_token(user)
    return requests.request(method, f"{hub.url}/user/{user}/{path}",
                            headers={"Authorization": f"token {token}"}, timeout=30, **kwargs)
