"""The node agent restores on a real swarm node what a swarm service cannot ask for.

A one-node swarm in a systemd host container (conftest.py). Services are created the way the
spawner creates them: the usual container labels plus `org.jupyterhub-baremetal.host-config`,
computed here with the spawner's own Docker arguments (profilespawner.dockerargs; the agent
never imports the spawner). Everything is read back from the task containers' own cgroup files
(the hierarchy is shared, cgroupns=host): first what swarm alone gives, then what the agent
restores, again after swarm replaces a killed task, and that forged labels change nothing.
Then the CPU guarantee under contention, with and without the agent, by cgroup counters.
"""
import json
import logging
import time

import docker
import pytest
import yaml
from docker.types import ContainerSpec, EndpointSpec, Placement, Resources, RestartPolicy, TaskTemplate

from hubmetrics import labels as mlabels
from hubmetrics.nodeagent import ALLOWED_KEYS
from profilespawner import dockerargs, labels, qos
from tests.harness import contention, playbooks
from tests.harness.images import BASE_IMAGE

from .conftest import METRICS_SRC, VENV, running_agent, wait_for

pytestmark = pytest.mark.integration

M = 1024 ** 2
USERS_SLICE = "jupyterhub-users.slice"   # the nodes' daemon.json cgroup-parent (node-image)
PIDS = 512
UNLIMITED_V1 = 9223372036854771712       # cgroup v1's "no limit" (page-rounded LONG_MAX)


# what the node's labels would say its guarantees may add up to: the CPU test pins the tasks to
# one core, and 1 GiB ranks the OOM scores (a task guaranteed 128M: 875, best effort 1000)
NODE_CPUS, NODE_MEM = 1.0, 1024 * M


def node_host_config(req, pids_limit=PIDS) -> dict:
    """What the spawner puts in the label for this node: the swarm-inexpressible part of its
    Docker arguments (dockerargs.node_host_config: the weights spread over the kernel's range)."""
    hc = dockerargs.node_host_config(req, pids_limit, cpu_capacity=NODE_CPUS, mem_capacity=NODE_MEM)
    assert set(hc) <= set(ALLOWED_KEYS), hc
    return hc


def host_config_label(req, pids_limit=PIDS) -> str:
    return json.dumps(node_host_config(req, pids_limit), sort_keys=True)


def create_service(node, username, req, threads=0, host_config=None):
    """jupyter-<username>: one replica pinned to the node, the spawner's labels on the service and
    its container spec, swarm's own Limits and Reservations; `threads` busy loops."""
    container_labels = dockerargs.container_labels(req, username)
    container_labels[labels.PREFIX + "host-config"] = host_config if host_config is not None \
        else host_config_label(req)
    spec = ContainerSpec(BASE_IMAGE, ["sh", "-c", contention.BURN.format(threads=threads)],
                         labels=container_labels, init=True)
    resources = Resources(cpu_limit=int(req.cpu_limit * 1e9), mem_limit=int(req.mem_limit),
                          cpu_reservation=int(req.cpu_guarantee * 1e9), mem_reservation=int(req.mem_guarantee))
    template = TaskTemplate(spec, resources=resources, restart_policy=RestartPolicy(condition="any"),
                            placement=Placement(constraints=[f"node.id=={node.node_id}"]))
    name = f"jupyter-{username}"
    node.client.api.create_service(template, name=name, labels=container_labels,
                                   endpoint_spec=EndpointSpec(mode="dnsrr"))
    return name


@pytest.fixture
def services(swarm_node):
    """Creates services; removes them (and waits for their containers to go) at the end."""
    made = []

    def make(username, req, **kwargs):
        made.append(create_service(swarm_node, username, req, **kwargs))
        return made[-1]

    yield make
    for name in made:
        try:
            swarm_node.client.api.remove_service(name)
        except docker.errors.NotFound:
            pass
    wait_for("the services' containers to go", lambda: not any(
        swarm_node.client.containers.list(all=True, filters={"label": f"com.docker.swarm.service.name={n}"})
        for n in made), timeout=60)


