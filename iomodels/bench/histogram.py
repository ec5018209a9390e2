"""Latency histograms: recorded in bulk, merged exactly across worker processes.

The hot path only appends a latency in nanoseconds to an `array('q')` (one C call, no object kept).
A few times a second the worker moves the batch into an HdrHistogram (1 ns .. 1 h, 3 significant
digits) with numpy, computing the same counts index HdrHistogram's `record_value` computes, but for
the whole batch at once: `hdrh`'s own `record_value` is pure Python and would cost more per request
than the rest of the bench. Workers hand their histogram to the parent in HdrHistogram's standard
encoding (`encode`/`decode`), so the merge is exact: same buckets, added count by count. The exact
sum, count and maximum travel beside it, since a bucket only knows its value to 3 digits.
"""

from __future__ import annotations

from array import array

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3600 * 10**9
DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class LatencyHistogram:
    def __init__(self, hdr: HdrHistogram | None = None):
        self.hdr = hdr or HdrHistogram(LOWEST_NS, HIGHEST_NS, DIGITS)
        self.count = 0
        self.sum_ns = 0
        self.max_ns = 0
        self._counts = np.ctypeslib.as_array(self.hdr.counts)
        h = self.hdr
        self._mask = h.sub_bucket_mask
        self._shift = h.unit_magnitude + h.sub_bucket_half_count_magnitude + 1

    def record_batch(self, values: array) -> None:
        """Record every latency (ns) in `values`; the caller may reuse the array afterwards."""
        if not values:
            return
        v = np.clip(np.frombuffer(values, dtype=np.int64), LOWEST_NS, HIGHEST_NS)
        h = self.hdr
        # HdrHistogram's _counts_index_for, vectorised. bit_length via frexp is exact below 2**53.
        bits = np.frexp((v | self._mask).astype(np.float64))[1].astype(np.int64)
        bucket = bits - self._shift
        sub = v >> (bucket + h.unit_magnitude)
        index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count
        self._counts += np.bincount(index, minlength=len(self._counts)).astype(np.uint64)
        low, high, total = int(v.min()), int(v.max()), int(v.sum())
        h.total_count += len(v)
        h.min_value = min(h.min_value, low)
        h.max_value = max(h.max_value, high)
        self.count += len(v)
        self.sum_ns += total
        self.max_ns = max(self.max_ns, high)

    def encode(self) -> tuple[bytes, int, int, int]:
        """What a worker sends its parent: (HdrHistogram encoding, count, sum_ns, max_ns)."""
        return (self.hdr.encode() if self.count else b""), self.count, self.sum_ns, self.max_ns

    def merge_encoded(self, encoded: tuple[bytes, int, int, int]) -> None:
        blob, count, sum_ns, max_ns = encoded
        if count:
            self.hdr.decode_and_add(blob)
        self.count += count
        self.sum_ns += sum_ns
        self.max_ns = max(self.max_ns, max_ns)

    def summary_us(self) -> dict[str, float]:
        """p50, p90, p99, p999, max and mean in microseconds (percentiles capped at the exact max)."""
        if not self.count:
            return {**{name: 0.0 for name in PERCENTILES}, "max": 0.0, "mean": 0.0}
        values = self.hdr.get_percentile_to_value_dict(list(PERCENTILES.values()))
        summary = {name: round(min(values[p], self.max_ns) / 1000, 1) for name, p in PERCENTILES.items()}
        summary["max"] = round(self.max_ns / 1000, 1)
        summary["mean"] = round(self.sum_ns / self.count / 1000, 1)
        return summary
