"""profilespawner.nbgrader: courses -> profiles, hub groups, roles, services, config files."""
import types

import pytest

from profilespawner import nbgrader
from profilespawner.nbgrader import CoursesError, parse_courses
from profilespawner.profiles import ProfilesError, effective_profile, parse_profiles

PROFILES = {
    "resource_profiles": {"Tiny": {"cpu_limit": 1, "mem_limit": "1G"}},
    "image_profiles": {"Base": {"image": "base:1"}, "Teacher": {"image": "teach:1"}, "Student": {"image": "stud:1"}},
    "user_profiles": {"default": {"allowed_resources": ["Tiny"], "allowed_images": ["Base"],
                                  "data_mounts": [{"host_path": "/srv/shared", "container_path": "/shared"}]}},
}
COURSE = {"id": "course101", "teachers": ["alice"], "students": ["bob"], "student_groups": ["cs101"],
          "teacher_image": "Teacher", "student_image": "Student", "port": 9990}


def test_a_course_is_parsed():
    (course,) = parse_courses([COURSE])
    assert (course.formgrade_group, course.student_group, course.grader) == \
        ("formgrade-course101", "nbgrader-course101", "grader-course101")
    assert course.teachers == ("alice",) and course.student_groups == ("cs101",)


@pytest.mark.parametrize("change, message", [
    ({"id": "Course 1"}, "jupyterhub_nbgrader_courses[0].id: 'Course 1' is not a course id; allowed:"),
    ({"teachers": []}, "jupyterhub_nbgrader_courses[0].teachers: missing or empty"),
    ({"students": ["Bob!"]}, "jupyterhub_nbgrader_courses[0].students[0]: 'Bob!' is not a valid name"),
    ({"port": 80}, "jupyterhub_nbgrader_courses[0].port: 80 is not a port; allowed: an integer 1024-65535"),
    ({"teacher_image": ""}, "jupyterhub_nbgrader_courses[0].teacher_image: '' is not an image profile name"),
    ({"grader": "root"}, "jupyterhub_nbgrader_courses[0].grader: 'root' is not a valid grader account; allowed: an "
                         "unprivileged"),
    ({"colour": "red"}, "jupyterhub_nbgrader_courses[0].colour: unknown key; allowed: id, teachers"),
])
def test_bad_fields_are_named_with_value_and_allowed(change, message):
    with pytest.raises(CoursesError) as e:
        parse_courses([{**COURSE, **change}])
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


def test_ids_and_ports_once():
    with pytest.raises(CoursesError) as e:
        parse_courses([COURSE, {**COURSE, "port": 9991}, {**COURSE, "id": "c2"}])
    assert "jupyterhub_nbgrader_courses[1].id: 'course101' is already the id of jupyterhub_nbgrader_courses[0]" \
        in e.value.problems[0]
    assert "jupyterhub_nbgrader_courses[2].port: 9990 is already the port" in e.value.problems[1]


def test_profiles_give_teachers_and_students_their_images_and_the_exchange():
    courses = parse_courses([COURSE])
    data = nbgrader.profiles_with_courses(PROFILES, courses, "/srv/nbgrader/exchange", "/srv/nbgrader/etc")
    profiles = parse_profiles(data)
    exchange = ("/srv/nbgrader/exchange", "/srv/nbgrader/exchange", True)
    for user, groups, image in (("alice", ["formgrade-course101"], ("Teacher",)),
                                ("bob", ["nbgrader-course101"], ("Student",)),
                                ("carol", ["cs101"], ("Student",)),
                                ("dave", [], ("Base",))):
        p = effective_profile(profiles, user, groups)
        assert p.allowed_images == image, user
        mounts = [(m.host_path, m.container_path, m.rw) for m in p.data_mounts]
        assert ("/srv/shared", "/shared", False) in mounts  # the default's mounts are kept
        assert (exchange in mounts) == (user != "dave"), user
        # nbgrader names users by their uid's passwd entry: course containers see the account files
        assert (("/etc/passwd", "/etc/passwd", False) in mounts) == (user != "dave"), user
    assert PROFILES["user_profiles"].keys() == {"default"}  # the input is not changed


def test_an_unknown_image_is_reported_by_the_profiles_validator():
    courses = parse_courses([{**COURSE, "student_image": "Studnet"}])
    with pytest.raises(ProfilesError) as e:
        nbgrader.profiles_with_courses(PROFILES, courses)
    assert "user_profiles.@nbgrader-course101.allowed_images[0]: unknown image profile 'Studnet'; allowed: " \
        "Base, Teacher, Student" in e.value.problems


def test_an_operator_entry_for_a_course_group_is_a_second_source():
    data = {**PROFILES, "user_profiles": {**PROFILES["user_profiles"], "@formgrade-course101": {"allowed_images": ["Base"]}}}
    with pytest.raises(ProfilesError) as e:
        nbgrader.profiles_with_courses(data, parse_courses([COURSE]))
    assert e.value.problems[0].startswith("user_profiles.@formgrade-course101: also derived from "
                                          "jupyterhub_nbgrader_courses[0] (course101)")