def task_container(node, service, not_ids=(), timeout=90):
    """The running container of the service's task (not one of `not_ids`), inspected."""
    def find():
        for c in node.client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"}):
            if c.id not in not_ids and c.attrs["State"]["Running"] and c.attrs["State"]["Pid"]:
                return c.attrs
        return None
    return wait_for(f"a running task of {service}", find, timeout=timeout)


def limits(node, info) -> dict:
    """The container's limits, read from its own cgroup files (its pid's /proc/<pid>/cgroup, in the node)."""
    pid = info["State"]["Pid"]
    dirs = {}
    for line in node.host.exec("cat", f"/proc/{pid}/cgroup").stdout.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            if c:
                dirs[c] = f"/sys/fs/cgroup/{controllers}{path}"
    files = {"cpu.shares": dirs["cpu"], "cpu.cfs_quota_us": dirs["cpu"], "memory.soft_limit_in_bytes": dirs["memory"],
             "memory.limit_in_bytes": dirs["memory"], "memory.memsw.limit_in_bytes": dirs["memory"],
             "pids.max": dirs["pids"]}
    script = "; ".join(f"echo {f}=$(cat {d}/{f} 2>/dev/null || echo absent)" for f, d in files.items())
    # every process of the container: the distinct oom_score_adj values, comma-separated
    script += (f"; echo oom_score_adj=$(for p in $(cat {dirs['memory']}/cgroup.procs); do "
               "cat /proc/$p/oom_score_adj 2>/dev/null; done | sort -un | paste -sd,)")
    out = node.host.exec("sh", "-c", script).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    values["cgroup"] = dirs["cpu"]
    return values


def expected(req, pids=PIDS) -> dict:
    hc = node_host_config(req, pids)
    return {"cpu.shares": str(hc["cpu_shares"]),
            "memory.soft_limit_in_bytes": str(hc.get("mem_reservation", UNLIMITED_V1)),
            "memory.limit_in_bytes": str(req.mem_limit),
            "memory.memsw.limit_in_bytes": str(hc["memswap_limit"]),
            "pids.max": str(pids),
            "oom_score_adj": str(hc["oom_score_adj"])}



def restored(node, info, want):
    got = limits(node, info)
    return got if all(got[k] == v or (k == "memory.memsw.limit_in_bytes" and got[k] == "absent")
                      for k, v in want.items()) else None


GUARANTEED = contention.request(cpu_limit=2, cpu_guarantee=0.5, mem_limit=256 * M, mem_guarantee=128 * M)
BEST_EFFORT = contention.request(cpu_limit=2, mem_limit=256 * M)


