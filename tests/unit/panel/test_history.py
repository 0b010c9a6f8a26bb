"""The panel's in-memory history: rates from counters, bounded size, aging out."""
import pytest

from hubmetrics.panel.history import History
from tests.unit.panel.conftest import snapshot, use


def test_cpu_rate_comes_from_consecutive_counters():
    h = History(10)
    h.add(snapshot(100.0, {"alice": use(cpu_seconds=10.0, mem=100)}))
    h.add(snapshot(105.0, {"alice": use(cpu_seconds=17.5, mem=200)}))
    points = h.points("alice")
    assert [p.cpu_cores for p in points] == [None, 1.5]
    assert [p.memory_working_set_bytes for p in points] == [100, 200]
    assert h.latest_cpu_cores("alice") == 1.5


def test_buffer_keeps_only_the_newest_points():
    h = History(3)
    for i in range(10):
        h.add(snapshot(float(i), {"alice": use(cpu_seconds=float(i))}))
    assert [p.time for p in h.points("alice")] == [7.0, 8.0, 9.0]


def test_repeated_snapshot_is_not_a_new_point():
    h = History(5)
    h.add(snapshot(1.0, {"alice": use(cpu_seconds=1.0)}))
    assert h.add(snapshot(1.0, {"alice": use(cpu_seconds=1.0)})) is False
    assert h.add(snapshot(0.5, {"alice": use(cpu_seconds=1.0)})) is False
    assert len(h.points("alice")) == 1


def test_counter_reset_gives_no_rate_instead_of_a_negative_one():
    h = History(5)
    h.add(snapshot(1.0, {"alice": use(cpu_seconds=50.0)}))
    h.add(snapshot(2.0, {"alice": use(cpu_seconds=0.5)}))  # container restarted
    h.add(snapshot(3.0, {"alice": use(cpu_seconds=1.5)}))
    assert [p.cpu_cores for p in h.points("alice")] == [None, None, 1.0]


def test_absent_user_ages_out_and_restarts_the_counter():
    h = History(3)
    h.add(snapshot(1.0, {"alice": use(cpu_seconds=5.0), "bob": use()}))
    h.add(snapshot(2.0, {"bob": use()}))
    h.add(snapshot(3.0, {"bob": use()}))
    assert len(h.points("alice")) == 1  # still inside the window
    h.add(snapshot(4.0, {"bob": use()}))
    assert h.points("alice") == []
    assert h.users() == ["bob"]
    h.add(snapshot(5.0, {"alice": use(cpu_seconds=0.0), "bob": use()}))
    assert h.latest_cpu_cores("alice") is None


def test_users_histories_are_separate():
    h = History(5)
    h.add(snapshot(1.0, {"alice": use(cpu_seconds=1.0), "bob": use(cpu_seconds=100.0)}))
    h.add(snapshot(2.0, {"alice": use(cpu_seconds=1.25), "bob": use(cpu_seconds=102.0)}))
    assert h.latest_cpu_cores("alice") == 0.25
    assert h.latest_cpu_cores("bob") == 2.0
    assert h.points("carol") == []


@pytest.mark.parametrize("bad", [0, -1])
def test_size_must_be_positive(bad):
    with pytest.raises(ValueError, match=str(bad)):
        History(bad)
