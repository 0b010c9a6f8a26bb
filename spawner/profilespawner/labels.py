"""Container label names (docs/contracts.md); the metrics exporter defines the same strings itself."""

PREFIX = "org.jupyterhub-baremetal."
USER = PREFIX + "user"
RESOURCE_PROFILE = PREFIX + "resource-profile"
IMAGE_PROFILE = PREFIX + "image-profile"
CPU_LIMIT = PREFIX + "cpu-limit"
MEM_LIMIT = PREFIX + "mem-limit"
CPU_GUARANTEE = PREFIX + "cpu-guarantee"
MEM_GUARANTEE = PREFIX + "mem-guarantee"
GPUS = PREFIX + "gpus"
QOS_CLASS = PREFIX + "qos-class"

# --- swarm (docs/contracts.md "Swarm"): node labels the swarm role sets, read by the swarm spawner
NODE_CAPACITY_CPUS = PREFIX + "capacity-cpus"  # cores the node's users may be guaranteed, e.g. "3.5"
NODE_CAPACITY_MEM = PREFIX + "capacity-mem"  # bytes the node's users may be guaranteed, integer
NODE_GPUS = PREFIX + "gpus"  # comma-separated GPU ids (UUIDs) of the node, "" if none
# container label of a swarm task: JSON (sorted keys) of the docker-py container.update() keyword
# arguments swarm cannot express, restored on the node by hubmetrics.nodeagent
HOST_CONFIG = PREFIX + "host-config"
