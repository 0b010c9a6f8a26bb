"""The daemon's command line: loopback by default, clear errors for bad values."""
import subprocess
import sys

import pytest

from hubmetrics.exporter import build_parser


def test_defaults_listen_on_loopback_only():
    args = build_parser().parse_args([])
    assert args.listen == ("127.0.0.1", 9945)
    assert args.interval == 5.0 and args.once is False
    assert args.cgroup_root == "/sys/fs/cgroup" and args.proc_root == "/proc" and args.min_uid == 1000


def test_node_name_defaults_to_the_environment_then_the_host_name(monkeypatch):
    import socket
    monkeypatch.delenv("HUBMETRICS_NODE_NAME", raising=False)
    assert build_parser().parse_args([]).node_name == socket.gethostname()
    monkeypatch.setenv("HUBMETRICS_NODE_NAME", "gpu-node-3")
    assert build_parser().parse_args([]).node_name == "gpu-node-3"
    assert build_parser().parse_args(["--node-name", "n2"]).node_name == "n2"
    assert build_parser().parse_args([]).users_slice == "jupyterhub-users.slice"


def test_listen_forms():
    parse = build_parser().parse_args
    assert parse(["--listen", "10.0.0.5:9100"]).listen == ("10.0.0.5", 9100)
    assert parse(["--listen", "[::1]:9945"]).listen == ("::1", 9945)


@pytest.mark.parametrize("argv,named", [
    (["--listen", "9945"], "--listen '9945'"),
    (["--listen", "localhost:http"], "--listen 'localhost:http'"),
    (["--listen", "127.0.0.1:70000"], "--listen '127.0.0.1:70000'"),
    (["--interval", "0"], "--interval '0'"),
    (["--interval", "soon"], "--interval 'soon'"),
    (["--pss-every", "0"], "--pss-every 0"),
    (["--node-name", " "], "--node-name ''"),
    (["--users-slice", "users"], "--users-slice 'users'"),
])
def test_bad_values_are_named_with_what_is_allowed(argv, named):
    result = subprocess.run([sys.executable, "-m", "hubmetrics.exporter", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert named in result.stderr and ("expected" in result.stderr)
