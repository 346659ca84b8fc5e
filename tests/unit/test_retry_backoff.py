"""Bounds of the retry delay: exponential, capped, with jitter in the upper half."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_taskengine.core import lifecycle as runner
from django_taskengine.core.lifecycle import retry_delay


@pytest.fixture
def lowest_jitter(monkeypatch):
    monkeypatch.setattr(runner.random, "uniform", lambda low, high: low)


@pytest.fixture
def highest_jitter(monkeypatch):
    monkeypatch.setattr(runner.random, "uniform", lambda low, high: high)


@pytest.mark.parametrize(
    ("attempt", "backoff", "nominal"),
    [(1, 1.0, 1.0), (2, 1.0, 2.0), (3, 1.0, 4.0), (5, 0.5, 8.0), (4, 2.0, 16.0)],
)
def test_delay_lies_between_half_and_all_of_the_exponential_nominal(
    attempt, backoff, nominal, monkeypatch
):
    monkeypatch.setattr(runner.random, "uniform", lambda low, high: low)
    assert retry_delay(attempt, backoff) == pytest.approx(nominal / 2)
    monkeypatch.setattr(runner.random, "uniform", lambda low, high: high)
    assert retry_delay(attempt, backoff) == pytest.approx(nominal)


def test_random_delays_stay_within_bounds_and_spread_over_the_upper_half():
    delays = [retry_delay(3, 1.0) for _ in range(2000)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    # Jitter spreads retries of jobs that failed together (P(failure) ~ 0.8**2000).
    assert min(delays) < 2.4
    assert max(delays) > 3.6


@override_settings(TASKENGINE={"RETRY_BACKOFF_MAX": 10.0})
def test_delay_is_capped_by_retry_backoff_max(highest_jitter):
    assert retry_delay(4, 1.0) == pytest.approx(8.0)
    assert retry_delay(5, 1.0) == pytest.approx(10.0)
    assert retry_delay(30, 1.0) == pytest.approx(10.0)


@override_settings(TASKENGINE={"RETRY_BACKOFF_MAX": 10.0})
def test_capped_delay_keeps_its_jitter(lowest_jitter):
    assert retry_delay(30, 1.0) == pytest.approx(5.0)


def test_default_cap_is_an_hour(highest_jitter):
    assert retry_delay(20, 1.0) == pytest.approx(3600.0)


@pytest.mark.parametrize("attempt", [0, -3])
def test_attempt_numbers_below_one_count_as_the_first(attempt, highest_jitter):
    assert retry_delay(attempt, 3.0) == pytest.approx(3.0)


def test_zero_backoff_retries_at_once():
    assert retry_delay(1, 0.0) == 0.0
    assert retry_delay(7, 0.0) == 0.0


@pytest.mark.parametrize("attempt", [1025, 5000])
def test_a_very_late_attempt_is_capped_not_an_overflow(attempt):
    # A task with a large max_attempts reaches attempt numbers where 2**attempt no longer
    # fits in a float; the delay must still be the cap, not an OverflowError in the worker.
    delay = retry_delay(attempt, 1.0)
    assert 1800.0 <= delay <= 3600.0
