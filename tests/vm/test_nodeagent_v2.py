"""The swarm node agent's real unit on a real kernel with every capability (the converged VM of
tests/vm/conftest.py: Debian 12, cgroup v2, systemd PID 1, Docker's systemd driver).

This machine's bounding set lacks CAP_SYS_RESOURCE, so on the systemd host containers of
tests/integration/swarm_agent the unit gets CAP_DAC_OVERRIDE alone: it raises oom_score_adj
there, but the kernel does not make the value a floor. Here it has both, as on a real node:

- the unit (systemd/jbm-node-agent.service, rendered as the metrics role renders it; the
  agent's packages copied from this machine's venv, as tests/vm/exporter_bed.py does) runs
  as a dynamic user with exactly CAP_DAC_OVERRIDE and CAP_SYS_RESOURCE;
- for a container running as a user's uid with every capability dropped (as the spawner
  makes them) and the host-config label the swarm spawner writes for a node, it restores the
  v2 files (cpu.weight from the spread shares, memory.low, memory.swap.max 0, pids.max) and
  the oom_score_adj of every process, also of those forked after (they inherit it);
- the user cannot lower the score again (the kernel's oom_score_adj_min), while raising it
  stays theirs.
A swarm is not needed: the agent acts on every running container with the label.
"""
import json
import time

import jinja2
import pytest

from profilespawner import dockerargs, labels
from profilespawner.request import SpawnRequest
from tests.harness.cgroups import v2_weight
from tests.harness.processes import wait_for
from tests.vm.exporter_bed import REPO, site_packages_tar

pytestmark = pytest.mark.vm

M = 1024 ** 2
LIB = "/opt/jbm-nagent-test"          # the copied packages, and a venv-like bin/ for the unit
UNIT = "jbm-node-agent"
UID = 1602
IMAGE = "local/debian:bookworm"
LABEL = {"jbm-vm-test": "nodeagent-v2"}
# the node's labels: 1 core and 1000M of guarantees (the VM's users' slice has 1 core, 1200M)
NODE_CPUS, NODE_MEM = 1.0, 1000 * M
# a new `sleep` every 0.2 s: processes forked after the agent's write
LOOP = "while :; do sleep 0.2; done"
BURSTABLE = SpawnRequest("Small", "Base", IMAGE, 0.5, 256 * M, 0.25, 100 * M)
BEST_EFFORT = SpawnRequest("Tiny", "Base", IMAGE, 0.25, 128 * M, 0, 0)


@pytest.fixture(scope="module")
def agent_vm(converged_vm, vm_engine):
    """The unit installed and started in the VM; removed with its files after."""
    vm = converged_vm
    unit = jinja2.Template((REPO / "systemd" / f"{UNIT}.service").read_text()).render(
        metrics_venv=LIB, metrics_node_agent_docker_socket="/run/docker.sock")
    started = time.monotonic()
    vm.ssh(f"rm -rf {LIB} && mkdir -p {LIB}/bin && tar -C {LIB} -xz", input=site_packages_tar(), timeout=300)
    vm.ssh(f"cat > {LIB}/bin/jbm-node-agent && chmod 755 {LIB}/bin/jbm-node-agent",
           input="#!/usr/bin/python3\nimport sys\nfrom hubmetrics.nodeagent import main\nsys.exit(main())\n")
    vm.ssh(f"cat > /etc/systemd/system/{UNIT}.service", input=unit)
    vm.ssh(f"mkdir -p /etc/systemd/system/{UNIT}.service.d && "
           f"cat > /etc/systemd/system/{UNIT}.service.d/test.conf", input=f"[Service]\nEnvironment=PYTHONPATH={LIB}\n")
    vm.ssh(f"systemctl daemon-reload && systemctl start {UNIT}", timeout=120)
    print(f"agent unit installed and started in the VM in {time.monotonic() - started:.0f}s")
    try:
        yield vm
    finally:
        print(vm.ssh(f"journalctl -u {UNIT} --no-pager -o cat | tail -20", check=False).stdout)
        for c in vm_engine.containers.list(all=True, filters={"label": "jbm-vm-test=nodeagent-v2"}):
            c.remove(force=True)
        vm.ssh(f"systemctl stop {UNIT}; rm -rf /etc/systemd/system/{UNIT}.service "
               f"/etc/systemd/system/{UNIT}.service.d {LIB}; systemctl daemon-reload", check=False, timeout=120)


