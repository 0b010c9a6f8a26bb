"""A scripted LMS for tests: LTI 1.1 launches as Moodle posts them, signed with OAuth 1.0a by
oauthlib (real LTI 1.1 on the wire; only the LMS is a script)."""
from dataclasses import dataclass

import requests
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class LMS:
    key: str
    secret: str
    link_prefix: str = "jbm-lti-link"

    def signed_launch(self, hub_url, course, user_id, person=None, secret=None) -> str:
        """The form body the LMS posts to the hub: a learner's launch from `course`; `person` is
        the login name it carries (lis_person_sourcedid, default the user id)."""
        params = {
            "lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
            "resource_link_id": f"{self.link_prefix}-{course}", "user_id": user_id, "roles": "Learner",
            "context_id": course, "context_title": f"Course {course}",
            "lis_person_sourcedid": person or user_id, "launch_presentation_return_url": "http://127.0.0.1/",
        }
        client = Client(self.key, client_secret=secret or self.secret, signature_type=SIGNATURE_TYPE_BODY)
        _, _, body = client.sign(f"{hub_url}/hub/lti/launch", http_method="POST", body=params, headers=FORM)
        return body


def launch(hub_url, body, session=None):
    """POST a launch body to the hub as the browser would; the session keeps the hub's cookies."""
    session = session or requests.Session()
    reply = session.post(f"{hub_url}/hub/lti/launch", data=body, allow_redirects=False, timeout=30, headers=FORM)
    return session, reply
