"""The node agent's decisions (pure) and its loop against a fake engine (bounded reconnects, a bad
label never stops it). The real engine and a real swarm: tests/integration/swarm_agent."""
import json
import logging
import subprocess
import sys

import docker
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubmetrics import labels, nodeagent
from hubmetrics.nodeagent import ALLOWED_KEYS, Agent, Decision, backoff, check_value, decide, parse_host_config, to_raise

pytestmark = pytest.mark.unit

M = 1024 ** 2
LIMIT = 256 * M
GOOD = {"cpu_shares": 1024, "mem_reservation": 128 * M, "memswap_limit": LIMIT, "pids_limit": 512}


def host_config(**over):
    """A swarm task's HostConfig as the engine inspects it: only the memory limit and quota set."""
    hc = {"Memory": LIMIT, "NanoCpus": 2_000_000_000, "CpuShares": 0, "MemoryReservation": 0,
          "MemorySwap": 2 * LIMIT, "PidsLimit": None}
    hc.update(over)
    return hc


def test_the_spawners_arguments_pass_for_every_class():
    from profilespawner import dockerargs
    from tests.harness import contention
    for req in (contention.request(2, 1, LIMIT, LIMIT), contention.request(2, 0.5, LIMIT, 64 * M),
                contention.request(2)):
        hc = dockerargs.host_config(req, pids_limit=1024, cgroup_parent="jupyterhub-users.slice")
        label = json.dumps({k: hc[k] for k in ALLOWED_KEYS if k in hc}, sort_keys=True)
        d = decide({labels.HOST_CONFIG: label}, host_config())
        assert d.errors == () and d.update["CpuShares"] == hc["cpu_shares"], (req, d)
        assert d.update["MemorySwap"] == LIMIT and d.update["PidsLimit"] == 1024


def test_decide_updates_only_what_differs():
    label = json.dumps(GOOD, sort_keys=True)
    # the swap limit goes with the unchanged memory limit: runc on cgroup v2 refuses it alone
    # ("unable to set swap limit without memory limit", seen on Debian 12's kernel)
    assert decide({labels.HOST_CONFIG: label}, host_config()) == Decision(update={
        "CpuShares": 1024, "MemoryReservation": 128 * M, "MemorySwap": LIMIT, "Memory": LIMIT, "PidsLimit": 512})
    done = host_config(CpuShares=1024, MemoryReservation=128 * M, MemorySwap=LIMIT, PidsLimit=512)
    assert decide({labels.HOST_CONFIG: label}, done) == Decision(update={})
    assert decide({labels.HOST_CONFIG: label}, host_config(MemorySwap=LIMIT)) == Decision(update={
        "CpuShares": 1024, "MemoryReservation": 128 * M, "PidsLimit": 512})


def test_containers_without_the_label_are_not_ours():
    assert decide({labels.USER: "alice"}, host_config()) is None


@pytest.mark.parametrize("data,named", [
    ({"privileged": True}, "key 'privileged' value True: allowed one of the keys cpu_shares, mem_reservation"),
    ({"cpu_shares": 1}, "key 'cpu_shares' value 1: allowed a whole number from 2 to 262144"),
    ({"cpu_shares": 262_145}, "key 'cpu_shares' value 262145"),
    ({"cpu_shares": 512.5}, "key 'cpu_shares' value 512.5"),
    ({"cpu_shares": True}, "key 'cpu_shares' value True"),
    ({"cpu_shares": "1024"}, "key 'cpu_shares' value '1024'"),
    ({"mem_reservation": 5 * M}, f"key 'mem_reservation' value {5 * M}: allowed a whole number of bytes from 6291456"),
    ({"mem_reservation": LIMIT + 1}, f"to the container's memory limit {LIMIT}"),
    ({"memswap_limit": -1}, "key 'memswap_limit' value -1: allowed a whole number of bytes >= the container's memory"),
    ({"memswap_limit": LIMIT - 1}, f"memory limit {LIMIT} (no unlimited -1)"),
    ({"pids_limit": 0}, "key 'pids_limit' value 0: allowed a whole number from 1 to 4194304 (no unlimited 0 or -1)"),
    ({"pids_limit": -1}, "key 'pids_limit' value -1"),
    ({"pids_limit": 4_194_305}, "key 'pids_limit' value 4194305"),
])
def test_a_bad_value_refuses_the_whole_label_naming_key_value_and_allowed(data, named):
    label = json.dumps({**GOOD, **data})
    d = decide({labels.HOST_CONFIG: label}, host_config())
    assert d.update == {} and any(named in e for e in d.errors), d.errors


@pytest.mark.parametrize("text,named", [
    ("{cpu_shares: 2", "is not JSON"), ("", "is not JSON"), ("[1, 2]", "is not a JSON object"),
    ("1024", "is not a JSON object"), ("null", "is not a JSON object"),
])
def test_not_a_json_object(text, named):
    d = decide({labels.HOST_CONFIG: text}, host_config())
    assert d.update == {} and len(d.errors) == 1
    assert named in d.errors[0] and labels.HOST_CONFIG in d.errors[0] and repr(text) in d.errors[0]
    assert "allowed: a JSON object of cpu_shares, mem_reservation, memswap_limit, oom_score_adj, pids_limit" in d.errors[0]


