"""Per-course images: the LMS course of an LTI launch narrows the images a user may start.

Pure: the course id comes from the authenticator's auth_state, the images' ``courses`` from the
profiles file (validated once by profilespawner.profiles). The rule:

- a launch from a course that image profiles among the user's ``allowed_images`` list in their
  ``courses`` narrows ``allowed_images`` to those images, in the user profile's order (one: it is
  the image, and the form shows no image choice; several: the form offers just them);
- a launch from a course no allowed image lists, or a login without a course (PAM, LDAP, OIDC),
  keeps the user profile's own list (its first image is the default).

``courses`` narrows, it never grants: an image a user's profile does not allow stays out of
reach whatever course the launch comes from. So several images may claim one course (the user
chooses among them) and a course image is also offered to logins without a course.
"""

from dataclasses import replace
from typing import Optional

from .profiles import Profiles, UserProfile

# LTI 1.3: the id_token claim holding the course (auth_state is the decoded id_token's claims)
LTI13_CONTEXT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/context"


def course_id(auth_state) -> Optional[str]:
    """The launch's course id from an authenticator's auth_state, or None: LTI 1.1 keeps the
    launch's arguments (``context_id``), LTI 1.3 the id_token's claims (the context claim's
    ``id``). Anything else (no auth_state, another authenticator, an empty id) is no course."""
    if not isinstance(auth_state, dict):
        return None
    value = auth_state.get("context_id")
    if value is None:
        context = auth_state.get(LTI13_CONTEXT_CLAIM)
        value = context.get("id") if isinstance(context, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and value.strip() else None


def course_images(profiles: Profiles, user: UserProfile, course: Optional[str]) -> tuple:
    """The user's allowed images that list ``course`` in their ``courses`` (profile order)."""
    if course is None:
        return ()
    return tuple(name for name in user.allowed_images if course in profiles.images[name].courses)


def narrow_to_course(profiles: Profiles, user: UserProfile, course: Optional[str]) -> UserProfile:
    """The user's effective profile for a launch from ``course`` (see the module's rule)."""
    images = course_images(profiles, user, course)
    return replace(user, allowed_images=images) if images else user
