"""The jupyterhub role with several logins on one hub (jupyterhub_authenticator: oauth+lti11):
the preflight checks each part with its own checks and names a wrong value or a missing part;
good settings render a config whose CombinedAuthenticator makes both authenticators, each from
its own section."""
import pytest

from profilespawner.logins import CombinedAuthenticator

from tests.harness.jupyterhub_role import converge, failure, rendered
from .test_oauth_role import GOOD as OAUTH

LTI11 = {"consumers": {"moodle": "s3cret"}, "username_key": "ext_user_username", "allow_all": True}


def test_combined_setting_renders_both_logins(tmp_path, monkeypatch):
    run = converge(tmp_path, jupyterhub_authenticator="oauth+lti11", jupyterhub_oauth_settings=OAUTH,
                   jupyterhub_lti11_settings=LTI11)
    assert run.returncode == 0, run.stdout[-3000:]
    c = rendered(tmp_path, monkeypatch)
    assert c.JupyterHub.authenticator_class == "profilespawner.logins.CombinedAuthenticator"
    assert c.CombinedAuthenticator.login_class == "oauthenticator.generic.GenericOAuthenticator"
    assert c.CombinedAuthenticator.launch_classes == ["ltiauthenticator.lti11.auth.LTI11Authenticator"]
    assert c.Authenticator.enable_auth_state is True
    combined = CombinedAuthenticator(config=c)  # what the hub makes from this config
    oauth, (lti,) = combined.login_authenticator, combined.launch_authenticators
    assert (oauth.client_id, oauth.username_claim, oauth.allowed_groups) == ("hub", "preferred_username", {"jupyter"})
    assert (lti.consumers, lti.username_key, lti.allow_all) == ({"moodle": "s3cret"}, "ext_user_username", True)
    assert combined.manage_groups is True and combined.login_url("/hub/") == "/hub/oauth_login"
    paths = [route[0] for route in combined.get_handlers(None)]
    assert "/oauth_callback" in paths and "/lti/launch" in paths  # the LMS launches /hub/lti/launch


@pytest.mark.parametrize("variables,named", [
    ({"jupyterhub_authenticator": "oauth+ldap"},
     "jupyterhub_authenticator=oauth+ldap must be one of pam, ldap, oauth, lti11, lti13, or several logins"),
    ({"jupyterhub_authenticator": "lti11+oauth"}, "oauth+lti11, oauth+lti13, oauth+lti11+lti13"),
    ({"jupyterhub_lti11_settings": {"username_key": "ext_user_username"}},
     "jupyterhub_authenticator=lti11 needs jupyterhub_lti11_settings.consumers"),
    ({"jupyterhub_lti11_settings": {"consumers": {"moodle": "s3cret"}}},
     "jupyterhub_authenticator=oauth+lti11 needs jupyterhub_lti11_settings.username_key"),
    ({"jupyterhub_oauth_settings": {k: v for k, v in OAUTH.items() if k != "token_url"}},
     "jupyterhub_oauth_settings.token_url is missing or empty"),
])
def test_preflight_names_a_wrong_value_or_a_missing_part(tmp_path, variables, named):
    given = {"jupyterhub_authenticator": "oauth+lti11", "jupyterhub_oauth_settings": OAUTH,
             "jupyterhub_lti11_settings": LTI11, **variables}
    message = failure(converge(tmp_path, **given))
    assert named in message, message
