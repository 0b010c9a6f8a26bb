"""What jupyterhub_config.py needs to run the panel: the service, its role, the templates.

WHY: the installer's jupyterhub_config.py should not repeat the panel's URL,
command or scopes; it calls these helpers so the facts live next to the code.
"""

import os
import sys

SERVICE_NAME = "resources"
DEFAULT_PORT = 9946
HUB_TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_templates")


def service_definition(
    user,
    port=DEFAULT_PORT,
    snapshot_url=None,
    sample_interval=None,
    history_seconds=None,
    python=None,
    name=SERVICE_NAME,
):
    """The entry for `c.JupyterHub.services`: a hub-managed service run as `user`.

    `snapshot_url`: the exporter's snapshot URL, or a list of every node's on a swarm.
    `user` must be an unprivileged system user (the hub starts the process
    with that uid when it runs as root); the panel only reads the exporter on
    loopback, so it needs no rights on the host.
    """
    if not user or not isinstance(user, str):
        raise ValueError(f"service_definition user must be a system user name, got {user!r}")
    if user == "root":
        raise ValueError("service_definition user 'root': the panel must run unprivileged")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"service_definition port {port!r}: allowed: an integer 1-65535")
    command = [python or sys.executable, "-m", "hubmetrics.panel"]
    if isinstance(snapshot_url, (list, tuple)):  # every node's exporter (a swarm), the hub's first
        command += [f"--snapshot-urls={url}" for url in snapshot_url]
        snapshot_url = None
    for flag, value in (
        ("--snapshot-url", snapshot_url),
        ("--sample-interval", sample_interval),
        ("--history-seconds", history_seconds),
    ):
        if value is not None:
            command.append(f"{flag}={value}")
    return {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": command,
        "user": user,
        "oauth_no_confirm": True,
        "display": True,
    }


def user_access_scopes(name=SERVICE_NAME):
    """The one scope every user needs to log in to the panel."""
    return [f"access:services!service={name}"]


def load_roles(name=SERVICE_NAME):
    """Entries for `c.JupyterHub.load_roles`: the default 'user' role plus panel access.

    The panel itself needs no scopes (it identifies users with their own OAuth
    token and reads numbers from the exporter), so only users get one.
    Redefining 'user' replaces the hub's default; keep 'self' in it.
    """
    return [
        {
            "name": "user",
            "description": "Standard user privileges, plus access to the resources panel",
            "scopes": ["self", *user_access_scopes(name)],
        }
    ]
