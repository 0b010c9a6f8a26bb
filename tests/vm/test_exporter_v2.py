"""The real exporter on a real cgroup v2 systemd host (the converged VM of tests/vm/conftest.py).

hubmetrics and the packages it needs (prometheus_client, docker-py, psutil, nvidia-ml-py) are
copied from this machine's venv into the VM (same Python 3.11 ABI; requests/urllib3 are
Debian's). User containers get the spawner's own Docker arguments and labels
(dockerargs.host_config / container_labels): two busy ones of alice (burstable in the users'
slice, best effort in its child slice), bob's guaranteed one holding memory with one OOM kill at
its own limit, and carol logged in over SSH (pam_systemd puts her session in
user.slice/user-<uid>.slice; where logind or pam_systemd is missing a `systemd-run --uid --slice`
unit stands in, and `bed.session` says which).

Each comparison reads the containers' and the slice's cgroup files raw (tests/vm/exporter_probe.py,
plain open().read(), no hubmetrics code) right before and right after the exporter's sample,
in the VM, so:
- CPU seconds (counters): before <= exported <= after, exactly (the drift in between is
  printed: it is what the sample took in the slow guest);
- memory working set: within max(2 MiB, 2 %) of the range of the two reads;
- pids: within the two reads +- 1 (a shell loop forks `sleep`);
- limits, reservations, guarantees, OOM kills: equal.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.vm.exporter_bed import LIB, M, PORT, SSH_USER, UNIT, Bed, Server, exporter_bed, probe
from tests.harness.exposition import samples
from tests.harness.vm import HOSTNAME

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def bed(converged_vm, vm_engine):
    with exporter_bed(converged_vm, vm_engine) as b:
        yield b


def working_set(n: dict) -> int:
    return n["memory_current"] - n["inactive_file"]


def assert_between(what: str, got: float, lo: float, hi: float, tol: float = 0.0) -> None:
    assert lo - tol <= got <= hi + tol, f"{what}: {got} not in [{lo} - {tol}, {hi} + {tol}]"


def mem_tol(value: float) -> float:
    return max(2 * M, 0.02 * value)


def check_containers_and_users(bed: Bed, get, before: dict, after: dict) -> dict:
    """`get(metric, **labels)` -> value of what the exporter served. Returns the drifts seen."""
    drift = {}
    by_user: dict[str, list[Server]] = {}
    for s in bed.servers:
        by_user.setdefault(s.user, []).append(s)
        b, a = before[s.name], after[s.name]
        key = dict(user=s.user, container=s.name)
        cpu = get("jupyterhub_container_cpu_seconds_total", **key)
        assert_between(f"{s.name} cpu", cpu, b["cpu_usec"] / 1e6, a["cpu_usec"] / 1e6, 1e-6)
        drift[s.name] = (a["cpu_usec"] - b["cpu_usec"]) / 1e6
        ws = get("jupyterhub_container_memory_working_set_bytes", **key)
        lo, hi = sorted((working_set(b), working_set(a)))
        assert_between(f"{s.name} working set", ws, lo, hi, mem_tol(hi))
        drift[f"{s.name} ws"] = abs(ws - working_set(a))
        assert_between(f"{s.name} rss", get("jupyterhub_container_memory_rss_bytes", **key),
                       *sorted((b["anon"], a["anon"])), mem_tol(a["anon"]))
        assert get("jupyterhub_container_memory_limit_bytes", **key) == a["memory_max"] == s.req.mem_limit
        assert get("jupyterhub_container_memory_reservation_bytes", **key) == a["memory_low"] == s.req.mem_guarantee
        assert_between(f"{s.name} pids", get("jupyterhub_container_pids", **key), *sorted((b["pids"], a["pids"])), 1)
        assert get("jupyterhub_container_oom_kills_total", **key) == a["oom_kill"] == b["oom_kill"]
    assert after["jupyter-bob"]["oom_kill"] == 1 and after["jupyter-bob"]["oom"] >= 1
    for user, mine in by_user.items():
        cpu = get("jupyterhub_user_cpu_seconds_total", user=user)
        assert_between(f"{user} cpu", cpu, sum(before[s.name]["cpu_usec"] for s in mine) / 1e6,
                       sum(after[s.name]["cpu_usec"] for s in mine) / 1e6, 1e-6)
        ws = get("jupyterhub_user_memory_working_set_bytes", user=user)
        lo = sum(min(working_set(before[s.name]), working_set(after[s.name])) for s in mine)
        hi = sum(max(working_set(before[s.name]), working_set(after[s.name])) for s in mine)
        assert_between(f"{user} working set", ws, lo, hi, mem_tol(hi))
        # limits and guarantees: the labels' sums (the spawner's contract), which the kernel enforces
        assert get("jupyterhub_user_memory_limit_bytes", user=user) == sum(s.req.mem_limit for s in mine) \
            == sum(after[s.name]["memory_max"] for s in mine)
        assert get("jupyterhub_user_cpu_limit_cores", user=user) == pytest.approx(sum(s.req.cpu_limit for s in mine)) \
            == sum(after[s.name]["cpu_quota"] / after[s.name]["cpu_period"] for s in mine)
        assert get("jupyterhub_user_memory_guarantee_bytes", user=user) == sum(s.req.mem_guarantee for s in mine)
        assert get("jupyterhub_user_cpu_guarantee_cores", user=user) == pytest.approx(
            sum(s.req.cpu_guarantee for s in mine))
        assert get("jupyterhub_user_oom_kills_total", user=user) == sum(after[s.name]["oom_kill"] for s in mine)
    # carol: her user slice, not /proc
    b, a = before[SSH_USER], after[SSH_USER]
    cpu = get("jupyterhub_user_process_cpu_seconds_total", user=SSH_USER)
    assert a["cpu_usec"] > 0
    assert_between("carol's slice cpu", cpu, b["cpu_usec"] / 1e6, a["cpu_usec"] / 1e6, 1e-6)
    drift[SSH_USER] = (a["cpu_usec"] - b["cpu_usec"]) / 1e6
    lo, hi = sorted((working_set(b), working_set(a)))
    assert_between("carol's slice memory", get("jupyterhub_user_process_memory_pss_bytes", user=SSH_USER),
                   lo, hi, mem_tol(hi))
    return drift


def getter(text: str):
    """`get(name, **labels)` of the served samples; every per-user/per-container series carries the
    exporter's `node` label, which must be the VM's own hostname (the exporter's default)."""
    table, nodes = {}, set()
    for (name, pairs), value in samples(text).items():
        kept = tuple(pair for pair in pairs if pair[0] != "node")
        nodes.update(v for k, v in pairs if k == "node")
        table[(name, kept)] = value
    assert nodes == {HOSTNAME}, nodes

    def get(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        assert key in table, f"{name}{labels} not served; served: {sorted(k for k in table if k[0] == name)}"
        return table[key]
    return get


def test_once_agrees_with_the_cgroup_files_read_around_it(bed):
    got = probe(bed.vm, "once", {"cgroups": bed.cgroups(), "env": {"PYTHONPATH": LIB}})
    assert got["rc"] == 0, got["stderr"]
    drift = check_containers_and_users(bed, getter(got["text"]), got["before"], got["after"])
    print(f"--once ({bed.session}): took {got['after']['time'] - got['before']['time_after']:.1f} s in the guest; "
          f"CPU drift between the raw reads (s): {json.dumps({k: round(v, 3) for k, v in drift.items()})}")


@pytest.fixture(scope="module")
def daemon(bed):
    vm = bed.vm
    vm.ssh(f"systemd-run --unit={UNIT} --setenv=PYTHONPATH={LIB} python3 -m hubmetrics.exporter "
           f"--listen 127.0.0.1:{PORT} --interval 2", timeout=120)
    try:
        yield f"http://127.0.0.1:{PORT}"
    finally:
        vm.ssh(f"systemctl stop {UNIT}; systemctl reset-failed {UNIT} 2>/dev/null; true", check=False, timeout=120)


def test_daemon_serves_the_same_numbers_and_the_snapshot_reads_user_slices(bed, daemon):
    got = probe(bed.vm, "daemon", {"url": daemon, "cgroups": bed.cgroups(), "timeout": 300})
    snap, text = got["snapshot"], got["text"]
    assert snap is not None, bed.vm.ssh(f"journalctl -u {UNIT} --no-pager | tail -30", check=False).stdout
    assert snap["process_source"] == "user_slices"
    assert snap["stale"] == {"cgroups": False, "docker": False, "nvml": True}
    check_containers_and_users(bed, getter(text), got["before"], got["after"])
    users = snap["users"]
    assert sorted(users["alice"]["containers"]) == ["jupyter-alice", "jupyter-alice-lab"]
    assert users["bob"]["oom_kills_total"] == 1
    assert users["alice"]["cpu_guarantee_cores"] == pytest.approx(0.25)
    assert users["bob"]["memory_guarantee_bytes"] == 320 * M
    carol = users[SSH_USER]
    b, a = got["before"][SSH_USER], got["after"][SSH_USER]
    assert carol["containers"] == []
    assert_between("carol's snapshot cpu", carol["process_cpu_seconds_total"], b["cpu_usec"] / 1e6,
                   a["cpu_usec"] / 1e6, 1e-6)
    assert "root" not in users   # uid 0's slice (this very SSH session) is not a user's
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