def test_swap_and_reservation_bounds_need_the_containers_limit():
    assert check_value("memswap_limit", LIMIT, 0) == "only for a container with a memory limit (this one has none)"
    assert check_value("mem_reservation", 10 ** 12, 0) is None          # no limit: any size from 6 MiB
    assert check_value("mem_reservation", LIMIT, LIMIT) is None         # up to the limit itself
    assert check_value("memswap_limit", 4 * LIMIT, LIMIT) is None       # Docker's bound: >= the limit


@given(st.dictionaries(st.sampled_from(ALLOWED_KEYS), st.integers(-2 ** 40, 2 ** 40)))
def test_accepted_exactly_when_in_range(data):
    wanted, errors = parse_host_config(json.dumps(data), LIMIT)
    in_range = all({
        "cpu_shares": 2 <= v <= 262_144, "mem_reservation": 6 * M <= v <= LIMIT,
        "memswap_limit": v >= LIMIT, "pids_limit": 1 <= v <= 4_194_304,
        "oom_score_adj": 0 <= v <= 1000}[k] for k, v in data.items())
    assert (errors == [] and wanted == data) if in_range else (errors and wanted == {})


def test_oom_score_adj_is_not_an_engine_update_and_only_raised():
    d = decide({labels.HOST_CONFIG: json.dumps({**GOOD, "oom_score_adj": 750})}, host_config())
    assert d.oom_score_adj == 750 and "oom_score_adj" not in str(d.update) and d.update
    assert decide({labels.HOST_CONFIG: json.dumps(GOOD)}, host_config()).oom_score_adj is None
    d = decide({labels.HOST_CONFIG: json.dumps({"oom_score_adj": -500})}, host_config())
    assert d.update == {} and d.oom_score_adj is None
    assert d.errors == ("key 'oom_score_adj' value -500: allowed a whole number from 0 to 1000 "
                        "(a label may not protect a server from the OOM killer)",)
    # a process that raised its own score keeps it; the rest are raised
    assert to_raise({7: 0, 9: 1000, 3: 749, 4: 750}, 750) == [3, 7]


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6, 50)] == [0.5, 1, 2, 4, 8, 10, 10]


# --- the loop, against a fake engine ---------------------------------------------------------------

class FakeAPI:
    """What the agent calls of docker-py's APIClient, recording updates."""

    def __init__(self, containers, events=()):
        self.info = containers           # id -> inspect dict
        self._events = list(events)
        self.updates = []
        self.closed = False

    def ping(self):
        return True

    def containers(self, filters):
        assert filters == {"label": labels.HOST_CONFIG, "status": "running"}
        return [{"Id": cid} for cid, i in self.info.items() if labels.HOST_CONFIG in i["Config"]["Labels"]]

    def inspect_container(self, cid):
        if cid not in self.info:
            raise docker.errors.NotFound(f"no such container {cid}")
        return self.info[cid]

    def events(self, decode, filters):
        assert decode and filters["event"] == "start" and filters["label"] == labels.HOST_CONFIG
        api = self

        class Stream(list):
            def close(self):
                api.closed = True
        return Stream(self._events)

    def _url(self, path, cid):
        return path.format(cid)

    def _post_json(self, url, data):
        self.updates.append((url, data))
        return "ok"

    def _raise_for_status(self, result):
        assert result == "ok"


class FakeClient:
    def __init__(self, api):
        self.api = api

    def close(self):
        pass


def container(name, label, running=True):
    return {"Name": "/" + name, "State": {"Running": running},
            "Config": {"Labels": {labels.HOST_CONFIG: label} if label is not None else {}},
            "HostConfig": host_config()}


def test_applies_to_running_containers_then_to_started_ones_and_survives_bad_labels(caplog):
    api = FakeAPI({"a" * 64: container("jupyter-alice.1.x", json.dumps(GOOD)),
                   "f" * 64: container("jupyter-mallory.1.y", '{"cpu_shares": 1}'),
                   "s" * 64: container("stopped", json.dumps(GOOD), running=False),
                   "b" * 64: container("jupyter-bob.1.z", json.dumps({"cpu_shares": 2}))},
                  events=[{"status": "start", "id": "f" * 64}, {"status": "start", "id": "gone"},
                          {"Action": "start", "Actor": {"ID": "b" * 64}}])
    agent = Agent(lambda: FakeClient(api), max_reconnects=0)
    caplog.set_level(logging.INFO, logger="hubmetrics.nodeagent")
    assert agent.run_once() is None
    # bob is seen twice (running at start, then his start event): the engine is asked each time
    # only for what differs from its HostConfig, which the fake does not change
    assert [u[0] for u in api.updates] == ["/containers/" + "a" * 64 + "/update",
                                           "/containers/" + "b" * 64 + "/update",
                                           "/containers/" + "b" * 64 + "/update"]
    assert api.updates[0][1] == {"CpuShares": 1024, "MemoryReservation": 128 * M, "MemorySwap": LIMIT, "Memory": LIMIT,
                                 "PidsLimit": 512}
    assert agent.applied == 3 and agent.refused == 2 and api.closed
    text = caplog.text
    assert "container jupyter-mallory.1.y (ffffffffffff): refused org.jupyterhub-baremetal.host-config: " \
           "key 'cpu_shares' value 1: allowed a whole number from 2 to 262144; left as it is" in text
    assert "container gone is gone before it could be updated" in text


