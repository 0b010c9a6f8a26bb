"""LTI 1.1 launches against a real hub (LTI11Authenticator of jupyterhub-ltiauthenticator) and the
real Docker engine: a scripted LMS signs each launch with oauthlib (OAuth 1.0a HMAC-SHA1 over the
form body, real LTI 1.1 on the wire); the launch's course (context_id, kept in auth_state) picks
the image through `courses` in the image profiles.

Only loopback and our own containers are reached. The two course images are the cached test
image with one label each (built here, removed at the end): two different images, no registry.
"""
import re
import secrets
import subprocess
import time

import pytest

from profilespawner import labels
from tests.harness.lti import LMS, launch
from tests.harness.profiles import sample_profiles

from .support import inspect, start_hub

pytestmark = pytest.mark.integration

KEY, SECRET = "jbm-lti-consumer", secrets.token_hex(16)
MOODLE = LMS(KEY, SECRET)
COURSES = {"jbm-lti-course-a": "jbm-lti/course-a:latest", "jbm-lti-course-b": "jbm-lti/course-b:latest"}
LTI_CONFIG = f"""
c.JupyterHub.authenticator_class = "ltiauthenticator.lti11.auth.LTI11Authenticator"
c.LTI11Authenticator.consumers = {{{KEY!r}: {SECRET!r}}}
c.LTI11Authenticator.username_key = "user_id"
c.Authenticator.enable_auth_state = True
"""


@pytest.fixture(scope="module")
def course_images(singleuser_image):
    """Two images that differ (a label each) built FROM the cached test image, offline."""
    for course, tag in COURSES.items():
        dockerfile = f"FROM {singleuser_image}\nLABEL org.jupyterhub-baremetal.test.course={course}\n"
        subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True,
                       check=True, capture_output=True, timeout=120)
    yield COURSES
    subprocess.run(["docker", "rmi", *COURSES.values()], capture_output=True)


def course_profiles(image):
    data = sample_profiles(image)
    data["image_profiles"].update({
        "CourseA": {"image": COURSES["jbm-lti-course-a"], "description": "course A", "courses": ["jbm-lti-course-a"]},
        "CourseB": {"image": COURSES["jbm-lti-course-b"], "description": "course B", "courses": ["jbm-lti-course-b"]},
    })
    data["user_profiles"]["default"]["allowed_images"] = ["SingleUser", "CourseA", "CourseB"]
    return data


@pytest.fixture
def lti_hub(hub_factory, singleuser_image, course_images, monkeypatch):
    # the installed hub reads JUPYTERHUB_CRYPT_KEY from secrets.env; auth_state needs it
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))
    return start_hub(hub_factory, course_profiles(singleuser_image), LTI_CONFIG)


def spawn_form(hub, session):
    reply = session.get(f"{hub.url}/hub/spawn", timeout=30)
    assert reply.status_code == 200, f"{reply.status_code} {reply.text[:500]}\n{hub.log()}"
    xsrf = re.search(r'xsrf_token: "([^"]+)"', reply.text)  # page.html hands it to its scripts
    assert xsrf, reply.text[:2000]
    return reply.text, xsrf.group(1)


def container_of(user):
    """The user's container (found by the spawner's user label: its name escapes the '-')."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={labels.USER}={user}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) <= 1, ids
    return inspect(ids[0]) if ids else None


def wait_image(hub, user, timeout=150):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = hub.api("GET", f"/users/{user}").json().get("servers", {}).get("")
        if server and server.get("ready"):
            return container_of(user)["Config"]["Image"]
        time.sleep(0.5)
    raise AssertionError(f"{user}'s server not ready in {timeout}s\n{hub.log()}")


def test_launches_from_two_courses_spawn_the_two_course_images(lti_hub, system_users):
    hub = lti_hub
    started = {}
    for user, course in (("jbm-lti-a", "jbm-lti-course-a"), ("jbm-lti-b", "jbm-lti-course-b")):
        system_users(user)  # the LTI user id maps to a local account (made by hand here)
        session, reply = launch(hub.url, MOODLE.signed_launch(hub.url, course, user))
        assert reply.status_code == 302, f"{reply.status_code} {reply.text[:500]}\n{hub.log()}"
        # the launch is kept in auth_state, with its course
        state = hub.api("GET", f"/users/{user}").json().get("auth_state") or {}
        assert state.get("context_id") == course, state
        form, xsrf = spawn_form(hub, session)
        assert 'name="image_profile"' not in form and f"Image for your course {course}" in form
        # what a browser posts: the form's fields, no image (the course decides)
        reply = session.post(f"{hub.url}/hub/spawn", data={"_xsrf": xsrf, "resource_profile": "Tiny"},
                             allow_redirects=False, timeout=60)
        assert reply.status_code in (302, 303), f"{reply.status_code} {reply.text[:800]}\n{hub.log()}"
        started[user] = course
    for user, course in started.items():
        assert wait_image(hub, user) == COURSES[course]


def test_a_forged_image_and_bad_launches_are_refused(lti_hub, system_users):
    hub = lti_hub
    user, course = "jbm-lti-c", "jbm-lti-course-a"
    system_users(user)

    # a bad signature (a parameter changed after signing, or another secret): 401, no user
    tampered = MOODLE.signed_launch(hub.url, course, user).replace("jbm-lti-course-a", "jbm-lti-course-b")
    _, reply = launch(hub.url, tampered)
    assert reply.status_code == 401 and "oauth_signature" in reply.text, reply.text[:500]
    _, reply = launch(hub.url, MOODLE.signed_launch(hub.url, course, user, secret="not-the-secret"))
    assert reply.status_code == 401, reply.text[:500]
    assert hub.api("GET", f"/users/{user}").status_code == 404

    # a good launch, then the very same signed body again: the nonce was used
    body = MOODLE.signed_launch(hub.url, course, user)
    session, reply = launch(hub.url, body)
    assert reply.status_code == 302, f"{reply.status_code} {reply.text[:500]}\n{hub.log()}"
    _, replay = launch(hub.url, body)
    assert replay.status_code == 401 and "nonce" in replay.text.lower(), replay.text[:500]

    # a forged form choosing another course's image: 400 naming the field and what is allowed
    _, xsrf = spawn_form(hub, session)
    reply = session.post(f"{hub.url}/hub/spawn", allow_redirects=False, timeout=60,
                         data={"_xsrf": xsrf, "resource_profile": "Tiny", "image_profile": "CourseB"})
    assert reply.status_code == 400, f"{reply.status_code} {reply.text[:800]}"
    assert "image_profile: &#39;CourseB&#39; is not a image profile you may use; allowed: CourseA" in reply.text \
        or "image_profile: 'CourseB' is not a image profile you may use; allowed: CourseA" in reply.text, reply.text
    # the same through the REST API
    reply = hub.api("POST", f"/users/{user}/server", json={"image_profile": "SingleUser"})
    assert reply.status_code == 400 and "allowed: CourseA" in reply.json()["message"], reply.text
    assert container_of(user) is None

    # a launch from a course without an image: the profile's normal choice, the default first
    session, reply = launch(hub.url, MOODLE.signed_launch(hub.url, "jbm-lti-no-such-course", user))
    assert reply.status_code == 302
    form, _ = spawn_form(hub, session)
    assert re.findall(r'<option value="([^"]+)"', form)[-3:] == ["SingleUser", "CourseA", "CourseB"]
