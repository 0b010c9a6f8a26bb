"""Compile fake_nvml.c into `<dir>/libnvidia-ml.so.1` and write its configuration file.

A process that should see the fake GPUs gets `LD_LIBRARY_PATH=<dir>` and `FAKE_NVML_CONFIG=<file>`
(see `nvml_env`) at start: the dynamic loader reads LD_LIBRARY_PATH only when a process starts,
so it is always a subprocess.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_nvml.c")
LIBRARY = "libnvidia-ml.so.1"


def build(dest: str | os.PathLike) -> Path:
    """Compile the fake library into dest; returns dest (the directory for LD_LIBRARY_PATH)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("the fake NVML needs a C compiler: apt-get install gcc")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(dest / LIBRARY), str(SOURCE)],
                   check=True, capture_output=True, text=True)
    return dest


@dataclass(frozen=True)
class FakeGpu:
    uuid: str
    name: str = "NVIDIA-A100-SXM4-80GB"
    memory_total: int = 80 * 1024 ** 3
    memory_used: int = 0
    utilization_percent: int = 0


def write_config(path: str | os.PathLike, gpus: list[FakeGpu], processes: list[tuple[int, int, int]] = (),
                 lost: list[int] = (), fail: dict[str, int] | None = None) -> Path:
    """processes: (gpu index, pid, bytes); lost: GPU indexes that fell off the bus;
    fail: {nvml function name: NVML error code} to make a call fail."""
    lines = ["driver 550.54.15"]
    lines += [f"gpu {g.uuid} {g.name} {g.memory_total} {g.memory_used} {g.utilization_percent}" for g in gpus]
    lines += [f"proc {gpu} {pid} {used}" for gpu, pid, used in processes]
    lines += [f"lost {index}" for index in lost]
    lines += [f"fail {fn} {code}" for fn, code in (fail or {}).items()]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def nvml_env(lib_dir: str | os.PathLike, config: str | os.PathLike | None, base: dict | None = None) -> dict:
    """An environment for a subprocess that loads the fake library."""
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib_dir), env.get("LD_LIBRARY_PATH", "")]))
    if config is None:
        env.pop("FAKE_NVML_CONFIG", None)
    else:
        env["FAKE_NVML_CONFIG"] = str(config)
    return env
