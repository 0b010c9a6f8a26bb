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
        logins.check_routes({"A": [("/logout", object)], "B": [("/logout", object)]})


def test_only_the_login_pages_logins_are_refreshed():
    assert logins.logged_in_at_login_page({"access_token": "t", "token_response": {}})
    assert not logins.logged_in_at_login_page({"context_id": "c", "user_id": "4711"})
    assert not logins.logged_in_at_login_page(None)
