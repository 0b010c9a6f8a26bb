"""Per-course images (LTI): `courses` in image profiles, the course of a launch, the narrowing,
the form and a forged image choice."""
import pwd

import pytest
from traitlets.config import Config

from profilespawner.courses import LTI13_CONTEXT_CLAIM, course_id, course_images, narrow_to_course
from profilespawner.errors import SpawnRequestError
from profilespawner.form import render_form
from profilespawner.profiles import ProfilesError, effective_profile, parse_profiles
from profilespawner.request import build_request
from profilespawner.spawner import DockerSystemProfileSpawner

from .conftest import G, HubUser, sample_data
from .test_form import parse


def course_data():
    data = sample_data()
    data["image_profiles"].update({
        "Physics": {"image": "local/physics:1", "courses": ["phys-101", 42]},
        "ChemA": {"image": "local/chem-a:1", "courses": ["chem-7"]},
        "ChemB": {"image": "local/chem-b:1", "courses": ["chem-7"]},
        "Hidden": {"image": "local/hidden:1", "courses": ["phys-101"]},  # not allowed to default
    })
    data["user_profiles"]["default"]["allowed_images"] = ["SingleUser", "Physics", "ChemA", "ChemB"]
    return data


@pytest.fixture
def cprofiles():
    return parse_profiles(course_data())


@pytest.fixture
def cuser(cprofiles):
    return effective_profile(cprofiles, "bob")


# ---------------------------------------------------------------- validation (the one validator)

def test_courses_are_parsed_as_strings(cprofiles):
    assert cprofiles.images["Physics"].courses == ("phys-101", "42")  # an integer id is the string id
    assert cprofiles.images["SingleUser"].courses == ()


@pytest.mark.parametrize("value, fragment", [
    ("phys-101", "image_profiles.X.courses: 'phys-101' is not a list; allowed: a list of course ids"),
    ([""], "image_profiles.X.courses[0]: '' is not a course id"),
    ([" a"], "image_profiles.X.courses[0]: ' a' is not a course id"),
    (["a", True], "image_profiles.X.courses[1]: True is not a course id"),
    ([{"id": 1}], "image_profiles.X.courses[0]: {'id': 1} is not a course id"),
    ([1.5], "image_profiles.X.courses[0]: 1.5 is not a course id"),
    (["a", "a"], "image_profiles.X.courses[1]: 'a' is listed twice; allowed: each course once"),
    ([7, "7"], "image_profiles.X.courses[1]: '7' is listed twice"),
])
def test_bad_courses_name_the_key_the_value_and_what_is_allowed(value, fragment):
    data = sample_data()
    data["image_profiles"]["X"] = {"image": "local/x:1", "courses": value}
    with pytest.raises(ProfilesError) as e:
        parse_profiles(data)
    assert any(fragment in p for p in e.value.problems), e.value.problems


def test_courses_is_a_known_image_key():
    data = sample_data()
    data["image_profiles"]["X"] = {"image": "local/x:1", "course": ["a"]}
    with pytest.raises(ProfilesError) as e:
        parse_profiles(data)
    assert any("image_profiles.X.course: unknown key" in p and "courses" in p for p in e.value.problems)


# ---------------------------------------------------------------- the course of a launch

@pytest.mark.parametrize("auth_state, expected", [
    ({"context_id": "phys-101", "user_id": "u1"}, "phys-101"),                     # LTI 1.1
    ({LTI13_CONTEXT_CLAIM: {"id": "chem-7", "label": "C7"}, "sub": "u1"}, "chem-7"),  # LTI 1.3
    ({LTI13_CONTEXT_CLAIM: {"id": 42}}, "42"),
    ({"context_id": ""}, None),
    ({"context_id": ["a"]}, None),
    ({LTI13_CONTEXT_CLAIM: "chem-7"}, None),
    ({"access_token": "x", "groups": ["a"]}, None),                                # OIDC
    (None, None),
    ("context_id", None),
])
def test_course_id_from_auth_state(auth_state, expected):
    assert course_id(auth_state) == expected


# ---------------------------------------------------------------- narrowing

def test_a_course_with_one_image_chooses_it(cprofiles, cuser):
    narrowed = narrow_to_course(cprofiles, cuser, "phys-101")
    assert narrowed.allowed_images == ("Physics",)  # Hidden claims it too, but is not allowed: never granted
    assert narrowed.allowed_resources == cuser.allowed_resources
    assert build_request(cprofiles, narrowed, {}, _host()).image == "local/physics:1"
    assert narrow_to_course(cprofiles, cuser, "42").allowed_images == ("Physics",)


def test_a_course_with_several_images_offers_just_them_in_profile_order(cprofiles, cuser):
    assert course_images(cprofiles, cuser, "chem-7") == ("ChemA", "ChemB")
    assert narrow_to_course(cprofiles, cuser, "chem-7").allowed_images == ("ChemA", "ChemB")


