"""nbgrader courses: from one list of courses, everything the hub, the profiles and the host need.

One inventory variable (`jupyterhub_nbgrader_courses`) describes each course once::

    - {id: course101, teachers: [alice], students: [bob], student_groups: [cs101],
       teacher_image: Teacher, student_image: Student, port: 9990}

and these pure functions derive from it (jupyterhub_config.py and the role call them, as
hubmetrics.panel.hubconfig does for the panel):

- `profiles_with_courses`: the `@formgrade-<id>` and `@nbgrader-<id>` user profiles (teachers' and
  students' images, the exchange as a data mount), checked by the one profiles validator;
- `hub_groups`, `load_roles`: the hub groups nbgrader's JupyterHubAuthPlugin reads and the scopes
  that let `formgrade-<id>` reach the course's formgrader;
- `service_definitions`: the formgrader of each course as a hub-managed service, a container of the
  teacher image running as the course's grader account (`grader-<id>`), as nbgrader's "Using
  nbgrader with JupyterHub" sets it up;
- `global_config`, `grader_config`, `grader_server_config`: the nbgrader_config.py files.

Names follow nbgrader: the service is named like the course, instructors are in
`formgrade-<course>`, students in `nbgrader-<course>` (both hub groups and, for the profiles, Unix
groups of the same name with the same members), the grader account is `grader-<course>`.
"""

import copy
import ipaddress
import json
import posixpath
import re
import sys
from dataclasses import dataclass
from typing import Tuple

from .profiles import DEFAULT_HOME, ProfilesError, parse_profiles

SOURCE = "jupyterhub_nbgrader_courses"
COURSE_KEYS = ("id", "teachers", "students", "student_groups", "teacher_image", "student_image", "port", "grader")
# nbgrader's multi-course layout under one exchange (Exchange.path_includes_course)
DEFAULT_EXCHANGE = "/srv/nbgrader/exchange"
# nbgrader's docs: the exchange must exist and be writable by everyone (its demos: chmod 777)
EXCHANGE_MODE = 0o777
# where the global nbgrader_config.py is shown in every course container: a directory on Jupyter's
# config path that images leave empty (docker-stacks keep their own files in /etc/jupyter)
CONTAINER_CONFIG_DIR = "/usr/local/etc/jupyter"
# a course id is a hub service name, a group suffix, a Unix user/group suffix and a directory
COURSE_ID = re.compile(r"^[a-z][a-z0-9_]{0,22}$")
NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
# nbgrader names a student by the passwd entry of their uid (nbgrader.utils.get_username:
# pwd.getpwuid), so course containers, which run as the host uid, see the host's account files
# (read-only; world-readable on the host anyway). Accounts only in NSS (LDAP via sssd/nslcd) are
# not in these files: such sites need the files written for the course members instead.
ACCOUNT_FILES = ("/etc/passwd", "/etc/group")
# JupyterHub ≥ 4.1 forbids framing a server's pages unless it says otherwise; the formgrader's
# pages are framed by the instructor's JupyterLab, on the hub's own origin
FRAME_POLICY = {"Content-Security-Policy": "frame-ancestors 'self'"}


