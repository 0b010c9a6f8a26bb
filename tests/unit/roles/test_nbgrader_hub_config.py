"""The rendered jupyterhub_config.py with nbgrader courses (issue 11.5): the role's preflight and
template, run by ansible-playbook and executed against a traitlets Config, set the course
groups, roles and formgrader services from profilespawner.nbgrader (one place makes them)."""
import pwd
import types
from pathlib import Path


from profilespawner import nbgrader

from tests.harness.jupyterhub_role import converge, rendered

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "roles" / "jupyterhub" / "templates" / "jupyterhub_config.py.j2"
COURSE = {"id": "course101", "teachers": ["root"], "students": ["daemon"], "teacher_image": "Teacher",
          "student_image": "Student", "port": 9990, "grader": "nobody"}


PROFILES = {"resource_profiles": {"Tiny": {"cpu_limit": 1, "mem_limit": "1G"}},
            "image_profiles": {"Teacher": {"image": "teach:1"}, "Student": {"image": "stud:1"}},
            "user_profiles": {"default": {"allowed_resources": ["Tiny"], "allowed_images": ["Student"]}}}


def _render(tmp_path, monkeypatch, courses):
    """The role's preflight and config template (tests/unit/roles/jupyterhub_role.py), then the config."""
    run = converge(tmp_path, jupyterhub_authenticator="pam", jupyterhub_allowed_groups=["jupyterhub-users"],
                   jupyterhub_profiles=PROFILES, jupyterhub_nbgrader_courses=courses)
    assert run.returncode == 0, run.stdout[-3000:]
    return rendered(tmp_path, monkeypatch)


def test_courses_make_groups_roles_and_services(tmp_path, monkeypatch):
    c = _render(tmp_path, monkeypatch, [COURSE])
    assert c.JupyterHub.load_groups["formgrade-course101"] == {"users": ["nobody", "root"]}
    assert c.JupyterHub.load_groups["nbgrader-course101"] == {"users": ["daemon"]}
    roles = {r["name"] for r in c.JupyterHub.load_roles}
    assert {"formgrade-course101", "nbgrader-course101", "course101-service", "idle-culler"} <= roles
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "course101"]
    grader = pwd.getpwnam("nobody")
    account = types.SimpleNamespace(pw_uid=grader.pw_uid, pw_gid=grader.pw_gid)
    expected = nbgrader.service_definitions(nbgrader.parse_courses([COURSE]), {"Teacher": "teach:1"},
                                            lambda name: account, exchange_root="/srv/nbgrader/exchange",
                                            config_dir="/srv/nbgrader/config", network="jupyterhub-users",
                                            subnet="10.250.0.0/16", cgroup_parent="jupyterhub-users.slice")
    assert service == expected[0] and service["url"] == "http://10.250.255.254:9990"
    assert "jupyterhub-users.slice" in service["command"]  # the users' slice: its limits cover autograding


def test_no_courses_no_course_settings(tmp_path, monkeypatch):
    c = _render(tmp_path, monkeypatch, [])
    assert not any(r["name"].startswith("formgrade-") for r in c.JupyterHub.load_roles)
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler", "prometheus", "resources"]   # the role's defaults