def fake_container_tree(tmp_path, cid, scores, mode="v2"):
    """A cgroup root with the container's cgroup.procs (v2: one hierarchy; v1: memory and pids)
    and a /proc with each pid's oom_score_adj, as the kernel lays them out."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    rel = f"jupyterhub.slice/jupyterhub-users.slice/docker-{cid}.scope"
    if mode == "v2":
        (root / rel).mkdir(parents=True)
        (root / "cgroup.controllers").write_text("cpu memory pids\n")
        dirs = [root / rel]
    else:
        dirs = [root / c / rel for c in ("memory", "pids")]
        for d in dirs:
            d.mkdir(parents=True)
    for d in dirs:
        (d / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in scores))
    for pid, score in scores.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "oom_score_adj").write_text(f"{score}\n")
    return root, proc


def score(proc, pid):
    return int((proc / str(pid) / "oom_score_adj").read_text())


@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_oom_score_adj_is_written_for_every_process_of_the_container(tmp_path, caplog, mode):
    cid = "c" * 64
    root, proc = fake_container_tree(tmp_path, cid, {101: 0, 102: 0, 103: 1000}, mode)
    (tmp_path / "other").mkdir()
    api = FakeAPI({cid: {**container("jupyter-carol.1.x", json.dumps({**GOOD, "oom_score_adj": 250})), "Id": cid}})
    agent = Agent(lambda: FakeClient(api), cgroup_root=str(root), proc_root=str(proc))
    caplog.set_level(logging.INFO, logger="hubmetrics.nodeagent")
    agent.run_once()
    assert [score(proc, pid) for pid in (101, 102, 103)] == [250, 250, 1000]
    assert agent.scored == 1 and agent.applied == 1
    assert "container jupyter-carol.1.x: oom_score_adj 250 for 2 processes" in caplog.text
    agent.run_once()          # nothing below the value any more: nothing written, not counted
    assert agent.scored == 1


def test_a_container_whose_cgroup_is_missing_is_logged_not_fatal(tmp_path, caplog):
    root, proc = fake_container_tree(tmp_path, "d" * 64, {5: 0})
    cid = "e" * 64
    api = FakeAPI({cid: {**container("jupyter-dan.1.x", json.dumps({"oom_score_adj": 1000})), "Id": cid}})
    agent = Agent(lambda: FakeClient(api), cgroup_root=str(root), proc_root=str(proc))
    agent.run_once()
    assert agent.scored == 0 and score(proc, 5) == 0
    assert f"container jupyter-dan.1.x: its cgroup was not found under {root}; oom_score_adj 1000 not set" in caplog.text


def test_an_update_the_engine_refuses_is_logged_and_the_loop_goes_on(caplog):
    api = FakeAPI({"a" * 64: container("jupyter-alice.1.x", json.dumps(GOOD)),
                   "b" * 64: container("jupyter-bob.1.z", json.dumps(GOOD))})

    def refuse(url, data):
        if "a" * 64 in url:
            raise docker.errors.APIError("Minimum memory limit can not be less than memory reservation limit")
        api.updates.append((url, data))
        return "ok"
    api._post_json = refuse
    Agent(lambda: FakeClient(api)).run_once()
    assert len(api.updates) == 1 and "b" * 64 in api.updates[0][0]
    assert "the engine refused the update" in caplog.text


def test_reconnects_are_bounded_and_backed_off():
    waits, attempts = [], []

    def down():
        attempts.append(1)
        raise docker.errors.DockerException("Error while fetching server API version: connection refused")
    agent = Agent(down, max_reconnects=4, wait=waits.append)
    assert agent.run() == 1
    assert len(attempts) == 5 and waits == [0.5, 1, 2, 4]


def test_reconnects_after_the_engine_closes_the_stream_and_reapplies():
    api = FakeAPI({"a" * 64: container("jupyter-alice.1.x", json.dumps(GOOD))})
    calls = []

    def factory():
        calls.append(1)
        if len(calls) > 2:          # the third connection: dockerd is gone for good
            raise ConnectionError("connection refused")
        return FakeClient(api)
    waits = []
    agent = Agent(factory, max_reconnects=1, wait=waits.append)
    assert agent.run() == 1
    assert len(api.updates) == 2    # applied again after the reconnect (starts may have been missed)
    assert waits == [0.5, 0.5, 0.5]


def test_the_agent_does_not_import_the_spawner():
    code = "import sys, hubmetrics.nodeagent; print(any(m.startswith('profilespawner') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_command_line():
    args = nodeagent.build_parser().parse_args([])
    assert args.docker_url == "" and args.max_reconnects == 30
    with pytest.raises(SystemExit):
        nodeagent.main(["--max-reconnects", "-1"])
