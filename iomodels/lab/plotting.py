"""Plots for the report: one look for every experiment, one colour per model, inline SVG out.

matplotlib runs on the Agg backend (no display), and each figure is saved as SVG text into a
string, which the report pastes into the page: no files, nothing fetched, the page opens offline.

One size for every figure (twice as wide for small multiples, which span the page's two columns),
saved at that size, so text has the same size in every section. Log axes that must show a zero
are symmetric-log: linear from 0 to the smallest value measured, so a zero sits at 0 (labelled),
never at an invented 1e-09. Lines that coincide (threaded under forking) differ in marker and
line style; more than a few models go to small multiples, one panel each, the others in grey.
"""

from __future__ import annotations

import io
import math
import re
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from iomodels.lab.measuring import fmt  # noqa: E402
from iomodels.serving.models import ORDER  # noqa: E402

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b", "#17becf", "#bcbd22")
STYLE = {
    "figure.figsize": (6.4, 3.6), "figure.dpi": 100, "font.size": 10, "axes.titlesize": 11,
    "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True, "legend.frameon": False,
    "svg.fonttype": "none",  # text stays text: smaller, selectable, and searchable in the page
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.labelsize": 10, "legend.fontsize": 9,
}
WIDE = (12.8, 7.2)
TITLE_WIDTH = 62  # characters of a title line at the standard figure width
# Every figure of the lab, and any text added to it after creation, in this one look.
plt.rcParams.update(STYLE)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
# Tick labels as plain numbers, three significant digits (1,000 not 10³; 1.25 not 1).
PLAIN = FuncFormatter(lambda value, _: fmt(0 if abs(value) < 1e-12 else value))


def _legend(fig, names: list[str]) -> None:
    """Below the plot, where it hides no line or bar; long labels two to a row."""
    columns = 2 if max(map(len, names), default=0) > 20 else 5
    fig.legend(loc="outside lower center", ncols=min(len(names), columns))


def _label_log(ax, which: str) -> None:
    """A log axis spanning less than about a decade has no major tick: label the minor ones."""
    low, high = ax.get_ylim() if which == "y" else ax.get_xlim()
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_minor_formatter(PLAIN if low > 0 and high / low < 20 else NullFormatter())


def color(model: str) -> str:
    index = ORDER.index(model) if model in ORDER else len(ORDER) + sum(map(ord, model))
    return PALETTE[index % len(PALETTE)]


def figure(title: str, xlabel: str = "", ylabel: str = "", size: tuple[float, float] | None = None):
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=size or STYLE["figure.figsize"], layout="constrained")
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def _zero_safe_log(ax, values, headroom: float = 3) -> None:
    """A log y axis that shows zeros as zeros: symmetric-log, linear up to the smallest value
    measured above zero, when any value is 0; plain log otherwise."""
    positive = [v for v in values if v and v > 0]
    if positive and len(positive) < len([v for v in values if v is not None]):
        threshold = 10 ** math.floor(math.log10(min(positive)))
        ax.set_yscale("symlog", linthresh=threshold, linscale=0.5)
        ax.set_ylim(0, max(positive) * headroom)  # room above the tallest bar for its label
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif positive:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, max(positive) * headroom)
        _label_log(ax, "y")


def _x_labels(ax, labels) -> None:
    """Slanted, right-aligned category labels when they would collide side by side."""
    if len(labels) > 5 or sum(len(str(label)) for label in labels) > 48:
        ax.tick_params(axis="x", labelrotation=35)
        for text in ax.get_xticklabels():
            text.set_horizontalalignment("right")
            text.set_rotation_mode("anchor")


def bars(title: str, labels: list[str], values: list[float], ylabel: str, log: bool = False,
         suffix: str = "", colors: list[str] | None = None):
    """One bar per model (coloured by model), with its value written on top (upright when there is
    room, turned a quarter when there are many bars)."""
    fig, ax = figure(title, ylabel=ylabel)
    with plt.rc_context(STYLE):
        shown = [0 if value is None or value != value else value for value in values]
        drawn = ax.bar(labels, shown, color=colors or [color(label) for label in labels])
        crowded = len(labels) > 5
        if log:
            _zero_safe_log(ax, shown, headroom=30 if crowded else 5)
        ax.yaxis.set_major_formatter(PLAIN)
        ax.bar_label(drawn, labels=[fmt(value) + ("" if crowded else suffix) for value in values], fontsize=8,
                     padding=2, rotation=90 if crowded else 0)
        ax.margins(y=0.25 if crowded else 0.12)
        _x_labels(ax, labels)
    return fig


