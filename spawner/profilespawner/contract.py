"""dockerspawner's contract: which of an operator's settings the profiles own, and how an
operator's extra_host_config combines with ours. Pure functions (no Docker, no hub).

- Settings the profiles own (image, limits, guarantees, the home format strings) are named in
  warnings at hub start (``owned_setting_warnings``): the profile's value is what the container
  gets, and after start the spawner's own attributes say so.
- ``merge_host_config``: lists the operator set (security_opt, cap_drop, mounts, devices, ...)
  are combined with ours, dicts merged (ours win per key), scalars ours; the operator's stricter
  pids_limit is kept (with a warning); anything that would weaken our security defaults
  (privileged, cap_add beyond the image profile's, no-new-privileges off, a writable root
  where the image profile keeps it read-only) is refused with ``ConfigRefused``.
"""

# (config section, trait) -> the profiles-file key that replaces it
OWNED = {
    "image": "image_profiles.<name>.image",
    "mem_limit": "resource_profiles.<name>.mem_limit (or the user's mem_limit option)",
    "cpu_limit": "resource_profiles.<name>.cpu_limit (or the user's cpu_limit option)",
    "mem_guarantee": "resource_profiles.<name>.mem_guarantee and the user's mem_guarantee option",
    "cpu_guarantee": "resource_profiles.<name>.cpu_guarantee and the user's cpu_guarantee option",
    "host_homedir_format_string": "user_profiles.<entry>.host_homedir_format_string",
    "image_homedir_format_string": "user_profiles.<entry>.host_homedir_format_string (same path inside)",
}
SECTIONS = ("Spawner", "DockerSpawner", "SystemUserSpawner", "DockerSystemProfileSpawner")
# what must not be written from extra_host_config: the profile (or the spawner) owns it
OWNED_HOST_CONFIG = ("cpu_period", "cpu_quota", "cpu_shares", "mem_limit", "memswap_limit",
                     "mem_reservation", "oom_score_adj", "cgroup_parent", "device_requests")


class ConfigRefused(ValueError):
    """An operator setting that would weaken the container's isolation: the message names it,
    its value and what is allowed."""


def owned_setting_warnings(config):
    """One message per setting in a traitlets Config that the profiles replace."""
    warnings = []
    for section in SECTIONS:
        if section not in config:
            continue
        for name, owner in OWNED.items():
            if name in config[section]:
                warnings.append(
                    f"c.{section}.{name} = {config[section][name]!r} is ignored: the profiles own it "
                    f"({owner}); remove it from jupyterhub_config.py")
        extra = config[section].get("extra_host_config") if "extra_host_config" in config[section] else None
        if isinstance(extra, dict):
            for key in OWNED_HOST_CONFIG:
                if key in extra:
                    warnings.append(
                        f"c.{section}.extra_host_config[{key!r}] = {extra[key]!r} is ignored: the profiles "
                        f"and the spawner set it; allowed there: anything but {', '.join(OWNED_HOST_CONFIG)}")
    return warnings


def _union(first, second):
    out = []
    for item in list(first) + list(second):
        if item not in out:
            out.append(item)
    return out


def _check_security(base, ours, allowed_cap_add):
    if base.get("privileged"):
        raise ConfigRefused("extra_host_config['privileged'] = True is refused: it undoes cap_drop ALL "
                            "and no-new-privileges; allowed: False or unset")
    extra_caps = [c for c in base.get("cap_add") or () if str(c).upper().removeprefix("CAP_") not in allowed_cap_add]
    if extra_caps:
        allowed = ", ".join(allowed_cap_add) or "none"
        raise ConfigRefused(f"extra_host_config['cap_add'] = {list(base['cap_add'])!r} is refused: every capability "
                            f"is dropped unless the image profile's cap_add lists it; allowed here: {allowed}")
    if "no-new-privileges" in (ours.get("security_opt") or ()):
        for opt in base.get("security_opt") or ():
            if str(opt).replace("=", ":").replace(" ", "").lower() in ("no-new-privileges:false",):
                raise ConfigRefused(f"extra_host_config['security_opt'] entry {opt!r} is refused: no-new-privileges "
                                    "stays on unless the image profile sets allow_privilege_escalation: true")
    if ours.get("read_only") and "read_only" in base and not base["read_only"]:
        raise ConfigRefused(f"extra_host_config['read_only'] = {base['read_only']!r} is refused: the root "
                            "filesystem stays read-only unless the image profile sets read_only_root: false")


