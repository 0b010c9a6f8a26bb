"""Cgroup file trees for the samplers: a v1 (cgroupfs driver) tree and a v2 tree laid out as a
stock Debian 12 / Ubuntu 24.04 server with Docker's systemd driver has it. The file contents
follow the kernel's formats (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/memory.rst).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc\n"


@dataclass(frozen=True)
class Numbers:
    """What a container's cgroup says; each test derives its expectations from these."""
    cpu_usec: int = 123_456_789
    memory_current: int = 734_003_200
    inactive_file: int = 104_857_600
    anon: int = 503_316_480
    memory_max: int | None = 4 * 1024 ** 3
    memory_low: int = 1024 ** 3
    cpu_quota_us: int | None = 200_000
    cpu_period_us: int = 100_000
    pids: int = 23
    oom_kills: int = 2
    procs: tuple[int, ...] = (4242, 4250)
    own_limit_hits: int = 2   # v2 memory.events `oom`, v1 memory.failcnt


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_root(root: Path) -> Path:
    """The unified hierarchy's root files and the usual slices."""
    _write(root / "cgroup.controllers", V2_CONTROLLERS)
    _write(root / "cgroup.subtree_control", V2_CONTROLLERS)
    _write(root / "cgroup.procs", "1\n")
    _write(root / "cpu.stat", "usage_usec 9876543210\nuser_usec 7000000000\nsystem_usec 2876543210\n")
    _write(root / "memory.stat", "anon 1000000000\nfile 2000000000\n")
    for s in ("init.scope", "system.slice", "user.slice"):
        _write(root / s / "cgroup.controllers", V2_CONTROLLERS)
        _write(root / s / "cgroup.procs", "")
    _write(root / "system.slice" / "docker.service" / "cgroup.procs", "812\n")
    return root


def v2_container(root: Path, rel_dir: str, n: Numbers = Numbers()) -> Path:
    """One container's cgroup directory, e.g. rel_dir `system.slice/docker-<id>.scope`."""
    d = root / rel_dir
    _write(d / "cgroup.controllers", V2_CONTROLLERS)
    _write(d / "cgroup.subtree_control", "")
    _write(d / "cgroup.type", "domain\n")
    _write(d / "cgroup.procs", "".join(f"{p}\n" for p in n.procs))
    user = n.cpu_usec * 4 // 5
    _write(d / "cpu.stat",
           f"usage_usec {n.cpu_usec}\nuser_usec {user}\nsystem_usec {n.cpu_usec - user}\n"
           "core_sched.force_idle_usec 0\nnr_periods 5012\nnr_throttled 31\nthrottled_usec 1843211\n"
           "nr_bursts 0\nburst_usec 0\n")
    _write(d / "cpu.max", (f"{n.cpu_quota_us}" if n.cpu_quota_us else "max") + f" {n.cpu_period_us}\n")
    _write(d / "cpu.weight", "100\n")
    _write(d / "memory.current", f"{n.memory_current}\n")
    _write(d / "memory.max", f"{n.memory_max}\n" if n.memory_max is not None else "max\n")
    _write(d / "memory.low", f"{n.memory_low}\n")
    _write(d / "memory.min", "0\n")
    _write(d / "memory.high", "max\n")
    _write(d / "memory.swap.max", "max\n")
    _write(d / "memory.swap.current", "0\n")
    active_file = 52_428_800
    file = n.inactive_file + active_file
    _write(d / "memory.stat",
           f"anon {n.anon}\nfile {file}\nkernel 8495104\nkernel_stack 425984\npagetables 1654784\n"
           "sec_pagetables 0\npercpu 3360\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\n"
           f"file_mapped 31457280\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\n"
           f"file_thp 0\nshmem_thp 0\ninactive_anon {n.anon}\nactive_anon 0\n"
           f"inactive_file {n.inactive_file}\nactive_file {active_file}\nunevictable 0\n"
           "slab_reclaimable 5177344\nslab_unreclaimable 1232256\nslab 6409600\n"
           "workingset_refault_anon 0\nworkingset_refault_file 12\nworkingset_activate_anon 0\n"
           "workingset_activate_file 3\nworkingset_restore_anon 0\nworkingset_restore_file 0\n"
           "workingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\n"
           "pgsteal_kswapd 0\npgsteal_direct 0\npgfault 391820\npgmajfault 12\npgrefill 0\n"
           "pgactivate 0\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nthp_fault_alloc 0\n"
           "thp_collapse_alloc 0\n")
    _write(d / "memory.events", f"low 0\nhigh 0\nmax 57\noom {n.own_limit_hits}\noom_kill {n.oom_kills}\n"
                                "oom_group_kill 0\n")
    _write(d / "pids.current", f"{n.pids}\n")
    _write(d / "pids.max", "max\n")
    return d


V1_CONTROLLERS = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")
V1_UNLIMITED = 9223372036854771712


