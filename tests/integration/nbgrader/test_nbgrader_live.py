"""nbgrader end to end in real containers (issue 11.5): the course's grader account releases an
assignment, a student fetches and submits it, the grader collects and autogrades it, and the
gradebook holds the grade.

Everything the containers get comes from profilespawner.nbgrader: the student's image and mounts
from the course's `@nbgrader-<id>` profile (through the one profiles validator), the grader's
container from the formgrader service's own `docker run` arguments, the nbgrader_config.py files
from the same functions the role writes them with. Real system users (their uids own the files),
one shared exchange directory with nbgrader's mode, the real nbgrader 0.9.x CLI.
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
from tests.harness.hub import free_port
from tests.harness.profiles import sample_profiles

pytestmark = pytest.mark.integration

COURSE_ID = "jbmnbg101"
GRADER, STUDENT = "jbm-nbg-grader", "jbm-nbg-student"
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


@pytest.fixture
def course_site(docker_engine, system_users):
    image = images.ensure_nbgrader_image()
    root = Path(f"/srv/jbm-nbg-{uuid.uuid4().hex[:8]}")
    exchange, config_dir = root / "exchange", root / "etc"
    containers = []
    try:
        # what the role does (tasks/nbgrader.yml): the exchange with nbgrader's mode, the global config
        exchange.mkdir(parents=True)
        os.chmod(exchange, nbgrader.EXCHANGE_MODE)
        config_dir.mkdir()
        # no hub here: course membership is not asked of a hub (JupyterHubAuthPlugin off)
        (config_dir / "nbgrader_config.py").write_text(nbgrader.global_config(str(exchange), hub_auth=False))
        grader = system_users(GRADER)
        student = system_users(STUDENT)
        profiles = sample_profiles(image)
        profiles["image_profiles"].update({"Teacher": {"image": image}, "Student": {"image": image}})
        (course,) = nbgrader.parse_courses([{"id": COURSE_ID, "teachers": [GRADER], "students": [STUDENT],
                                             "teacher_image": "Teacher", "student_image": "Student",
                                             "port": free_port(), "grader": GRADER}])
        raw = nbgrader.profiles_with_courses(profiles, [course], str(exchange), str(config_dir))
        profiles = parse_profiles(raw)
        home_format = profiles.users["default"].host_homedir_format_string
        grader_home = nbgrader.grader_home(course, home_format)
        # the grader's files, as the role writes them
        dot = Path(grader_home, ".jupyter")
        dot.mkdir(exist_ok=True)
        (dot / "nbgrader_config.py").write_text(nbgrader.grader_config(course, home_format))
        (dot / "jupyter_server_config.py").write_text(nbgrader.grader_server_config())
        source = Path(nbgrader.course_root(course, home_format), "source", "ps1")
        source.mkdir(parents=True)
        (source / "ps1.ipynb").write_text(json.dumps(_notebook()))
        subprocess.run(["chown", "-R", f"{grader.pw_uid}:{grader.pw_gid}", grader_home], check=True)

        # the grader's container: the formgrader service's own docker arguments, detached, idle
        argv = nbgrader.formgrader_container(course, image, grader.pw_uid, grader.pw_gid, grader_home,
                                             str(exchange), str(config_dir), command=["sleep", "infinity"])
        argv[argv.index("--name") + 1] = "jbm-nbg-grader"
        argv.insert(2, "-d")
        subprocess.run(["docker", "rm", "-f", "jbm-nbg-grader", "jbm-nbg-student"], capture_output=True)
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        containers.append("jbm-nbg-grader")

        # the student's container: image and mounts from the student's effective profile, as the
        # spawner runs a server (the user's uid, home, default-deny container, read-only root)
        p = effective_profile(profiles, STUDENT, [course.student_group])
        assert p.allowed_images == ("Student",)
        run = ["docker", "run", "-d", "--name", "jbm-nbg-student", "--user", f"{student.pw_uid}:{student.pw_gid}",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/tmp",
               "--network", "none", "-e", f"HOME={student.pw_dir}", "-e", f"USER={STUDENT}",
               "-e", f"JUPYTERHUB_USER={STUDENT}", "-w", student.pw_dir,
               "-v", f"{student.pw_dir}:{student.pw_dir}"]
        for m in p.data_mounts:
            run += ["-v", f"{m.host_path}:{m.container_path}:{'rw' if m.rw else 'ro'}"]
        run += [profiles.images[p.allowed_images[0]].image, "sleep", "infinity"]
        subprocess.run(run, check=True, capture_output=True, timeout=60)
        containers.append("jbm-nbg-student")
        yield types.SimpleNamespace(course=course, home_format=home_format, exchange=exchange, student=student,
                                    image=image, profiles=profiles, raw_profiles=raw, config_dir=config_dir)
    finally:
        subprocess.run(["docker", "rm", "-f", *containers, f"jbm-formgrader-{COURSE_ID}"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_release_fetch_submit_collect_autograde(course_site):
    course, home_format, exchange, student = (course_site.course, course_site.home_format, course_site.exchange,
                                              course_site.student)
    root = nbgrader.course_root(course, home_format)
    assert oct(os.stat(exchange).st_mode & 0o7777) == oct(nbgrader.EXCHANGE_MODE)

    _run("jbm-nbg-grader", "nbgrader", "generate_assignment", "ps1", "--create", cwd=root)
    _run("jbm-nbg-grader", "nbgrader", "release_assignment", "ps1", cwd=root)
    assert (exchange / COURSE_ID / "outbound" / "ps1" / "ps1.ipynb").is_file()  # path_includes_course

    listed = _run("jbm-nbg-student", "nbgrader", "list", "--course", COURSE_ID)
    assert "ps1" in listed, listed
    _run("jbm-nbg-student", "nbgrader", "fetch_assignment", "ps1", "--course", COURSE_ID)
    fetched = Path(student.pw_dir, COURSE_ID, "ps1", "ps1.ipynb")  # <course>/<assignment>: path_includes_course
    assert fetched.stat().st_uid == student.pw_uid  # the student's own files, by their host uid
    nb = json.loads(fetched.read_text())
    body = "".join(nb["cells"][0]["source"])
    assert "raise NotImplementedError()" in body and "return a + b" not in body  # the solution was stripped
    # the student answers (as the student: the file is theirs)
    _run("jbm-nbg-student", "python3", "-c",
         "import json,sys; p=sys.argv[1]; nb=json.load(open(p)); c=nb['cells'][0]; "
         "c['source']=''.join(c['source']).replace('raise NotImplementedError()','return a + b'); "
         "json.dump(nb,open(p,'w'))", str(fetched))
    _run("jbm-nbg-student", "nbgrader", "submit", "ps1", "--course", COURSE_ID)
    inbound = list((exchange / COURSE_ID / "inbound").iterdir())
    assert [p.name.split("+")[:2] for p in inbound] == [[STUDENT, "ps1"]], inbound

    _run("jbm-nbg-grader", "nbgrader", "collect", "ps1", cwd=root)
    assert Path(root, "submitted", STUDENT, "ps1", "ps1.ipynb").is_file()
    _run("jbm-nbg-grader", "nbgrader", "autograde", "ps1", "--create", cwd=root)
    score = _run("jbm-nbg-grader", "python3", "-c",
                 "from nbgrader.api import Gradebook; gb=Gradebook('sqlite:///gradebook.db'); "
                 f"s=gb.find_submission('ps1', {STUDENT!r}); print(s.score, s.max_score); gb.close()", cwd=root)
    assert score.split()[:2] == ["3.0", "3.0"], score


def test_formgrader_service_behind_the_hub(course_site, hub_factory):
    """The course's formgrader as the hub service jupyterhub_config.py makes (hub_settings): a
    member of formgrade-<id> reaches it, a student gets 403, and its pages may be framed by the
    hub's origin (JupyterHub >= 4.1 forbids framing unless the server says so)."""
    course = course_site.course
    settings = f"""
import grp, pwd
from profilespawner import nbgrader
from profilespawner.profiles import load_profiles
_nbgrader = nbgrader.hub_settings(
    {[{"id": course.id, "teachers": list(course.teachers), "students": list(course.students),
       "teacher_image": course.teacher_image, "student_image": course.student_image, "port": course.port,
       "grader": course.grader}]!r},
    load_profiles(c.DockerSystemProfileSpawner.profiles_file),
    group_members=lambda name: next((g.gr_mem for g in grp.getgrall() if g.gr_name == name), []),
    account=pwd.getpwnam, exchange_root={str(course_site.exchange)!r}, config_dir={str(course_site.config_dir)!r})
c.JupyterHub.load_groups = _nbgrader["load_groups"]
c.JupyterHub.load_roles.extend(_nbgrader["load_roles"])
c.JupyterHub.services.extend(_nbgrader["services"])
"""
    hub = hub_factory(profiles=course_site.raw_profiles, extra_config=settings)
    assert hub.api("GET", f"/users/{GRADER}").json()["groups"] == [course.formgrade_group]
    assert hub.api("GET", f"/users/{STUDENT}").json()["groups"] == [course.student_group]
    url = f"{hub.url}/services/{course.id}/formgrader/manage_assignments"
    teacher = {"Authorization": f"token {hub.user_token(GRADER)}"}
    deadline, reply = time.monotonic() + 90, None
    while time.monotonic() < deadline:  # the service's container starts with the hub
        try:
            reply = requests.get(url, headers=teacher, timeout=10, allow_redirects=False)
            if reply.status_code not in (502, 503, 404):
                break
        except requests.ConnectionError:
            pass
        time.sleep(1)
    assert reply is not None and reply.status_code == 200, f"{reply and reply.status_code}\n{hub.log()}"
    assert "frame-ancestors 'self'" in reply.headers.get("Content-Security-Policy", ""), reply.headers
    student = {"Authorization": f"token {hub.user_token(STUDENT)}"}
    denied = requests.get(url, headers=student, timeout=10, allow_redirects=False)
    assert denied.status_code == 403, (denied.status_code, denied.text[:300])
