"""Wait times in fixed log-scale buckets: the shape the per-minute statistics keep them in.

A job's wait is how long it was due before an attempt started: ``started_at - max(created_at,
run_after)``. The statistics cannot keep every wait, and a percentile of several minutes or
queues cannot be computed from their percentiles; it can from their histograms, summed bucket by
bucket. The buckets are fixed, so that any two histograms add up:

- bucket 0: under 1 ms (and a negative wait, from clocks a little apart);
- bucket k, for 1 <= k < BUCKETS - 1: from 2^(k-1) ms up to 2^k ms;
- the last bucket: 2^(BUCKETS-2) ms (about 18.6 hours) and longer.

A percentile read back is exact to a factor of 2 at worst (the bucket it falls in), and
interpolated geometrically inside the bucket, which is much closer for smooth distributions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Number of buckets: under 1 ms, 26 doublings from 1 ms, and 2^26 ms (18.6 h) or longer.
BUCKETS = 28
#: The upper bound (seconds) of bucket 0, and the unit the doublings start from.
FIRST_BOUND = 0.001


def bucket_of(seconds: float) -> int:
    """The bucket a wait of ``seconds`` falls in."""
    if seconds < FIRST_BOUND:
        return 0
    # frexp: seconds / FIRST_BOUND = m * 2^e with 0.5 <= m < 1, so 2^(e-1) <= ratio < 2^e.
    _, exponent = math.frexp(seconds / FIRST_BOUND)
    return min(exponent, BUCKETS - 1)


def lower_bound(bucket: int) -> float:
    """The shortest wait (seconds) of ``bucket``."""
    return 0.0 if bucket == 0 else FIRST_BOUND * 2 ** (bucket - 1)


def upper_bound(bucket: int) -> float:
    """The bound (seconds) below which waits of ``bucket`` are; infinite for the last."""
    return math.inf if bucket >= BUCKETS - 1 else FIRST_BOUND * 2**bucket


def percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` (0.5 for the median, 0.95…) percentile of the waits counted in
    ``counts`` (one count per bucket), in seconds; None when nothing was counted.

    The rank is found in the cumulative counts, then placed inside its bucket: linearly in
    bucket 0, geometrically in the doublings; the last bucket has no upper bound, so its lower
    bound is returned (the wait was at least that).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(0.0, min(1.0, fraction)) * total
    seen = 0
    for bucket, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            share = (rank - seen) / count
            low, high = lower_bound(bucket), upper_bound(bucket)
            if bucket == 0:
                return high * share
            if math.isinf(high):
                return low
            return float(low * (high / low) ** share)
        seen += count
    return lower_bound(len(counts) - 1)  # rounding: the rank fell past the last count
