"""On a machine with NVIDIA GPUs and the nvidia container runtime (deselected elsewhere:
`pytest -m gpu`). The same code paths run here without a GPU against the fake NVML and on
`docker create`; these tests prove them on the real driver."""
import shutil
import subprocess

import pytest

from hubmetrics.nvml import Nvml
from tests.harness.profiles import sample_profiles

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


def gpu_uuids() -> list[str]:
    assert shutil.which("nvidia-smi"), "this test needs an NVIDIA driver (nvidia-smi)"
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_real_nvml_reports_every_gpu():
    reading = Nvml().read()
    assert reading.up, reading.error
    assert sorted(d.uuid for d in reading.devices) == sorted(gpu_uuids())


def test_each_gpu_server_sees_only_its_own_gpu(hub_factory, system_users, singleuser_image):
    uuids = gpu_uuids()
    profiles = sample_profiles(singleuser_image)
    profiles["resource_profiles"]["GPU1"] = {"cpu_limit": 0.5, "mem_limit": "512M", "gpus": 1}
    profiles["user_profiles"]["default"]["allowed_resources"] = ["GPU1"]
    hub = hub_factory(profiles, extra_config=f"c.DockerSystemProfileSpawner.gpu_devices = {uuids!r}\n")
    names = [f"jbmgpu{i}" for i in range(len(uuids) + 1)]
    for name in names:
        system_users(name)
        hub.api("POST", f"/users/{name}")
    seen = []
    for name in names[:-1]:
        reply = hub.api("POST", f"/users/{name}/server", json={"resource_profile": "GPU1"})
        assert reply.status_code in (201, 202), reply.text
        hub.wait_ready(name)
        listing = subprocess.run(["docker", "exec", f"jupyter-{name}", "nvidia-smi", "-L"],
                                 capture_output=True, text=True, check=True).stdout
        visible = [u for u in uuids if u in listing]
        assert len(visible) == 1, listing
        seen += visible
    assert sorted(seen) == sorted(uuids)  # each GPU handed out once, none shared
    refused = hub.api("POST", f"/users/{names[-1]}/server", json={"resource_profile": "GPU1"})
    assert refused.status_code == 409 and "GPU" in refused.text