@pytest.mark.parametrize("course", ["no-such-course", None])
def test_a_course_without_an_image_or_no_course_keeps_the_profile(cprofiles, cuser, course):
    assert narrow_to_course(cprofiles, cuser, course) == cuser
    assert build_request(cprofiles, cuser, {}, _host()).image == "local/singleuser:latest"  # the default


def test_a_forged_image_outside_the_course_is_refused_naming_the_field(cprofiles, cuser):
    narrowed = narrow_to_course(cprofiles, cuser, "phys-101")
    for forged in ("SingleUser", "ChemA", "Hidden"):
        with pytest.raises(SpawnRequestError) as e:
            build_request(cprofiles, narrowed, {"image_profile": forged}, _host())
        assert e.value.field == "image_profile" and e.value.status == 400
        assert f"image_profile: {forged!r} is not a image profile you may use; allowed: Physics" in e.value.message


# ---------------------------------------------------------------- the form

def test_form_shows_no_image_choice_for_a_course_with_one_image(cprofiles, cuser):
    html = render_form(cprofiles, narrow_to_course(cprofiles, cuser, "phys-101"), _host(), 1, G, course="phys-101")
    c = parse(html)
    assert 'name="image_profile"' not in html
    assert [o["value"] for o in c.options] == ["Tiny", "Small"]
    assert "Image for your course phys-101: Physics" in html


def test_form_offers_the_course_images_when_several(cprofiles, cuser):
    html = render_form(cprofiles, narrow_to_course(cprofiles, cuser, "chem-7"), _host(), 1, G, course="chem-7")
    assert [o["value"] for o in parse(html).options][2:] == ["ChemA", "ChemB"]


def test_form_without_a_course_image_is_the_normal_form(profiles, default_user):
    # one allowed image, but not for this course: the normal select stays
    html = render_form(profiles, default_user, _host(), 1, G, course="phys-101")
    assert 'name="image_profile"' in html and "your course" not in html


def test_form_escapes_the_course(cprofiles):
    data = course_data()
    data["image_profiles"]["Physics"]["courses"] = ["<b>x</b>"]
    p = parse_profiles(data)
    user = narrow_to_course(p, effective_profile(p, "bob"), "<b>x</b>")
    html = render_form(p, user, _host(), 1, G, course="<b>x</b>")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


# ---------------------------------------------------------------- the spawner shell



@pytest.fixture
def course_spawner(tmp_path, fresh_caches):
    data = course_data()

    def make(auth_state=None):
        c = Config()
        c.DockerSystemProfileSpawner.profiles_file = str(tmp_path / "absent.yaml")
        for key in ("resource_profiles", "image_profiles", "user_profiles"):
            setattr(c.DockerSystemProfileSpawner, key, data[key])
        return DockerSystemProfileSpawner(user=HubUser(pwd.getpwuid(0).pw_name, auth_state), config=c)

    return make


async def test_spawner_reads_the_course_before_validating(course_spawner):
    spawner = course_spawner({"context_id": "phys-101"})
    await spawner.run_auth_state_hook({"context_id": "phys-101"})  # the hub does this before each spawn
    spawner.user_options = {}
    assert spawner._validated_request()[2].image == "local/physics:1"
    spawner.user_options = {"image_profile": "SingleUser"}
    with pytest.raises(Exception) as e:
        spawner._validated_request()
    assert getattr(e.value, "status_code", None) == 400 and "image_profile: 'SingleUser'" in e.value.log_message
    # a later login without a course (or another course) gets the profile's list again
    await spawner.run_auth_state_hook({"access_token": "x"})
    assert spawner._validated_request()[2].image == "local/singleuser:latest"


async def test_spawner_form_follows_the_course_of_the_auth_state(course_spawner, monkeypatch):
    async def no_containers(self):
        return ()
    monkeypatch.setattr(DockerSystemProfileSpawner, "_running_servers", no_containers)
    async def form(auth_state):
        spawner = course_spawner(auth_state)
        await spawner.run_auth_state_hook(auth_state)  # the hub's spawn page does this before the form
        return await spawner._render_options_form()
    html = await form({"context_id": "phys-101"})
    assert 'name="image_profile"' not in html and "Physics" in html
    html = await form(None)
    assert 'name="image_profile"' in html


def _host():
    from profilespawner.capacity import HostCapacity
    return HostCapacity(cpus=4, mem_bytes=16 * G)


def test_an_lti_launch_user_id_is_not_read_as_a_uid():
    from profilespawner.contract import auth_state_ids_problem
    assert auth_state_ids_problem({"user_id": "jbm-lti-a", "lti_message_type": "basic-lti-launch-request",
                                   "context_id": "c"}, 1000, 1000) is None
    assert auth_state_ids_problem({"user_id": "2", "lti_version": "LTI-1p0"}, 1000, 1000) is None
    # other authenticators' user_id still is
    assert "is not a number" in auth_state_ids_problem({"user_id": "jbm-lti-a"}, 1000, 1000)
