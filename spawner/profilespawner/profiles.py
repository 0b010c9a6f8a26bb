"""The profiles file: loaded and validated once into immutable values.

Every problem is collected (not just the first) and named by its key path, the bad
value and what is allowed, because the same messages reach the admin through the hub's
start-up log and through Ansible's ``template: validate:``.
"""

import json
import math
import posixpath
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Tuple

import yaml

from .qos import MAX_CPU_GUARANTEE, MIN_CPU_LIMIT, MIN_CPU_TEXT, MIN_MEMORY, MIN_MEMORY_TEXT
from .sizes import SizeError, counted, format_binary, format_size, parse_size

DEFAULT_HOME = "/home/{username}"
USER_KEYS = ("allowed_resources", "allowed_images", "host_homedir_format_string", "max_preallocate",
             "data_mounts")
RESOURCE_KEYS = ("cpu_limit", "mem_limit", "cpu_guarantee", "mem_guarantee", "gpus", "description", "tmp_size",
                 "disk_quota")
IMAGE_KEYS = ("image", "description", "allow_privilege_escalation", "cap_add", "read_only_root", "courses")
DATA_MOUNT_KEYS = ("host_path", "container_path", "rw")
# the smallest /tmp a resource profile may set (a tmpfs needs at least a page; less is a typo)
MIN_TMP_SIZE = 1024**2
# the smallest home quota a resource profile may set (less cannot hold a notebook's checkpoints;
# it is a typo such as 20 for 20G)
MIN_DISK_QUOTA = 1024**2
# container paths a data mount may not cover: the root, what the spawner or Docker mounts itself
RESERVED_CONTAINER_PATHS = ("/", "/tmp", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/lib", "/sbin")
# Linux capabilities an image profile may add back (Docker's names, without CAP_)
CAPABILITIES = (
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN",
    "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
)
PREALLOCATE_KEYS = ("cpu_guarantee", "mem_guarantee")
TOP_KEYS = ("resource_profiles", "image_profiles", "user_profiles")


class ProfilesError(ValueError):
    """The profiles file is unusable; ``problems`` holds one message per problem."""

    def __init__(self, problems, source="profiles"):
        self.problems = tuple(problems)
        self.source = source
        super().__init__(f"{source}: " + "\n".join(self.problems) if len(self.problems) == 1
                         else f"{source}: {len(self.problems)} problems:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class ResourceProfile:
    name: str
    cpu_limit: float
    mem_limit: int
    gpus: int = 0
    description: str = ""
    # the operator's floor: every server of this profile is guaranteed at least this much
    # (and gets it when the user asks for nothing), so nobody on it can be starved
    cpu_guarantee: float = 0.0
    mem_guarantee: int = 0
    # size of the server's /tmp (a tmpfs, charged to its memory); None: request.DEFAULT_TMP_FRACTION
    # of the spawn's mem_limit
    tmp_size: Optional[int] = None
    # bytes the user's files may take on the homes' filesystem (a user quota the spawner sets at
    # each start, profilespawner.quota); None: the spawner leaves the user's quota alone
    disk_quota: Optional[int] = None


@dataclass(frozen=True)
class ImageProfile:
    name: str
    image: str
    description: str = ""
    # opt-outs of the default-deny container (spawner/README.md "Least privilege"): setuid
    # binaries may gain privileges, capabilities added back, a writable root filesystem
    allow_privilege_escalation: bool = False
    cap_add: Tuple[str, ...] = ()
    read_only_root: bool = True
    # LMS course ids (LTI context_id) this image is for: a launch from one of them narrows the
    # user's allowed_images to the course's images (profilespawner.courses)
    courses: Tuple[str, ...] = ()

    @property
    def opt_outs(self) -> Tuple[str, ...]:
        """What this image is allowed beyond the default-deny container, in words (the form shows them)."""
        words = []
        if self.allow_privilege_escalation:
            words.append("setuid programs may gain privileges")
        if self.cap_add:
            words.append("capabilities " + ", ".join(self.cap_add))
        if not self.read_only_root:
            words.append("writable root filesystem")
        return tuple(words)


@dataclass(frozen=True)
class DataMount:
    """A host directory shown in the container (read-only unless rw)."""

    host_path: str
    container_path: str
    rw: bool = False


@dataclass(frozen=True)
class MaxPreallocate:
    cpu_guarantee: float = 0.0
    mem_guarantee: int = 0


@dataclass(frozen=True)
class UserEntry:
    """One entry of user_profiles as written: None means "not set here, fall through"."""

    allowed_resources: Optional[Tuple[str, ...]] = None
    allowed_images: Optional[Tuple[str, ...]] = None
    host_homedir_format_string: Optional[str] = None
    max_preallocate: Optional[MaxPreallocate] = None
    data_mounts: Optional[Tuple[DataMount, ...]] = None


@dataclass(frozen=True)
class UserProfile:
    """What one user may do, after the merge rule."""

    allowed_resources: Tuple[str, ...]
    allowed_images: Tuple[str, ...]
    host_homedir_format_string: str
    max_preallocate: MaxPreallocate
    data_mounts: Tuple[DataMount, ...] = ()


@dataclass(frozen=True)
class Profiles:
    resources: Mapping[str, ResourceProfile]
    images: Mapping[str, ImageProfile]
    users: Mapping[str, UserEntry]


def effective_profile(profiles: Profiles, username: str, groups=()) -> UserProfile:
    """Merge rule: each key from the user's entry, else the first of the user's groups
    (sorted by name) whose ``@group`` entry has it, else ``default``. Keys replace whole."""
    chain = [profiles.users.get(username)]
    chain += [profiles.users.get("@" + g) for g in sorted(set(groups))]
    chain.append(profiles.users["default"])
    entries = [e for e in chain if e is not None]

    def pick(key, fallback=None):
        for entry in entries:
            value = getattr(entry, key)
            if value is not None:
                return value
        return fallback

    return UserProfile(
        allowed_resources=pick("allowed_resources"),
        allowed_images=pick("allowed_images"),
        host_homedir_format_string=pick("host_homedir_format_string", DEFAULT_HOME),
        max_preallocate=pick("max_preallocate", MaxPreallocate()),
        data_mounts=pick("data_mounts", ()),
    )


# ---------------------------------------------------------------- validation


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(data, path, problems):
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping, got {data!r}")
        return {}
    return data


def _unknown_keys(data, allowed, path, problems):
    for key in data:
        if key not in allowed:
            problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(allowed)}")


def _resources(data, problems):
    result = {}
    for name, spec in _mapping(data, "resource_profiles", problems).items():
        path = f"resource_profiles.{name}"
        spec = _mapping(spec, path, problems)
        _unknown_keys(spec, RESOURCE_KEYS, path, problems)
        ok = True
        cpu = spec.get("cpu_limit")
        if "cpu_limit" not in spec:
            problems.append(f"{path}.cpu_limit: missing; allowed: a number of cores from {MIN_CPU_TEXT}")
            ok = False
        elif not _is_number(cpu) or cpu < MIN_CPU_LIMIT:
            problems.append(f"{path}.cpu_limit: {cpu!r} is not a valid limit; allowed: a number of cores from "
                            f"{MIN_CPU_TEXT} (Docker's smallest CPU quota)")
            ok = False
        mem = None
        if "mem_limit" not in spec:
            problems.append(f"{path}.mem_limit: missing; allowed: a size of at least {MIN_MEMORY_TEXT} such as 4G")
            ok = False
        else:
            try:
                mem = parse_size(spec["mem_limit"])
                if mem < MIN_MEMORY:
                    raise SizeError(f"{spec['mem_limit']!r} is below Docker's minimum memory limit")
            except SizeError as e:
                problems.append(f"{path}.mem_limit: {e}; must be at least {MIN_MEMORY_TEXT}")
                ok = False
        cpu_floor, mem_floor = _floors(spec, path, cpu if ok else None, mem if ok else None, problems)
        gpus = spec.get("gpus", 0)
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            problems.append(f"{path}.gpus: {gpus!r} is not a valid GPU count; allowed: an integer >= 0")
            ok = False
        desc = spec.get("description", "")
        if not isinstance(desc, str):
            problems.append(f"{path}.description: {desc!r} is not a string")
            ok = False
        tmp_size = _tmp_size(spec, path, mem if ok else None, problems)
        disk_quota = _disk_quota(spec, path, problems)
        if ok and cpu_floor is not None and mem_floor is not None and tmp_size is not False \
                and disk_quota is not False:
            if not desc:
                desc = f"{counted(cpu, 'CPU')}, {format_binary(mem)} RAM" + (f", {counted(gpus, 'GPU')}" if gpus else "") \
                    + (f", {format_binary(disk_quota)} home" if disk_quota else "")
            result[str(name)] = ResourceProfile(str(name), float(cpu), mem, gpus, desc,
                                                float(cpu_floor), mem_floor, tmp_size, disk_quota)
    return result


def _tmp_size(spec, path, mem_limit, problems):
    """The profile's /tmp size: None when not set, False when invalid. A tmpfs is charged to the
    container's memory, so more than mem_limit could only end in an OOM kill, never in ENOSPC."""
    if "tmp_size" not in spec:
        return None
    top = f"the profile's mem_limit ({format_size(mem_limit)})" if mem_limit is not None else "the profile's mem_limit"
    try:
        size = parse_size(spec["tmp_size"])
    except SizeError as e:
        problems.append(f"{path}.tmp_size: {e}; allowed: 1M to {top}")
        return False
    if size < MIN_TMP_SIZE or (mem_limit is not None and size > mem_limit):
        problems.append(f"{path}.tmp_size: {spec['tmp_size']!r} is not a valid /tmp size; allowed: 1M to {top} "
                        "(/tmp is kept in memory and counts against mem_limit)")
        return False
    return size


def _disk_quota(spec, path, problems):
    """The profile's home quota in bytes: None when not set, False when invalid."""
    if "disk_quota" not in spec:
        return None
    allowed = "a size of at least 1M such as 20G (the user's files on the homes' filesystem)"
    try:
        size = parse_size(spec["disk_quota"])
    except SizeError as e:
        problems.append(f"{path}.disk_quota: {e}; allowed: {allowed}")
        return False
    if size < MIN_DISK_QUOTA:
        problems.append(f"{path}.disk_quota: {spec['disk_quota']!r} is below 1M; allowed: {allowed}")
        return False
    return size


def _floors(spec, path, cpu_limit, mem_limit, problems):
    """A resource profile's guarantee floor: (cpu, mem), each None when invalid."""
    cpu = spec.get("cpu_guarantee", 0)
    cpu_top = min(cpu_limit, MAX_CPU_GUARANTEE) if cpu_limit is not None else MAX_CPU_GUARANTEE
    if not _is_number(cpu) or not 0 <= cpu <= cpu_top:
        problems.append(f"{path}.cpu_guarantee: {cpu!r} is not a valid guarantee floor; allowed: 0 to the "
                        f"profile's cpu_limit ({cpu_top:g} cores)")
        cpu = None
    mem_text = spec.get("mem_guarantee", 0)
    try:
        mem = parse_size(mem_text)
    except SizeError as e:
        problems.append(f"{path}.mem_guarantee: {e}")
        return cpu, None
    if 0 < mem < MIN_MEMORY or (mem_limit is not None and mem > mem_limit):
        top = format_size(mem_limit) if mem_limit is not None else "the profile's mem_limit"
        problems.append(f"{path}.mem_guarantee: {mem_text!r} is not a valid guarantee floor; allowed: 0, or "
                        f"{MIN_MEMORY_TEXT} to the profile's mem_limit ({top})")
        return cpu, None
    return cpu, mem


def _images(data, problems):
    result = {}
    for name, spec in _mapping(data, "image_profiles", problems).items():
        path = f"image_profiles.{name}"
        spec = _mapping(spec, path, problems)
        _unknown_keys(spec, IMAGE_KEYS, path, problems)
        image = spec.get("image")
        desc = spec.get("description", "")
        ok = True
        if not isinstance(image, str) or not image.strip():
            problems.append(f"{path}.image: {image!r} is not an image; allowed: a Docker image reference such as local/singleuser:latest")
            ok = False
        elif not isinstance(desc, str):
            problems.append(f"{path}.description: {desc!r} is not a string")
            ok = False
        flags = {}
        for key, default_value in (("allow_privilege_escalation", False), ("read_only_root", True)):
            value = spec.get(key, default_value)
            if not isinstance(value, bool):
                problems.append(f"{path}.{key}: {value!r} is not a boolean; allowed: true or false "
                                f"(default {str(default_value).lower()})")
                ok = False
            flags[key] = value
        caps = _capabilities(spec.get("cap_add", []), f"{path}.cap_add", problems)
        courses = _courses(spec.get("courses", []), f"{path}.courses", problems)
        if ok and caps is not None and courses is not None:
            result[str(name)] = ImageProfile(str(name), image, desc or image, cap_add=caps, courses=courses,
                                             **flags)
    return result


def _courses(value, path, problems):
    """courses: LMS course ids (LTI context_id; an integer such as 42 is the id "42") -> a tuple
    of strings, or None when invalid."""
    allowed = "a list of course ids (the LMS's LTI context_id) such as ['42', 'physics-101']"
    if not isinstance(value, list):
        problems.append(f"{path}: {value!r} is not a list; allowed: {allowed}")
        return None
    courses = []
    for i, item in enumerate(value):
        course = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(course, str) or not course.strip() or course != course.strip():
            problems.append(f"{path}[{i}]: {item!r} is not a course id; allowed: {allowed} "
                            "(non-empty, no surrounding spaces)")
            return None
        if course in courses:
            problems.append(f"{path}[{i}]: {item!r} is listed twice; allowed: each course once")
            return None
        courses.append(course)
    return tuple(courses)


def _capabilities(value, path, problems):
    """cap_add: Linux capability names (CAP_ prefix optional, any case) -> Docker's names, or None."""
    if not isinstance(value, list):
        problems.append(f"{path}: {value!r} is not a list; allowed: capability names such as [CHOWN, SETUID]")
        return None
    caps = []
    for i, item in enumerate(value):
        cap = item.upper().removeprefix("CAP_") if isinstance(item, str) else None
        if cap not in CAPABILITIES:
            problems.append(f"{path}[{i}]: {item!r} is not a Linux capability; allowed: {', '.join(CAPABILITIES)} "
                            "(ALL is refused: name each one the image needs)")
            return None
        if cap not in caps:
            caps.append(cap)
    return tuple(caps)


def _home_pattern(home_format):
    """A home format string as a regex of the homes it yields, and its fixed part before {username}."""
    head, _, tail = home_format.partition("{username}")
    return re.compile(re.escape(head) + "[^/]+" + re.escape(tail)), head


def _data_mounts(value, path, homes, problems):
    """data_mounts: a list of {host_path, container_path, rw} -> DataMounts, or None when invalid.
    A container path may not be a reserved path (/, /tmp, ...), a home of any home format in the
    file, nor a directory above the homes (which would hide them)."""
    if not isinstance(value, list):
        problems.append(f"{path}: {value!r} is not a list; allowed: a list of "
                        "{host_path: /srv/shared, container_path: /shared, rw: false}")
        return None
    mounts, seen, ok = [], {}, True
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: {item!r} is not a mapping; allowed keys: {', '.join(DATA_MOUNT_KEYS)}")
            ok = False
            continue
        before = len(problems)
        _unknown_keys(item, DATA_MOUNT_KEYS, where, problems)
        paths = {}
        for key in ("host_path", "container_path"):
            p = item.get(key)
            if key not in item:
                problems.append(f"{where}.{key}: missing; allowed: an absolute path")
            elif not isinstance(p, str) or not p.startswith("/") or (p != "/" and posixpath.normpath(p) != p) \
                    or "," in p or ":" in p:
                problems.append(f"{where}.{key}: {p!r} is not a normalised absolute path; allowed: e.g. /srv/shared "
                                "(no '..', '.', '//', trailing '/', ',' or ':')")
            else:
                paths[key] = posixpath.normpath(p)
        rw = item.get("rw", False)
        if not isinstance(rw, bool):
            problems.append(f"{where}.rw: {rw!r} is not a boolean; allowed: true (writable) or false (default, read-only)")
        target = paths.get("container_path")
        if target is not None:
            covered = [h for h, (regex, head) in homes.items()
                       if regex.fullmatch(target) or head.startswith(target.rstrip("/") + "/")]
            if target in RESERVED_CONTAINER_PATHS:
                problems.append(f"{where}.container_path: {target!r} is reserved; not allowed: "
                                f"{', '.join(RESERVED_CONTAINER_PATHS)}")
            elif covered:
                problems.append(f"{where}.container_path: {target!r} would cover the users' homes "
                                f"({covered[0]}); allowed: a path outside the homes, e.g. /shared")
            elif target in seen:
                problems.append(f"{where}.container_path: {target!r} is already mounted by {path}[{seen[target]}]; "
                                "allowed: each container path once")
            else:
                seen[target] = i
        if len(problems) == before:
            mounts.append(DataMount(paths["host_path"], target, rw))
        else:
            ok = False
    return tuple(mounts) if ok else None


def _name_list(value, path, known, kind, problems, all_names):
    if not isinstance(value, list) or not value:
        problems.append(f"{path}: {value!r} is not a non-empty list; allowed: names from {kind}s: {', '.join(all_names)}")
        return None
    good = True
    for i, item in enumerate(value):
        if item not in known:
            problems.append(f"{path}[{i}]: unknown {kind} {item!r}; allowed: {', '.join(all_names)}")
            good = False
    return tuple(value) if good else None


def _home(value, path, problems):
    if not isinstance(value, str) or "{username}" not in value:
        problems.append(f"{path}: {value!r} must contain {{username}}; e.g. /home/{{username}}")
        return None
    try:
        formatted = value.format(username="someone")
    except (KeyError, IndexError, ValueError) as e:
        problems.append(f"{path}: {value!r} may use only the field {{username}} ({e!r})")
        return None
    if not formatted.startswith("/"):
        problems.append(f"{path}: {value!r} is not an absolute path; e.g. /home/{{username}}")
        return None
    return value


def _preallocate(value, path, problems, largest_cpu, largest_mem):
    value = _mapping(value, path, problems)
    _unknown_keys(value, PREALLOCATE_KEYS, path, problems)
    ok = True
    cpu = value.get("cpu_guarantee", 0)
    if not _is_number(cpu) or cpu < 0:
        problems.append(f"{path}.cpu_guarantee: {cpu!r} is not valid; allowed: a number of cores >= 0")
        ok = False
    elif cpu > largest_cpu:
        problems.append(f"{path}.cpu_guarantee: {cpu!r} is above the largest cpu_limit of any resource profile "
                        f"({largest_cpu:g}); allowed: 0 to {largest_cpu:g}")
        ok = False
    mem = 0
    try:
        mem = parse_size(value.get("mem_guarantee", 0))
    except SizeError as e:
        problems.append(f"{path}.mem_guarantee: {e}")
        ok = False
    else:
        if 0 < mem < MIN_MEMORY:
            problems.append(f"{path}.mem_guarantee: {value.get('mem_guarantee')!r} is below Docker's minimum memory "
                            f"reservation; allowed: 0, or {MIN_MEMORY_TEXT} to {format_size(largest_mem)}")
            ok = False
        elif mem > largest_mem:
            problems.append(f"{path}.mem_guarantee: {value.get('mem_guarantee')!r} is above the largest mem_limit of any "
                            f"resource profile ({format_size(largest_mem)}); allowed: 0 to {format_size(largest_mem)}")
            ok = False
    return MaxPreallocate(float(cpu), mem) if ok else None


def _users(data, resources, all_resources, all_images, problems):
    data = _mapping(data, "user_profiles", problems)
    home_formats = {DEFAULT_HOME} | {spec["host_homedir_format_string"] for spec in data.values()
                                     if isinstance(spec, dict) and isinstance(spec.get("host_homedir_format_string"), str)
                                     and "{username}" in spec["host_homedir_format_string"]}
    homes = {h: _home_pattern(h) for h in sorted(home_formats)}
    if "default" not in data:
        problems.append("user_profiles.default: missing; the default entry is required (with allowed_resources and allowed_images)")
    largest_cpu = max([r.cpu_limit for r in resources.values()], default=0)
    largest_mem = max([r.mem_limit for r in resources.values()], default=0)
    result = {}
    for name, spec in data.items():
        path = f"user_profiles.{name}"
        if not isinstance(name, str) or not name or name == "@":
            problems.append(f"{path}: {name!r} is not a user name, '@group' or 'default'")
            continue
        spec = _mapping(spec, path, problems)
        _unknown_keys(spec, USER_KEYS, path, problems)
        fields = {}
        if "allowed_resources" in spec:
            fields["allowed_resources"] = _name_list(spec["allowed_resources"], f"{path}.allowed_resources",
                                                     all_resources, "resource profile", problems, all_resources)
        if "allowed_images" in spec:
            fields["allowed_images"] = _name_list(spec["allowed_images"], f"{path}.allowed_images",
                                                  all_images, "image profile", problems, all_images)
        if "host_homedir_format_string" in spec:
            fields["host_homedir_format_string"] = _home(spec["host_homedir_format_string"],
                                                         f"{path}.host_homedir_format_string", problems)
        if "max_preallocate" in spec:
            fields["max_preallocate"] = _preallocate(spec["max_preallocate"], f"{path}.max_preallocate",
                                                     problems, largest_cpu, largest_mem)
        if "data_mounts" in spec:
            fields["data_mounts"] = _data_mounts(spec["data_mounts"], f"{path}.data_mounts", homes, problems)
        if name == "default":
            for key in ("allowed_resources", "allowed_images"):
                if key not in spec:
                    problems.append(f"{path}.{key}: missing; the default entry must set it (other entries fall back to it)")
        result[name] = UserEntry(**fields)
    return result


def parse_profiles(data, source="profiles") -> Profiles:
    """Validate already-parsed data (dict) into Profiles, or raise ProfilesError with all problems."""
    problems = []
    if not isinstance(data, dict):
        raise ProfilesError([f"(top level): expected a mapping with {', '.join(TOP_KEYS)}, got {data!r}"], source)
    _unknown_keys(data, TOP_KEYS, "(top level)", problems)
    for key in TOP_KEYS:
        if key not in data:
            problems.append(f"{key}: missing; required sections: {', '.join(TOP_KEYS)}")
    # names as written (even invalid ones) so an entry with a bad limit is not also "unknown"
    raw_res = data.get("resource_profiles") if isinstance(data.get("resource_profiles"), dict) else {}
    raw_img = data.get("image_profiles") if isinstance(data.get("image_profiles"), dict) else {}
    resources = _resources(data.get("resource_profiles", {}), problems)
    images = _images(data.get("image_profiles", {}), problems)
    if "resource_profiles" in data and not raw_res:
        problems.append("resource_profiles: empty; define at least one resource profile")
    if "image_profiles" in data and not raw_img:
        problems.append("image_profiles: empty; define at least one image profile")
    users = _users(data.get("user_profiles", {}), resources,
                   [str(k) for k in raw_res], [str(k) for k in raw_img], problems)
    if problems:
        raise ProfilesError(problems, source)
    return Profiles(MappingProxyType(resources), MappingProxyType(images), MappingProxyType(users))


def load_profiles(path) -> Profiles:
    """Read a YAML or JSON profiles file (JSON is chosen by a .json suffix) and validate it."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ProfilesError([f"cannot read the profiles file: {e}"], path) from e
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ProfilesError([f"not valid {'JSON' if path.endswith('.json') else 'YAML'}: {e}"], path) from e
    return parse_profiles(data, path)
