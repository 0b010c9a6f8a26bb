"""What the panel's tests and their fixtures (conftest.py) share, imported by everyone under this
one absolute name: pytest imports conftest.py under a name of its own (the package's,
"panel.conftest"), so a test module importing the conftest by its path, or a relative import,
would make a second copy, with another random PASSWORD."""
import json
import secrets

import requests

from tests.harness import processes

PREFIX = "pntest"
USERS = {  # name -> (cpu limit, memory limit bytes, gpus label)
    f"{PREFIX}-alice": ("0.5", str(256 << 20), "0"),
    f"{PREFIX}-bob": ("0.3", str(192 << 20), "1"),
}
ADMIN = f"{PREFIX}-admin"
PANEL_USER = f"{PREFIX}-panel"
PASSWORD = "pntest-" + secrets.token_hex(8)

def wait_for(what, check, timeout=120.0, interval=0.5):
    return processes.wait_for(what, check, timeout, interval, (requests.RequestException, ValueError, KeyError))


def prom_query(url, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = at
    reply = requests.get(f"{url}/api/v1/query", params=params, timeout=10).json()
    if reply["status"] != "success":
        raise AssertionError(f"{expr}: {reply}")
    return reply["data"]["result"]


def json_dump(obj):
    return json.dumps(obj, indent=1, sort_keys=True)
