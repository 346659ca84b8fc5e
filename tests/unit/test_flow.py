"""The flow control rules (django_taskengine/core/flow.py), without a database."""

from __future__ import annotations

import pytest

from django_taskengine.core.flow import (
    FlowJob,
    Limits,
    Policy,
    Rate,
    Usage,
    lane,
    parse_rate,
    pick,
    queue_limits,
    record_starts,
)


def job(n, queue="q", task="t", group=None, sequence=None):
    return FlowJob(n, queue, task, group, sequence)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("14/s", Rate(14, 1.0)), ("100/m", Rate(100, 60.0)), (" 5 / h ", Rate(5, 3600.0))],
)
def test_rates_are_read_per_second_minute_or_hour(text, rate):
    assert parse_rate(text) == rate
    assert parse_rate(str(rate)) == rate


@pytest.mark.parametrize("text", [None, "", "none", "None"])
def test_no_rate(text):
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["14", "14/d", "0/s", "-1/s", "1.5/s", "14 per s", 14])
def test_a_bad_rate_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="rate_limit"):
        parse_rate(text)


def test_a_runtime_value_overrides_its_setting_knob_by_knob():
    setting = {"concurrency": 5, "rate_limit": "14/s"}
    assert queue_limits(setting, {}) == Limits(5, Rate(14, 1.0))
    assert queue_limits(setting, {"concurrency": 2}) == Limits(2, Rate(14, 1.0))
    assert queue_limits(setting, {"concurrency": None}) == Limits(None, Rate(14, 1.0))
    assert queue_limits(None, {"rate_limit": "1/m"}) == Limits(None, Rate(1, 60.0))


def test_a_job_takes_its_most_specific_scope_as_its_lane():
    grouped = Limits(group_concurrency=1)
    limited = Limits(concurrency=3)
    args = {"queue": "q", "queue_limited": True}
    assert lane(limited, "t", group="g", sequence="s", **args) == "s:s"
    assert lane(grouped, "t", group="g", sequence=None, **args) == "g:t|g"
    assert lane(limited, "t", group="g", sequence=None, **args) == "t:t"
    assert lane(None, "t", group="g", sequence=None, **args) == "q:q"
    assert lane(None, "t", group="g", sequence=None, queue="q", queue_limited=False) is None


def test_a_job_counts_in_every_limited_scope_it_belongs_to():
    policy = Policy(
        queues={"q": Limits(concurrency=5)},
        tasks={"t": Limits(concurrency=2, rate=Rate(3, 1.0), group_concurrency=1)},
    )
    scopes = policy.scopes(job(1, group="g", sequence="s"))
    assert scopes == [
        ("s:s", 1, None),
        ("g:t|g", 1, None),
        ("t:t", 2, Rate(3, 1.0)),
        ("q:q", 5, None),
    ]
    assert policy.scopes(job(2, queue="other", task="other")) == []


def test_pick_stops_at_each_limit():
    policy = Policy(queues={"q": Limits(concurrency=3)}, tasks={"t": Limits(concurrency=2)})
    usage = Usage(now=100.0)
    usage.add_running(policy, [(job(0), 1)])
    offered = [job(1), job(2), job(3, task="u"), job(4, task="u")]
    chosen = pick(offered, policy, usage, free=10, start=10)
    # t has room for 1 more (2 - 1), q for 2 more (3 - 1).
    assert [j.id for j in chosen] == [1, 3]


def test_pick_counts_the_starts_in_a_sliding_window():
    policy = Policy(tasks={"t": Limits(rate=Rate(3, 1.0))})
    usage = Usage(now=100.0, starts={"t:t": [[98.9, 1], [99.0, 1], [99.5, 1]]})
    # 99.0 is exactly one period ago: still inside (no closed interval of a second holds 4).
    assert [j.id for j in pick([job(1), job(2)], policy, usage, free=5, start=5)] == [1]
    windows = record_starts(policy, usage, [job(1)])
    assert windows == {"t:t": [[99.0, 1], [99.5, 1], [100.0, 1]]}
    usage.starts = windows
    assert usage.next_start(policy) == pytest.approx(100.0)
    usage.now = 100.01
    assert usage.next_start(policy) is None
    assert pick([job(2)], policy, usage, free=5, start=5) == [job(2)]


