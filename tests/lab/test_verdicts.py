"""The verdict logic on synthetic figures: margins, inconclusive, holds (no measurement, no timing)."""

from __future__ import annotations

import pytest

from iomodels.lab import runner
from iomodels.lab.verdicts import FAILS, HOLDS, INCONCLUSIVE, UNKNOWN, Compare, Rule, from_rows, samples

FASTER = Rule((Compare("pool", "more", "new connection", margin=0.2, unit=" req/s"),))


def decide(rule, **figures):
    return rule.decide({name: samples(values) for name, values in figures.items()})


def test_holds_when_the_margin_is_met_beyond_the_spread():
    verdict, text = decide(FASTER, pool=[150, 152, 149], **{"new connection": [100, 101, 99]})
    assert verdict == HOLDS
    assert "pool 150 req/s (149–152, 3 runs)" in text and "1.50×" in text


def test_a_clear_difference_smaller_than_the_margin_does_not_hold():
    verdict, _ = decide(FASTER, pool=[110, 111, 110], **{"new connection": [100, 100, 101]})
    assert verdict == FAILS


def test_figures_closer_than_their_spread_are_inconclusive():
    # The flip: 25,384 vs 26,011 then 22,714 vs 21,886, a few % apart with no margin.
    rule = Rule((Compare("pool", "more", "new connection"),))
    verdict, _ = decide(rule, pool=[25_384, 22_714, 24_000], **{"new connection": [26_011, 21_886, 23_500]})
    assert verdict == INCONCLUSIVE


def test_inconclusive_is_about_the_threshold_not_the_raw_figures():
    # 125 vs 100 with a 20 % margin: the threshold is 120, within the spread of 125 ± 10.
    verdict, _ = decide(FASTER, pool=[115, 125, 135], **{"new connection": [100, 100, 100]})
    assert verdict == INCONCLUSIVE


def test_one_sample_each_has_no_spread_and_decides():
    verdict, _ = decide(FASTER, pool=[121], **{"new connection": [100]})
    assert verdict == HOLDS


@pytest.mark.parametrize("direction, left, right, expected", [
    ("less", [80, 81, 79], [100, 100, 100], HOLDS),  # 10 % less needed: 80 < 90
    ("less", [95, 95, 95], [100, 100, 100], FAILS),
    ("at_most", [105, 106, 104], [100, 100, 100], HOLDS),  # not more than 10 % above: 105 <= 110
    ("at_most", [130, 131, 130], [100, 100, 100], FAILS),
    ("at_least", [60, 61, 60], [100, 100, 100], HOLDS),  # keeps at least 90 % -> margin 0.1 ... 60 < 90
])
def test_directions(direction, left, right, expected):
    if direction == "at_least":
        rule = Rule((Compare("a", direction, "b", margin=0.5),))  # at least 50 % of b
    else:
        rule = Rule((Compare("a", direction, "b", margin=0.1),))
    assert decide(rule, a=left, b=right)[0] == expected


def test_a_fixed_bound_and_counts():
    rule = Rule((Compare("blocking recv that found nothing", "less", 1),))
    assert decide(rule, **{"blocking recv that found nothing": [0, 0, 0]})[0] == HOLDS
    assert decide(rule, **{"blocking recv that found nothing": [0, 1, 2]})[0] == INCONCLUSIVE
    assert decide(rule, **{"blocking recv that found nothing": [5, 6, 5]})[0] == FAILS


def test_every_comparison_must_hold_and_a_clear_miss_wins():
    rule = Rule((Compare("a", "more", "b"), Compare("c", "less", "d")))
    assert decide(rule, a=[2], b=[1], c=[1], d=[2])[0] == HOLDS
    assert decide(rule, a=[2, 3], b=[2.4, 2.6], c=[1], d=[2])[0] == INCONCLUSIVE
    assert decide(rule, a=[2, 3], b=[2.4, 2.6], c=[3], d=[2])[0] == FAILS
    verdict, text = decide(rule, a=[2], b=[1], c=[1])
    assert verdict == UNKNOWN and "d: not measured" in text


def test_rule_words_and_samples_from_rows():
    assert FASTER.text() == "pool at least 20 % more than new connection"
    rows = [{"mode": "pool", "rps": 3, "run": 0}, {"mode": "pool", "rps": 5, "run": 1}, {"mode": "new", "rps": 1}]
    measured = from_rows(rows, "rps", mode="pool")
    assert measured.samples == (3.0, 5.0) and measured.median == 4 and measured.spread == 2
    assert from_rows(rows, "rps", mode="other") is None


@pytest.mark.parametrize("name", runner.EXPERIMENTS)
def test_every_experiment_declares_its_rule_in_words(name):
    record = runner.new_record(name)
    assert record.rule, f"{name} has no RULE"


def test_paired_ratios_cancel_the_load_both_sides_shared():
    from iomodels.lab.verdicts import paired
    # Each run's load moved both figures together: run by run, a is always 2x b.
    rows = [{"m": "a", "run": 0, "v": 20}, {"m": "b", "run": 0, "v": 10},
            {"m": "a", "run": 1, "v": 60}, {"m": "b", "run": 1, "v": 30},
            {"m": "a", "run": 2, "v": 40}, {"m": "b", "run": 2, "v": 20}, {"m": "a", "run": 3, "v": 99}]
    ratio = paired(rows, "v", {"m": "a"}, {"m": "b"})
    assert ratio.samples == (2.0, 2.0, 2.0) and ratio.spread == 0
    assert from_rows(rows, "v", m="a").spread > 0  # the raw figures alone would look noisy


def test_one_run_thrown_off_by_load_does_not_make_a_clear_difference_inconclusive():
    rule = Rule((Compare("ratio", "at_least", 0.9),))
    assert decide(rule, ratio=[1.06, 0.306, 1.09])[0] == HOLDS  # one outlier of three
    assert decide(rule, ratio=[1.06, 0.5, 0.95])[0] == INCONCLUSIVE  # the runs disagree about the bound


def test_the_median_interval_is_the_order_statistics_one():
    # n = 15: the 4th and 12th smallest (1-based) hold the median with 96.5 % probability
    low, high, coverage = samples(range(15)).median_interval()
    assert (low, high) == (3, 11) and round(coverage, 4) == 0.9648
    # too few samples for 95 %: the whole range, with the coverage it has (1 - 2 / 2**5)
    assert samples([5, 1, 4, 2, 3]).median_interval() == (1, 5, 0.9375)
