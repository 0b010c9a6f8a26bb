"""The rendered jupyterhub_config.py with nbgrader courses (issue 11.5): the role's template,
rendered with Jinja as Ansible does and executed against a traitlets Config, sets the course
groups, roles and formgrader services from profilespawner.nbgrader (one place makes them)."""
import json
import pwd
import types
from pathlib import Path

import jinja2
import yaml
from traitlets.config import Config

from profilespawner import nbgrader

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "roles" / "jupyterhub" / "templates" / "jupyterhub_config.py.j2"
COURSE = {"id": "course101", "teachers": ["root"], "students": ["daemon"], "teacher_image": "Teacher",
          "student_image": "Student", "port": 9990, "grader": "nobody"}


def _settings(profiles_file, courses):
    return {"bind_url": "http://127.0.0.1:8000", "https": False, "ssl_cert": "", "ssl_key": "", "hub_ip": "127.0.0.1",
            "hub_port": 8081, "proxy_command": ["chp"], "state_dir": "/tmp", "admin_users": [], "allowed_users": [],
            "allowed_groups": [], "allow_all": False, "authenticator": "pam", "ldap_settings": {},
            "oauth_class": "", "oauth_settings": {}, "spawner": {"profiles_file": str(profiles_file), "network_name": "jupyterhub-users",
                        "cgroup_parent": "jupyterhub-users.slice"},
            "idle_culler": True, "idle_timeout": 60, "panel": True, "panel_user": "nobody",
            "prometheus_service": False,
            "nbgrader": {"courses": courses, "exchange": "/srv/nbgrader/exchange", "config_dir": "/srv/nbgrader/config",
                         "subnet": "10.250.0.0/16"}}


def _render(tmp_path, courses):
    profiles = {"resource_profiles": {"Tiny": {"cpu_limit": 1, "mem_limit": "1G"}},
                "image_profiles": {"Teacher": {"image": "teach:1"}, "Student": {"image": "stud:1"}},
                "user_profiles": {"default": {"allowed_resources": ["Tiny"], "allowed_images": ["Student"]}}}
    profiles_file = tmp_path / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump(profiles))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    text = env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="test", jupyterhub_settings=_settings(profiles_file, courses), jupyterhub_extra_config="")
    c = Config()
    exec(compile(text, str(TEMPLATE), "exec"), {"get_config": lambda: c})
    return c


def test_courses_make_groups_roles_and_services(tmp_path):
    c = _render(tmp_path, [COURSE])
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


def test_no_courses_no_course_settings(tmp_path):
    c = _render(tmp_path, [])
    assert not any(r["name"].startswith("formgrade-") for r in c.JupyterHub.load_roles)
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler", "resources"]
