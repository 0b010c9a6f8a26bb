"""The systemd host container's `docker run` arguments on cgroup v1 and v2 machines (pure)."""
from tests.harness.systemd_host import CCACHE_DIR, CGROUP_CONTROLLERS, run_args

CCACHE = f"{CCACHE_DIR}:/root/.cache/ccache"


def volumes(args: list[str]) -> list[str]:
    """The -v binds but the compiler cache's, which every host has (test below)."""
    return [args[i + 1] for i, arg in enumerate(args) if arg == "-v" and args[i + 1] != CCACHE]


def tmpfs(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--tmpfs"]


def test_v1_binds_each_controller_over_a_cgroup_tmpfs():
    args = run_args("h1", cgroup_v2=False)
    assert "--cgroupns=host" in args
    assert "/sys/fs/cgroup" in tmpfs(args)
    assert volumes(args) == [f"/sys/fs/cgroup/{c}:/sys/fs/cgroup/{c}:rw"
                             for c in CGROUP_CONTROLLERS]
    assert args[-1] == "local/debian-systemd:bookworm"


def test_v2_binds_the_unified_mount_and_no_tmpfs_over_it():
    args = run_args("h1", cgroup_v2=True)
    assert "--cgroupns=host" in args
    assert volumes(args) == ["/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    assert tmpfs(args) == ["/run", "/run/lock"]


def test_docker_inside_keeps_its_volume_and_capabilities_on_both_layouts():
    for v2 in (False, True):
        args = run_args("h1", docker_inside=True, cgroup_v2=v2)
        assert "/var/lib/docker" in volumes(args)
        assert args[args.index("--cap-drop") + 1] == "SYS_RESOURCE"
        assert "--privileged" not in args


def test_layout_is_detected_when_not_given(monkeypatch):
    from tests.harness import systemd_host
    monkeypatch.setattr(systemd_host, "is_cgroup_v2", lambda: True)
    assert volumes(run_args("h1")) == ["/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    monkeypatch.setattr(systemd_host, "is_cgroup_v2", lambda: False)
    assert len(volumes(run_args("h1"))) == len(CGROUP_CONTROLLERS)


def test_every_host_mounts_the_one_compiler_cache():
    for v2 in (False, True):
        for inside in (False, True):
            args = run_args("h1", docker_inside=inside, cgroup_v2=v2)
            assert [args[i + 1] for i, arg in enumerate(args) if arg == "-v"].count(CCACHE) == 1
