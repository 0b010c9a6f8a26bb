"""SpawnRequest -> Docker create arguments: every limit and guarantee enforced by the kernel.

- cpu_limit     -> CFS quota: cpu_quota = cpu_limit * cpu_period (period 100 ms); validation
  keeps it >= Docker's 1 ms minimum, so it never rounds to 0 ("no limit").
- mem_limit     -> memory limit, with memswap_limit equal to it (no escape into swap).
- guarantees    -> the server's QoS class (qos.py): its cgroup parent, cpu shares
  (1024 per guaranteed core, best effort the minimum inside the low-weight best-effort
  parent), memory reservation (memory.low on cgroup v2, the soft limit on v1) and
  oom_score_adj (OOM victims in order of how far they are above their guarantee).
- pids_limit, init (tini reaps zombies), no AutoRemove: the spawner removes a stopped server
  itself, because Docker 20.10 also removes AutoRemove containers when the engine restarts
  (moby/moby#46308), which would kill every server on `systemctl restart docker`.
- GPUs -> device_requests for the nvidia driver with the chosen device ids.
- least privilege: every capability dropped and no-new-privileges (the server runs as the
  user's uid and needs none; setuid binaries are inert); an image profile may opt out
  (allow_privilege_escalation, cap_add).
- bounded writes: a read-only root filesystem (image profile opt-out read_only_root: false) and
  /tmp a tmpfs of tmp_bytes, charged to the container's memory cgroup (overlay2 on ext4 cannot
  bound the writable layer: --storage-opt size needs XFS with pquota).
- data_mounts -> bind mounts, read-only unless rw.
"""

from . import labels, qos
from .qos import CPU_PERIOD
from .request import SpawnRequest


def container_labels(req: SpawnRequest, username: str) -> dict:
    """Labels per docs/contracts.md: what the exporter and admission control read back."""
    return {
        labels.USER: username,
        labels.RESOURCE_PROFILE: req.resource_profile,
        labels.IMAGE_PROFILE: req.image_profile,
        labels.CPU_LIMIT: f"{req.cpu_limit:g}",
        labels.MEM_LIMIT: str(int(req.mem_limit)),
        labels.CPU_GUARANTEE: f"{req.cpu_guarantee:g}",
        labels.MEM_GUARANTEE: str(int(req.mem_guarantee)),
        labels.GPUS: ",".join(req.gpu_ids),
        labels.QOS_CLASS: req.qos,
    }


def class_parent(req: SpawnRequest, cgroup_parent: str, besteffort_parent: str) -> str:
    """The cgroup parent of the server's class: best effort apart, the others in the users' parent."""
    if req.qos == qos.BESTEFFORT and besteffort_parent:
        return besteffort_parent
    return cgroup_parent


def host_config(req: SpawnRequest, pids_limit=1024, cgroup_parent="", besteffort_parent=None,
                mem_capacity=0) -> dict:
    """Keyword arguments for docker-py's create_host_config. ``besteffort_parent`` None: derived
    from ``cgroup_parent`` (qos.besteffort_parent); ``mem_capacity``: the memory all guarantees
    may add up to (scales oom_score_adj; 0 = no OOM preference)."""
    if besteffort_parent is None:
        besteffort_parent = qos.besteffort_parent(cgroup_parent)
    hc = {
        "cpu_period": CPU_PERIOD,
        "cpu_quota": int(round(req.cpu_limit * CPU_PERIOD)),
        "cpu_shares": qos.cpu_shares(req.qos, req.cpu_guarantee),
        "mem_limit": int(req.mem_limit),
        "memswap_limit": int(req.mem_limit),
        "init": True,
        "auto_remove": False,
    }
    if req.mem_guarantee > 0:
        hc["mem_reservation"] = int(req.mem_guarantee)
    adj = qos.oom_score_adj(req.mem_guarantee, mem_capacity)
    if adj is not None:
        hc["oom_score_adj"] = adj
    if pids_limit and pids_limit > 0:
        hc["pids_limit"] = int(pids_limit)
    parent = class_parent(req, cgroup_parent, besteffort_parent)
    if parent:
        hc["cgroup_parent"] = parent
    hc["cap_drop"] = ["ALL"]
    if req.cap_add:
        hc["cap_add"] = list(req.cap_add)
    if not req.allow_privilege_escalation:
        hc["security_opt"] = ["no-new-privileges"]
    hc["read_only"] = bool(req.read_only_root)
    hc["tmpfs"] = {"/tmp": tmpfs_options(req.tmp_bytes)}
    if req.data_mounts:
        hc["mounts"] = data_mounts(req)
    if req.gpu_ids:
        hc["device_requests"] = [{
            "Driver": "nvidia",
            "DeviceIDs": list(req.gpu_ids),
            "Capabilities": [["gpu"]],
        }]
    return hc


# what a swarm service cannot express and the node agent restores (docs/contracts.md "Swarm"):
# the first four with container.update(), oom_score_adj in /proc; the rest of host_config is
# either in the service spec or lost
NODE_RESTORED = ("cpu_shares", "mem_reservation", "memswap_limit", "pids_limit", "oom_score_adj")


def node_host_config(req: SpawnRequest, pids_limit=1024, cpu_capacity=0.0, mem_capacity=0) -> dict:
    """The host_config subset a swarm node must restore on the task's container, for a node whose
    guarantees may add up to ``cpu_capacity`` cores and ``mem_capacity`` bytes (its labels): the
    single server's values, but the CPU weight spread over the kernel's range (qos.node_cpu_shares:
    the node has no best-effort parent) and oom_score_adj scaled to the node's memory."""
    hc = host_config(req, pids_limit, mem_capacity=mem_capacity)
    hc["cpu_shares"] = qos.node_cpu_shares(req.qos, req.cpu_guarantee, cpu_capacity)
    return {key: hc[key] for key in NODE_RESTORED if key in hc}


def tmpfs_options(size: int) -> str:
    """Mount options of /tmp: sticky and world-writable like a disk /tmp, no device files, no setuid."""
    return f"rw,nosuid,nodev,size={int(size)},mode=1777"


def data_mounts(req: SpawnRequest) -> list:
    """Docker API mounts (HostConfig.Mounts) for the user's data_mounts."""
    return [{"Type": "bind", "Source": m.host_path, "Target": m.container_path, "ReadOnly": not m.rw}
            for m in req.data_mounts]


def environment(req: SpawnRequest) -> dict:
    """MEM_LIMIT/CPU_LIMIT for jupyter-resource-usage; guarantees as JupyterHub names them."""
    env = {
        "MEM_LIMIT": str(int(req.mem_limit)),
        "CPU_LIMIT": f"{req.cpu_limit:g}",
        "MEM_GUARANTEE": str(int(req.mem_guarantee)),
        "CPU_GUARANTEE": f"{req.cpu_guarantee:g}",
    }
    if req.gpu_ids:
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(req.gpu_ids)
    return env
