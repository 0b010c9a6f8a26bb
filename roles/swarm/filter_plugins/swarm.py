"""Pure decisions of the swarm role: inventory checks, the node labels a node's users' slice
implies, and what `docker info` says about a node's swarm membership.

WHY filters: the role's asserts print these messages, and tests/unit/roles/test_swarm_filters.py
checks them without a host.
"""
import ipaddress
import re
from decimal import Decimal, InvalidOperation

GPU_ID = re.compile(r"^(GPU|MIG)-[A-Za-z0-9-]+$")
SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTPE]?)$")
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}


def swarm_problems(advertise_address, address_pool, pool_mask_length, gpus, host=""):
    """One message per bad swarm variable of one host (empty when all are fine)."""
    where = f" (host {host})" if host else ""
    problems = []
    try:
        address = ipaddress.ip_address(str(advertise_address).strip())
        if address.version != 4 or address.is_loopback or address.is_unspecified:
            raise ValueError("not a routable IPv4 address")
    except ValueError:
        problems.append(f"swarm_advertise_address{where}: {advertise_address!r} is not an IPv4 "
                        "address the other nodes can reach (e.g. 192.0.2.10; not 127.x, not 0.0.0.0)")
    try:
        pool = ipaddress.ip_network(str(address_pool), strict=True)
        if pool.version != 4:
            raise ValueError("IPv6")
        mask = int(pool_mask_length)
        if not pool.prefixlen <= mask <= 29:
            problems.append(f"swarm_default_addr_pool_mask_length{where}: {pool_mask_length!r} must be "
                            f"between the pool's prefix ({pool.prefixlen}) and 29")
    except (ValueError, TypeError):
        problems.append(f"swarm_default_addr_pool{where}: {address_pool!r} is not an IPv4 CIDR "
                        "network (e.g. 10.201.0.0/16)")
    if isinstance(gpus, str) or not isinstance(gpus, (list, tuple)):
        problems.append(f"swarm_node_gpus{where}: {gpus!r} must be a list of GPU UUIDs "
                        "(e.g. ['GPU-8f2c...']), [] for none")
    else:
        for index, gpu in enumerate(gpus):
            if not GPU_ID.match(str(gpu)):
                problems.append(f"swarm_node_gpus[{index}]{where}: {gpu!r} is not a GPU UUID "
                                "(GPU-... or MIG-..., as `nvidia-smi -L` prints)")
        if len(set(map(str, gpus))) != len(gpus):
            problems.append(f"swarm_node_gpus{where}: {list(gpus)!r} lists a GPU twice")
    return problems


def _decimal_string(value):
    """'3.5', '1', '0.25': no exponent, no trailing zeros."""
    text = format(Decimal(value).normalize(), "f")
    return text


def slice_cpus(cpu_quota):
    """Cores of a systemd CPUQuota= ("150%" of one CPU = "1.5"), the capacity-cpus label."""
    match = re.match(r"^([0-9]+(?:\.[0-9]+)?)%$", str(cpu_quota).strip())
    if not match:
        raise ValueError(f"docker_users_slice_cpu_quota: {cpu_quota!r} is not a percentage of one CPU")
    return _decimal_string(Decimal(match.group(1)) / 100)


def slice_bytes(memory_max, memtotal_mb):
    """Bytes of a systemd MemoryMax= (1024-based suffixes, "%" of the host's memory, infinity:
    all of it), the capacity-mem label. `memtotal_mb` is Ansible's memtotal_mb fact."""
    text = str(memory_max).strip().upper()
    total = int(memtotal_mb) << 20
    if text == "INFINITY":
        return str(total)
    if text.endswith("%"):
        try:
            return str(int(total * Decimal(text[:-1]) / 100))
        except InvalidOperation:
            pass
    match = SIZE.match(text)
    if not match:
        raise ValueError(f"docker_users_slice_memory_max: {memory_max!r} is not a systemd size")
    return str(int(Decimal(match.group(1)) * UNITS[match.group(2)]))


def labels_to_update(current, wanted):
    """`docker node update` arguments that make the node's labels `wanted` (others untouched):
    [] when nothing differs."""
    current = current or {}
    args = []
    for key in sorted(wanted):
        if current.get(key) != str(wanted[key]):
            args += ["--label-add", f"{key}={wanted[key]}"]
    return args


def swarm_membership(info, manager_node_id=""):
    """What a node's `docker info` Swarm section says: 'inactive', 'manager' (a manager of its
    own swarm), 'member' (a worker whose managers include manager_node_id) or 'other'
    (in a swarm this play does not manage), or 'error' (pending/error/locked)."""
    state = (info or {}).get("LocalNodeState", "inactive")
    if state == "inactive":
        return "inactive"
    if state != "active":
        return "error"
    if info.get("ControlAvailable"):
        return "manager" if not manager_node_id or info.get("NodeID") == manager_node_id else "other"
    managers = [m.get("NodeID") for m in info.get("RemoteManagers") or []]
    return "member" if manager_node_id and manager_node_id in managers else "other"


class FilterModule:
    def filters(self):
        return {"swarm_problems": swarm_problems, "slice_cpus": slice_cpus,
                "slice_bytes": slice_bytes, "labels_to_update": labels_to_update,
                "swarm_membership": swarm_membership}
