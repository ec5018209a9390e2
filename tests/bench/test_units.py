"""Payloads, sizes and histograms, without any network."""

from __future__ import annotations

import random
from array import array

import pytest
from hdrh.histogram import HdrHistogram

from iomodels.bench.errors import UsageError
from iomodels.bench.histogram import HIGHEST_NS, LOWEST_NS, LatencyHistogram
from iomodels.bench.payload import Messages, Size, pattern


@pytest.mark.parametrize("text, low, high", [("64", 64, 64), ("64-4096", 64, 4096), (" 1-1 ", 1, 1)])
def test_size_parses_fixed_and_ranges(text, low, high):
    assert Size.parse(text) == Size(low, high)


@pytest.mark.parametrize("bad", ["0", "x", "10-5", "1-", str(1 << 30), (1, 2, 3)])
def test_bad_sizes_are_usage_errors(bad):
    with pytest.raises(UsageError):
        Size.parse(bad)


def test_payloads_hold_the_bytes_that_catch_wrong_servers():
    data = pattern(4096)
    for byte in b"@[`{\xe9\xffaz":
        assert byte in data
    for message, expected in Messages(Size(64, 64)).pairs:
        assert len(message) == 64 and expected == bytes(b - 32 if 97 <= b <= 122 else b for b in message)


def test_range_sizes_stay_in_range_and_vary():
    sizes = {len(m) for m, _ in Messages(Size(10, 20), seed=3).pairs}
    assert min(sizes) >= 10 and max(sizes) <= 20 and len(sizes) > 5


def test_connections_start_at_different_places_in_the_script():
    messages = Messages(Size(64, 64))
    assert messages.script(0)() != messages.script(1)()


def _values(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    edges = [0, 1, 2047, 2048, 4095, 4096, 10**6, HIGHEST_NS, HIGHEST_NS * 2, -5]
    return [rng.choice(edges) + rng.randint(0, 3) for _ in range(count)] + \
           [int(rng.lognormvariate(11, 2)) for _ in range(count)]


def test_bulk_recording_lands_in_the_same_buckets_as_hdrhistogram():
    values = _values(3000, seed=1)
    reference = HdrHistogram(LOWEST_NS, HIGHEST_NS, 3)
    for value in values:
        reference.record_value(min(max(value, LOWEST_NS), HIGHEST_NS))
    ours = LatencyHistogram()
    ours.record_batch(array("q", values))
    assert list(ours.hdr.counts) == list(reference.counts)
    assert ours.hdr.get_total_count() == reference.get_total_count() == len(values)


def test_merging_encoded_worker_histograms_is_exact():
    parts = [_values(2000, seed) for seed in (1, 2, 3)]
    whole = LatencyHistogram()
    whole.record_batch(array("q", [v for part in parts for v in part]))
    merged = LatencyHistogram()
    for part in parts:
        worker = LatencyHistogram()
        worker.record_batch(array("q", part))
        merged.merge_encoded(worker.encode())
    assert list(merged.hdr.counts) == list(whole.hdr.counts)
    assert (merged.count, merged.sum_ns, merged.max_ns) == (whole.count, whole.sum_ns, whole.max_ns)
    assert merged.summary_us() == whole.summary_us()


def test_empty_histogram_summarises_to_zeros():
    summary = LatencyHistogram().summary_us()
    assert set(summary) == {"p50", "p90", "p99", "p999", "max", "mean"} and not any(summary.values())
