"""Verdicts from repeated measurements: a claim's rule, declared once as data, decides.

An experiment declares its `RULE`: the claim's test in words, and one or more comparisons between
two measured figures (or a figure and a fixed bound), each with a direction and a margin. The
experiment measures each deciding figure several times (interleaved between the compared models or
modes, so a burst of load on a shared machine hits both sides) and hands the samples to
`RULE.decide`, which answers one of:

- **holds**: every comparison is met, by its margin;
- **does not hold**: a comparison is clearly missed;
- **inconclusive**: a comparison lands within the noise of its threshold, that is, the compared
  figures are closer (after the margin) than their spread: one more run could say either. A
  verdict that flips between runs is worse than one that says it cannot tell.

Each figure is reported as its median with its range over the repeats (min–max), so the row shows
the numbers that decided it. The spread that decides "inconclusive" is the robust one: the median
absolute deviation, scaled (x 1.4826) to read as a standard deviation. One run of three that a
burst of load on a shared machine threw far off does not make a clear difference inconclusive;
two runs that disagree do. The directions:

    more      left >= (1 + margin) x right     "pool: at least 20 % more requests/s than new connections"
    less      left <= (1 - margin) x right     "threadpool: at least 10 % less CPU per request"
    at_most   left <= (1 + margin) x right     "epoll: at most 10 % above threaded" (not faster)
    at_least  left >= (1 - margin) x right     "keeps at least half of its throughput"
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from iomodels.lab.measuring import fmt

HOLDS, FAILS, INCONCLUSIVE, UNKNOWN = "holds", "does not hold", "inconclusive", "not measured"
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of normal noise, times this, is its sigma
DIRECTIONS = {"more": "at least {m} more than", "less": "at least {m} less than",
              "at_most": "at most {m} above", "at_least": "at least {m} of"}


@dataclasses.dataclass(frozen=True)
class Measured:
    """One figure's samples over the repeats."""
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """max - min over the repeats (what the report shows beside the median)."""
        return max(self.samples) - min(self.samples)

    @property
    def noise(self) -> float:
        """The robust spread: 1.4826 x the median absolute deviation (0 for one sample)."""
        centre = self.median
        return MAD_TO_SIGMA * statistics.median(abs(value - centre) for value in self.samples)

    def median_interval(self, confidence: float = 0.95) -> tuple[float, float, float]:
        """(low, high, coverage): the order-statistics interval that holds the true median with
        probability `coverage`, the narrowest whose coverage reaches `confidence` (no assumption
        on the noise's shape: each sample lands above the median or below it with chance 1/2).
        Below 6 samples no interval reaches 95 %: the whole range, with the coverage it has."""
        ordered, n = sorted(self.samples), len(self.samples)
        k, at_most_k = 0, 1 / 2 ** n  # the true median lies below ordered[k] iff at most k samples do
        while k + 1 <= (n - 1) // 2 and 1 - 2 * (at_most_k + math.comb(n, k + 1) / 2 ** n) >= confidence:
            k, at_most_k = k + 1, at_most_k + math.comb(n, k + 1) / 2 ** n
        return ordered[k], ordered[n - 1 - k], 1 - 2 * at_most_k

    def text(self, unit: str = "") -> str:
        shown = f"{fmt(self.median)}{unit}"
        if len(self.samples) > 1:
            shown += f" ({fmt(min(self.samples))}–{fmt(max(self.samples))}, {len(self.samples)} runs)"
        return shown


def samples(values) -> Measured | None:
    kept = tuple(float(v) for v in values if v is not None)
    return Measured(kept) if kept else None


def from_rows(rows: list[dict], key: str, **match) -> Measured | None:
    """The samples of `key` over the rows matching `match` (one per repeat)."""
    return samples(row.get(key) for row in rows if all(row.get(k) == v for k, v in match.items()))


