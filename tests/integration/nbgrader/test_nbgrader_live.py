"""nbgrader end to end in real containers behind a real hub (issue 11.5).

The hub is configured with profilespawner.nbgrader.hub_settings, as the role's
jupyterhub_config.py is: the course's hub groups and roles, and its formgrader as a hub-managed
service (a container of the teacher image running as the grader account). The student's server
is spawned by the hub's DockerSystemProfileSpawner from the course's `@nbgrader-<id>` profile
(the student image, the exchange and account files as data mounts: the one profiles validator).
Then, with the real nbgrader 0.9.x CLI, the grader releases an assignment in the formgrader's
container, the student fetches and submits it in their server, the grader collects and
autogrades it, and the gradebook holds the grade. Real system users (their uids own the files),
one exchange directory with nbgrader's mode, the nbgrader_config.py files from the functions the
role writes them with.
"""
import json
import os
import shutil
import subprocess
import time
import types
import uuid
from pathlib import Path

import pytest
import requests

from profilespawner import nbgrader
from profilespawner.profiles import effective_profile, parse_profiles
from tests.harness import images
from tests.harness.cgroups import ensure_users_parent
from tests.harness.hub import free_port
from tests.harness.profiles import sample_profiles
from tests.harness.users_network import HARNESS_NETWORK
from tests.integration.spawner.support import inspect, spawn_ready, start_hub

pytestmark = pytest.mark.integration

COURSE_ID = "jbmnbg101"
GRADER, STUDENT = "jbm-nbg-grader", "jbm-nbg-student"
STUDENT_GROUP = f"nbgrader-{COURSE_ID}"
FORMGRADER = f"jbm-formgrader-{COURSE_ID}"  # nbgrader.formgrader_container's name
TIMEOUT = 120  # seconds for any one nbgrader command


def _notebook():
    """A source notebook: one solution cell, one 3-point test cell (nbgrader's cell metadata)."""
    def cell(source, **meta):
        return {"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
                "metadata": {"nbgrader": {"schema_version": 3, "locked": False, "solution": False,
                                          "grade": False, **meta}}}
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
                           solution=True, grade_id="answer"),
                      cell("assert add(1, 2) == 3", grade=True, locked=True, points=3, grade_id="test_add")]}


def _run(container, *cmd, cwd=None):
    args = ["docker", "exec"] + (["-w", cwd] if cwd else []) + [container, *cmd]
    r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"{' '.join(cmd)} in {container}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def _wait_for(url, headers, timeout=90):
    """The formgrader's first answer that is not the proxy's (its container starts with the hub)."""
    deadline, reply = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            reply = requests.get(url, headers=headers, timeout=10, allow_redirects=False)
            if reply.status_code not in (404, 502, 503):
                return reply
        except requests.ConnectionError:
            pass
        time.sleep(1)
    return reply


@pytest.fixture
def course_site(docker_engine, system_users):
    """What the role makes on the host (tasks/nbgrader.yml), in a directory of this test."""
    teacher_image, student_image = images.ensure_nbgrader_image(), images.ensure_nbgrader_student_image()
    root = Path(f"/srv/jbm-nbg-{uuid.uuid4().hex[:8]}")
    exchange, config_dir = root / "exchange", root / "etc"
    try:
        exchange.mkdir(parents=True)
        os.chmod(exchange, nbgrader.EXCHANGE_MODE)
        config_dir.mkdir()
        # course membership from the hub's groups (JupyterHubAuthPlugin), as installed: the CLI below
        # runs in the containers with their own hub tokens (the server's, the service's)
        (config_dir / "nbgrader_config.py").write_text(nbgrader.global_config(str(exchange)))
        grader = system_users(GRADER)
        student = system_users(STUDENT, groups=(STUDENT_GROUP,))  # the role's Unix group of the course
        courses_data = [{"id": COURSE_ID, "teachers": [GRADER], "students": [STUDENT], "teacher_image": "Teacher",
                         "student_image": "Student", "port": free_port(), "grader": GRADER}]
        (course,) = nbgrader.parse_courses(courses_data)
        profiles = sample_profiles(teacher_image)
        profiles["image_profiles"].update({"Teacher": {"image": teacher_image}, "Student": {"image": student_image}})
        raw = nbgrader.profiles_with_courses(profiles, [course], str(exchange), str(config_dir))
        home_format = parse_profiles(raw).users["default"].host_homedir_format_string
        grader_home = nbgrader.grader_home(course, home_format)
        dot = Path(grader_home, ".jupyter")
        dot.mkdir(exist_ok=True)
        (dot / "nbgrader_config.py").write_text(nbgrader.grader_config(course, home_format))
        (dot / "jupyter_server_config.py").write_text(nbgrader.grader_server_config())
        source = Path(nbgrader.course_root(course, home_format), "source", "ps1")
        source.mkdir(parents=True)
        (source / "ps1.ipynb").write_text(json.dumps(_notebook()))
        subprocess.run(["chown", "-R", f"{grader.pw_uid}:{grader.pw_gid}", grader_home], check=True)
        yield types.SimpleNamespace(course=course, courses_data=courses_data, home_format=home_format,
                                    exchange=exchange, config_dir=config_dir, student=student,
                                    profiles=raw, student_image=student_image)
    finally:
        subprocess.run(["docker", "rm", "-f", FORMGRADER], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["groupdel", STUDENT_GROUP], capture_output=True)  # the users go with the session