class CoursesError(ValueError):
    """The courses list is unusable; ``problems`` holds one message per problem."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Course:
    id: str
    teachers: Tuple[str, ...]
    students: Tuple[str, ...]
    student_groups: Tuple[str, ...]
    teacher_image: str
    student_image: str
    port: int
    grader_account: str = ""

    @property
    def formgrade_group(self) -> str:
        return f"formgrade-{self.id}"

    @property
    def student_group(self) -> str:
        return f"nbgrader-{self.id}"

    @property
    def grader(self) -> str:
        """The course's grader account (nbgrader's grader-<course>): owns the course directory."""
        return self.grader_account or f"grader-{self.id}"


def _names(value, path, problems, what="user names"):
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"{path}: {value!r} is not a list; allowed: a list of {what}")
        return ()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not NAME.match(item):
            problems.append(f"{path}[{i}]: {item!r} is not a valid name; allowed: {what} "
                            "(lower-case letters, digits, '_', '.', '-', at most 32 characters)")
    return tuple(v for v in value if isinstance(v, str))


def parse_courses(data) -> Tuple[Course, ...]:
    """Validate the inventory's course list, or raise CoursesError naming each bad field.

    Images are image-profile names; they are checked against the profiles by
    `profiles_with_courses` (the one profiles validator)."""
    problems = []
    if not isinstance(data, list):
        raise CoursesError([f"{SOURCE}: {data!r} is not a list; allowed: a list of courses "
                            "{id, teachers, students, student_groups, teacher_image, student_image, port}"])
    courses, ids, ports = [], {}, {}
    for n, spec in enumerate(data):
        path = f"{SOURCE}[{n}]"
        if not isinstance(spec, dict):
            problems.append(f"{path}: {spec!r} is not a mapping; allowed keys: {', '.join(COURSE_KEYS)}")
            continue
        before = len(problems)
        for key in spec:
            if key not in COURSE_KEYS:
                problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(COURSE_KEYS)}")
        cid = spec.get("id")
        if not isinstance(cid, str) or not COURSE_ID.match(cid):
            problems.append(f"{path}.id: {cid!r} is not a course id; allowed: a lower-case letter, then letters, "
                            "digits or '_' (at most 23: it names the hub service, grader-<id> and the groups)")
        elif cid in ids:
            problems.append(f"{path}.id: {cid!r} is already the id of {SOURCE}[{ids[cid]}]; allowed: each id once")
        else:
            ids[cid] = n
        teachers = _names(spec.get("teachers"), f"{path}.teachers", problems)
        if not teachers:
            problems.append(f"{path}.teachers: missing or empty; allowed: a non-empty list of user names "
                            "(the members of formgrade-<id>)")
        students = _names(spec.get("students"), f"{path}.students", problems)
        groups = _names(spec.get("student_groups"), f"{path}.student_groups", problems, "Unix group names")
        images = {}
        for key in ("teacher_image", "student_image"):
            value = spec.get(key)
            if not isinstance(value, str) or not value:
                problems.append(f"{path}.{key}: {value!r} is not an image profile name; allowed: a name from "
                                "jupyterhub_profiles.image_profiles")
            images[key] = value
        port = spec.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
            problems.append(f"{path}.port: {port!r} is not a port; allowed: an integer 1024-65535, free on the "
                            "hub's loopback, the fallback without a users' network (the course's formgrader listens on it)")
        elif port in ports:
            problems.append(f"{path}.port: {port} is already the port of {SOURCE}[{ports[port]}]; allowed: each port once")
        else:
            ports[port] = n
        grader = spec.get("grader", "")
        if grader != "" and (not isinstance(grader, str) or not NAME.match(grader) or grader == "root"):
            problems.append(f"{path}.grader: {grader!r} is not a valid grader account; allowed: an unprivileged "
                            "Unix user name (default grader-<id>; the formgrader runs as it)")
        if len(problems) == before:
            courses.append(Course(cid, teachers, students, groups, images["teacher_image"],
                                  images["student_image"], port, grader))
    if problems:
        raise CoursesError(problems)
    return tuple(courses)


# ---------------------------------------------------------------- profiles


def exchange_mount(exchange_root=DEFAULT_EXCHANGE):
    """The exchange as a data mount: the same path inside as outside, writable."""
    return {"host_path": exchange_root, "container_path": exchange_root, "rw": True}


def config_mount(config_dir):
    """The host directory holding the global nbgrader_config.py, read-only on Jupyter's config path."""
    return {"host_path": config_dir, "container_path": CONTAINER_CONFIG_DIR, "rw": False}


