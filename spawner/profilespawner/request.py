"""user_options -> a validated SpawnRequest, or SpawnRequestError naming the field.

Pure: the same function checks options from the HTML form (strings) and from the REST
API (JSON numbers or strings), because both are user input. Limits are capped at what
the host has, so nothing promises more than the machine can give.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Tuple

from .admission import Capacity, check_admission
from .capacity import HostCapacity
from .errors import SpawnRequestError  # noqa: F401  (raised here, importable from here)
from .gpus import choose_gpus
from .profiles import DataMount, Profiles, UserProfile
from .qos import MIN_CPU_LIMIT, MIN_MEMORY, MIN_MEMORY_TEXT, qos_class
from .sizes import SizeError, format_size, parse_size

OPTION_KEYS = ("resource_profile", "image_profile", "cpu_limit", "mem_limit",
               "cpu_guarantee", "mem_guarantee", "gpus")
# /tmp of a resource profile without tmp_size: this share of the spawn's mem_limit (a tmpfs is
# charged to the container's memory, so /tmp can never hold more than mem_limit anyway)
DEFAULT_TMP_FRACTION = 0.5


@dataclass(frozen=True)
class SpawnRequest:
    resource_profile: str
    image_profile: str
    image: str
    cpu_limit: float
    mem_limit: int
    cpu_guarantee: float = 0.0
    mem_guarantee: int = 0
    gpus: int = 0
    gpu_ids: Tuple[str, ...] = ()
    warnings: Tuple[str, ...] = field(default=(), compare=False)
    # isolation (spawner/README.md "Least privilege", "Bounded writes", "Shared data"); the
    # defaults are the default-deny container
    tmp_size: int = 0  # bytes of the /tmp tmpfs; 0: DEFAULT_TMP_FRACTION of mem_limit
    read_only_root: bool = True
    allow_privilege_escalation: bool = False
    cap_add: Tuple[str, ...] = ()
    data_mounts: Tuple[DataMount, ...] = ()

    @property
    def tmp_bytes(self) -> int:
        """The /tmp tmpfs size: tmp_size capped at mem_limit, or the default share of mem_limit."""
        if self.tmp_size:
            return min(int(self.tmp_size), int(self.mem_limit))
        return max(1, int(self.mem_limit * DEFAULT_TMP_FRACTION))

    @property
    def qos(self) -> str:
        """guaranteed, burstable or besteffort (see qos.py)."""
        return qos_class(self.cpu_limit, self.mem_limit, self.cpu_guarantee, self.mem_guarantee)


@dataclass(frozen=True)
class Bounds:
    """What one user may ask for one resource profile on this host (also drives the form)."""

    cpu_limit: float
    mem_limit: int
    cpu_guarantee: float
    mem_guarantee: int
    gpus: int
    # the profile's guarantee floor (the least, and the default, guarantee)
    cpu_guarantee_min: float = 0.0
    mem_guarantee_min: int = 0


def bounds_for(profiles: Profiles, user: UserProfile, resource_name: str, host: HostCapacity) -> Bounds:
    """Maxima for a resource profile: its limits capped at the host, guarantees also capped
    at max_preallocate and at the limit, but never below the profile's floor."""
    res = profiles.resources[resource_name]
    cpu = min(res.cpu_limit, host.cpus)
    mem = min(res.mem_limit, host.mem_bytes)
    cpu_floor, mem_floor = min(res.cpu_guarantee, cpu), min(res.mem_guarantee, mem)
    return Bounds(cpu, mem, max(cpu_floor, min(user.max_preallocate.cpu_guarantee, cpu)),
                  max(mem_floor, min(user.max_preallocate.mem_guarantee, mem)), res.gpus,
                  cpu_floor, mem_floor)


def _choice(options, key, allowed, kind):
    if key not in options:
        return allowed[0]
    value = options[key]
    if not isinstance(value, str) or value not in allowed:
        raise SpawnRequestError(key, f"{key}: {value!r} is not a {kind} you may use; allowed: {', '.join(allowed)}")
    return value


