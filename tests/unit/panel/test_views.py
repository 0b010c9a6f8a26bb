"""Per-user filtering: what a user, an admin and the spawn page may read."""
import json

from hubmetrics.panel import views
from hubmetrics.panel.history import History
from tests.unit.panel.conftest import snapshot, use

SNAP = snapshot(10.0, {
    "alice": use(cpu_seconds=3.0, mem=111, gpus=["0"], gpu_mem=7, name="alice"),
    "bob": use(cpu_seconds=9.0, mem=222, name="bob"),
})


def history():
    h = History(5)
    h.add(snapshot(5.0, {"alice": use(cpu_seconds=1.0), "bob": use(cpu_seconds=4.0)}))
    h.add(SNAP)
    return h


def test_me_holds_only_the_users_own_numbers():
    me = views.me_view(SNAP, history(), "alice")
    assert me["user"] == "alice"
    assert me["usage"]["memory_working_set_bytes"] == 111
    assert me["usage"]["cpu_cores"] == (3.0 - 1.0) / 5.0
    assert me["usage"]["gpus"] == ["0"]
    assert [p["memory_working_set_bytes"] for p in me["history"]] == [0, 111]
    text = json.dumps(me)
    assert "bob" not in text and "222" not in text and "jupyter-bob" not in text


def test_me_for_a_user_without_a_server_has_no_usage_but_the_host():
    me = views.me_view(SNAP, history(), "carol")
    assert me["usage"] is None and me["history"] == []
    assert me["host"]["memory_available_bytes"] == 6 << 30
    assert "alice" not in json.dumps(me)


def test_admin_view_lists_every_user():
    table = views.admin_view(SNAP, history())
    assert sorted(table["users"]) == ["alice", "bob"]
    assert table["users"]["bob"]["memory_working_set_bytes"] == 222
    assert table["users"]["bob"]["cpu_cores"] == (9.0 - 4.0) / 5.0


def test_capacity_view_has_no_user_numbers():
    cap = views.capacity_view(SNAP)
    assert cap["host"]["gpus_free"] == 1
    assert "alice" not in json.dumps(cap) and "users" not in cap


def test_views_before_the_first_snapshot_carry_the_error():
    me = views.me_view(None, History(2), "alice", error="exporter at X unreachable")
    assert me["usage"] is None and me["host"] is None
    assert me["exporter_error"] == "exporter at X unreachable"
    assert views.admin_view(None, History(2))["users"] == {}


def test_unknown_snapshot_keys_are_not_passed_through():
    snap = snapshot(1.0, {"alice": {**use(), "secret_extra": "x"}}, secret_host_extra="y")
    text = json.dumps(views.me_view(snap, History(2), "alice"))
    assert "secret" not in text


def oom_snapshot():
    events = [{"time": 1700000000.0, "container": "jupyter-alice", "limit": "container", "limit_bytes": 2 << 30},
              {"time": 1700000300.0, "container": "jupyter-alice", "limit": "users' slice or host",
               "limit_bytes": 24 << 30}]
    return snapshot(10.0, {
        "alice": {**use(name="alice"), "oom_kills_total": 2, "oom_events": events},
        "bob": {**use(name="bob"), "oom_kills_total": 5,
                "oom_events": [{"time": 1.0, "container": "jupyter-bob", "limit": "container", "limit_bytes": 1}]},
    })


def test_a_user_is_told_of_their_own_oom_kills_and_the_limit(monkeypatch):
    import time
    monkeypatch.setattr(time, "localtime", time.gmtime)   # 1700000000 is 22:13 UTC
    me = views.me_view(oom_snapshot(), History(2), "alice")
    assert me["usage"]["oom_kills_total"] == 2
    messages = [e["message"] for e in me["usage"]["oom_events"]]
    assert messages == [
        "A process of yours was killed at 22:13 because your server reached its 2 GiB memory limit.",
        "A process of yours was killed at 22:18 because the memory shared by everyone's servers on this "
        "machine (24 GiB) ran out.",
    ]
    assert "jupyter-bob" not in json.dumps(me)   # bob's kills are not alice's to see


def test_admins_see_every_users_oom_kills():
    table = views.admin_view(oom_snapshot(), History(2))
    assert table["users"]["bob"]["oom_kills_total"] == 5
    assert table["users"]["bob"]["oom_events"][0]["container"] == "jupyter-bob"


def test_sizes_read_as_people_write_limits():
    assert views.size_text(2 << 30) == "2 GiB"
    assert views.size_text(1536 << 20) == "1.5 GiB"
    assert views.size_text(64 << 20) == "64 MiB"


def test_me_shows_the_users_home_against_its_quota_with_or_without_a_server():
    snap = {**SNAP, "homes": {"alice": {"used_bytes": 3 << 20, "quota_bytes": 20 << 30},
                              "carol": {"used_bytes": 4096, "quota_bytes": 0}, "bob": {"used_bytes": 777013}}}
    assert views.me_view(snap, history(), "alice")["home"] == {"used_bytes": 3 << 20, "quota_bytes": 20 << 30}
    carol = views.me_view(snap, history(), "carol")   # no server: the home is still shown
    assert carol["usage"] is None and carol["home"] == {"used_bytes": 4096, "quota_bytes": 0}
    assert "777013" not in json.dumps(carol)   # nobody else's home
    assert views.me_view(SNAP, history(), "alice")["home"] is None   # the exporter reads no homes
    assert views.me_view(None, History(2), "alice")["home"] is None


def test_no_nvidia_driver_is_no_gpus_not_stale_data():
    from tests.unit.panel.conftest import snapshot as snap_of
    absent = {**snap_of(1.0, nvml_available=False, nvml_absent=True, gpus_total=0), "stale": {"nvml": True, "docker": False}}
    view = views.capacity_view(absent)
    assert view["stale"] == {"docker": False} and view["host"]["nvml_absent"] is True
    failing = {**snap_of(1.0, nvml_available=False, nvml_absent=False), "stale": {"nvml": True}}
    assert views.capacity_view(failing)["stale"] == {"nvml": True}  # a GPU host whose NVML fails: still said