def profiles_with_courses(profiles, courses, exchange_root=DEFAULT_EXCHANGE, config_dir=None, source="profiles"):
    """The profiles data plus, per course, `@formgrade-<id>` (allowed_images: the teacher image)
    and `@nbgrader-<id>` and `@<student_group>` (the student image), each with the default's data
    mounts plus the exchange (and the config directory). Validated by `parse_profiles`; a bad
    image name is reported there, e.g. `user_profiles.@nbgrader-c.allowed_images[0]: unknown
    image profile 'X'; allowed: ...`. An entry the operator wrote for one of these groups is an
    error (two sources for one fact)."""
    data = copy.deepcopy(profiles)
    users = data.setdefault("user_profiles", {})
    default_mounts = list((users.get("default") or {}).get("data_mounts") or [])
    extra = [exchange_mount(exchange_root)] + ([config_mount(config_dir)] if config_dir else []) \
        + [{"host_path": f, "container_path": f, "rw": False} for f in ACCOUNT_FILES]
    mounts = default_mounts + [m for m in extra if m["container_path"] not in
                               {d.get("container_path") for d in default_mounts if isinstance(d, dict)}]
    problems, owner = [], {}
    for n, course in enumerate(courses):
        for group, image in ([(course.formgrade_group, course.teacher_image),
                              (course.student_group, course.student_image)]
                             + [(g, course.student_image) for g in course.student_groups]):
            key = "@" + group
            if key in owner:
                if users[key]["allowed_images"] != [image]:
                    problems.append(f"{SOURCE}[{n}]: group {group!r} already gets image profile "
                                    f"{users[key]['allowed_images'][0]!r} from {owner[key]}; allowed: one image per group")
                continue
            if key in users:
                problems.append(f"user_profiles.{key}: also derived from {SOURCE}[{n}] ({course.id}); allowed: "
                                "one source, remove the entry from jupyterhub_profiles")
                continue
            owner[key] = f"{SOURCE}[{n}]"
            users[key] = {"allowed_images": [image], "data_mounts": copy.deepcopy(mounts)}
    if problems:
        raise ProfilesError(problems, source)
    parse_profiles(data, source)  # the one validator: image names, mounts
    return data


# ---------------------------------------------------------------- hub


def hub_groups(courses, group_members=lambda group: ()):
    """`c.JupyterHub.load_groups`: formgrade-<id> = teachers + the grader account, nbgrader-<id> =
    students + the members of the student groups (`group_members(name)`, e.g. from grp)."""
    groups = {}
    for course in courses:
        groups[course.formgrade_group] = {"users": sorted({*course.teachers, course.grader})}
        members = set(course.students)
        for group in course.student_groups:
            members.update(group_members(group))
        groups[course.student_group] = {"users": sorted(members)}
    return groups


def load_roles(courses):
    """`c.JupyterHub.load_roles` entries: instructors may use their course's formgrader, students may
    see it exists; the course's service may read who is in which course and enrol students
    (nbgrader's JupyterHubAuthPlugin: GET /users/<name>, POST /groups/nbgrader-<id>/users)."""
    roles = []
    for course in courses:
        roles.append({"name": course.formgrade_group,
                      "description": f"Instructors of {course.id}: use its formgrader",
                      "scopes": [f"access:services!service={course.id}", "list:services",
                                 f"read:services!service={course.id}"],
                      "groups": [course.formgrade_group]})
        roles.append({"name": course.student_group,
                      "description": f"Students of {course.id}",
                      "scopes": ["list:services", f"read:services!service={course.id}"],
                      "groups": [course.student_group]})
        roles.append({"name": f"{course.id}-service",
                      "description": f"The formgrader of {course.id}: course membership",
                      "scopes": ["read:users:name", "read:users:groups", "list:groups",
                                 f"read:groups!group={course.formgrade_group}",
                                 f"read:groups!group={course.student_group}",
                                 f"groups!group={course.student_group}"],
                      "services": [course.id]})
    return roles


def grader_home(course, home_format=DEFAULT_HOME):
    return home_format.format(username=course.grader)


def course_root(course, home_format=DEFAULT_HOME):
    """nbgrader's course directory: in the grader account's home, as nbgrader's docs put it."""
    return posixpath.join(grader_home(course, home_format), course.id)