def test_a_window_merges_close_starts_into_the_later_one():
    policy = Policy(tasks={"t": Limits(rate=Rate(100, 1.0))})
    usage = Usage(now=10.0, starts={"t:t": [[9.5, 4], [9.995, 2]]})
    windows = record_starts(policy, usage, [job(1), job(2), job(3)])
    # Within 1% of the period of the last entry: merged, stamped with the later time (counted
    # a little longer, never shorter).
    assert windows == {"t:t": [[9.5, 4], [10.0, 5]]}
    usage.starts = windows
    assert usage.started("t:t", Rate(100, 1.0)) == 9


def test_a_window_far_from_its_limit_merges_starts_a_quarter_period_apart():
    policy = Policy(tasks={"t": Limits(rate=Rate(100, 1.0))})
    # 18 of 100 with the claim's: far from binding, the last entry (0.2 s old) takes them.
    usage = Usage(now=10.0, starts={"t:t": [[9.0, 10], [9.8, 5]]})
    assert record_starts(policy, usage, [job(1), job(2), job(3)]) == {"t:t": [[9.0, 10], [10.0, 8]]}
    # 53 of 100: near the limit, the fine grain (0.01 s) holds, and the starts get their entry.
    usage = Usage(now=10.0, starts={"t:t": [[9.0, 40], [9.8, 10]]})
    assert record_starts(policy, usage, [job(1), job(2), job(3)]) == {
        "t:t": [[9.0, 40], [9.8, 10], [10.0, 3]]
    }


def test_a_full_window_frees_as_its_oldest_starts_age_out():
    rate = Rate(5, 60.0)
    usage = Usage(now=100.0, starts={"r": [[50.0, 3], [70.0, 2], [90.0, 1]]})
    # 6 starts in the window, limit 5: 2 must age out; the first entry holds 3.
    assert usage.free_at("r", rate) == 110.0
    usage.starts = {"r": [[50.0, 1], [70.0, 2], [90.0, 3]]}
    assert usage.free_at("r", rate) == 130.0
    usage.starts = {"r": [[50.0, 1], [70.0, 3]]}
    assert usage.free_at("r", rate) is None


def test_pick_starts_ahead_of_free_threads_only_jobs_not_parked():
    policy = Policy()
    usage = Usage(now=0.0)
    offered = [job(1), job(2, task="parked"), job(3)]
    chosen = pick(offered, policy, usage, free=1, start=3, park=["parked"])
    assert [j.id for j in chosen] == [1, 3]


def test_a_running_sequence_member_blocks_its_sequence():
    policy = Policy()
    usage = Usage(now=0.0)
    usage.add_running(policy, [(job(0, sequence="s"), 1)])
    assert usage.blocked(policy) == ["s:s"]
    assert pick([job(1, sequence="s"), job(2, sequence="z")], policy, usage, free=5, start=5) == [
        job(2, sequence="z")
    ]


def test_full_scopes_are_blocked_before_their_lanes_are_read():
    policy = Policy(
        queues={"q": Limits(concurrency=1), "open": Limits(concurrency=9)},
        tasks={"t": Limits(group_concurrency=2), "r": Limits(rate=Rate(1, 60.0))},
    )
    usage = Usage(now=10.0, starts={"t:r": [[5.0, 1]]})
    usage.add_running(policy, [(job(0, group="g"), 2), (job(1, queue="open", task="x"), 1)])
    assert usage.blocked(policy) == ["g:t|g", "q:q", "t:r"]
