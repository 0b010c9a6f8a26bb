"""The jupyterhub role's nbgrader courses (issue 11.5), converged into a systemd host container:
the exchange with nbgrader's mode, the global and the grader's nbgrader_config.py, the grader
account, the Unix groups with their members; a second run changes nothing; a bad course stops
the preflight naming the field."""
from pathlib import Path

import pytest
import yaml

from profilespawner import nbgrader
from profilespawner.profiles import effective_profile, parse_profiles
from tests.harness import playbooks
from tests.harness.systemd_host import start_systemd_host

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "system" / "playbooks" / "nbgrader.yml"
HOST = "jbm-nbg-host"
PROFILES = {
    "resource_profiles": {"Tiny": {"cpu_limit": 1, "mem_limit": "1G"}},
    "image_profiles": {"Teacher": {"image": "t:1"}, "Student": {"image": "s:1"}},
    "user_profiles": {"default": {"allowed_resources": ["Tiny"], "allowed_images": ["Student"]}},
}
COURSE = {"id": "course101", "teachers": ["alice"], "students": ["bob", "nobody-here"],
          "teacher_image": "Teacher", "student_image": "Student", "port": 9990}


@pytest.fixture(scope="module")
def host(tmp_path_factory, systemd_image):
    h = start_systemd_host(HOST)
    try:
        for user in ("alice", "bob"):
            h.exec("useradd", "--create-home", user)
        workdir = tmp_path_factory.mktemp("nbgrader-role")
        inventory = workdir / "inventory.ini"
        inventory.write_text(f"{HOST} ansible_connection=community.docker.docker "
                             "ansible_python_interpreter=/usr/bin/python3\n")
        yield h, workdir, inventory
    finally:
        h.remove()


def _converge(workdir, inventory, courses):
    return playbooks.run_playbook(workdir, inventory, {"jupyterhub_profiles": PROFILES,
                                                       "jupyterhub_nbgrader_courses": courses,
                                                       "jupyterhub_allowed_groups": ["jupyterhub-users"]},
                                  PLAYBOOK, timeout=300)


def test_courses_on_the_host(host):
    h, workdir, inventory = host
    first = _converge(workdir, inventory, [COURSE])
    assert first.returncode == 0, first.output[-6000:]
    out = lambda *cmd: h.exec(*cmd).stdout.strip()  # noqa: E731
    assert out("stat", "-c", "%a %U", "/srv/nbgrader/exchange") == "777 root"
    assert out("cat", "/srv/nbgrader/config/nbgrader_config.py") == nbgrader.global_config().strip()
    assert out("stat", "-c", "%U %a", "/home/grader-course101/course101/source") == "grader-course101 700"
    (course,) = nbgrader.parse_courses([COURSE])
    assert out("cat", "/home/grader-course101/.jupyter/nbgrader_config.py") == nbgrader.grader_config(course).strip()
    assert "frame-ancestors 'self'" in out("cat", "/home/grader-course101/.jupyter/jupyter_server_config.py")
    assert out("getent", "group", "formgrade-course101").split(":")[3] == "alice,grader-course101"
    assert out("getent", "group", "nbgrader-course101").split(":")[3] == "bob"  # accounts that exist
    rendered = parse_profiles(yaml.safe_load(out("cat", "/root/jbm-nbg-profiles.yaml")))
    assert effective_profile(rendered, "bob", ["nbgrader-course101"]).allowed_images == ("Student",)
    assert effective_profile(rendered, "alice", ["formgrade-course101"]).allowed_images == ("Teacher",)
    assert "/srv/nbgrader/exchange" in {m.host_path for m in rendered.users["@nbgrader-course101"].data_mounts}
    second = _converge(workdir, inventory, [COURSE])
    assert second.returncode == 0, second.output[-6000:]
    assert second.changed_tasks == [], second.changed_tasks


def test_a_bad_course_stops_the_preflight(host):
    h, workdir, inventory = host
    run = _converge(workdir, inventory, [{**COURSE, "student_image": "Studnet"}])
    assert run.returncode != 0
    assert "user_profiles.@nbgrader-course101.allowed_images[0]: unknown image profile 'Studnet'" in run.output
    run = _converge(workdir, inventory, [{**COURSE, "port": 80}])
    assert run.returncode != 0 and "jupyterhub_nbgrader_courses[0].port: 80 is not a port" in run.output
