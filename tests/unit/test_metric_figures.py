"""Histograms bucket in batches: the counts and sums must be those of one bisect per value."""

from __future__ import annotations

import random
from bisect import bisect_left

from relevo.metrics.figures import BUCKETS, PENDING_MAX, Histogram, merge


def test_batched_buckets_equal_one_bisect_per_value_bounds_included() -> None:
    values = [random.uniform(-0.01, 700.0) for _ in range(PENDING_MAX * 2 + 17)]
    values += [*BUCKETS, 0.0, -1.0]
    histogram = Histogram()
    for value in values:
        histogram.observe(value)
    expected = [0] * (len(BUCKETS) + 1)
    for value in values:
        expected[bisect_left(BUCKETS, value)] += 1
    got = histogram.as_list()
    assert got[:-1] == expected
    assert abs(got[-1] - sum(v for v in values if v > 0)) < 1e-6
    assert histogram.pending == []


def test_snapshots_of_processes_add_up_series_by_series() -> None:
    one = {"published": {"a:q": 2}, "consumers": {"a:c": {"queue": "a:q", "outcomes": [1, 0, 0, 1],
                                                          "in_flight": 1}}}
    two = {"published": {"a:q": 3, "a:r": 1}, "consumers": {"a:c": {"queue": "a:q",
                                                                   "outcomes": [4, 1, 0, 0],
                                                                   "in_flight": 0}}}
    total = merge([one, two])
    assert total["published"] == {"a:q": 5, "a:r": 1}
    assert total["consumers"]["a:c"] == {"queue": "a:q", "outcomes": [5, 1, 0, 1], "in_flight": 1}
