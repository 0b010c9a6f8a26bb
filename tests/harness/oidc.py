"""A real OpenID provider for tests: npm `oidc-provider` (panva) on loopback (oidc_idp.mjs).

`make oidc-provider` installs the pinned version into the cache (JBM_OIDC_PROVIDER names its
lib/index.js). One client (the test hub's /hub/oauth_callback) and users with passwords and
groups; its login form checks the password.
"""
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .hub import free_port
from .processes import stop_group, wait_until_ready

OIDC_PROVIDER_CANDIDATES = (
    os.environ.get("JBM_OIDC_PROVIDER", ""),
    "/var/cache/jbm/oidc-provider-9.13.3/node_modules/oidc-provider/lib/index.js",  # make oidc-provider
)
SCRIPT = Path(__file__).with_name("oidc_idp.mjs")


def provider_module() -> str:
    for candidate in OIDC_PROVIDER_CANDIDATES:
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("oidc-provider not found: `make deps` installs it with npm (or set JBM_OIDC_PROVIDER)")


@dataclass
class IdP:
    workdir: Path
    redirect_uri: str
    users: dict  # login -> {password, groups}
    client_id: str = "jbm-oidc-hub"
    client_secret: str = "jbm-oidc-secret-0123456789abcdef0123456789"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "idp.log"

    def start(self, timeout: float = 20.0) -> "IdP":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "idp.json"
        config.write_text(json.dumps({
            "port": self.port, "users": self.users,
            "clients": [{"client_id": self.client_id, "client_secret": self.client_secret,
                         "redirect_uris": [self.redirect_uri]}]}))
        node = shutil.which("node") or "/usr/bin/node"
        self.process = subprocess.Popen(
            [node, str(SCRIPT), str(config)], env={**os.environ, "JBM_OIDC_PROVIDER": provider_module()},
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_ready(self.process, lambda: requests.get(f"{self.issuer}/.well-known/openid-configuration",
                                                            timeout=2).ok, timeout, "oidc-provider", self.log)
        return self

    def stop(self) -> None:
        stop_group(self.process, 10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def discovery(self) -> dict:
        return requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).json()

    def hub_config(self) -> str:
        """jupyterhub_config.py lines: GenericOAuthenticator as this provider's client, with its
        groups claim as the hub groups (manage_groups) and "jupyter" the group that may log in."""
        conf = self.discovery()
        return f"""\
c.GenericOAuthenticator.client_id = {self.client_id!r}
c.GenericOAuthenticator.client_secret = {self.client_secret!r}
c.GenericOAuthenticator.oauth_callback_url = {self.redirect_uri!r}
c.GenericOAuthenticator.authorize_url = {conf["authorization_endpoint"]!r}
c.GenericOAuthenticator.token_url = {conf["token_endpoint"]!r}
c.GenericOAuthenticator.userdata_url = {conf["userinfo_endpoint"]!r}
c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = {{"jupyter"}}
"""
