"""Record the cgroup v2 files the exporter reads, from a real systemd host (the VM), for the unit tests.

    python -m tests.vm.record_v2_tree [--out tests/unit/metrics/fixtures/v2_systemd]

Boots a VM (tests/harness/vm.py), converges the docker role, sets up tests/vm/exporter_bed.py
(alice's two containers, bob's with an OOM kill, carol's SSH login), then reads in ONE pass in
the VM (tests/vm/exporter_probe.py `record`) only the files the samplers read: for every container,
the users' slice, its best-effort child, jupyterhub.slice, user.slice and each user-<uid>.slice,
the 8 files of hubmetrics.cgroups.files(); the root's cgroup.controllers; each container init
process's /proc/<pid>/cgroup; /proc/meminfo. They are written under OUT/cgroup and OUT/proc as
text, and OUT/expected.json holds the numbers parsed from those same texts by the probe (not by
hubmetrics), the containers' labels as Docker reported them, and how carol was logged in.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "unit" / "metrics" / "fixtures" / "v2_systemd"
CG = "/sys/fs/cgroup"


def record(vm, engine, bed, out: Path) -> dict:
    from tests.vm.exporter_bed import SSH_UID, SSH_USER, probe
    rel = lambda d: d.removeprefix(CG).strip("/")  # noqa: E731
    ancestors = {"jupyterhub.slice", "jupyterhub.slice/jupyterhub-users.slice",
                 "jupyterhub.slice/jupyterhub-users.slice/jupyterhub-users-besteffort.slice", "user.slice"}
    slice_uids = [int(n.removeprefix("user-").removesuffix(".slice")) for n in
                  vm.ssh(f"ls {CG}/user.slice").stdout.split() if n.startswith("user-") and n.endswith(".slice")]
    cgroups = {s.name: s.cgroup for s in bed.servers}
    cgroups.update({a: f"{CG}/{a}" for a in ancestors})
    cgroups.update({f"user-{uid}": f"{CG}/user.slice/user-{uid}.slice" for uid in slice_uids})
    pids = {s.name: engine.api.inspect_container(s.id)["State"]["Pid"] for s in bed.servers}
    extra = [f"{CG}/cgroup.controllers", "/proc/meminfo"] + [f"/proc/{p}/cgroup" for p in pids.values()]
    got = probe(vm, "record", {"cgroups": cgroups, "extra": extra})
    if out.exists():
        shutil.rmtree(out)
    for path, text in got["files"].items():
        target = out / ("cgroup/" + rel(path) if path.startswith(CG) else "proc/" + path.removeprefix("/proc/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    containers = []
    for s in bed.servers:
        attrs = engine.api.inspect_container(s.id)
        containers.append({"id": s.id, "name": s.name, "user": s.user, "init_pid": pids[s.name],
                           "labels": attrs["Config"]["Labels"], "cgroup_parent": attrs["HostConfig"]["CgroupParent"],
                           "cgroup": rel(s.cgroup), "numbers": got["expected"][s.name]})
    expected = {
        "recorded_on": vm.ssh("uname -sr; . /etc/os-release; echo $PRETTY_NAME").stdout.split("\n")[:2],
        "session": bed.session,
        "containers": containers,
        "slices": [{"uid": uid, "user": SSH_USER if uid == SSH_UID else ("root" if uid == 0 else str(uid)),
                    "cgroup": f"user.slice/user-{uid}.slice", "numbers": got["expected"][f"user-{uid}"]}
                   for uid in sorted(slice_uids)],
        "ancestors": {a: got["expected"][a] for a in sorted(ancestors)},
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return expected


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # so that every `finally` cleans up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    import docker

    from tests.harness.images import ensure_base_image
    from tests.harness.vm import start_vm
    from tests.vm.conftest import converge_docker
    from tests.vm.exporter_bed import exporter_bed
    work = Path(tempfile.mkdtemp(prefix="record-v2-"))
    try:
        with start_vm("record-v2-tree") as vm:
            done = converge_docker(vm, work)
            if done.returncode:
                raise SystemExit(done.stdout[-3000:] + done.stderr[-2000:])
            vm.load_image(ensure_base_image())
            engine = docker.DockerClient(base_url=f"unix://{vm.docker_socket()}", timeout=120)
            try:
                with exporter_bed(vm, engine) as bed:
                    expected = record(vm, engine, bed, args.out)
            finally:
                engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"recorded {len(expected['containers'])} containers, {len(expected['slices'])} user slices "
          f"({expected['session']}) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "spawner"), str(REPO / "metrics")]
    sys.exit(main())
