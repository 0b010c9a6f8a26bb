"""The GPU sampler through the real pynvml against a fake libnvidia-ml.so.1 (compiled from C):
devices, processes, and every way NVML can fail, none of which may raise."""
import json
import subprocess
import sys

import pytest

from tests.fakenvml.build import FakeGpu, nvml_env, write_config

# Reads NVML once per line on stdin (so the test can change the fake world between reads).
READER = r"""
import json, sys
from dataclasses import asdict
from hubmetrics.nvml import Nvml
nvml = Nvml()
for _ in sys.stdin:
    r = nvml.read()
    print(json.dumps({"up": r.up, "error": r.error, "devices": [asdict(d) for d in r.devices],
                      "processes": [asdict(p) for p in r.processes]}), flush=True)
"""


class Reader:
    def __init__(self, env):
        self.proc = subprocess.Popen([sys.executable, "-c", READER], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read(self) -> dict:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read()


@pytest.fixture
def reader_for(fake_nvml_dir):
    readers = []

    def make(config):
        readers.append(Reader(nvml_env(fake_nvml_dir, config)))
        return readers[-1]

    yield make
    for r in readers:
        r.close()


TWO = [FakeGpu("GPU-11111111-aaaa", memory_used=3 * 2 ** 30, utilization_percent=73), FakeGpu("GPU-22222222-bbbb")]


def test_reads_devices_and_processes(tmp_path, reader_for):
    config = write_config(tmp_path / "nvml.conf", TWO, [(0, 4001, 2 * 2 ** 30), (0, 4002, 2 ** 30), (1, 4003, 5)])
    r = reader_for(config).read()
    assert r["up"] and r["error"] == ""
    assert [(d["index"], d["uuid"], d["memory_used_bytes"], d["utilization_ratio"]) for d in r["devices"]] == [
        (0, "GPU-11111111-aaaa", 3 * 2 ** 30, 0.73), (1, "GPU-22222222-bbbb", 0, 0.0)]
    assert r["devices"][0]["memory_total_bytes"] == 80 * 2 ** 30
    assert [(p["gpu"], p["pid"], p["memory_used_bytes"]) for p in r["processes"]] == [
        (0, 4001, 2 * 2 ** 30), (0, 4002, 2 ** 30), (1, 4003, 5)]


def test_no_gpu(tmp_path, reader_for):
    r = reader_for(write_config(tmp_path / "nvml.conf", [])).read()
    assert r == {"up": True, "error": "", "devices": [], "processes": []}


def test_no_library(tmp_path):
    """Without any libnvidia-ml.so.1 (this machine): down, and says why."""
    r = Reader(nvml_env(tmp_path, None))  # an empty directory on LD_LIBRARY_PATH
    try:
        got = r.read()
    finally:
        r.close()
    assert got["up"] is False and "LibraryNotFound" in got["error"] and got["devices"] == []


def test_driver_not_loaded(reader_for):
    got = reader_for(None).read()
    assert got["up"] is False and "DriverNotLoaded" in got["error"]


@pytest.mark.parametrize("function", [
    "nvmlInit", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetUUID",
    "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetComputeRunningProcesses_v3"])
def test_an_error_at_any_call_means_down_then_recovery(tmp_path, reader_for, function):
    config = tmp_path / "nvml.conf"
    write_config(config, TWO, [(0, 4001, 7)], fail={function: 999})
    reader = reader_for(config)
    got = reader.read()
    assert got["up"] is False and got["devices"] == [] and got["processes"] == []
    assert "Unknown" in got["error"]
    write_config(config, TWO, [(0, 4001, 7)])
    assert reader.read()["up"] is True   # re-initialised on the next sample


def test_a_gpu_vanishing(tmp_path, reader_for):
    config = tmp_path / "nvml.conf"
    write_config(config, TWO)
    reader = reader_for(config)
    assert len(reader.read()["devices"]) == 2
    write_config(config, TWO, lost=[1])
    got = reader.read()
    assert got["up"] is False and "GPU is lost" in got["error"] and got["devices"] == []