def test_swarm_drops_the_guarantees_and_the_agent_restores_them(swarm_node, services):
    node = swarm_node
    cases = {services("nagentg", GUARANTEED): GUARANTEED, services("nagentb", BEST_EFFORT): BEST_EFFORT}
    tasks = {name: task_container(node, name) for name in cases}

    # swarm alone: the quota and the memory limit, nothing else
    for name, req in cases.items():
        info, got = tasks[name], limits(node, tasks[name])
        print("swarm alone:", name, got)
        assert info["HostConfig"]["NanoCpus"] == int(req.cpu_limit * 1e9)
        assert info["HostConfig"]["OomScoreAdj"] == 0    # lost, and `docker update` cannot set it either
        assert got["cpu.cfs_quota_us"] == str(int(req.cpu_limit * qos.CPU_PERIOD))
        assert got["memory.limit_in_bytes"] == str(req.mem_limit)
        assert got["cpu.shares"] == "1024"                       # the default weight, whatever the class
        assert got["memory.soft_limit_in_bytes"] == str(UNLIMITED_V1)   # no memory guarantee
        assert got["memory.memsw.limit_in_bytes"] in ("absent", str(2 * req.mem_limit))  # swap allowed
        assert got["pids.max"] != str(PIDS)   # systemd's DefaultTasksMax for the scope, or "max"
        assert got["oom_score_adj"] == "0"    # every process at the engine's default
        assert f"/jupyterhub.slice/{USERS_SLICE}/" in got["cgroup"]   # the nodes' daemon.json parent

    with running_agent(node) as agent:
        for name, req in cases.items():
            got = wait_for(f"the agent to restore {name}", lambda n=name, r=req: restored(node, tasks[n], expected(r)),
                           timeout=30)
            print("with the agent:", name, got)
        assert agent.applied == 2 and agent.refused == 0 and agent.scored == 2

        # swarm replaces a killed task with a new container: the agent restores that one too
        g = next(iter(cases))
        node.client.api.kill(tasks[g]["Id"])
        new = task_container(node, g, not_ids={tasks[g]["Id"]})
        wait_for("the agent to restore the new task", lambda: restored(node, new, expected(GUARANTEED)), timeout=30)
        assert agent.applied == 3

    # and swarm does not take it back (no reconciliation of updated resources)
    time.sleep(3)
    assert restored(node, new, expected(GUARANTEED)), limits(node, new)
    assert restored(node, tasks[list(cases)[1]], expected(BEST_EFFORT))


def test_forged_labels_change_nothing(swarm_node, services, caplog):
    node = swarm_node
    forged = {
        "nagentf1": "{cpu_shares: 2",                                        # not JSON
        "nagentf2": json.dumps({"cpu_shares": 512, "privileged": True}),     # a key it does not know
        "nagentf3": json.dumps({"cpu_shares": 1, "pids_limit": PIDS}),       # below the kernel's 2
        "nagentf4": json.dumps({"memswap_limit": -1}),                       # unlimited swap
        "nagentf5": json.dumps({"mem_reservation": 512 * M}),                # above the memory limit
        "nagentf6": json.dumps({"pids_limit": 0}),                           # unlimited pids
        "nagentf7": json.dumps([["cpu_shares", 512]]),                       # not an object
    }
    names = {services(user, BEST_EFFORT, host_config=text): text for user, text in forged.items()}
    before = {name: limits(node, task_container(node, name)) for name in names}
    caplog.set_level(logging.WARNING, logger="hubmetrics.nodeagent")
    with running_agent(node) as agent:
        wait_for("the agent to refuse every forged label", lambda: agent.refused >= len(forged), timeout=30)
        time.sleep(1)
        assert agent.applied == 0
    for name in names:
        info = task_container(node, name)
        after = limits(node, info)
        assert after == before[name], (name, before[name], after)
        said = [r.getMessage() for r in caplog.records if info["Name"].lstrip("/") in r.getMessage()]
        assert said and all("refused" in s and "left as it is" in s for s in said), (name, said)
    messages = "\n".join(r.getMessage() for r in caplog.records)
    print(messages)
    assert "key 'privileged' value True: allowed one of the keys cpu_shares, mem_reservation" in messages
    assert "key 'cpu_shares' value 1: allowed a whole number from 2 to 262144" in messages
    assert "key 'memswap_limit' value -1: allowed a whole number of bytes >= the container's memory limit" in messages
    assert f"key 'mem_reservation' value {512 * M}: allowed a whole number of bytes from" in messages
    assert "key 'pids_limit' value 0: allowed a whole number from 1 to" in messages
    assert "is not JSON" in messages and "is not a JSON object" in messages
    assert mlabels.HOST_CONFIG in messages


def measure(shell, burners, tries=2, quiet=0.9, window=10):
    """{name: cores} over a `window` s window; up to `tries` windows (bounded) until the users'
    tasks together get `quiet` of their one core (other engineers and a VM share this machine),
    keeping the window in which they got the most."""
    best = None
    for _ in range(tries):
        got = contention.cores(shell, burners, window=window)
        if best is None or sum(got.values()) > sum(best.values()):
            best = got
        if sum(got.values()) >= quiet:
            break
    return best