def _number(options, key, default):
    if key not in options:
        return default
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpawnRequestError(key, f"{key}: {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise SpawnRequestError(key, f"{key}: {value!r} is not a number") from None
    except OverflowError:
        raise SpawnRequestError(key, f"{key}: {value!r} is too large") from None
    if not math.isfinite(number):
        raise SpawnRequestError(key, f"{key}: {value!r} is not a finite number")
    return number


def _size(options, key, default):
    if key not in options:
        return default
    value = options[key]
    if isinstance(value, float) and not math.isfinite(value):
        raise SpawnRequestError(key, f"{key}: {value!r} is not a finite size")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise SpawnRequestError(key, f"{key}: {value!r} is negative")
    try:
        return parse_size(value)
    except SizeError as e:
        raise SpawnRequestError(key, f"{key}: {e}") from None


def build_request(profiles: Profiles, user: UserProfile, options, host: HostCapacity) -> SpawnRequest:
    """Validate every option; absent options get defaults (first allowed profile and image,
    the profile's full limits capped at the host, the profile's guarantee floor (0 unless the
    operator set one), the profile's GPUs). Every accepted value is one Docker enforces:
    nothing below Docker's minimums (a 1 ms CPU quota, 6 MiB of memory), nothing unbounded."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise SpawnRequestError("user_options", f"user_options: {options!r} is not an object")
    for key in options:
        if key not in OPTION_KEYS:
            raise SpawnRequestError(key, f"{key}: unknown option; allowed: {', '.join(OPTION_KEYS)}")

    res_name = _choice(options, "resource_profile", user.allowed_resources, "resource profile")
    img_name = _choice(options, "image_profile", user.allowed_images, "image profile")
    res = profiles.resources[res_name]
    b = bounds_for(profiles, user, res_name, host)
    warnings = []
    if res.cpu_limit > host.cpus:
        warnings.append(f"resource profile {res_name!r} has cpu_limit {res.cpu_limit:g} but this host has "
                        f"{host.cpus:g} CPUs; capped at {host.cpus:g}")
    if res.mem_limit > host.mem_bytes:
        warnings.append(f"resource profile {res_name!r} has mem_limit {format_size(res.mem_limit)} but this host "
                        f"has {format_size(host.mem_bytes)}; capped at {format_size(host.mem_bytes)}")

    cpu_low = max(MIN_CPU_LIMIT, b.cpu_guarantee_min)
    cpu_limit = _number(options, "cpu_limit", b.cpu_limit)
    if not cpu_low <= cpu_limit <= b.cpu_limit:
        raise SpawnRequestError("cpu_limit", f"cpu_limit: {options['cpu_limit']!r} is out of range for resource "
                                f"profile {res_name!r}; allowed: {cpu_low:g} to {b.cpu_limit:g} CPUs")
    mem_low = max(MIN_MEMORY, b.mem_guarantee_min)
    mem_limit = _size(options, "mem_limit", b.mem_limit)
    if not mem_low <= mem_limit <= b.mem_limit:
        raise SpawnRequestError("mem_limit", f"mem_limit: {options['mem_limit']!r} is out of range for resource "
                                f"profile {res_name!r}; allowed: {format_size(mem_low)} ({mem_low} bytes) to "
                                f"{format_size(b.mem_limit)} ({b.mem_limit} bytes)")
    cpu_guarantee = _number(options, "cpu_guarantee", b.cpu_guarantee_min)
    cpu_max = min(b.cpu_guarantee, cpu_limit)
    if not b.cpu_guarantee_min <= cpu_guarantee <= cpu_max:
        why = (f"above cpu_limit {cpu_limit:g}" if cpu_guarantee > cpu_limit
               else f"above max_preallocate {b.cpu_guarantee:g}" if cpu_guarantee > b.cpu_guarantee
               else f"below the profile's floor {b.cpu_guarantee_min:g}" if cpu_guarantee >= 0 else "negative")
        raise SpawnRequestError("cpu_guarantee", f"cpu_guarantee: {options['cpu_guarantee']!r} is {why}; "
                                f"allowed: {b.cpu_guarantee_min:g} to {cpu_max:g} CPUs")
    mem_guarantee = _size(options, "mem_guarantee", b.mem_guarantee_min)
    mem_max = min(b.mem_guarantee, mem_limit)
    if not b.mem_guarantee_min <= mem_guarantee <= mem_max or 0 < mem_guarantee < MIN_MEMORY:
        why = (f"above mem_limit {format_size(mem_limit)}" if mem_guarantee > mem_limit
               else f"above max_preallocate {format_size(b.mem_guarantee)}" if mem_guarantee > b.mem_guarantee
               else f"below the profile's floor {format_size(b.mem_guarantee_min)}" if mem_guarantee < b.mem_guarantee_min
               else "below Docker's minimum memory reservation")
        if b.mem_guarantee_min:
            allowed = f"{format_size(b.mem_guarantee_min)} to {format_size(mem_max)} ({mem_max} bytes)"
        elif mem_max < MIN_MEMORY:
            allowed = "0 (no memory guarantee for you on this profile)"
        else:
            allowed = f"0, or {MIN_MEMORY_TEXT} to {format_size(mem_max)} ({mem_max} bytes)"
        raise SpawnRequestError("mem_guarantee", f"mem_guarantee: {options['mem_guarantee']!r} is {why}; "
                                f"allowed: {allowed}")
    gpus = _number(options, "gpus", b.gpus)
    if gpus != int(gpus) or not 0 <= gpus <= b.gpus:
        raise SpawnRequestError("gpus", f"gpus: {options['gpus']!r} is not allowed for resource profile "
                                f"{res_name!r}; allowed: a whole number from 0 to {b.gpus}")
    image = profiles.images[img_name]
    return SpawnRequest(res_name, img_name, image.image, cpu_limit, mem_limit,
                        cpu_guarantee, mem_guarantee, int(gpus), (), tuple(warnings),
                        tmp_size=res.tmp_size or 0, read_only_root=image.read_only_root,
                        allow_privilege_escalation=image.allow_privilege_escalation,
                        cap_add=image.cap_add, data_mounts=user.data_mounts)


def plan_spawn(profiles: Profiles, user: UserProfile, options, host: HostCapacity, running=(),
               guarantee_capacity: Capacity = None, gpu_devices=(), gpu_sharing="exclusive",
               replacing_container=None) -> SpawnRequest:
    """The whole decision: validate options, admit guarantees, pick GPUs. Raises
    SpawnRequestError, AdmissionError or GpuAllocationError (all with .field and .message)."""
    req = build_request(profiles, user, options, host)
    capacity = guarantee_capacity or Capacity(host.cpus, host.mem_bytes)
    check_admission(req.cpu_guarantee, req.mem_guarantee, running, capacity, replacing_container)
    gpu_ids = choose_gpus(req.gpus, gpu_devices, running, gpu_sharing, replacing_container)
    return replace(req, gpu_ids=gpu_ids)
