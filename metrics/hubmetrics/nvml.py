"""GPUs through NVML (the real nvidia-ml-py bindings): devices and the processes using them.

No library, no GPU, a GPU falling off the bus, any NVMLError: the reading says "down" and holds
no GPU numbers, and the next sample tries again from nvmlInit. It never raises.
"""
from __future__ import annotations

from dataclasses import dataclass

from .snapshot import GpuDevice, GpuProcess


@dataclass(frozen=True)
class NvmlReading:
    up: bool
    devices: tuple[GpuDevice, ...] = ()
    processes: tuple[GpuProcess, ...] = ()
    error: str = ""


class Nvml:
    """An NVML session kept open between samples (nvmlInit is slow on real drivers)."""

    def __init__(self):
        self._ready = False

    def read(self) -> NvmlReading:
        try:
            import pynvml
            if not self._ready:
                pynvml.nvmlInit()
                self._ready = True
            return _read_all(pynvml)
        except Exception as exc:  # noqa: BLE001  NVMLError_*, missing library, a driver returning garbage
            self.close()
            return NvmlReading(up=False, error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self._ready:
            self._ready = False
            try:
                import pynvml
                pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001  closing after a failure: nothing more to do
                pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_all(pynvml) -> NvmlReading:
    devices, processes = [], []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        devices.append(GpuDevice(
            index=index,
            uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
            name=_text(pynvml.nvmlDeviceGetName(handle)),
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
            utilization_ratio=min(100, int(util.gpu)) / 100.0,
        ))
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            processes.append(GpuProcess(gpu=index, pid=int(proc.pid),
                                        memory_used_bytes=int(proc.usedGpuMemory or 0)))
    return NvmlReading(up=True, devices=tuple(devices), processes=tuple(processes))
