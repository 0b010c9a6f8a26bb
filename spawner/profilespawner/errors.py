"""Why a spawn is refused: each error names the field and carries the HTTP status the hub answers
with (400 for a bad option, 409 when the machine cannot give what was asked right now)."""


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