def test_cpu_guarantee_beside_busy_best_effort_tasks_with_and_without_the_agent(swarm_node, services):
    """One task guaranteed 1 core (limit 2) beside three busy best-effort tasks (limit 2 each),
    all burning 2 threads; each share read from its cgroup's cpuacct counter.

    The users' capacity is one core: the test pins the four task containers to CPU 0 (as
    bench_guarantees.py --vm caps the users' slice at 1 core). Weights act per CPU run queue; on
    this shared 2-core machine under a load average of 10-19 the load balancer, not the weights,
    decided where the threads ran when they could use both CPUs (measured: with the agent the
    guaranteed task got 65-95 % of what the four got). The floor is 0.9 x min(guarantee, what
    the four got together): 0.9 core when the machine leaves CPU 0 to them, and 90 % of what
    they got when other load takes some of it (what the users get from the machine is the
    host's business; how they share it is the weights')."""
    node = swarm_node
    g_req = contention.request(cpu_limit=2, cpu_guarantee=1)
    names = [services("nagentq", g_req, threads=2)]
    names += [services(f"nagentb{i}", contention.request(cpu_limit=2), threads=2) for i in (1, 2, 3)]
    tasks = [task_container(node, n) for n in names]
    for info in tasks:
        node.client.api.update_container(info["Id"], cpuset_cpus="0")
    burners = [contention.Burner(info["Name"].lstrip("/"), None) for info in tasks]
    shell = lambda script: node.host.exec("sh", "-c", script).stdout  # noqa: E731
    contention.locate(shell, node.client, burners)
    g = burners[0].name

    def report(what, got):
        print(f"{what}: the four {sum(got.values()):.2f} cores, guaranteed {got[g]:.2f}, best effort",
              [round(got[b.name], 2) for b in burners[1:]])
        return 0.9 * min(g_req.cpu_guarantee, sum(got.values()))

    without = measure(shell, burners)
    floor = report("swarm alone", without)
    assert without[g] < floor, without   # equal weights: a quarter, not the guaranteed core

    with running_agent(node) as agent:
        wait_for("the agent to weigh the four tasks", lambda: agent.applied >= 4, timeout=30)
        got = measure(shell, burners)
    floor = report("with the agent", got)
    assert got[g] >= floor, got


AGENT_VENV = "/opt/jbm-nagent/venv"   # in the node: a console script as pip installs it, run by this venv's python


def converge_agent(node, workdir):
    """The role's own tasks (roles/metrics/tasks/node_agent.yml) into the node, over the docker
    connection, with a console script as pip installs it and a drop-in pointing Python at this
    checkout's hubmetrics (bound read-only into the node, conftest.py)."""
    node.host.exec("sh", "-c", f"mkdir -p {AGENT_VENV}/bin /etc/systemd/system/jbm-node-agent.service.d")
    node.host.exec("sh", "-c", f"cat > {AGENT_VENV}/bin/jbm-node-agent && chmod 755 {AGENT_VENV}/bin/jbm-node-agent",
                   input=f"#!{VENV}/bin/python\nimport sys\nfrom hubmetrics.nodeagent import main\nsys.exit(main())\n")
    # the checkout may be under /tmp or a home, which the unit's PrivateTmp and ProtectHome hide:
    # bound into its namespace read-only (the product's venv is in /opt)
    node.host.exec("sh", "-c", "cat > /etc/systemd/system/jbm-node-agent.service.d/test.conf",
                   input=f"[Service]\nEnvironment=PYTHONPATH={METRICS_SRC}\n"
                         f"BindReadOnlyPaths={VENV} {METRICS_SRC}\n")
    playbook = workdir / "node_agent.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The node agent", "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "The metrics role's node agent",
                   "ansible.builtin.include_role": {"name": "metrics", "tasks_from": "node_agent"}}]}]))
    inventory = workdir / "inventory.ini"
    inventory.write_text(f"{node.host.name} ansible_connection=community.docker.docker "
                         "ansible_python_interpreter=/usr/bin/python3\n")
    return playbooks.run_playbook(workdir, inventory, {"metrics_venv": AGENT_VENV,
                                                       "metrics_node_agent_enabled": True}, playbook, timeout=300)