def run_server(engine, name: str, req: SpawnRequest):
    """A user's server as the swarm spawner's task would be on a node: the user's uid, no
    capabilities, the quota and memory limit swarm applies, and the host-config label."""
    wanted = dockerargs.node_host_config(req, 64, cpu_capacity=NODE_CPUS, mem_capacity=NODE_MEM)
    hc = dockerargs.host_config(req)
    return engine.containers.run(
        IMAGE, ["sh", "-c", LOOP], name=name, detach=True, user=f"{UID}:{UID}", init=True,
        cap_drop=["ALL"], cpu_period=hc["cpu_period"], cpu_quota=hc["cpu_quota"], mem_limit=hc["mem_limit"],
        labels={**dockerargs.container_labels(req, "dora"), **LABEL,
                labels.HOST_CONFIG: json.dumps(wanted, sort_keys=True)}), wanted


def state(vm, engine, container) -> dict:
    """The container's v2 files, its pids and the distinct oom_score_adj values of them all."""
    pid = engine.api.inspect_container(container.id)["State"]["Pid"]
    cg = "/sys/fs/cgroup" + vm.ssh(f"cat /proc/{pid}/cgroup").stdout.strip().removeprefix("0::")
    script = [f"echo {f}=$(cat {cg}/{f})" for f in ("cpu.weight", "memory.low", "memory.swap.max", "pids.max")]
    script += [f"echo procs=$(cat {cg}/cgroup.procs)",
               f"echo scores=$(for p in $(cat {cg}/cgroup.procs); do cat /proc/$p/oom_score_adj; done "
               "| sort -un | paste -sd,)"]
    return dict(line.split("=", 1) for line in vm.ssh("; ".join(script)).stdout.splitlines())


def restored(got: dict, wanted: dict) -> bool:
    return (got["cpu.weight"] == str(v2_weight(wanted["cpu_shares"]))
            and got["memory.low"] == str(wanted.get("mem_reservation", 0))
            and got["memory.swap.max"] == "0" and got["pids.max"] == str(wanted["pids_limit"])
            and got["scores"] == str(wanted["oom_score_adj"]))


def test_the_unit_has_exactly_its_two_capabilities(agent_vm):
    pid = agent_vm.ssh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip()
    status = dict(line.split(":\t", 1) for line in agent_vm.ssh(f"cat /proc/{pid}/status").stdout.splitlines()
                  if ":\t" in line)
    assert status["Uid"].split()[0] != "0", status["Uid"]
    assert int(status["CapEff"], 16) == 1 << 1 | 1 << 24, status["CapEff"]   # DAC_OVERRIDE, SYS_RESOURCE


def test_the_agent_restores_a_users_server_and_the_user_cannot_lower_its_score(agent_vm, vm_engine):
    servers = {name: run_server(vm_engine, name, req)
               for name, req in (("jupyter-dora", BURSTABLE), ("jupyter-dora-lab", BEST_EFFORT))}
    for name, (container, wanted) in servers.items():
        got = wait_for(f"the agent to restore {name} ({wanted})",
                       lambda c=container, w=wanted: (lambda s: s if restored(s, w) else None)(state(agent_vm, vm_engine, c)),
                       timeout=120, interval=1.0)
        print(f"{name}: wanted {wanted}, got {got}")
        assert len(got["procs"].split()) >= 2   # init, sh and its current sleep
    # 100M of 1000M guaranteed: 900; best effort: 1000; 0.25 of 1 core: a quarter of the range
    assert [w["oom_score_adj"] for _, w in servers.values()] == [900, 1000]
    assert servers["jupyter-dora"][1]["cpu_shares"] == 65536

    container, wanted = servers["jupyter-dora"]
    time.sleep(2)   # about ten sleeps forked since the write: they inherited the score
    assert state(agent_vm, vm_engine, container)["scores"] == "900"
    # coreutils' echo names the errno (dash's builtin says "I/O error" for any failed write)
    lower = container.exec_run(["sh", "-c", "/bin/echo 0 > /proc/1/oom_score_adj"], user=f"{UID}:{UID}")
    assert lower.exit_code != 0 and b"Permission denied" in lower.output, lower
    own = container.exec_run(["sh", "-c", "echo 950 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj"],
                             user=f"{UID}:{UID}")
    assert own.exit_code == 0 and own.output.strip() == b"950", own   # raising stays the user's
    assert state(agent_vm, vm_engine, container)["scores"] == "900"
    log = agent_vm.ssh(f"journalctl -u {UNIT} --no-pager -o cat").stdout
    assert "oom_score_adj 900 for" in log and "cannot set" not in log, log[-3000:]
