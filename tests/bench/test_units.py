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
    assert buckets_of(ours.to_hdr()) == buckets_of(reference)
    assert ours.to_hdr().get_total_count() == reference.get_total_count() == len(values) == ours.count


def buckets_of(hdr: HdrHistogram) -> list[tuple[int, int]]:
    """(bucket's highest value, count) of every non-empty bucket, through hdrh's public iterator."""
    return [(step.value_iterated_to, step.count_at_value_iterated_to) for step in hdr.get_recorded_iterator()]


def test_weighted_recording_equals_recording_each_value():
    values, weights = [1500, 70_000, 3_000_000], [3, 1, 1000]
    weighted, each = LatencyHistogram(), LatencyHistogram()
    weighted.record_batch(array("q", values), array("q", weights))
    each.record_batch(array("q", [v for v, w in zip(values, weights) for _ in range(w)]))
    assert (weighted.counts == each.counts).all()
    assert (weighted.count, weighted.sum_ns, weighted.max_ns) == (each.count, each.sum_ns, each.max_ns)


def test_the_spectrum_runs_from_low_percentiles_to_100():
    histogram = LatencyHistogram()
    histogram.record_batch(array("q", range(1000, 200_000, 7)))
    spectrum = histogram.spectrum_us()
    assert spectrum[0]["percentile"] < 1 and spectrum[-1]["percentile"] == 100.0
    assert [row["value_us"] for row in spectrum] == sorted(row["value_us"] for row in spectrum)
    assert spectrum[-1]["count"] == histogram.count
    # wrk2's and HdrHistogram's (Java) levels: 5 steps per halving of the distance to 100 %
    assert [row["percentile"] for row in spectrum[:13]] == [0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 77.5, 80]
    assert all(row["count"] >= row["percentile"] / 100 * histogram.count - 1 for row in spectrum)  # hdrh rounds


def test_merging_encoded_worker_histograms_is_exact():
    parts = [_values(2000, seed) for seed in (1, 2, 3)]
    whole = LatencyHistogram()
    whole.record_batch(array("q", [v for part in parts for v in part]))
    merged = LatencyHistogram()
    for part in parts:
        worker = LatencyHistogram()
        worker.record_batch(array("q", part))
        merged.merge_encoded(worker.encode())
    assert (merged.counts == whole.counts).all()
    assert (merged.count, merged.sum_ns, merged.max_ns) == (whole.count, whole.sum_ns, whole.max_ns)
    assert merged.summary_us() == whole.summary_us()


def test_empty_histogram_summarises_to_zeros():
    summary = LatencyHistogram().summary_us()
    assert set(summary) == {"p50", "p90", "p99", "p999", "max", "mean"} and not any(summary.values())
