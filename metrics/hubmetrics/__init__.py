"""Per-user resource metrics for a bare-metal JupyterHub host.

The exporter samples cgroups, /proc, NVML and container labels into an immutable snapshot and
renders it for Prometheus (`/metrics`) and for the resource panel (`/api/snapshot`).
"""
