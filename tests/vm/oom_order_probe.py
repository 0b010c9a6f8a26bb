"""Runs INSIDE the VM (python3, stdlib only), in ONE ssh call: the full users' slice of
test_guarantees_v2's OOM-order test, driven and watched where it happens (the emulated guest
is slow; one ssh per check took minutes). Every wait is bounded; prints one JSON document.

    python3 oom_order_probe.py < request.json

Request: {"slice": dir, "guaranteed": [name, dir], "besteffort": [name, dir],
          "g_anon_mb": n, "g_cache_mb": n, "b_cache_mb": n, "over_mb": n, "hog_mb": n,
          "timeout": seconds}

1. the guaranteed container writes g_cache_mb of page cache (synced: clean, reclaimable; 0: none,
   e.g. when the image is read-only) and a holder keeps g_anon_mb of anonymous memory: within
   its guarantee (memory.low); the best-effort container writes b_cache_mb of page cache;
2. "reclaim": a best-effort holder asks what leaves the slice over_mb above its memory.max: the
   kernel must reclaim, and (memory.low) from the best-effort server's cache, not the
   guaranteed one's; it holds that and stays up;
3. "oom": a best-effort hog asks hog_mb: no reclaim can make room (no swap), the OOM killer picks.
Each phase's state: memory.current / memory.low / memory.stat anon,file / memory.events of the
three cgroups, and the processes in each container's cgroup (pid, comm, oom_score_adj).
"""
import json
import subprocess
import sys
import time

M = 1024 ** 2
# n MiB in 1 MiB strings, each one a new buffer (the concatenation defeats sharing); then held
HOLD = "my $n = shift; my @a; push @a, ('a' x 1048576) . $_ for 1..$n; print \"held\\n\"; sleep 100000"
GROW = "my $n = shift; my @a; push @a, ('a' x 1048576) . $_ for 1..$n; print \"survived\\n\""


def text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def keyed(path):
    out = {}
    for line in text(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def number(path):
    value = text(path).strip()
    return int(value) if value.isdigit() else value


def procs(d):
    out = []
    for pid in text(f"{d}/cgroup.procs").split():
        comm = text(f"/proc/{pid}/comm").strip()
        adj = text(f"/proc/{pid}/oom_score_adj").strip()
        if comm:
            out.append({"pid": int(pid), "comm": comm, "oom_score_adj": int(adj) if adj else None,
                        "cmdline": text(f"/proc/{pid}/cmdline").replace("\0", " ").strip()[:80]})
    return out


def state(req):
    out = {"uptime": float(text("/proc/uptime").split()[0])}
    for key, d in (("slice", req["slice"]), ("g", req["guaranteed"][1]), ("b", req["besteffort"][1])):
        stat = keyed(f"{d}/memory.stat")
        out[key] = {"current": number(f"{d}/memory.current"), "low": number(f"{d}/memory.low"),
                    "max": number(f"{d}/memory.max"), "anon": stat.get("anon"), "file": stat.get("file"),
                    "events": keyed(f"{d}/memory.events")}
        if key != "slice":
            out[key]["procs"] = procs(d)
    return out


def docker(*args, timeout=600):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def wait(cond, deadline):
    """Poll cond() every 0.2 s until it holds or the deadline passes (bounded)."""
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def main(req):
    deadline = time.monotonic() + req.get("timeout", 900)
    g_name, g_dir = req["guaranteed"]
    b_name, b_dir = req["besteffort"]
    anon = lambda d: keyed(f"{d}/memory.stat").get("anon", 0)  # noqa: E731
    out = {"steps": []}

    def step(what, done):
        out["steps"].append({"what": what, "rc": done.returncode, "out": (done.stdout + done.stderr)[-300:]})
        return done

    # on the container's overlay (ext4): reclaimable page cache; /tmp is a tmpfs (shmem: not without swap)
    cache = "head -c {b} /dev/zero > /var/tmp/cache && sync"
    if req["g_cache_mb"]:
        step("g cache", docker("exec", g_name, "sh", "-c", cache.format(b=req["g_cache_mb"] * M)))
    step("g hold", docker("exec", "-d", g_name, "perl", "-e", HOLD, str(req["g_anon_mb"])))
    out["g_held"] = wait(lambda: anon(g_dir) >= req["g_anon_mb"] * M, deadline)
    if req["b_cache_mb"]:
        step("b cache", docker("exec", b_name, "sh", "-c", cache.format(b=req["b_cache_mb"] * M)))
    out["before"] = state(req)
    # what leaves the slice over_mb above its limit: reclaim is needed, OOM is not
    ask = (int(out["before"]["slice"]["max"]) - int(out["before"]["slice"]["current"])) // M + req["over_mb"]
    out["b_hold_mb"] = ask
    step("b hold", docker("exec", "-d", b_name, "perl", "-e", HOLD, str(ask)))
    out["b_held"] = wait(lambda: anon(b_dir) >= ask * M or keyed(f"{b_dir}/memory.events").get("oom_kill", 0) > 0,
                         deadline)
    out["reclaim"] = state(req)
    left = max(60.0, deadline - time.monotonic())
    try:
        hog = docker("exec", b_name, "perl", "-e", GROW, str(req["hog_mb"]), timeout=left)
        out["hog"] = {"rc": hog.returncode, "out": hog.stdout[-200:]}
    except subprocess.TimeoutExpired:
        out["hog"] = {"rc": None, "out": f"still running after {left:.0f} s"}
    wait(lambda: keyed(f"{b_dir}/memory.events").get("oom_kill", 0) > 0, min(deadline, time.monotonic() + 60))
    out["oom"] = state(req)
    return out


if __name__ == "__main__":
    json.dump(main(json.load(sys.stdin)), sys.stdout)