def grouped_bars(title: str, groups: list[str], series: dict[str, list[float]], ylabel: str,
                 xlabel: str = "", log: bool = False):
    """Bars grouped by x (e.g. connection count), one series per model. A zero gets a "0" at the
    foot of its bar, so a series the legend lists never just vanishes."""
    fig, ax = figure(title, xlabel=xlabel, ylabel=ylabel)
    width = 0.8 / max(len(series), 1)
    every = []
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        values = [0 if v is None else v for v in values]
        every += values
        drawn = ax.bar(xs, values, width, label=name, color=color(name) if name in ORDER else PALETTE[i % len(PALETTE)])
        ax.bar_label(drawn, labels=["0" if v == 0 else "" for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    if log:
        _zero_safe_log(ax, every)
    ax.yaxis.set_major_formatter(PLAIN)
    _x_labels(ax, groups)
    _legend(fig, list(series))
    return fig


def grid(rows: list[dict], key: str, x: str) -> tuple[list, dict]:
    """(sorted xs, {model: [value at each x, 0 where missing]}) for grouped bars."""
    xs = sorted({row[x] for row in rows})
    names = list(dict.fromkeys(row["model"] for row in rows))
    values = {name: [next((row.get(key) or 0 for row in rows if row["model"] == name and row[x] == value), 0)
                     for value in xs] for name in names}
    return xs, values


def by_count(rows: list[dict], x: str, noun: str, charts) -> list:
    """One grouped-bar figure per (key, title, unit) in `charts`: groups are the values of `x`
    ("1 connection", "10 connections"), one bar per model."""
    figures = []
    for key, title, unit in charts:
        counts, values = grid(rows, key, x)
        groups = [f"{count} {noun}{'s' if count != 1 else ''}" for count in counts]
        figures.append(grouped_bars(title, groups, values, unit))
    return figures


def _log_x(ax, every_x) -> None:
    if 0 in every_x:
        smallest = min(x for x in every_x if x > 0) if any(x > 0 for x in every_x) else 1
        ax.set_xscale("symlog", linthresh=smallest, linscale=0.5)
    else:
        ax.set_xscale("log")
    ax.set_xticks(every_x)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _line(ax, i: int, name: str, xs, ys, **style) -> None:
    """Hollow markers of decreasing size and lines of decreasing width, so a line drawn exactly on
    another (threaded's thread count under forking's) still shows, inside it."""
    ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
            markersize=10 - 3 * (i % 3), markerfacecolor="none", markeredgewidth=1.6, label=name,
            color=color(name), **style)


def lines(title: str, xs_by_name: dict[str, tuple[list, list]], xlabel: str, ylabel: str,
          logx: bool = False, logy: bool = False):
    """One line per model: {name: (xs, ys)}; markers, sizes and line styles differ, so lines that
    coincide stay visible (the smaller marker inside the larger)."""
    fig, ax = figure(title, xlabel=xlabel, ylabel=ylabel)
    for i, (name, (xs, ys)) in enumerate(xs_by_name.items()):
        _line(ax, i, name, xs, ys, alpha=0.9, linewidth=3.2 - 1.0 * (i % 3))
    every_x = sorted({x for xs, _ in xs_by_name.values() for x in xs})
    if logx:
        _log_x(ax, every_x)
    ax.xaxis.set_major_formatter(PLAIN)
    if logy:
        _zero_safe_log(ax, [y for _, ys in xs_by_name.values() for y in ys])
    ax.yaxis.set_major_formatter(PLAIN)
    _legend(fig, list(xs_by_name))
    return fig


def small_multiples(title: str, xs_by_name: dict[str, tuple[list, list]], xlabel: str, ylabel: str,
                    logx: bool = False, logy: bool = False, columns: int = 4):
    """One small panel per model, on shared axes: its line in colour, every other model's in grey
    behind it. Reads where twelve lines in one plot would tangle."""
    names = list(xs_by_name)
    rows = max(1, -(-len(names) // columns))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, columns, figsize=(WIDE[0], min(WIDE[1], 1.0 + 2.1 * rows)),
                                 sharex=True, sharey=True, layout="constrained", squeeze=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=STYLE["axes.titlesize"], fontweight="bold")
    fig.supxlabel(xlabel, fontsize=STYLE["axes.labelsize"])
    fig.supylabel(ylabel, fontsize=STYLE["axes.labelsize"])
    every_x = sorted({x for xs, _ in xs_by_name.values() for x in xs})
    every_y = [y for _, ys in xs_by_name.values() for y in ys]
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        name = names[index]
        for other, (xs, ys) in xs_by_name.items():
            if other != name:
                ax.plot(xs, ys, color="#cccccc", linewidth=1, zorder=1)
        xs, ys = xs_by_name[name]
        ax.plot(xs, ys, marker="o", markersize=4, color=color(name), linewidth=2, zorder=2)
        ax.set_title(name, loc="left", fontsize=STYLE["font.size"], fontweight="normal")
        if logx:
            _log_x(ax, every_x)
        if logy:
            _zero_safe_log(ax, every_y)
        ax.xaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_major_formatter(PLAIN)
        ax.tick_params(axis="x", labelrotation=35)
    return fig


def to_svg(fig, salt: str) -> str:
    """The figure as an inline <svg> element; `salt` keeps its internal ids unique in the page."""
    buffer = io.StringIO()
    with plt.rc_context({**STYLE, "svg.hashsalt": salt}):  # stable ids: the same run, the same page
        fig.savefig(buffer, format="svg")  # at its own size: the same text size in every figure
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: not allowed inline
    # Several plots share one page: prefix every id (and every reference to one) to keep them unique.
    svg = re.sub(r'(id="|url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{salt}-{m.group(2)}", svg)
    # Scale with the page instead of a fixed size in points.
    wide = fig.get_figwidth() > STYLE["figure.figsize"][0] * 1.5
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
                  rf'<svg\1 class="plot{" wide" if wide else ""}" role="img"', svg, count=1)
