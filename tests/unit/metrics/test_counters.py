"""Per-user CPU counters stay monotonic while containers and processes come and go."""
from hubmetrics.counters import CounterState, advance


def test_sums_the_owners_current_things():
    state, totals = advance(CounterState(), {"c1": ("alice", 10.0), "c2": ("alice", 5.0), "c3": ("bob", 1.0)})
    assert totals == {"alice": 15.0, "bob": 1.0}


def test_a_thing_that_exits_keeps_its_seconds():
    state, _ = advance(CounterState(), {"p1": ("alice", 10.0), "p2": ("alice", 5.0)})
    state, totals = advance(state, {"p2": ("alice", 7.0)})
    assert totals == {"alice": 17.0}
    state, totals = advance(state, {"p2": ("alice", 8.0), "p3": ("alice", 1.0)})
    assert totals == {"alice": 19.0}


def test_a_reset_counter_is_retired_not_subtracted():
    """A restarted container keeps its id but its cgroup counter starts again at 0."""
    state, _ = advance(CounterState(), {"c1": ("alice", 100.0)})
    state, totals = advance(state, {"c1": ("alice", 2.0)})
    assert totals == {"alice": 102.0}


def test_an_owner_gone_and_back_continues_where_it_was():
    state, _ = advance(CounterState(), {"c1": ("alice", 30.0)})
    state, totals = advance(state, {})
    assert totals == {}
    state, totals = advance(state, {"c9": ("alice", 1.0)})
    assert totals == {"alice": 31.0}


def test_the_state_is_immutable():
    state, _ = advance(CounterState(), {"c1": ("alice", 1.0)})
    try:
        state.last["c2"] = ("bob", 1.0)
    except TypeError:
        pass
    else:
        raise AssertionError("CounterState.last must be read-only")
