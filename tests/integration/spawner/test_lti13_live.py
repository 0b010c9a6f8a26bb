"""LTI 1.3 launches against a real hub (LTI13Authenticator) and the real Docker engine. The test is
the platform: an RS256 key pair, its JWKS served on loopback (the hub fetches it), the OIDC
login initiation, and the form_post of an id_token signed with PyJWT. The context claim's id
chooses the course's image; a token signed with another key is refused.
"""
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from .support import start_hub
from .test_lti_live import COURSES, container_of, course_images, course_profiles, spawn_form, wait_image  # noqa: F401

pytestmark = pytest.mark.integration

CLIENT_ID, KID = "jbm-lti-tool", "jbm-lti-key-1"
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"


@pytest.fixture(scope="module")
def platform():
    """The platform's key and its JWKS endpoint on 127.0.0.1 (only the hub calls it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": KID, "alg": "RS256",
           "use": "sig"}
    body = json.dumps({"keys": [jwk]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/jwks" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path == "/jwks" else b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    issuer = f"http://127.0.0.1:{server.server_port}"
    yield {"key": key, "issuer": issuer}
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def lti13_hub(hub_factory, singleuser_image, course_images, platform, monkeypatch):  # noqa: F811
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))
    issuer = platform["issuer"]
    return start_hub(hub_factory, course_profiles(singleuser_image), f"""
c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
c.LTI13Authenticator.issuer = {issuer!r}
c.LTI13Authenticator.authorize_url = {issuer + "/authorize"!r}
c.LTI13Authenticator.jwks_endpoint = {issuer + "/jwks"!r}
c.LTI13Authenticator.client_id = {{{CLIENT_ID!r}}}
c.LTI13Authenticator.username_key = "sub"
c.Authenticator.enable_auth_state = True
""")


def launch13(hub, platform, user, course, key=None):
    """OIDC login initiation, then the platform's form_post of a signed id_token: the reply."""
    session = requests.Session()
    reply = session.post(f"{hub.url}/hub/lti13/oauth_login", allow_redirects=False, timeout=30, data={
        "iss": platform["issuer"], "login_hint": user, "target_link_uri": f"{hub.url}/hub/",
        "client_id": CLIENT_ID, "lti_deployment_id": "1"})
    assert reply.status_code == 302, f"{reply.status_code} {reply.text[:500]}\n{hub.log()}"
    location = reply.headers["Location"]
    assert location.startswith(platform["issuer"] + "/authorize?"), location
    query = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
    assert query["client_id"] == CLIENT_ID and query["response_mode"] == "form_post"
    now = int(time.time())
    claims = {
        "iss": platform["issuer"], "aud": CLIENT_ID, "sub": user, "iat": now, "exp": now + 300,
        "nonce": query["nonce"], CLAIM + "version": "1.3.0", CLAIM + "deployment_id": "1",
        CLAIM + "message_type": "LtiResourceLinkRequest", CLAIM + "resource_link": {"id": f"link-{course}"},
        CLAIM + "target_link_uri": f"{hub.url}/hub/",
        CLAIM + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
        CLAIM + "context": {"id": course, "label": course, "title": f"Course {course}"},
    }
    token = jwt.encode(claims, key or platform["key"], algorithm="RS256", headers={"kid": KID})
    reply = session.post(query["redirect_uri"], data={"id_token": token, "state": query["state"]},
                         allow_redirects=False, timeout=30)
    return session, reply


def test_lti13_launch_spawns_the_course_image_and_a_foreign_key_is_refused(lti13_hub, platform, system_users):
    hub = lti13_hub
    user, course = "jbm-lti-d", "jbm-lti-course-b"
    system_users(user)

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, reply = launch13(hub, platform, user, course, key=other_key)
    assert reply.status_code in (400, 401) and "signature" in reply.text.lower(), reply.text[:500]
    assert hub.api("GET", f"/users/{user}").status_code == 404

    session, reply = launch13(hub, platform, user, course)
    assert reply.status_code == 302, f"{reply.status_code} {reply.text[:500]}\n{hub.log()}"
    state = hub.api("GET", f"/users/{user}").json().get("auth_state") or {}
    assert state.get(CLAIM + "context", {}).get("id") == course, state
    form, xsrf = spawn_form(hub, session)
    assert 'name="image_profile"' not in form and f"Image for your course {course}" in form
    reply = session.post(f"{hub.url}/hub/spawn", data={"_xsrf": xsrf, "resource_profile": "Tiny"},
                         allow_redirects=False, timeout=60)
    assert reply.status_code in (302, 303), f"{reply.status_code} {reply.text[:800]}\n{hub.log()}"
    assert wait_image(hub, user) == COURSES[course]
