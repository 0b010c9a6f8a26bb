"""``python -m profilespawner.check FILE``: the one validator for the profiles file.

Used by Ansible (``template: validate:``) before installing the rendered file and by
admins by hand; it runs on the hub's host, so data_mounts' host paths must exist there. Exit 1 with one message per problem on stderr; exit 0 otherwise, with
warnings on stderr for profiles larger than this host (they will be capped).
"""

import os
import sys

from .capacity import HostCapacity, detect_host
from .profiles import TOP_KEYS, Profiles, ProfilesError, load_profiles, parse_profiles
from .sizes import format_size


def oversize_warnings(profiles: Profiles, host: HostCapacity):
    """Messages for resource profiles asking more than the host has."""
    warnings = []
    for p in profiles.resources.values():
        if p.cpu_limit > host.cpus:
            warnings.append(f"resource_profiles.{p.name}.cpu_limit: {p.cpu_limit:g} cores is more than this host's "
                            f"{host.cpus:g}; containers will be capped at {host.cpus:g}")
        if p.mem_limit > host.mem_bytes:
            warnings.append(f"resource_profiles.{p.name}.mem_limit: {format_size(p.mem_limit)} is more than this host's "
                            f"{format_size(host.mem_bytes)}; containers will be capped at {format_size(host.mem_bytes)}")
    return warnings


def missing_host_paths(profiles: Profiles, exists=os.path.exists):
    """Messages for data_mounts whose host path does not exist here: Docker would create an
    empty root-owned directory in its place, and users would see no data and no error."""
    problems = []
    for name, entry in profiles.users.items():
        for i, mount in enumerate(entry.data_mounts or ()):
            if not exists(mount.host_path):
                problems.append(f"user_profiles.{name}.data_mounts[{i}].host_path: {mount.host_path!r} does not "
                                "exist on this host; create it or remove the mount")
    return problems


# path (or the inline profiles' key) -> Profiles loaded (and warned about) in this process:
# the spawner reuses them
LOADED: dict = {}
# warnings already given in this process (load_profiles_or_exit, then the first spawner)
WARNED: set = set()
INLINE_SOURCE = "c.DockerSystemProfileSpawner"


def profiles_from(path, inline=None, exists=os.path.exists):
    """(Profiles, warnings) from the file at path or, when it does not exist, from ``inline``
    (section -> dict, the traitlets resource_profiles, image_profiles, user_profiles), through
    the same validator. Both set: the file wins, with a warning. Raises ProfilesError."""
    inline = {key: value for key, value in (inline or {}).items() if value}
    if inline and not exists(path):
        return parse_profiles(inline, INLINE_SOURCE), ()
    warnings = ()
    if inline:
        warnings = (f"{INLINE_SOURCE}.{' / '.join(sorted(inline))} ignored: profiles_file {str(path)!r} exists "
                    "and wins; remove one of the two",)
    return load_profiles(path), warnings


def profiles_key(path, inline):
    """LOADED's key: the path, or the inline profiles when they are used (no such file)."""
    inline = {key: value for key, value in (inline or {}).items() if value}
    return path if os.path.exists(path) or not inline else ("inline", repr(sorted(inline.items())))


def inline_profiles(config):
    """The inline profiles sections set in a traitlets Config (DockerSystemProfileSpawner)."""
    section = config["DockerSystemProfileSpawner"] if "DockerSystemProfileSpawner" in config else {}
    return {key: section[key] for key in TOP_KEYS if key in section}


def load_profiles_or_exit(path, config=None) -> Profiles:
    """For jupyterhub_config.py: the hub refuses to start (exit 1) with the validator's
    messages, and names on stderr (hub log) profiles larger than this host and, given the
    config ``c``, the inline profiles it ignores and the settings the profiles replace."""
    from .contract import owned_setting_warnings, static_host_config_problems

    inline = inline_profiles(config) if config is not None else {}
    try:
        profiles, warnings = profiles_from(path, inline)
        problems = missing_host_paths(profiles)
        if config is not None:
            problems += static_host_config_problems(config, profiles)
        if problems:
            raise ProfilesError(problems, str(path))
    except ProfilesError as e:
        print(f"profilespawner: refusing to start, {e}", file=sys.stderr)
        raise SystemExit(1) from e
    owned = owned_setting_warnings(config) if config is not None else []
    for warning in (*warnings, *owned, *oversize_warnings(profiles, detect_host())):
        print(f"profilespawner: warning: {path}: {warning}", file=sys.stderr)
        WARNED.add(warning)
    LOADED[profiles_key(path, inline)] = profiles
    return profiles


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m profilespawner.check PROFILES_FILE", file=sys.stderr)
        return 2
    try:
        profiles = load_profiles(argv[0])
        missing = missing_host_paths(profiles)
        if missing:
            raise ProfilesError(missing, argv[0])
    except ProfilesError as e:
        for problem in e.problems:
            print(f"{argv[0]}: {problem}", file=sys.stderr)
        return 1
    for warning in oversize_warnings(profiles, detect_host()):
        print(f"{argv[0]}: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
