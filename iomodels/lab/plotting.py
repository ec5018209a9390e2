"""Plots for the report: one look for every experiment, one colour per model, inline SVG out.

matplotlib runs on the Agg backend (no display), and each figure is saved as SVG text into a
string, which the report pastes into the page: no files, nothing fetched, the page opens offline.
"""

from __future__ import annotations

import io
import re

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
}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Tick labels as plain numbers (1,000, not 10³).
PLAIN = FuncFormatter(lambda value, _: f"{value:,.0f}" if abs(value) >= 1 or value == 0 else f"{value:g}")


def _legend(fig, names: list[str]) -> None:
    """Below the plot, where it hides no line or bar; long labels two to a row."""
    columns = 2 if max(map(len, names), default=0) > 20 else 5
    fig.legend(loc="outside lower center", fontsize=8, ncols=min(len(names), columns))


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
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def bars(title: str, labels: list[str], values: list[float], ylabel: str, log: bool = False,
         suffix: str = "", colors: list[str] | None = None):
    """One bar per model (coloured by model), with its value written on top."""
    fig, ax = figure(title, ylabel=ylabel)
    with plt.rc_context(STYLE):
        shown = [max(value, 1e-9) if log else value for value in values]
        drawn = ax.bar(labels, shown, color=colors or [color(label) for label in labels])
        if log:
            ax.set_yscale("log")
            _label_log(ax, "y")
        ax.yaxis.set_major_formatter(PLAIN)
        ax.bar_label(drawn, labels=[fmt(value) + suffix for value in values], fontsize=8, padding=2)
        ax.tick_params(axis="x", labelrotation=30 if len(labels) > 5 else 0)
    return fig


def grouped_bars(title: str, groups: list[str], series: dict[str, list[float]], ylabel: str,
                 xlabel: str = "", log: bool = False):
    """Bars grouped by x (e.g. connection count), one series per model."""
    fig, ax = figure(title, xlabel=xlabel, ylabel=ylabel)
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [max(v, 1e-9) if log else v for v in values], width, label=name, color=color(name))
    ax.set_xticks(range(len(groups)), groups)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)  # a 1 still shows; zeros stay out of sight instead of reaching 1e-9
        _label_log(ax, "y")
    ax.yaxis.set_major_formatter(PLAIN)
    ax.tick_params(axis="x", labelrotation=30 if len(groups) > 4 else 0)
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


def lines(title: str, xs_by_name: dict[str, tuple[list, list]], xlabel: str, ylabel: str,
          logx: bool = False, logy: bool = False):
    """One line per model: {name: (xs, ys)}; markers differ, so lines that coincide stay visible."""
    fig, ax = figure(title, xlabel=xlabel, ylabel=ylabel)
    for i, (name, (xs, ys)) in enumerate(xs_by_name.items()):
        ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], markersize=7 - i % 3, label=name, color=color(name),
                alpha=0.9)
    every_x = sorted({x for xs, _ in xs_by_name.values() for x in xs})
    if logx:
        ax.set_xscale("symlog" if 0 in every_x else "log", **({"linthresh": 10} if 0 in every_x else {}))
        ax.set_xticks(every_x)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(PLAIN)
    if logy:
        ax.set_yscale("log")
        _label_log(ax, "y")
    ax.yaxis.set_major_formatter(PLAIN)
    _legend(fig, list(xs_by_name))
    return fig


def to_svg(fig, salt: str) -> str:
    """The figure as an inline <svg> element; `salt` keeps its internal ids unique in the page."""
    buffer = io.StringIO()
    with plt.rc_context({**STYLE, "svg.hashsalt": salt}):  # stable ids: the same run, the same page
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: not allowed inline
    # Several plots share one page: prefix every id (and every reference to one) to keep them unique.
    svg = re.sub(r'(id="|url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{salt}-{m.group(2)}", svg)
    # Scale with the page instead of a fixed size in points.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', svg, count=1)
