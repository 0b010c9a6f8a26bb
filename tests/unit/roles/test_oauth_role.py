"""The jupyterhub role with jupyterhub_authenticator: oauth, run for real by ansible-playbook on
localhost (nothing is changed: only the preflight and the config template into a temporary
directory): a missing required setting stops the preflight naming it; good settings render a
jupyterhub_config.py that configures GenericOAuthenticator, accounts at first login and
shutdown_on_logout."""
import pytest

from tests.harness.jupyterhub_role import converge, failure, rendered

GOOD = {"client_id": "hub", "client_secret": "s3cret", "oauth_callback_url": "https://hub.example.org/hub/oauth_callback",
        "authorize_url": "https://sso.example.org/auth", "token_url": "https://sso.example.org/token",
        "userdata_url": "https://sso.example.org/userinfo", "username_claim": "preferred_username",
        "manage_groups": True, "auth_state_groups_key": "oauth_user.groups"}


@pytest.mark.parametrize("drop,named", [
    ("client_secret", "jupyterhub_oauth_settings.client_secret is missing or empty"),
    ("oauth_callback_url", "jupyterhub_oauth_settings.oauth_callback_url is missing or empty"),
    ("token_url", "jupyterhub_oauth_settings.token_url is missing or empty"),
    ("userdata_url", "userdata_url is missing or empty (or set userdata_from_id_token: true)"),
])
def test_preflight_names_a_missing_required_setting(tmp_path, drop, named):
    settings = {k: v for k, v in GOOD.items() if k != drop}
    message = failure(converge(tmp_path, jupyterhub_oauth_settings=settings))
    assert named in message and "required: client_id, client_secret, oauth_callback_url" in message


def test_preflight_names_a_bad_url_and_groups_without_manage_groups(tmp_path):
    settings = {**GOOD, "token_url": "sso.example.org/token", "manage_groups": False}
    message = failure(converge(tmp_path, jupyterhub_oauth_settings=settings))
    assert 'jupyterhub_oauth_settings.token_url="sso.example.org/token" must be an http(s):// URL' in message
    assert 'jupyterhub_allowed_groups=["jupyter"]' in message and "needs jupyterhub_oauth_settings.manage_groups: true" in message


@pytest.mark.parametrize("variables,named", [
    ({"jupyterhub_authenticator": "pam", "jupyterhub_create_system_users": True}, "false with pam"),
    ({"jupyterhub_account_uid_min": 500}, "1000 <= jupyterhub_account_uid_min <= jupyterhub_account_uid_max"),
    ({"jupyterhub_account_uid_min": 30000, "jupyterhub_account_uid_max": 20000}, "jupyterhub_account_uid_max=20000"),
])
def test_preflight_refuses_bad_account_settings(tmp_path, variables, named):
    message = failure(converge(tmp_path, jupyterhub_oauth_settings=GOOD, **variables))
    assert named in message


def test_good_settings_render_the_oidc_config(tmp_path, monkeypatch):
    run = converge(tmp_path, jupyterhub_oauth_settings=GOOD, jupyterhub_create_system_users=True,
                   jupyterhub_account_uid_min=40000, jupyterhub_account_uid_max=40999,
                   jupyterhub_shutdown_on_logout=True)
    assert run.returncode == 0, run.stdout[-3000:]
    c = rendered(tmp_path, monkeypatch)
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert {k: c.GenericOAuthenticator[k] for k in GOOD} == GOOD
    assert c.Authenticator.allowed_groups == {"jupyter"}
    assert c.JupyterHub.shutdown_on_logout is True
    spawner = c.DockerSystemProfileSpawner
    assert (spawner.create_system_users, spawner.account_uid_min, spawner.account_uid_max) == (True, 40000, 40999)
    assert spawner.home_mode == 0o700


def test_defaults_keep_pam_without_accounts_or_shutdown(tmp_path, monkeypatch):
    run = converge(tmp_path, jupyterhub_authenticator="pam", jupyterhub_allowed_groups=["jupyterhub-users"])
    assert run.returncode == 0, run.stdout[-3000:]
    c = rendered(tmp_path, monkeypatch)
    assert c.JupyterHub.authenticator_class == "pam" and "enable_auth_state" not in c.Authenticator
    assert c.JupyterHub.shutdown_on_logout is False
    assert c.DockerSystemProfileSpawner.create_system_users is False
