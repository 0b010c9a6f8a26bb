"""Several logins on one hub: the pure decisions of profilespawner.logins."""
import pytest
from tornado.web import HTTPError

from profilespawner import logins


def test_a_name_no_account_can_have_is_refused_with_400_naming_it():
    with pytest.raises(HTTPError) as e:
        logins.admitted({"name": "ann smith"}, "LTI11Authenticator")
    assert e.value.status_code == 400
    assert "LTI11Authenticator: user name 'ann smith' cannot be a system account; allowed: 1-32" in e.value.log_message
    assert logins.admitted({"name": "ann", "groups": ["a"]}, "L") == {"name": "ann", "groups": ["a"]}
    assert logins.admitted(None, "L") is None  # not admitted stays so


def test_two_authenticators_on_one_url_are_refused():
    logins.check_routes({"A": [("/oauth_login", object)], "B": [("/lti/launch", object)]})
    with pytest.raises(logins.LoginsError, match="B and A both serve '/logout'"):
        logins.check_routes({"A": [("/logout", object)], "B": [("logout", object)]})


def test_only_the_login_pages_logins_are_refreshed():
    assert logins.logged_in_at_login_page({"access_token": "t", "token_response": {}})
    assert not logins.logged_in_at_login_page({"context_id": "c", "user_id": "4711"})
    assert not logins.logged_in_at_login_page(None)


def test_oauth_and_both_lti_versions_serve_their_own_urls_on_one_hub():
    from traitlets.config import Config
    c = Config()
    c.CombinedAuthenticator.launch_classes = ["ltiauthenticator.lti11.auth.LTI11Authenticator",
                                              "ltiauthenticator.lti13.auth.LTI13Authenticator"]
    combined = logins.CombinedAuthenticator(config=c)
    routes = combined.get_handlers(None)
    paths = ["/" + route[0].lstrip("/") for route in routes]  # as the hub joins them to its base URL
    assert len(paths) == len(set(paths))
    assert {"/oauth_login", "/oauth_callback", "/lti/launch", "/lti13/oauth_login", "/lti13/oauth_callback"} <= set(paths)
    handler = dict(zip(paths, (r[1] for r in routes), strict=True))["/lti/launch"]
    assert handler.authenticator is combined.launch_authenticators[0]  # the launch's own authenticator
    assert combined.login_url("/hub/") == "/hub/oauth_login" and combined.login_service == "OAuth 2.0"