def v1_root(root: Path, comounted: bool = False, hybrid: bool = True) -> Path:
    """Per-controller hierarchies; `comounted` puts cpu and cpuacct together as most distros do."""
    for c in V1_CONTROLLERS:
        if comounted and c in ("cpu", "cpuacct"):
            continue
        _write(root / c / "cgroup.procs", "1\n")
    if comounted:
        _write(root / "cpu,cpuacct" / "cgroup.procs", "1\n")
        (root / "cpu").symlink_to("cpu,cpuacct")
        (root / "cpuacct").symlink_to("cpu,cpuacct")
    _write(root / "systemd" / "cgroup.procs", "1\n")
    if hybrid:
        _write(root / "unified" / "cgroup.controllers", "")
    return root


def v1_container(root: Path, rel_dir: str, n: Numbers = Numbers(), oom_kill_line: bool = True) -> None:
    """One container's directories under every v1 controller, e.g. rel_dir `docker/<id>`."""
    procs = "".join(f"{p}\n" for p in n.procs)
    for c in V1_CONTROLLERS:
        _write(root / c / rel_dir / "cgroup.procs", procs)
    _write(root / "cpuacct" / rel_dir / "cpuacct.usage", f"{n.cpu_usec * 1000}\n")
    _write(root / "cpuacct" / rel_dir / "cpuacct.stat", "user 10000\nsystem 2345\n")
    _write(root / "cpu" / rel_dir / "cpu.cfs_quota_us", f"{n.cpu_quota_us or -1}\n")
    _write(root / "cpu" / rel_dir / "cpu.cfs_period_us", f"{n.cpu_period_us}\n")
    _write(root / "cpu" / rel_dir / "cpu.shares", "1024\n")
    m = root / "memory" / rel_dir
    _write(m / "memory.usage_in_bytes", f"{n.memory_current}\n")
    _write(m / "memory.limit_in_bytes", f"{n.memory_max if n.memory_max is not None else V1_UNLIMITED}\n")
    _write(m / "memory.soft_limit_in_bytes", f"{n.memory_low or V1_UNLIMITED}\n")
    _write(m / "memory.max_usage_in_bytes", f"{n.memory_current + 1000}\n")
    active_file = 52_428_800
    cache = n.inactive_file + active_file
    stat = (f"cache {cache}\nrss {n.anon}\nrss_huge 0\nshmem 0\nmapped_file 31457280\ndirty 0\n"
            f"writeback 0\npgpgin 200000\npgpgout 80000\npgfault 391820\npgmajfault 12\n"
            f"inactive_anon {n.anon}\nactive_anon 0\ninactive_file {n.inactive_file}\n"
            f"active_file {active_file}\nunevictable 0\nhierarchical_memory_limit {n.memory_max or V1_UNLIMITED}\n")
    stat += "".join(f"total_{line}\n" for line in stat.splitlines() if not line.startswith("hierarchical"))
    _write(m / "memory.stat", stat)
    oom = "oom_kill_disable 0\nunder_oom 0\n" + (f"oom_kill {n.oom_kills}\n" if oom_kill_line else "")
    _write(m / "memory.oom_control", oom)
    _write(m / "memory.failcnt", f"{n.own_limit_hits}\n")
    _write(root / "pids" / rel_dir / "pids.current", f"{n.pids}\n")
    _write(root / "pids" / rel_dir / "pids.max", "max\n")


def proc_cgroup_v1(rel_dir: str, comounted: bool = False) -> str:
    """/proc/<pid>/cgroup of a process in that container on a v1 host."""
    cpu = ["2:cpu,cpuacct:"] if comounted else ["2:cpuacct:", "1:cpu:"]
    lines = ["9:name=systemd:", "8:pids:", "7:blkio:", "6:freezer:", "5:devices:", "4:memory:",
             "3:cpuset:"] + cpu
    return "".join(f"{line}/{rel_dir}\n" for line in lines) + "0::/\n"


def proc_cgroup_v2(rel_dir: str) -> str:
    return f"0::/{rel_dir}\n"


def v2_user_slice(root: Path, uid: int, n: Numbers, sessions: int = 2) -> Path:
    """systemd's `user.slice/user-<uid>.slice` with its session scopes and user@<uid>.service:
    the slice carries the totals of everything below it, as the kernel keeps them."""
    for name in ("memory.current", "cpu.stat", "pids.current", "memory.max"):
        if not (root / "user.slice" / name).exists():
            _write(root / "user.slice" / name, "0\n" if name != "memory.max" else "max\n")
    d = v2_container(root, f"user.slice/user-{uid}.slice", n)
    for i in range(sessions):
        _write(d / f"session-{uid}{i}.scope" / "cgroup.procs", "".join(f"{p}\n" for p in n.procs))
    _write(d / f"user@{uid}.service" / "cgroup.procs", "")
    return d


def v1_user_slice(root: Path, uid: int, n: Numbers) -> None:
    """The same on a v1 systemd host with CPU, memory and tasks accounting on (the defaults)."""
    for c in ("cpuacct", "memory", "pids"):
        _write(root / c / "user.slice" / "cgroup.procs", "")
    v1_container(root, f"user.slice/user-{uid}.slice", n)
    _write(root / "systemd" / "user.slice" / f"user-{uid}.slice" / f"session-{uid}.scope" / "cgroup.procs",
           "".join(f"{p}\n" for p in n.procs))
