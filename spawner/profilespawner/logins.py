"""Several logins on one hub (fhswf's setup): the login page's authenticator (OpenID Connect)
and launch authenticators (LTI) side by side, each person one hub user and one host account.

jupyterhub-multiauthenticator (idiap, 0.4) does not fit: it subclasses every authenticator,
prefixes each user name with its service ("GenericOAuth2:ann", which no host account can be
named) and moves each one's URLs under its url_prefix (an LTI 1.1 launch would go to
/hub/<prefix>/lti/launch). Here each authenticator is made as configured (its own c.<Class>
section, plus c.Authenticator for all: the same normalisation), keeps its own URLs (the LMS
launches /hub/lti/launch as with LTI alone) and its names as they are, so the login name the
IdP gives (username_claim) and the one the LMS sends (username_key) are the same hub user.

Pure decisions below (the routes, the admitted login); CombinedAuthenticator is the shell.
"""
from jupyterhub.auth import Authenticator
from jupyterhub.utils import maybe_future
from tornado.web import HTTPError
from traitlets import List, Unicode, import_item

from . import identity


class LoginsError(ValueError):
    """A combination that cannot work; the message names the setting and what is allowed."""


def check_routes(routes_by_login: dict) -> None:
    """Each URL served by one authenticator only: {class name: [(path, handler, ...)]}."""
    owner = {}
    for login, routes in routes_by_login.items():
        for route in routes:
            path = "/" + route[0].lstrip("/")  # the hub joins each to its base URL
            if path in owner:
                raise LoginsError(f"CombinedAuthenticator: {login} and {owner[path]} both serve "
                                  f"{path!r}; allowed: authenticators with distinct URLs")
            owner[path] = login


def admitted(authenticated, login: str):
    """The login model the hub gets, or None (not admitted). A name that cannot be a host
    account is refused here (400), before a hub user exists, instead of failing at the spawn."""
    if authenticated is not None:
        try:
            identity.check_account_name(authenticated["name"])
        except identity.AccountError as e:
            raise HTTPError(400, f"{login}: {e}") from None
    return authenticated


def logged_in_at_login_page(auth_state) -> bool:
    """Whether the login page's OAuth authenticator made this auth_state (oauthenticator keeps
    the token_response; an LTI launch keeps the launch's claims): only those are refreshed."""
    return bool(auth_state) and "token_response" in auth_state


def bound_handler(handler_class, authenticator):
    """The handler class serving `authenticator`'s URL: the same handler, but its
    self.authenticator is that authenticator (the hub's is the combination), so the login runs
    with its settings (e.g. manage_groups: an LTI launch, which carries no groups, leaves the
    provider's hub groups alone), and goes through `admitted`."""
    login = type(authenticator).__name__

    async def authenticate(self, data=None):
        return admitted(await maybe_future(self.authenticator.get_authenticated_user(self, data)), login)

    return type(handler_class.__name__, (handler_class,),
                {"authenticator": authenticator, "authenticate": authenticate})


class CombinedAuthenticator(Authenticator):
    login_class = Unicode(
        "oauthenticator.generic.GenericOAuthenticator", config=True,
        help="The authenticator of the login page (its login button, URLs, manage_groups and "
             "refresh_user), configured in its own section, e.g. c.GenericOAuthenticator.")
    launch_classes = List(
        Unicode(), config=True,
        help="Authenticators reached only at their own URLs (an LMS launch: "
             "ltiauthenticator.lti11.auth.LTI11Authenticator at /hub/lti/launch, "
             "ltiauthenticator.lti13.auth.LTI13Authenticator at /hub/lti13/...), each configured "
             "in its own section. Their user names must equal the login page's for the same person.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.login_authenticator = import_item(self.login_class)(parent=self, log=self.log)
        self.launch_authenticators = [import_item(name)(parent=self, log=self.log)
                                      for name in self.launch_classes]
        # the hub app reads these from its authenticator (the login button, groups owned by
        # the authenticator): the login page's
        self.login_service = self.login_authenticator.login_service
        self.manage_groups = self.login_authenticator.manage_groups

    @property
    def authenticators(self):
        return [self.login_authenticator, *self.launch_authenticators]

    def get_handlers(self, app):
        routes = {type(a).__name__: [(path, bound_handler(handler, a), *rest)
                                     for path, handler, *rest in a.get_handlers(app)]
                  for a in self.authenticators}
        check_routes(routes)
        return [route for login_routes in routes.values() for route in login_routes]

    def login_url(self, base_url):
        return self.login_authenticator.login_url(base_url)

    def logout_url(self, base_url):
        return self.login_authenticator.logout_url(base_url)

    async def authenticate(self, handler, data=None):
        return None  # no password form: each login runs in its authenticator's handlers

    async def refresh_user(self, user, handler=None, **kwargs):
        if logged_in_at_login_page(await user.get_auth_state()):
            return await maybe_future(self.login_authenticator.refresh_user(user, handler, **kwargs))
        return True
