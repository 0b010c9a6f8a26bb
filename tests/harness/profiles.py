"""Profiles sized for the 2-core test machine, with the single-user test image."""


def sample_profiles(image: str) -> dict:
    return {
        "resource_profiles": {
            "Tiny": {"cpu_limit": 0.5, "mem_limit": "512M", "description": "half a core"},
            "Small": {"cpu_limit": 1, "mem_limit": "1G", "description": "one core"},
        },
        "image_profiles": {"SingleUser": {"image": image, "description": "JupyterLab"}},
        "user_profiles": {
            "default": {
                "allowed_resources": ["Tiny", "Small"],
                "allowed_images": ["SingleUser"],
                "host_homedir_format_string": "/home/{username}",
                "max_preallocate": {"cpu_guarantee": 0.5, "mem_guarantee": "256M"},
            },
        },
    }