def formgrader_address(subnet, index):
    """The fixed address of the index-th course's formgrader on the users' network: from the top of
    the subnet down (Docker hands out addresses from the bottom up), so the hub can name it in the
    service's url before the container exists."""
    net = ipaddress.ip_network(subnet)
    address = net.broadcast_address - 1 - index
    if address <= net.network_address + 1:
        raise ValueError(f"users' network {subnet}: no address left for formgrader {index}")
    return str(address)


def formgrader_container(course, image, uid, gid, home, exchange_root=DEFAULT_EXCHANGE, config_dir=None,
                         docker="docker", env_names=(), command=None, network=None, address=None,
                         cgroup_parent=None):
    """`docker run` argv of a course's formgrader: the teacher image as the grader's uid, its home,
    the exchange. On the users' network at `address` when given (where the hub reaches user
    servers and autograded student code reaches nothing but the hub API), else on the host's
    loopback. Either way it listens on the course's port and the hub proxies to it. `cgroup_parent`:
    the users' slice, whose limits then cover the code it autogrades too."""
    name = f"jbm-formgrader-{course.id}"
    where = ["--network", network, "--ip", address] if network else ["--network", "host"]
    argv = [docker, "run", "--rm", "--name", name, *where, "--user", f"{uid}:{gid}",
            *(["--cgroup-parent", cgroup_parent] if cgroup_parent else []),
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-e", f"HOME={home}", "-e", f"JUPYTERHUB_USER={course.grader}", "-w", home,
            "-v", f"{home}:{home}", "-v", f"{exchange_root}:{exchange_root}"]
    if config_dir:
        argv += ["-v", f"{config_dir}:{CONTAINER_CONFIG_DIR}:ro"]
    for f in ACCOUNT_FILES:
        argv += ["-v", f"{f}:{f}:ro"]
    for env in env_names:
        argv += ["-e", env]  # passed through from the hub's environment for the service
    listen = "0.0.0.0" if network else "127.0.0.1"
    return argv + [image, *(command or ["jupyterhub-singleuser", f"--ip={listen}", f"--port={course.port}"])]


# what the hub sets for a managed service and jupyterhub-singleuser reads
SERVICE_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_BASE_URL",
               "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_HOST", "JUPYTERHUB_OAUTH_CALLBACK_URL",
               "JUPYTERHUB_OAUTH_SCOPES", "JUPYTERHUB_OAUTH_ACCESS_SCOPES", "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
               "JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_SERVICE_NAME",
               "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_SERVICE_URL")


def service_definitions(courses, images, account, home_format=DEFAULT_HOME, exchange_root=DEFAULT_EXCHANGE,
                        config_dir=None, docker="docker", network=None, subnet=None, cgroup_parent=None):
    """`c.JupyterHub.services` entries: one formgrader per course, named like the course.

    `images`: image profile name -> image reference (the profiles' image_profiles);
    `account(name)`: a pwd entry (pw_uid, pw_gid) of the grader account. The hub (root) runs
    the `docker run` client; the formgrader itself runs as the grader's uid."""
    services = []
    for n, course in enumerate(courses):
        grader = account(course.grader)
        home = grader_home(course, home_format)
        address = formgrader_address(subnet, n) if network else "127.0.0.1"
        argv = formgrader_container(course, images[course.teacher_image], grader.pw_uid, grader.pw_gid, home,
                                    exchange_root, config_dir, docker, SERVICE_ENV,
                                    network=network, address=address if network else None,
                                    cgroup_parent=cgroup_parent)
        name = argv[argv.index("--name") + 1]
        services.append({
            "name": course.id,
            "url": f"http://{address}:{course.port}",
            # a container left by a hub that died is replaced, not a name conflict
            "command": ["/bin/sh", "-c", f'{docker} rm -f {name} >/dev/null 2>&1; exec "$@"', "formgrader", *argv],
            "oauth_no_confirm": True,
            "display": True,
        })
    return services


