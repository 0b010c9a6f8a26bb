"""The one ansible-playbook runner of the test layer: the system and VM tiers, the benchmarks
and `make sandbox` (through tests/harness/sandbox.py) all converge through run_playbook."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "ansible" / "site.yml"
ANSIBLE_CFG = REPO / "ansible" / "ansible.cfg"


def ansible_bin(name: str) -> str:
    """ansible-playbook next to the running interpreter (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


@dataclass
class Run:
    """One ansible-playbook run: exit code, output (stdout and stderr, in order) and duration."""
    args: list
    returncode: int
    stdout: str
    seconds: float
    stderr: str = ""  # merged into stdout; kept so callers can treat it as a CompletedProcess

    @property
    def output(self) -> str:
        return self.stdout

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP counters of every host: {host: {"ok": .., "changed": .., ...}}."""
        section = self.stdout.rpartition("PLAY RECAP")[2]
        return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
                for m in re.finditer(r"^(\S+)\s*:\s*(ok=.*)$", section, re.MULTILINE)}

    @property
    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported `changed` (the default callback's TASK headers)."""
        names, current = [], None
        for line in self.stdout.splitlines():
            header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if header:
                current = header.group(1)
            elif line.startswith("changed:") and current and current not in names:
                names.append(current)
        return names


def run_playbook(workdir: Path, inventory: Path | list[Path], extra_vars: dict | None, playbook: Path,
                 timeout: float = 3000, *, config: Path | None = None, tags: str | None = None,
                 echo: bool = False) -> Run:
    """ansible-playbook with the repository's roles; the output is kept for the assertions (and in
    workdir/last-run.log), echoed line by line when `echo`. `config`: an ansible.cfg to use
    (the site's, for the sandbox); the run is killed after `timeout` seconds."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ,
               ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_PIPELINING="True",
               ANSIBLE_RETRY_FILES_ENABLED="False",
               ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-local"),
               PYTHONUNBUFFERED="1")
    if config:
        env["ANSIBLE_CONFIG"] = str(config)
    inventories = inventory if isinstance(inventory, list) else [inventory]  # ansible merges several
    cmd = [ansible_bin("ansible-playbook"), *(arg for path in inventories for arg in ("-i", str(path))),
           str(playbook)]
    if extra_vars:
        vars_file = workdir / f"extra-{abs(hash(json.dumps(extra_vars, sort_keys=True)))}.json"
        vars_file.write_text(json.dumps(extra_vars))
        cmd += ["-e", f"@{vars_file}"]
    if tags:
        cmd += ["--tags", tags]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        proc.wait()
    finally:
        watchdog.cancel()
    output = "".join(lines)
    if proc.returncode == -9 and time.monotonic() - started >= timeout:
        output += f"\n[run_playbook: killed after its {timeout:.0f} s timeout]\n"
    (workdir / "last-run.log").write_text(output)
    return Run(cmd, proc.returncode, output, time.monotonic() - started)


def recap(output: str, host: str) -> dict[str, int]:
    """The PLAY RECAP counters of one host."""
    match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", output, re.MULTILINE)
    assert match, f"no recap line for {host} in:\n{output[-3000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}