def paired(rows: list[dict], key: str, left: dict, right: dict, scale: float = 1.0) -> Measured | None:
    """left ÷ right of `key`, run by run (rows carry "run"): measured side by side, the two share
    whatever load the machine had then, and their ratio cancels it."""
    def by_run(match):
        return {row.get("run", 0): row.get(key) for row in rows if all(row.get(k) == v for k, v in match.items())}
    lefts, rights = by_run(left), by_run(right)
    ratios = [scale * lefts[run] / rights[run] for run in lefts if run in rights and lefts[run] is not None
              and rights[run]]
    return Measured(tuple(ratios)) if ratios else None


def share(rows: list[dict], key: str) -> Measured | None:
    """The percentage of `rows` where `key` is true, as one figure (a count over the runs has no spread)."""
    return Measured((100 * sum(bool(row.get(key)) for row in rows) / len(rows),)) if rows else None


@dataclasses.dataclass(frozen=True)
class Compare:
    """`left` is `direction` `right` by `margin`: figure names, or a number for a fixed bound."""
    left: str
    direction: str
    right: str | float
    margin: float = 0.0
    unit: str = ""
    optional: bool = False  # skipped, not "not measured", when a model it needs cannot run here

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")

    def words(self) -> str:
        if self.direction == "at_least" and self.margin:
            amount = f"{fmt(100 * (1 - self.margin))} %"
        else:
            amount = f"{fmt(100 * self.margin)} %" if self.margin else ""
        relation = DIRECTIONS[self.direction].format(m=amount).replace("  ", " ")
        if not self.margin:
            relation = {"more": "more than", "less": "less than", "at_most": "at most", "at_least": "at least"}[
                self.direction]
        right = self.right if isinstance(self.right, str) else f"{fmt(self.right)}{self.unit}"
        return f"{self.left} {relation} {right}"

    def threshold(self, right: float) -> float:
        grow = self.direction in ("more", "at_most")
        return right * (1 + self.margin) if grow else right * (1 - self.margin)

    def decide(self, figures: dict[str, Measured | None]) -> tuple[str, str]:
        left = figures.get(self.left)
        right = (figures.get(self.right) if isinstance(self.right, str)
                 else Measured((float(self.right),)))
        if left is None or right is None:
            missing = self.left if left is None else self.right
            return UNKNOWN, f"{missing}: not measured"
        bound = self.threshold(right.median)
        noise = left.noise + right.noise
        if self.direction in ("more", "at_least"):
            met = left.median >= bound if self.direction == "at_least" else left.median > bound
        else:
            met = left.median <= bound if self.direction == "at_most" else left.median < bound
        verdict = INCONCLUSIVE if noise > 0 and abs(left.median - bound) < noise else HOLDS if met else FAILS
        text = f"{self.left} {left.text(self.unit)}"
        if isinstance(self.right, str):
            text += f" vs {self.right} {right.text(self.unit)}"
            if right.median and left.median:
                text += f" ({_ratio(left.median / right.median)})"
        else:
            text += f" (bound {fmt(self.right)}{self.unit})"
        return verdict, text


@dataclasses.dataclass(frozen=True)
class Rule:
    """A claim's test: all `comparisons` must be met. `words` is the rule as the table shows it;
    when empty it is the comparisons' own words."""
    comparisons: tuple[Compare, ...]
    words: str = ""

    def text(self) -> str:
        return self.words or "; ".join(c.words() for c in self.comparisons)

    def decide(self, figures: dict[str, Measured | None]) -> tuple[str, str]:
        """(verdict, the numbers that decided it, one comparison after another)."""
        results = [c.decide(figures) for c in self.comparisons]
        results = [(v, text) for (v, text), c in zip(results, self.comparisons) if not (c.optional and v == UNKNOWN)]
        verdicts = [verdict for verdict, _ in results]
        if FAILS in verdicts:
            verdict = FAILS
        elif UNKNOWN in verdicts:
            verdict = UNKNOWN
        elif INCONCLUSIVE in verdicts:
            verdict = INCONCLUSIVE
        else:
            verdict = HOLDS
        parts = [text if len(results) == 1 or v == UNKNOWN else f"{text}: {v}" for v, text in results]
        return verdict, "; ".join(parts)


def _ratio(value: float) -> str:
    return f"{value:.2f}×" if value < 100 else f"{fmt(value)}×"
