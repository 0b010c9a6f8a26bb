"""Runs INSIDE the VM (python3, stdlib only): reads cgroup files raw around the exporter's
sample, so the test on the host compares what the exporter said with what the kernel said
in the same moment. Deliberately independent of hubmetrics: plain open().read() and split().

    python3 exporter_probe.py once|daemon|record < request.json > answer.json

Request: {"cgroups": {key: "/sys/fs/cgroup/..."}, ...}; every cgroup directory is read with
`raw()` before and after the exporter's sample:
- once:   runs `python3 -m hubmetrics.exporter --once` (argv, env) between the two reads;
- daemon: waits (bounded) for a snapshot of the running daemon whose sample started after the
          first read (the second new snapshot after it), with /metrics of that same sample;
- record: the files the samplers read ({path: text}) and raw() of the same texts, read once.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = "/sys/fs/cgroup"
# What the exporter reads per cgroup (hubmetrics.cgroups.files, slices._read_one) and above it.
CGROUP_FILES = ("memory.current", "memory.stat", "cpu.stat", "pids.current", "memory.events",
                "memory.max", "memory.low", "cpu.max")


def _text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _keyed(text, key):
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def numbers(texts):
    """{file name: text} of one cgroup -> the numbers, parsed the plain way."""
    maxv = (texts.get("memory.max") or "").strip()
    cpu_max = (texts.get("cpu.max") or "").split()
    current = texts.get("memory.current")
    return {
        "cpu_usec": _keyed(texts.get("cpu.stat"), "usage_usec"),
        "memory_current": int(current) if current is not None else None,
        "inactive_file": _keyed(texts.get("memory.stat"), "inactive_file"),
        "anon": _keyed(texts.get("memory.stat"), "anon"),
        "memory_max": None if maxv in ("max", "") else int(maxv),
        "memory_low": int(texts["memory.low"]) if texts.get("memory.low") else None,
        "cpu_quota": None if not cpu_max or cpu_max[0] == "max" else int(cpu_max[0]),
        "cpu_period": int(cpu_max[1]) if len(cpu_max) > 1 else None,
        "pids": int(texts["pids.current"]) if texts.get("pids.current") else None,
        "oom": _keyed(texts.get("memory.events"), "oom"),
        "oom_kill": _keyed(texts.get("memory.events"), "oom_kill"),
    }


def raw(cgroups):
    out = {"time": time.time()}
    for key, d in cgroups.items():
        out[key] = numbers({name: _text(f"{d}/{name}") for name in CGROUP_FILES})
    out["time_after"] = time.time()
    return out


def fetch(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read().decode()


def once(req):
    before = raw(req["cgroups"])
    env = dict(os.environ, **req.get("env", {}))
    done = subprocess.run([sys.executable, "-m", "hubmetrics.exporter", "--once", *req.get("argv", [])],
                          capture_output=True, text=True, env=env, timeout=600)
    after = raw(req["cgroups"])
    return {"before": before, "after": after, "rc": done.returncode, "text": done.stdout,
            "stderr": done.stderr[-3000:]}


def daemon(req):
    base = req["url"].rstrip("/")
    before = raw(req["cgroups"])
    seen, snap, metrics = before["time_after"], None, None
    deadline = time.monotonic() + req.get("timeout", 240)
    fresh = 0
    while time.monotonic() < deadline:
        try:
            doc = json.loads(fetch(f"{base}/api/snapshot"))
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        if doc["time"] > seen:
            fresh += 1
            seen = doc["time"]
            if fresh >= 2:  # its sample started after the previous one ended, i.e. after `before`
                text = fetch(f"{base}/metrics")
                stamp = [line for line in text.splitlines()
                         if line.startswith("hubmetrics_last_sample_timestamp_seconds ")]
                if stamp and float(stamp[0].split()[1]) == doc["time"]:
                    snap, metrics = doc, text
                    break
        time.sleep(0.2)
    after = raw(req["cgroups"])
    return {"before": before, "after": after, "snapshot": snap, "text": metrics}


def record(req):
    files = {}
    for d in req["cgroups"].values():
        for name in CGROUP_FILES:
            text = _text(f"{d}/{name}")
            if text is not None:
                files[f"{d}/{name}"] = text
    for path in req.get("extra", []):
        text = _text(path)
        if text is not None:
            files[path] = text
    expected = {key: numbers({name: files.get(f"{d}/{name}") for name in CGROUP_FILES})
                for key, d in req["cgroups"].items()}
    return {"files": files, "expected": expected}


if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump({"once": once, "daemon": daemon, "record": record}[sys.argv[1]](request), sys.stdout)
