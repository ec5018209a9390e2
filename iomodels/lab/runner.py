"""The lab's runner: which experiments exist, at what scale they run, progress, and Ctrl-C.

An experiment is one module of this package with:
- `TITLE`, `SECTION` (of the tutorial), `CLAIM` (the tutorial's sentence it tests), a docstring that
  explains it in the report;
- `measure(ctx, record)`: appends what it measures to `record.rows` as it goes, so a Ctrl-C keeps
  whatever was measured;
- `RULE` (optional, iomodels/lab/verdicts.py): the claim's test, declared once as data, shown in
  words in the claims table;
- `judge(record) -> (verdict, deciding)`: the verdict from those rows (usually `RULE.decide` on the
  figures the rows give, each measured `ctx.repeats` times), never written by hand;
- `plots(record) -> list[Figure]`: matplotlib figures, drawn from the rows again when reporting.

Scales: `tiny` (the tests: seconds, no meaningful numbers), `quick` (`make lab`: a few minutes on
two cores), `full` (larger counts, longer windows). Each experiment keeps its own table of what a
scale means to it (`SCALES`), read through `ctx.params(SCALES)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import time
import traceback

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from iomodels.serving import models
from iomodels.lab.servers import LabServer
from iomodels.lab.verdicts import FAILS, HOLDS, INCONCLUSIVE, UNKNOWN

__all__ = ["EXPERIMENTS", "FAILS", "HOLDS", "INCONCLUSIVE", "UNKNOWN", "Context", "Record", "run", "judge"]

SCALES = ("tiny", "quick", "full")
# In the tutorial's order, so the claims table reads like its sections.
EXPERIMENTS = ("deaf_server", "thread_cost", "pool_limit", "thread_pool_creation", "connection_pool",
               "busy_polling", "select_wakeups", "few_connections", "many_connections", "async_io",
               "who_waits_where", "ticket_office")
# How many times each experiment measures the figures that decide its verdict, at each scale.
REPEATS = {"tiny": 2, "quick": 3, "full": 5}


@dataclasses.dataclass
class Record:
    """Everything one experiment measured, and what it concludes."""
    name: str
    title: str
    section: str
    claim: str
    explanation: str
    rule: str = ""  # the claim's test in words (the module's RULE)
    rows: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[dict] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    status: str = "not run"  # done | interrupted | failed | not run
    error: str = ""
    seconds: float = 0.0
    verdict: str = UNKNOWN
    deciding: str = ""

    def rows_for(self, **match) -> list[dict]:
        return [row for row in self.rows if all(row.get(key) == value for key, value in match.items())]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Context:
    """What an experiment gets: the scale, the chosen models, servers that are always stopped, progress."""

    def __init__(self, scale: str, chosen_models: list[str] | None, progress: Progress | None = None):
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
        self.scale = scale
        self.repeats = REPEATS[scale]
        self.chosen = chosen_models
        self._progress = progress
        self._task = None
        self._servers: list[LabServer] = []

    def params(self, table: dict) -> dict:
        return table[self.scale]

    def models(self, record: Record, wanted=None) -> list[str]:
        """The models to measure, among `wanted` (default: all registered) and those chosen with
        --models; a model that cannot run here is skipped with its reason in the record."""
        registered = models.names()
        wanted = registered if wanted is None else wanted
        usable = []
        for name in wanted:
            if self.chosen is not None and name not in self.chosen:
                continue
            reason = "not in this build" if name not in registered else models.unavailable_reason(name)
            if reason:
                if not any(s["model"] == name for s in record.skipped):
                    record.skipped.append({"model": name, "reason": reason})
                continue
            usable.append(name)
        return usable

    @contextlib.contextmanager
    def server(self, model: str, *flags: str, **kwargs):
        server = None
        try:  # a Ctrl-C landing between the start and the bookkeeping must not leak the server
            server = LabServer(model, *flags, **kwargs)
            self._servers.append(server)
            yield server
        finally:
            if server is not None:
                if server in self._servers:
                    self._servers.remove(server)
                server.stop(timeout=10, check=False)

    def stop_servers(self) -> None:
        for server in list(self._servers):
            server.stop(timeout=10, check=False)
        self._servers.clear()

    def begin(self, description: str, total: int) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=max(total, 1))

    def each(self, title: str, items: list, label=str):
        """Yield `items`, showing progress as "title: label(item)"."""
        self.begin(title, len(items))
        for item in items:
            self.step(f"{title}: {label(item)}")
            yield item

    def step(self, description: str | None = None, advance: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=advance,
                                  **({"description": description} if description else {}))


def load(name: str):
    return importlib.import_module(f"iomodels.lab.{name}")


def new_record(name: str) -> Record:
    module = load(name)
    rule = getattr(module, "RULE", None)
    return Record(name=name, title=module.TITLE, section=module.SECTION, claim=module.CLAIM,
                  explanation=(module.__doc__ or "").strip(), rule=rule.text() if rule else "")


def judge(record: Record) -> None:
    """Set the verdict from the rows; a partial record is judged on what it has, if it can be."""
    try:
        record.verdict, record.deciding = load(record.name).judge(record)
    except Exception as exc:  # a judge that cannot decide on partial rows: say so, keep going
        record.verdict, record.deciding = UNKNOWN, f"could not decide from the rows measured ({exc})"
    if record.status != "done" and record.verdict != UNKNOWN:
        record.deciding += f" (from a {record.status} run)"


def run(names=EXPERIMENTS, scale: str = "quick", chosen_models: list[str] | None = None,
        console: Console | None = None, on_record=None) -> tuple[list[Record], bool]:
    """Run the experiments in order; return their records and whether the user interrupted.

    A failing experiment is recorded (with its traceback) and the lab goes on; Ctrl-C stops the
    current experiment, stops its servers and returns what was measured so far.
    """
    console = console or Console(stderr=True)
    records = [new_record(name) for name in names]
    interrupted = False
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("lab", total=len(records))
        ctx = Context(scale, chosen_models, progress)
        for record in records:
            progress.update(overall, description=f"lab: {record.title}")
            ctx.begin(record.title, 1)
            started = time.monotonic()
            try:
                load(record.name).measure(ctx, record)
                record.status = "done"
            except KeyboardInterrupt:
                record.status = "interrupted"
                interrupted = True
            except Exception as exc:
                record.status = "failed"
                record.error = "".join(traceback.format_exception(exc)).strip()
                console.print(f"[red]{record.title}: failed: {type(exc).__name__}: {exc}[/red]")
            finally:
                ctx.stop_servers()
                record.seconds = round(time.monotonic() - started, 1)
            judge(record)
            progress.advance(overall)
            colour = {HOLDS: "green", FAILS: "red", INCONCLUSIVE: "yellow"}.get(record.verdict, "bright_black")
            console.print(f"{record.title}: [{colour}]{record.status if record.status != 'done' else record.verdict}"
                          f"[/{colour}] ({record.seconds:g} s)")
            if on_record:
                on_record(records)
            if interrupted:
                break
    return records, interrupted
