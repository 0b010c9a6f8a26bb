"""Quality-of-service classes: how a guarantee becomes something the kernel delivers.

Every user server belongs to one class, decided from its guarantees alone (as Kubernetes'
QoS classes are decided from requests and limits):

- ``guaranteed``: guarantees equal to the limits (CPU and memory both);
- ``burstable``: some guarantee (CPU or memory) below its limit;
- ``besteffort``: no guarantee at all.

What the kernel is told, per class (one function for cgroup v1 and v2; runc maps cpu.shares
to cpu.weight and the memory reservation to memory.low on v2):

- **CPU weight.** Guaranteed and burstable servers sit directly in the users' parent cgroup
  (``jupyterhub-users.slice``) with ``cpu.shares = 1024 x cpu_guarantee`` (at least 2, the
  kernel's minimum). Best-effort servers sit one level down, all of them together in ONE
  low-weight parent (``jupyterhub-users-besteffort.slice``, CPUWeight=1 / cpu.shares 2): to
  the scheduler the whole best-effort class weighs less than a 0.01-core guarantee, however
  many best-effort servers are busy. Admission keeps the sum of guarantees within what the
  users' parent may use, so a busy server guaranteed g cores gets at least about g cores.
  Weights never cap (quotas do): CPU nobody uses or nobody was guaranteed goes to whoever
  wants it.
- **Memory.** The guarantee becomes the memory reservation (v2 memory.low: the kernel
  reclaims other cgroups first; v1 soft limit: only honoured in global reclaim). Without swap
  anonymous memory cannot be reclaimed, so under a full users' slice the OOM killer decides.
  Its badness of a process is its memory + oom_score_adj x capacity / 1000 (capacity: the
  memory of the cgroup that is full), so ``oom_score_adj = 1000 x (1 - mem_guarantee /
  capacity)`` ranks processes by "memory minus the guarantee of their server" (plus the same
  constant for all): the process furthest above its guarantee is killed first, a server within
  its guarantee last. Best-effort servers get 1000 (Kubernetes' BestEffort value): everything
  they hold is above their guarantee of 0. The values only ever RAISE a score (raising needs no
  privilege, lowering below 0 needs CAP_SYS_RESOURCE, which some hosts' runtimes lack), so the
  OS's own processes (score 0) go after every user server's in a global OOM, and a user, who
  holds no capabilities, cannot lower their server's score below what runc set.

On a swarm node every class shares ONE parent (the node's daemon.json cgroup-parent: a service
cannot ask for another), so there is no best-effort parent to carry the class's weight. There
the weights are spread over the kernel's whole range instead (``node_cpu_shares``): the node's
whole guarantee capacity weighs MAX_CPU_SHARES, a best-effort server the minimum, so N busy
best-effort servers take at most N x 2 / 262144 of the guarantees (cgroup v1) or N / 10000
(v2, where runc maps shares to cpu.weight 1-10000), where 1024 per core would let them take
N x 2 / 1024 per core of capacity (v2: N / 39 per core).
"""

from .sizes import format_size

GUARANTEED = "guaranteed"
BURSTABLE = "burstable"
BESTEFFORT = "besteffort"

# What Docker (20.10, Debian 12's docker.io) and the kernel accept; a value outside is refused
# by Docker (HTTP 500 from the engine) or, worse, silently means "unlimited".
CPU_PERIOD = 100_000          # microseconds (100 ms), the CFS default
MIN_CPU_QUOTA = 1_000         # Docker: "CPU cfs quota can not be less than 1ms"
MIN_CPU_LIMIT = MIN_CPU_QUOTA / CPU_PERIOD   # 0.01 cores; a quota of 0 would mean no limit
MIN_MEMORY = 6 * 1024 ** 2    # Docker: "Minimum memory limit allowed is 6MB" (and reservation)
MIN_CPU_SHARES = 2            # the kernel's range of cpu.shares
MAX_CPU_SHARES = 262_144
MAX_CPU_GUARANTEE = MAX_CPU_SHARES / 1024    # 256 cores: the largest weight the kernel takes
BESTEFFORT_CPU_SHARES = MIN_CPU_SHARES
OOM_SCORE_ADJ_MAX = 1000

MIN_CPU_TEXT = f"{MIN_CPU_LIMIT:g}"
MIN_MEMORY_TEXT = f"{format_size(MIN_MEMORY)} ({MIN_MEMORY} bytes)"


def qos_class(cpu_limit: float, mem_limit: int, cpu_guarantee: float, mem_guarantee: int) -> str:
    """The class of a server with these limits and guarantees."""
    if cpu_guarantee <= 0 and mem_guarantee <= 0:
        return BESTEFFORT
    if cpu_guarantee >= cpu_limit and mem_guarantee >= mem_limit:
        return GUARANTEED
    return BURSTABLE


def cpu_shares(qos: str, cpu_guarantee: float) -> int:
    """cpu.shares: 1024 per guaranteed core within the kernel's range; best effort the minimum
    (its class parent carries the class's weight)."""
    if qos == BESTEFFORT:
        return BESTEFFORT_CPU_SHARES
    return min(MAX_CPU_SHARES, max(MIN_CPU_SHARES, round(1024 * cpu_guarantee)))


def node_cpu_shares(qos: str, cpu_guarantee: float, cpu_capacity: float) -> int:
    """cpu.shares where every class shares one parent (a swarm node): MAX_CPU_SHARES x the
    guarantee's part of the node's guarantee capacity (admission keeps the parts within 1), at
    least the minimum; best effort the minimum. No capacity: cpu_shares()."""
    if qos == BESTEFFORT or cpu_capacity <= 0:
        return cpu_shares(qos, cpu_guarantee)
    return min(MAX_CPU_SHARES, max(MIN_CPU_SHARES, round(MAX_CPU_SHARES * cpu_guarantee / cpu_capacity)))


def oom_score_adj(mem_guarantee: int, mem_capacity: int):
    """1000 x (1 - guarantee / capacity): OOM badness ranks by memory above the guarantee.
    None without a capacity (no preference: Docker's default 0)."""
    if mem_capacity <= 0:
        return None
    share = min(1.0, max(0, mem_guarantee) / mem_capacity)
    return round(OOM_SCORE_ADJ_MAX * (1 - share))


def besteffort_parent(cgroup_parent: str) -> str:
    """The best-effort class's parent under the users' parent cgroup.

    systemd slices nest by dashes (``jupyterhub-users.slice`` -> ``jupyterhub-users-besteffort.slice``,
    a child of it); a cgroupfs path gets a sub-directory; without a users' parent there is none
    (best-effort servers then only get the minimum weight each)."""
    if not cgroup_parent:
        return ""
    if cgroup_parent.endswith(".slice"):
        return cgroup_parent[: -len(".slice")] + "-besteffort.slice"
    return cgroup_parent.rstrip("/") + "/besteffort"