def _hub_config(site):
    """The role's jupyterhub_config.py block for the courses (templates/jupyterhub_config.py.j2)."""
    return f"""
import grp, pwd
from profilespawner import nbgrader
from profilespawner.profiles import load_profiles
_nbgrader = nbgrader.hub_settings(
    {site.courses_data!r}, load_profiles(c.DockerSystemProfileSpawner.profiles_file),
    group_members=lambda name: next((g.gr_mem for g in grp.getgrall() if g.gr_name == name), []),
    account=pwd.getpwnam, exchange_root={str(site.exchange)!r}, config_dir={str(site.config_dir)!r},
    network=c.DockerSystemProfileSpawner.network_name, subnet={HARNESS_NETWORK.subnet!r},
    cgroup_parent=c.DockerSystemProfileSpawner.cgroup_parent)
c.JupyterHub.load_groups = _nbgrader["load_groups"]
c.JupyterHub.load_roles.extend(_nbgrader["load_roles"])
c.JupyterHub.services.extend(_nbgrader["services"])
"""


def test_course_end_to_end_behind_the_hub(course_site, hub_factory):
    site, course = course_site, course_site.course
    hub = start_hub(hub_factory, site.profiles, _hub_config(site))
    assert hub.api("GET", f"/users/{GRADER}").json()["groups"] == [course.formgrade_group]
    assert hub.api("GET", f"/users/{STUDENT}").json()["groups"] == [course.student_group]

    # the formgrader: the hub service of the course, for formgrade-<id> only, framable by the hub's pages
    url = f"{hub.url}/services/{course.id}/formgrader/manage_assignments"
    reply = _wait_for(url, {"Authorization": f"token {hub.user_token(GRADER)}"})
    assert reply is not None and reply.status_code == 200, f"{reply and reply.status_code}\n{hub.log()}"
    assert "frame-ancestors 'self'" in reply.headers.get("Content-Security-Policy", ""), reply.headers
    # on the users' network at its fixed address, where autograded student code reaches only the hub API
    networks = inspect(FORMGRADER)["NetworkSettings"]["Networks"]
    assert list(networks) == [HARNESS_NETWORK.name], list(networks)
    assert networks[HARNESS_NETWORK.name]["IPAddress"] == nbgrader.formgrader_address(HARNESS_NETWORK.subnet, 0)
    # in the users' cgroup parent, like the users' servers (its limits cover the code it autogrades)
    assert inspect(FORMGRADER)["HostConfig"]["CgroupParent"] == ensure_users_parent(hub.users_cgroup)
    denied = requests.get(url, headers={"Authorization": f"token {hub.user_token(STUDENT)}"}, timeout=10,
                          allow_redirects=False)
    assert denied.status_code == 403, (denied.status_code, denied.text[:300])

    # the student's server, spawned by the hub: the student is in the Unix group nbgrader-<id> (as
    # the role makes it), so the spawner gives them the @nbgrader-<id> profile
    profile = effective_profile(parse_profiles(site.profiles), STUDENT, [course.student_group])
    assert profile.allowed_images == ("Student",)
    spawn_ready(hub, STUDENT, {"image_profile": "Student", "resource_profile": "Small"})
    hub.wait_ready(STUDENT)
    server = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.jupyterhub-baremetal.user={STUDENT}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert server, "no server container of the student"
    info = inspect(server)
    assert info["Config"]["Image"] == site.student_image, info["Config"]["Image"]
    mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in info["Mounts"]}
    assert mounts[str(site.exchange)] == (str(site.exchange), True), mounts
    assert mounts["/etc/passwd"] == ("/etc/passwd", False), mounts
    assert info["Config"]["User"].split(":")[0] == str(site.student.pw_uid)

    root = nbgrader.course_root(course, site.home_format)
    _run(FORMGRADER, "nbgrader", "generate_assignment", "ps1", "--create", cwd=root)
    _run(FORMGRADER, "nbgrader", "release_assignment", "ps1", cwd=root)
    assert (site.exchange / COURSE_ID / "outbound" / "ps1" / "ps1.ipynb").is_file()  # path_includes_course

    assert "ps1" in _run(server, "nbgrader", "list", "--course", COURSE_ID)
    _run(server, "nbgrader", "fetch_assignment", "ps1", "--course", COURSE_ID)
    fetched = Path(site.student.pw_dir, COURSE_ID, "ps1", "ps1.ipynb")  # <course>/<assignment>
    assert fetched.stat().st_uid == site.student.pw_uid  # the student's own files, by their host uid
    body = "".join(json.loads(fetched.read_text())["cells"][0]["source"])
    assert "raise NotImplementedError()" in body and "return a + b" not in body  # the solution was stripped
    _run(server, "python3", "-c",
         "import json,sys; p=sys.argv[1]; nb=json.load(open(p)); c=nb['cells'][0]; "
         "c['source']=''.join(c['source']).replace('raise NotImplementedError()','return a + b'); "
         "json.dump(nb,open(p,'w'))", str(fetched))
    _run(server, "nbgrader", "submit", "ps1", "--course", COURSE_ID)
    inbound = list((site.exchange / COURSE_ID / "inbound").iterdir())
    assert [p.name.split("+")[:2] for p in inbound] == [[STUDENT, "ps1"]], inbound

    _run(FORMGRADER, "nbgrader", "collect", "ps1", cwd=root)
    assert Path(root, "submitted", STUDENT, "ps1", "ps1.ipynb").is_file()
    _run(FORMGRADER, "nbgrader", "autograde", "ps1", "--create", cwd=root)
    score = _run(FORMGRADER, "python3", "-c",
                 "from nbgrader.api import Gradebook; gb=Gradebook('sqlite:///gradebook.db'); "
                 f"s=gb.find_submission('ps1', {STUDENT!r}); print(s.score, s.max_score); gb.close()", cwd=root)
    assert score.split()[:2] == ["3.0", "3.0"], score
    # course membership came from the hub (JupyterHubAuthPlugin, with the student server's own token)
    assert f"200 GET /hub/api/users/{STUDENT} ({STUDENT}@" in hub.log(tail=100000), hub.log()
