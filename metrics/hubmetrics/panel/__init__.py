"""The resource panel: a JupyterHub service showing users their own resource use.

For jupyterhub_config.py::

    from hubmetrics import panel
    c.JupyterHub.services.append(panel.service_definition(user="hubmetrics-panel"))
    c.JupyterHub.load_roles.extend(panel.load_roles())
    c.JupyterHub.template_paths.insert(0, panel.HUB_TEMPLATES_DIR)
"""

from .hubconfig import (
    DEFAULT_PORT,
    HUB_TEMPLATES_DIR,
    SERVICE_NAME,
    load_roles,
    service_definition,
    user_access_scopes,
)

__all__ = [
    "DEFAULT_PORT",
    "HUB_TEMPLATES_DIR",
    "SERVICE_NAME",
    "load_roles",
    "service_definition",
    "user_access_scopes",
]
