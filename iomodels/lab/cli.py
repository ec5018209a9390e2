"""`iomodels lab [--quick|--full] [--models a,b] [--only x,y] [--out DIR]`: run the experiments,
write the report. Ctrl-C stops the running experiment, stops its servers, and writes the report
with what was measured so far (exit status 130)."""

from __future__ import annotations

import datetime
import os
import time

from iomodels.serving.config import ConfigError

DEFAULT_OUT = "lab-report"


def add_arguments(p) -> None:
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick",
                       help="short windows and a few counts: a few minutes on two cores (the default)")
    scale.add_argument("--full", dest="scale", action="store_const", const="full",
                       help="longer windows, larger counts, up to what the machine allows (much longer)")
    scale.add_argument("--tiny", dest="scale", action="store_const", const="tiny",
                       help="seconds per experiment: checks that the lab works, its numbers mean little")
    p.set_defaults(scale="quick")
    p.add_argument("--models", default=None, metavar="A,B,...",
                   help="measure only these models (default: every model that can run here)")
    p.add_argument("--only", default=None, metavar="X,Y,...",
                   help="run only these experiments (see --list; default: all)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where to write index.html, report.md and results.json (default: {DEFAULT_OUT}/)")
    p.add_argument("--list", action="store_true", help="list the experiments and the claims they test, then exit")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: judge and draw again, from the rows in DIR/results.json")


def _names(text: str | None, known: list[str], what: str, dashes: bool = False) -> list[str] | None:
    """The names in "a,b,c", each one of `known`; with `dashes`, deaf-server means deaf_server (the
    report's anchors and --list use dashes, the modules underscores)."""
    if text is None:
        return None
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    if dashes:
        chosen = [name.replace("-", "_") for name in chosen]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        shown = [name.replace("_", "-") for name in known] if dashes else known
        raise ConfigError(f"unknown {what} {', '.join(unknown) or repr(text)}; choose from: {', '.join(shown)}")
    return chosen


def main(args) -> int:
    from rich.console import Console

    from iomodels.serving import models
    from iomodels.lab import machine, report, runner

    console = Console(stderr=True)
    if args.list:
        for name in runner.EXPERIMENTS:
            module = runner.load(name)
            print(f"{name.replace('_', '-'):22} §{module.SECTION:4} {module.TITLE}: {module.CLAIM}")
        return 0
    if args.report_only:
        try:
            records, meta, described = report.load(args.out)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read {os.path.join(args.out, 'results.json')}: {exc}") from None
        for record in records:  # the same rules on the same measured rows
            if record.status != "not run":
                runner.judge(record)
        _finish(console, report.write(args.out, records, meta, described), records)
        return 0
    chosen_models = _names(args.models, models.names(), "model(s)")
    experiments = _names(args.only, list(runner.EXPERIMENTS), "experiment(s)", dashes=True) or list(runner.EXPERIMENTS)
    described = machine.describe()
    meta = {"scale": args.scale, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "models": chosen_models, "experiments": experiments, "interrupted": False, "seconds": None}
    started = time.monotonic()
    console.print(f"[bold]iomodels lab --{args.scale}[/bold]: {len(experiments)} experiments on "
                  f"{machine.summary(described)}; report in {args.out}/")

    def save_progress(records):
        meta["seconds"] = round(time.monotonic() - started, 1)
        report.write(args.out, records, meta, described, json_only=True)

    records, interrupted = runner.run(experiments, args.scale, chosen_models, console, on_record=save_progress)
    meta.update(interrupted=interrupted, seconds=round(time.monotonic() - started, 1))
    console.print("writing the report…")
    _finish(console, report.write(args.out, records, meta, described), records)
    return 130 if interrupted else 0


def _finish(console, paths: dict, records) -> None:
    from rich.table import Table

    from iomodels.lab.report import VERDICT_CLASS
    colours = {"holds": "green", "does-not-hold": "red", "inconclusive": "yellow", "not-measured": "bright_black"}
    table = Table(title="Claims", show_lines=False)
    for column in ("experiment", "§", "verdict"):
        table.add_column(column)
    for record in records:
        colour = colours[VERDICT_CLASS.get(record.verdict, "not-measured")]
        table.add_row(record.title, record.section, f"[{colour}]{record.verdict}[/{colour}]")
    console.print(table)
    console.print(f"report: {paths['html']} (also {paths['markdown']}, {paths['json']})")
