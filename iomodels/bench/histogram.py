"""Latency histograms: recorded in bulk, merged exactly across worker processes and intervals.

The hot path only appends latencies in nanoseconds to `array('q')`s (one C call each; a batch of
replies completed by one receive is one (latency, count) pair). A few times a second the worker
turns them into counts with numpy, in HdrHistogram's own bucket layout (1 ns .. 1 h, 3 significant
digits: values below 2048 exact, then 1024 buckets per power of two, each 2**k wide), but computed
here, for the whole batch at once: `hdrh`'s `record_value` is pure Python and would cost more per
request than the rest of the bench. Only hdrh's public API is used: when a histogram is needed
(percentiles, the interval log) each non-empty bucket is recorded once, with its count, at its
lowest value, which HdrHistogram files in the very same bucket. Workers send their counts as
(bucket, count) pairs, so the merge is exact; the exact sum, count and maximum travel beside them.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3600 * 10**9
DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
SUB_BITS = math.ceil(math.log2(2 * 10**DIGITS))  # 11: HdrHistogram's sub-bucket count is 2**11
HALF = 1 << (SUB_BITS - 1)
EXACT = 1 << SUB_BITS  # values below this have a bucket of their own
SLOTS = EXACT + (HIGHEST_NS.bit_length() - SUB_BITS) * HALF
SPECTRUM_TICKS = 5  # percentile spectrum: steps per halving of the distance to 100 % (wrk2 uses 5)


def buckets(values: np.ndarray) -> np.ndarray:
    """The bucket of each value (int64, already within LOWEST_NS..HIGHEST_NS)."""
    bits = np.frexp(values.astype(np.float64))[1].astype(np.int64)  # bit_length: exact below 2**53
    shift = np.maximum(bits - SUB_BITS, 0)
    return np.where(shift == 0, values, EXACT + (shift - 1) * HALF + (values >> shift) - HALF)


def lowest_value(bucket: int) -> int:
    if bucket < EXACT:
        return bucket
    step, within = divmod(bucket - EXACT, HALF)
    return (within + HALF) << (step + 1)


class LatencyHistogram:
    def __init__(self):
        self.counts = np.zeros(SLOTS, dtype=np.int64)
        self.count = 0
        self.sum_ns = 0
        self.max_ns = 0

    def record_batch(self, values: array, weights: array | None = None) -> None:
        """Record every latency (ns) in `values`, each `weights[i]` times (once without weights)."""
        if not values:
            return
        v = np.clip(np.frombuffer(values, dtype=np.int64), LOWEST_NS, HIGHEST_NS)
        w = None if weights is None else np.frombuffer(weights, dtype=np.int64)
        if w is None:
            self.counts += np.bincount(buckets(v), minlength=SLOTS)
            count, total = len(v), int(v.sum())
        else:
            self.counts += np.rint(np.bincount(buckets(v), weights=w, minlength=SLOTS)).astype(np.int64)
            count, total = int(w.sum()), int(np.dot(v, w))
        self.count += count
        self.sum_ns += total
        self.max_ns = max(self.max_ns, int(v.max()))

    def add(self, other: LatencyHistogram) -> None:
        self.counts += other.counts
        self.count += other.count
        self.sum_ns += other.sum_ns
        self.max_ns = max(self.max_ns, other.max_ns)

    def encode(self) -> tuple:
        """What a worker sends its parent: (buckets, counts, count, sum_ns, max_ns), non-empty only."""
        used = np.flatnonzero(self.counts)
        return used, self.counts[used], self.count, self.sum_ns, self.max_ns

    @classmethod
    def decode(cls, encoded: tuple) -> LatencyHistogram:
        histogram = cls()
        used, counts, histogram.count, histogram.sum_ns, histogram.max_ns = encoded
        histogram.counts[used] = counts
        return histogram

    def merge_encoded(self, encoded: tuple) -> None:
        self.add(LatencyHistogram.decode(encoded))

    def to_hdr(self) -> HdrHistogram:
        """The same counts as an hdrh HdrHistogram (for its percentiles, encoding and log)."""
        hdr = HdrHistogram(LOWEST_NS, HIGHEST_NS, DIGITS)
        for bucket in np.flatnonzero(self.counts).tolist():
            hdr.record_value(lowest_value(bucket), int(self.counts[bucket]))
        return hdr

    def percentiles_us(self, percentiles: list[float]) -> list[float]:
        """Each percentile in microseconds, capped at the exact maximum."""
        if not self.count:
            return [0.0] * len(percentiles)
        values = self.to_hdr().get_percentile_to_value_dict(percentiles)
        return [round(min(values[p], self.max_ns) / 1000, 1) for p in percentiles]

    def summary_us(self) -> dict[str, float]:
        """p50, p90, p99, p999, max and mean in microseconds (percentiles capped at the exact max)."""
        if not self.count:
            return {**{name: 0.0 for name in PERCENTILES}, "max": 0.0, "mean": 0.0}
        summary = dict(zip(PERCENTILES, self.percentiles_us(list(PERCENTILES.values()))))
        summary["max"] = round(self.max_ns / 1000, 1)
        summary["mean"] = round(self.sum_ns / self.count / 1000, 1)
        return summary

    def spectrum_us(self) -> list[dict]:
        """The full percentile spectrum at the levels wrk2 and HdrHistogram's Java
        `outputPercentileDistribution` print (0, 10, ... 50, 55, ... 75, 77.5, ...: SPECTRUM_TICKS
        steps per halving of the distance to 100 %), up to the first level that holds every
        request, then 100: [{percentile, value_us, count (requests at or below value_us)}, ...].
        hdrh's own iterator takes other levels (0, 10, 19, 27.1, ...)."""
        if not self.count:
            return []
        hdr, below = self.to_hdr(), np.cumsum(self.counts)
        levels = list(spectrum_levels())
        values = hdr.get_percentile_to_value_dict(levels)
        rows = []
        for level in levels:
            value = min(values[level], self.max_ns)
            count = int(below[buckets(np.array([value], dtype=np.int64))[0]])
            if count >= self.count:
                break
            rows.append({"percentile": round(level, 6), "value_us": round(value / 1000, 3), "count": count})
        rows.append({"percentile": 100.0, "value_us": round(self.max_ns / 1000, 3), "count": self.count})
        return rows


def spectrum_levels(deepest: float = 99.9999999):
    """0, then steps of 100 / (SPECTRUM_TICKS x 2 ** (halvings + 1)), halvings = floor(log2(100 /
    (100 - level))): the Java PercentileIterator's rule, stopped at `deepest`."""
    level = 0.0
    while level < deepest:
        yield level
        level += 100 / (SPECTRUM_TICKS * 2 ** (math.floor(math.log2(100 / (100 - level))) + 1))