def journal(node):
    return node.host.exec("journalctl", "-u", "jbm-node-agent", "--no-pager", "-o", "cat", check=False).stdout


def test_the_hardened_unit_restores_tasks_and_follows_a_dockerd_restart(swarm_node, services, tmp_path):
    """The real unit, installed by the role, under the node's systemd: a dynamic user in the
    docker group, no network; it restores a task, then dockerd restarts (live-restore off: swarm
    re-creates the task) and the agent reconnects and restores the new container."""
    node = swarm_node
    try:
        first_run = converge_agent(node, tmp_path)
        assert first_run.returncode == 0, first_run.stdout[-4000:]
        second_run = converge_agent(node, tmp_path)
        assert second_run.returncode == 0, second_run.stdout[-4000:]
        assert first_run.recap[node.host.name]["changed"] == 2, first_run.stdout[-4000:]
        assert second_run.recap[node.host.name]["changed"] == 0, second_run.changed_tasks
        assert node.host.exec("systemctl", "is-enabled", "jbm-node-agent").stdout.strip() == "enabled"
        name = services("nagentu", GUARANTEED)
        first = task_container(node, name)
        wait_for("the unit's agent to restore the task", lambda: restored(node, first, expected(GUARANTEED)),
                 timeout=60)
        pid = node.host.exec("systemctl", "show", "-p", "MainPID", "--value", "jbm-node-agent").stdout.strip()
        status = node.host.exec("cat", f"/proc/{pid}/status").stdout
        field = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if ":" in line}
        docker_gid = node.host.exec("getent", "group", "docker").stdout.split(":")[2]
        uid, gid = field["Uid"][0], field["Gid"][0]
        assert uid != "0" and gid != "0" and sorted(field["Groups"]) == sorted({gid, docker_gid}), status
        # CAP_DAC_OVERRIDE (bit 1) and CAP_SYS_RESOURCE (bit 24), for oom_score_adj, as far as the
        # node has them (this machine's bounding set lacks CAP_SYS_RESOURCE: systemd drops it)
        bounding = int(node.host.exec("sh", "-c", "grep CapBnd /proc/1/status").stdout.split()[1], 16)
        assert int(field["CapEff"][0], 16) == (1 << 1 | 1 << 24) & bounding, (status, hex(bounding))
        exposure = node.host.exec("systemd-analyze", "security", "jbm-node-agent", check=False).stdout
        print("systemd-analyze security:", exposure.strip().splitlines()[-1:])
        netns = node.host.exec("sh", "-c", f"nsenter -t {pid} -n ip -o link").stdout
        assert [line.split(":")[1].strip() for line in netns.splitlines()] == ["lo"], netns

        node.host.exec("systemctl", "restart", "docker")
        wait_for("the node's engine after its restart", node.client.ping, timeout=60)
        second = task_container(node, name, not_ids={first["Id"]}, timeout=120)
        wait_for("the agent to restore the re-created task", lambda: restored(node, second, expected(GUARANTEED)),
                 timeout=90)
        assert node.host.exec("systemctl", "is-active", "jbm-node-agent").stdout.strip() == "active"
        log = journal(node)
        print(log)
        assert "reconnect" in log and log.count("applied") >= 2
    finally:
        node.host.exec("systemctl", "stop", "jbm-node-agent", check=False)