def hub_settings(courses_data, profiles, group_members, account, exchange_root=DEFAULT_EXCHANGE, config_dir=None,
                 docker="docker", network=None, subnet=None, cgroup_parent=None):
    """Everything jupyterhub_config.py sets for the courses, from the inventory's list and the
    loaded profiles (`profilespawner.profiles.Profiles`): load_groups, load_roles, services."""
    courses = parse_courses(courses_data)
    home_format = profiles.users["default"].host_homedir_format_string or DEFAULT_HOME
    images = {name: p.image for name, p in profiles.images.items()}
    return {"load_groups": hub_groups(courses, group_members),
            "load_roles": load_roles(courses),
            "services": service_definitions(courses, images, account, home_format, exchange_root, config_dir, docker,
                                            network, subnet, cgroup_parent)}


# ---------------------------------------------------------------- nbgrader_config.py files


def global_config(exchange_root=DEFAULT_EXCHANGE, hub_auth=True):
    """The nbgrader_config.py every course container reads (Jupyter's config path): the shared
    exchange, several courses in it, course membership from the hub's groups."""
    lines = ["# Rendered by jupyterhub-baremetal from jupyterhub_nbgrader_courses; do not edit.",
             "c = get_config()  # noqa: F821", f"c.Exchange.root = {exchange_root!r}",
             "c.Exchange.path_includes_course = True"]
    if hub_auth:
        lines.insert(1, "from nbgrader.auth import JupyterHubAuthPlugin")
        lines.append("c.Authenticator.plugin_class = JupyterHubAuthPlugin")
    return "\n".join(lines) + "\n"


def grader_config(course, home_format=DEFAULT_HOME):
    """~grader-<id>/.jupyter/nbgrader_config.py: the course directory and id."""
    return ("# Rendered by jupyterhub-baremetal from jupyterhub_nbgrader_courses; do not edit.\n"
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.root = {course_root(course, home_format)!r}\n"
            f"c.CourseDirectory.course_id = {course.id!r}\n")


def grader_server_config():
    """~grader-<id>/.jupyter/jupyter_server_config.py: let the hub's own pages frame the formgrader."""
    return ("# Rendered by jupyterhub-baremetal: JupyterHub >= 4.1 forbids framing by default; the\n"
            "# formgrader is framed by JupyterLab on the hub's origin.\n"
            "c = get_config()  # noqa: F821\n"
            f"c.ServerApp.tornado_settings = {{'headers': {FRAME_POLICY!r}}}\n")


def role_plan(courses_data, profiles, exchange_root=DEFAULT_EXCHANGE, config_dir=None):
    """What the Ansible role needs, as one JSON-able document (the shell only writes it out)."""
    courses = parse_courses(courses_data)
    home_format = (profiles.get("user_profiles", {}).get("default", {}) or {}).get(
        "host_homedir_format_string", DEFAULT_HOME)
    return {
        "profiles": profiles_with_courses(profiles, courses, exchange_root, config_dir),
        "exchange_mode": f"{EXCHANGE_MODE:04o}",
        "global_config": global_config(exchange_root),
        "unix_groups": {g: sorted(m["users"]) for g, m in hub_groups(courses).items()},
        "graders": [{"name": c.grader, "home": grader_home(c, home_format), "course_root": course_root(c, home_format),
                     "dirs": [posixpath.join(grader_home(c, home_format), ".jupyter"), course_root(c, home_format),
                              posixpath.join(course_root(c, home_format), "source")],
                     "nbgrader_config": grader_config(c, home_format), "server_config": grader_server_config()}
                    for c in courses],
    }


def main(argv=None):
    """`python -m profilespawner.nbgrader < {"courses":..., "profiles":..., "exchange_root":..., "config_dir":...}`
    prints the role's plan as JSON; exit 1 with one problem a line on stderr."""
    request = json.load(sys.stdin)
    try:
        plan = role_plan(request.get("courses") or [], request["profiles"],
                         request.get("exchange_root") or DEFAULT_EXCHANGE, request.get("config_dir"))
    except (CoursesError, ProfilesError) as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 1
    json.dump(plan, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