def static_host_config_problems(config, profiles):
    """For hub start: an operator's static extra_host_config that merge_host_config would refuse
    for some image profile (every spawn with that image would fail), one message each."""
    problems = []
    for section in SECTIONS:
        extra = config[section].get("extra_host_config") if section in config else None
        if not isinstance(extra, dict):
            continue
        for name, image in profiles.images.items():
            ours = {"security_opt": [] if image.allow_privilege_escalation else ["no-new-privileges"],
                    "read_only": image.read_only_root}
            try:
                _check_security(extra, ours, tuple(image.cap_add))
            except ConfigRefused as e:
                problems.append(f"c.{section}.{e} (for image profile {name!r})")
    return problems


def merge_host_config(base, ours, allowed_cap_add=()):
    """(merged host config, warnings) from the operator's extra_host_config ``base`` and ours.

    Lists combine (operator's first, no duplicates); dicts merge, ours win per key; other values
    are ours, except pids_limit, where the stricter (smaller positive) one is kept. Raises
    ConfigRefused for anything weakening our security defaults."""
    base = dict(base or {})
    _check_security(base, ours, tuple(allowed_cap_add))
    warnings = []
    merged = dict(base)
    for key, value in ours.items():
        mine = base.get(key)
        if key == "pids_limit":
            if isinstance(mine, int) and not isinstance(mine, bool) and 0 < mine < value:
                warnings.append(f"extra_host_config['pids_limit'] = {mine} is stricter than pids_limit = {value}; "
                                f"keeping {mine}")
                continue
        elif isinstance(value, list) and isinstance(mine, (list, tuple)):
            merged[key] = _union(mine, value)
            continue
        elif isinstance(value, dict) and isinstance(mine, dict):
            merged[key] = {**mine, **value}
            continue
        elif key in base and mine != value and key in OWNED_HOST_CONFIG:
            warnings.append(f"extra_host_config[{key!r}] = {mine!r} is replaced by the profile's {value!r}")
        merged[key] = value
    return merged, warnings


# keys only an LTI launch's auth_state has (ltiauthenticator keeps the 1.1 launch's arguments, or
# the 1.3 id_token's claims): there user_id is the platform's user id, never a host uid
LTI_LAUNCH_KEYS = ("lti_message_type", "lti_version", "https://purl.imsglobal.org/spec/lti/claim/message_type")


def auth_state_ids_problem(auth_state, uid, gid):
    """None if the uid/gid an authenticator stored in auth_state (keys user_id/uid, group_id/gid)
    agree with the system account's, else a message naming both (the spawn is refused: the
    container runs as the account owning the home)."""
    if not auth_state:
        return None
    if any(key in auth_state for key in LTI_LAUNCH_KEYS):
        return None  # an LTI launch: its user_id is the LMS's id of the person, not a uid
    for keys, have, what in ((("user_id", "uid"), uid, "uid"), (("group_id", "gid"), gid, "gid")):
        for key in keys:
            if key in auth_state and auth_state[key] is not None:
                try:
                    wanted = int(auth_state[key])
                except (TypeError, ValueError):
                    return f"auth_state[{key!r}] = {auth_state[key]!r} is not a number; allowed: the {what} {have}"
                if wanted != have:
                    return (f"auth_state[{key!r}] = {wanted} differs from the system account's {what} {have}; "
                            f"servers run as the host account that owns the home, so the authenticator must "
                            f"store {have} or nothing")
    return None
