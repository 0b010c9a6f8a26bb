"""Why a spawn is refused: each error names the field and carries the HTTP status the hub answers
with (400 for a bad option, 409 when the machine cannot give what was asked right now, 424 when
something the hub depends on failed: the Docker engine, the login directory, the homes' filesystem).
The hub never answers 500 for any of these."""

# 424 Failed Dependency: the request was fine, a part the hub relies on did not answer or refused
FAILED_DEPENDENCY = 424


class SpawnRefused(Exception):
    status = 400

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(message)


class SpawnRequestError(SpawnRefused, ValueError):
    """Bad user option: ``field`` is the option name, ``message`` says value and allowed range."""


class AdmissionError(SpawnRefused):
    """The spawn would overcommit guarantees; the message says guaranteed/free/asked."""
    status = 409


class GpuAllocationError(SpawnRefused):
    """Too few GPUs free (exclusive mode never shares one silently)."""
    status = 409

    def __init__(self, message):
        super().__init__("gpus", message)


def engine_unreachable_message(address: str, error: Exception) -> str:
    """What a user (and the log) is told when the Docker engine does not answer."""
    return (f"The Docker engine at {address} does not answer ({type(error).__name__}: {error}), so no "
            "server can be started or stopped right now; nothing was created. An administrator must "
            "start it (systemctl start docker).")


def engine_refused_message(explanation: str, gpu_ids: tuple = ()) -> str:
    """What a user is told when the Docker engine refuses to create or start their server."""
    if gpu_ids and "device driver" in explanation:
        return (f"GPU {', '.join(map(str, gpu_ids))} was chosen for this server, but the Docker engine cannot "
                f"attach GPUs ({explanation}): this host has no NVIDIA container runtime. An administrator "
                "must install the NVIDIA container toolkit, or take the GPUs out of gpu_devices; no server "
                "was left running.")
    return (f"The Docker engine refused to start this server ({explanation}); no server was left running. "
            "Tell an administrator.")