def test_hub_groups_and_roles():
    courses = parse_courses([COURSE])
    groups = nbgrader.hub_groups(courses, lambda g: {"cs101": ("carol",)}[g])
    assert groups == {"formgrade-course101": {"users": ["alice", "grader-course101"]},
                      "nbgrader-course101": {"users": ["bob", "carol"]}}
    roles = {r["name"]: r for r in nbgrader.load_roles(courses)}
    assert roles["formgrade-course101"]["groups"] == ["formgrade-course101"]
    assert "access:services!service=course101" in roles["formgrade-course101"]["scopes"]
    assert not any(s.startswith("access:") for s in roles["nbgrader-course101"]["scopes"])
    assert roles["course101-service"]["services"] == ["course101"]
    assert "groups!group=nbgrader-course101" in roles["course101-service"]["scopes"]


def test_service_runs_the_teacher_image_as_the_grader():
    courses = parse_courses([COURSE])
    account = lambda name: types.SimpleNamespace(pw_uid=1234, pw_gid=1235)  # noqa: E731
    (service,) = nbgrader.service_definitions(courses, {"Teacher": "teach:1"}, account,
                                              config_dir="/srv/nbgrader/etc")
    assert service["name"] == "course101" and service["url"] == "http://127.0.0.1:9990"
    argv = service["command"]
    assert argv[:2] == ["/bin/sh", "-c"] and "docker rm -f jbm-formgrader-course101" in argv[2]
    run = argv[4:]
    assert run[:2] == ["docker", "run"] and "1234:1235" in run and "teach:1" in run
    assert "/home/grader-course101:/home/grader-course101" in run
    assert "/srv/nbgrader/exchange:/srv/nbgrader/exchange" in run
    assert "/srv/nbgrader/etc:/usr/local/etc/jupyter:ro" in run
    assert run[-1] == "--port=9990" and "JUPYTERHUB_API_TOKEN" in run


def test_config_files():
    (course,) = parse_courses([COURSE])
    glob = nbgrader.global_config("/srv/x")
    ns = {"get_config": lambda: types.SimpleNamespace(Exchange=types.SimpleNamespace(),
                                                      Authenticator=types.SimpleNamespace())}
    exec(glob.replace("from nbgrader.auth import JupyterHubAuthPlugin", "JupyterHubAuthPlugin = 'P'"), ns)
    assert ns["c"].Exchange.root == "/srv/x" and ns["c"].Exchange.path_includes_course is True
    assert ns["c"].Authenticator.plugin_class == "P"
    grader = nbgrader.grader_config(course, "/homes/{username}")
    assert "c.CourseDirectory.root = '/homes/grader-course101/course101'" in grader
    assert "c.CourseDirectory.course_id = 'course101'" in grader
    assert "frame-ancestors 'self'" in nbgrader.grader_server_config()


def test_role_plan_from_json(capsys, monkeypatch):
    import io
    import json
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"courses": [COURSE], "profiles": PROFILES})))
    assert nbgrader.main() == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["unix_groups"] == {"formgrade-course101": ["alice", "grader-course101"], "nbgrader-course101": ["bob"]}
    assert plan["graders"][0]["home"] == "/home/grader-course101"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"courses": [{**COURSE, "port": "x"}], "profiles": PROFILES})))
    assert nbgrader.main() == 1
    assert "jupyterhub_nbgrader_courses[0].port: 'x' is not a port" in capsys.readouterr().err


def test_hub_settings_from_the_loaded_profiles():
    profiles = parse_profiles(nbgrader.profiles_with_courses(PROFILES, parse_courses([COURSE])))
    account = lambda name: types.SimpleNamespace(pw_uid=1, pw_gid=1)  # noqa: E731
    hub = nbgrader.hub_settings([COURSE], profiles, lambda g: (), account)
    assert set(hub) == {"load_groups", "load_roles", "services"}
    assert "teach:1" in hub["services"][0]["command"]  # the teacher image profile's image


def test_formgrader_on_the_users_network_at_a_fixed_address():
    courses = parse_courses([COURSE, {**COURSE, "id": "c2", "port": 9991}])
    account = lambda name: types.SimpleNamespace(pw_uid=1, pw_gid=1)  # noqa: E731
    services = nbgrader.service_definitions(courses, {"Teacher": "teach:1"}, account,
                                            network="jupyterhub-users", subnet="10.250.0.0/16")
    assert [s["url"] for s in services] == ["http://10.250.255.254:9990", "http://10.250.255.253:9991"]
    run = services[0]["command"]
    assert run[run.index("--network") + 1:run.index("--network") + 4] == ["jupyterhub-users", "--ip", "10.250.255.254"]
    assert "--ip=0.0.0.0" in run
    assert nbgrader.formgrader_address("10.0.0.0/30", 0) == "10.0.0.2"
    with pytest.raises(ValueError, match="no address left"):
        nbgrader.formgrader_address("10.0.0.0/30", 1)  # .1 is the gateway
