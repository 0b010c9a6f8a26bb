"""ansible-playbook with the repository's roles, as the system and VM tiers run it."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ansible_bin(name: str) -> str:
    """ansible-playbook next to the running interpreter (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run_playbook(workdir: Path, inventory: Path, extra_vars: dict | None,
                 playbook: Path, timeout: float = 3000) -> subprocess.CompletedProcess:
    """ansible-playbook with the repository's roles; output kept for the assertions."""
    env = dict(os.environ,
               ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_PIPELINING="True",
               ANSIBLE_RETRY_FILES_ENABLED="False",
               ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-local"))
    cmd = [ansible_bin("ansible-playbook"), "-i", str(inventory), str(playbook)]
    if extra_vars:
        vars_file = workdir / f"extra-{abs(hash(json.dumps(extra_vars, sort_keys=True)))}.json"
        vars_file.write_text(json.dumps(extra_vars))
        cmd += ["-e", f"@{vars_file}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    (workdir / "last-run.log").write_text(result.stdout + result.stderr)
    return result


def recap(output: str, host: str) -> dict[str, int]:
    """The PLAY RECAP counters of one host."""
    match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", output, re.MULTILINE)
    assert match, f"no recap line for {host} in:\n{output[-3000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}
