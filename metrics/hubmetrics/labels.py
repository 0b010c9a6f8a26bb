"""Names of the container labels the spawner sets (see docs/contracts.md, "Container labels").

Defined here once for the exporter side; the exporter never imports the spawner because it runs
as its own service, possibly from another venv.
"""
PREFIX = "org.jupyterhub-baremetal."
USER = PREFIX + "user"
RESOURCE_PROFILE = PREFIX + "resource-profile"
IMAGE_PROFILE = PREFIX + "image-profile"
CPU_LIMIT = PREFIX + "cpu-limit"
MEM_LIMIT = PREFIX + "mem-limit"
CPU_GUARANTEE = PREFIX + "cpu-guarantee"
MEM_GUARANTEE = PREFIX + "mem-guarantee"
GPUS = PREFIX + "gpus"

ALL = (USER, RESOURCE_PROFILE, IMAGE_PROFILE, CPU_LIMIT, MEM_LIMIT, CPU_GUARANTEE, MEM_GUARANTEE, GPUS)

# Swarm task containers: the docker-py container.update() arguments a swarm service
# cannot express, as JSON; the node agent (nodeagent.py) applies them. Not a per-user series label.
HOST_CONFIG = PREFIX + "host-config"
