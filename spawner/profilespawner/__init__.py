"""A JupyterHub spawner: one Docker container per user, sized by profiles.

The pure parts (sizes, profiles, request, admission, gpus, dockerargs, form) can be
imported without JupyterHub; the spawner class is loaded lazily so that
``python -m profilespawner.check`` works in a minimal environment.
"""

from .profiles import ProfilesError, effective_profile, load_profiles

__all__ = [
    "DockerSwarmProfileSpawner",
    "DockerSystemProfileSpawner",
    "ProfilesError",
    "effective_profile",
    "load_profiles",
    "load_profiles_or_exit",
]


def load_profiles_or_exit(path, config=None):
    """For jupyterhub_config.py: validate the profiles (file, or the inline traitlets of
    ``config``) or make the hub exit; warn about settings the profiles replace (see check.py)."""
    from .check import load_profiles_or_exit as load  # not at import: keeps `python -m ...check` clean

    return load(path, config)


def __getattr__(name):
    # Lazy: importing dockerspawner pulls in docker + jupyterhub, not needed by the validator.
    if name == "DockerSystemProfileSpawner":
        from .spawner import DockerSystemProfileSpawner

        return DockerSystemProfileSpawner
    if name == "DockerSwarmProfileSpawner":
        from .swarmspawner import DockerSwarmProfileSpawner

        return DockerSwarmProfileSpawner
    raise AttributeError(name)
