"""SpawnRequest -> Docker create arguments: every limit and guarantee enforced by the kernel.

- cpu_limit    -> CFS quota: cpu_quota = cpu_limit * cpu_period (period 100 ms).
- mem_limit    -> memory limit, with memswap_limit equal to it (no escape into swap).
- mem guarantee-> memory reservation (soft limit the kernel reclaims others down to first).
- cpu guarantee-> cpu shares = max(2, round(1024 * cpu_guarantee)), set only when the
  guarantee is > 0. CFS shares are weights: under contention each busy sibling cgroup gets
  CPU in proportion to its shares. With the weight proportional to the guarantee, and
  admission control keeping the sum of guarantees <= capacity, a container guaranteed g
  cores gets at least about g cores when everyone is busy (2 is the kernel's minimum).
  Containers without a guarantee keep Docker's default weight 1024 (like a 1-core
  guarantee) rather than the minimum: a weight of 2 starves them behind everything else
  in the same parent cgroup (measured here: 0.08 of a 0.5-core quota on a busy host).
  Shares never cap; only the quota does.
- pids_limit, init (tini reaps zombies), cgroup_parent (the users' systemd slice).
- GPUs -> device_requests for the nvidia driver with the chosen device ids.
"""

from . import labels
from .request import SpawnRequest

CPU_PERIOD = 100_000


def cpu_shares(cpu_guarantee: float):
    """CFS weight proportional to the guarantee, or None (Docker's default) without one."""
    if cpu_guarantee <= 0:
        return None
    return max(2, round(1024 * cpu_guarantee))


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
    }


def host_config(req: SpawnRequest, pids_limit=1024, cgroup_parent="") -> dict:
    """Keyword arguments for docker-py's create_host_config."""
    hc = {
        "cpu_period": CPU_PERIOD,
        "cpu_quota": int(round(req.cpu_limit * CPU_PERIOD)),
        "mem_limit": int(req.mem_limit),
        "memswap_limit": int(req.mem_limit),
        "init": True,
    }
    if req.mem_guarantee > 0:
        hc["mem_reservation"] = int(req.mem_guarantee)
    shares = cpu_shares(req.cpu_guarantee)
    if shares is not None:
        hc["cpu_shares"] = shares
    if pids_limit and pids_limit > 0:
        hc["pids_limit"] = int(pids_limit)
    if cgroup_parent:
        hc["cgroup_parent"] = cgroup_parent
    if req.gpu_ids:
        hc["device_requests"] = [{
            "Driver": "nvidia",
            "DeviceIDs": list(req.gpu_ids),
            "Capabilities": [["gpu"]],
        }]
    return hc


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
