"""A fake libnvidia-ml.so.1 (C) that the real pynvml loads, for hosts without NVIDIA GPUs."""
