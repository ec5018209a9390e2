"""A few active clients keep sending requests (the bench) while 0, then 1,000, then 10,000 other
connections are held open and silent (at `--full`, up to 100,000). What matters is what the idle
crowd costs the active clients and the server: does the model still answer, how fast, with how
much memory and how many threads? A thread or process per connection pays for every idle client;
a pool is full as soon as the idle clients outnumber its threads; `select` cannot watch descriptors
numbered 1024 or more; the event loops hold them all in one thread.

Up to 10,000 the lab holds the crowd itself and has each idle client answered once, so the server
really serves it. Beyond that no single process can hold them (20,000 descriptors per process
here): the load generator's worker processes hold them, from several 127.0.0.x source addresses,
and the event-loop models run with `--workers` (one process per core and more, SO_REUSEPORT), each
worker holding its share. Everything the lab reads about the server during the crowd, memory
(PSS) and threads, comes from /proc, from outside: a server busy with 10,000 threads answers
nothing slower than a question. Where a model fails, the row says at what count and why, in the
model's own terms, and larger counts are not tried; a count the model cannot reach by
construction (one process and its descriptor limit, memory extrapolated from the previous count)
is not tried either, with the reason. The blocking server is left out: it serves one client at a
time (see the deaf server)."""

from __future__ import annotations

import contextlib
import resource
import threading
import time

from iomodels.serving import models
from iomodels.lab import clients, plotting
from iomodels.lab.measuring import fmt, medians, memory_guard, plural, series
from iomodels.lab.servers import ServerFailed
from iomodels.lab.verdicts import Compare, Rule, from_rows, samples

TITLE = "More connections, not faster ones"
SECTION = "1.3"
CLAIM = ("The advantage of select/epoll is not that a single connection is handled faster, but that "
         "many more connections can be handled.")
# absorb: seconds the server gets to connect and answer the lab's idle crowd once.
SCALES = {"tiny": {"idle": (0, 20), "active": 2, "duration": 0.3, "warmup": 0.1, "absorb": 10},
          "quick": {"idle": (0, 1000, 10_000), "active": 4, "duration": 0.6, "warmup": 0.2, "absorb": 60},
          "full": {"idle": (0, 1000, 10_000, 30_000, 100_000), "active": 12, "duration": 3.0, "warmup": 1.0,
                   "absorb": 120}}
# The lab holds a crowd up to this size itself (one process, each idle client answered once);
# beyond it the load generator's workers hold the idle connections.
CROWD_MAX = 10_000
# The models built to hold many connections, which run with --workers beyond CROWD_MAX.
SCALABLE = ("epoll", "epoll-et", "uvloop", "asyncio", "io_uring")
WORKERS = 6
QUIET = 10.0  # seconds without a reply after which the idle crowd's pings are taken as answered
STORM_SHARE = 0.001  # connects that may time out in a crowd's arrival (see _one)
BACKLOG = 4096  # net.core.somaxconn's default: the deepest accept queue without privileges
FD_SPARE = 100  # descriptors a server needs besides its connections (listener, epoll, logs...)
# The active clients' median latency may grow this much with the idle crowd and still count as
# "still serving well". Latency, not throughput: on a shared machine requests/s follow the CPU
# share each run got, while the time one request takes is the server's own path.
SLOWER = 2.0
RULE = Rule((
    Compare("epoll: active clients' median latency, most idle ÷ none, run by run", "at_most", SLOWER),
    Compare("threaded: memory per idle connection", "more", "epoll: memory per idle connection", margin=1,
            unit=" KiB"),
    Compare("forking: memory per idle connection", "more", "epoll: memory per idle connection", margin=1,
            unit=" KiB"),
), words=f"with the most idle connections, epoll's active clients wait at most {SLOWER:g}× their median latency "
         "with none (run by run, beside a server with none), while a thread "
         "(threaded) or a process (forking) per connection costs at least 2× epoll's memory per idle connection")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    names = [name for name in ctx.models(record) if models.info(name).concurrent]
    if "blocking" in ctx.models(record, ["blocking"]):
        record.skipped.append({"model": "blocking", "reason": "serves one client at a time (see the deaf server)"})
    per_process = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ctx.begin(TITLE, len(names) * len(p["idle"]) + 2 * ctx.repeats - 1)
    for model in names:
        failed_at, previous = None, None
        for idle in p["idle"]:
            ctx.step(f"{TITLE}: {model}, {idle:,} idle")
            if failed_at is not None:
                continue
            reason = _cannot_reach(model, idle + p["active"], per_process) or memory_guard(previous, idle + p["active"])
            if reason:
                record.rows.append({"model": model, "idle": idle, "ok": False, "tried": False, "reason": reason})
                failed_at = idle
                continue
            deciding = model == "epoll" and idle == max(p["idle"])
            for row in _one(ctx, model, idle, p, ctx.repeats if deciding else 1, baseline=deciding):
                record.rows.append(row)
            previous = {"connections": idle + p["active"], "memory_mib": row.get("memory_mib", 0)}
            if not row["ok"]:
                failed_at = idle


def _cannot_reach(model: str, connections: int, per_process: int) -> str | None:
    """Why `model` cannot hold `connections` here by construction, or None."""
    if model in SCALABLE or model == "forking" or connections + FD_SPARE <= per_process:
        return None  # forking: one process per connection, memory_guard and pid_max decide
    return (f"{model} serves every connection in one process, and one process may hold at most "
            f"{per_process:,} descriptors here (RLIMIT_NOFILE)")


class _Peak:
    """Samples the server's process tree from /proc while a run lasts: the peak memory and threads."""

    def __init__(self, server, every: float = 0.5):
        self.server, self.every = server, every
        self.pss_bytes = self.threads = self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="lab-peak", daemon=True)

    def _sample(self) -> None:
        while True:
            try:
                now = self.server.figures()
            except Exception:  # the server is gone: the run says why
                return
            self.pss_bytes = max(self.pss_bytes, now.pss_bytes)
            self.threads, self.processes = max(self.threads, now.threads), max(self.processes, now.processes)
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "_Peak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _one(ctx, model: str, idle: int, p: dict, runs: int, baseline: bool = False) -> list[dict]:
    """Hold `idle` silent connections, then load the server with `p["active"]` active ones, `runs`
    times while the crowd stays. With `baseline`, a second server of the same model and flags, with
    no idle connection, is loaded before each run: the two alternate, so a burst of load on a
    shared machine falls on both sides of the comparison (rows marked "baseline")."""
    crowd_held_by_lab = idle <= CROWD_MAX
    # A server meant for 100,000 connections gets a deep accept queue: the crowd arrives in a storm.
    flags = ("--workers", str(WORKERS), "--backlog", str(BACKLOG)) if not crowd_held_by_lab and model in SCALABLE else ()
    row = {"model": model, "idle": idle, "tried": True,
           "held_by": "lab" if crowd_held_by_lab else f"bench, {WORKERS} workers",
           "server_workers": WORKERS if flags else 1}
    started = time.monotonic()
    rows = []
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(ctx.server(model, *flags, nofile=nofile)) if baseline else None
        server = stack.enter_context(ctx.server(model, *flags, nofile=nofile))
        crowd = stack.enter_context(clients.Crowd(server.address, idle if crowd_held_by_lab else 0,
                                                  deadline=p["absorb"]))
        # 10,000 threads wake for their pings and queue for one interpreter lock: replies may pause
        # for seconds, so for threaded silence means "done" only after QUIET seconds.
        held = crowd.ping_all(timeout=max(1.0, p["absorb"] - (time.monotonic() - started)),
                              quiet=QUIET if model == "threaded" else 3.0)
        now = server.figures()
        row.update(idle_connected=crowd.opened, idle_answered=held if crowd_held_by_lab else idle,
                   absorb_s=round(time.monotonic() - started, 2), memory_mib=round(now.pss_bytes / 2**20, 1),
                   threads=now.threads, processes=now.processes)
        if crowd_held_by_lab and held < idle:
            return [_failed(server, {**row, "run": 0}, crowd.error, p["active"])]
        bench_args = dict(connections=p["active"], duration=p["duration"], warmup=p["warmup"])
        if not crowd_held_by_lab:
            bench_args.update(idle=idle, workers=WORKERS)
        for run in range(runs):
            ctx.step(f"{TITLE}: {model}, {idle:,} idle" + (f" (run {run + 1})" if run else ""), advance=bool(run))
            if base is not None:
                ctx.step(f"{TITLE}: {model}, no idle, beside it (run {run + 1})")
                rows.append(_baseline(base, model, run, p, WORKERS if flags else 1))
            measured = {**row, "run": run}
            with _Peak(server) as peak:
                try:
                    measured.update(_bench(server, **bench_args))
                except (OSError, RuntimeError) as exc:  # BenchError is a RuntimeError
                    measured["bench_error"] = str(exc)
            measured.update(memory_mib=round(max(now.pss_bytes, peak.pss_bytes) / 2**20, 1),
                            threads=max(now.threads, peak.threads), processes=max(now.processes, peak.processes))
            errors = measured.get("errors", 0)
            if not crowd_held_by_lab and "requests" in measured:
                measured["idle_answered"] = idle - measured.get("idle_lost", 0) - measured.get("connect_errors", 0)
                # A few connects timing out in a storm of 100,000 on a busy machine (the accept queue
                # overflowed for a moment) say nothing about holding them: noted, not held against it.
                if errors and errors == measured.get("connect_errors") and errors <= STORM_SHARE * idle:
                    measured["note"] = (f"{errors:,} of {idle:,} connects timed out while the crowd arrived "
                                        f"(the accept queue was full for a moment)")
                    errors, measured["idle_answered"] = 0, idle
            measured["ok"] = ("requests" in measured and errors == 0 and measured["requests"] > 0
                              and measured["idle_answered"] == idle)
            if not measured["ok"]:
                rows.append(_failed(server, measured, crowd.error, p["active"]))
                break
            rows.append(measured)
    return rows


def _baseline(server, model: str, run: int, p: dict, workers: int) -> dict:
    row = {"model": model, "idle": 0, "run": run, "baseline": True, "tried": True, "server_workers": workers}
    row.update(_bench(server, connections=p["active"], duration=p["duration"], warmup=p["warmup"],
                      **({"workers": workers} if workers > 1 else {})))
    row["ok"] = row["errors"] == 0 and row["requests"] > 0
    return row


def _bench(server, **bench_args) -> dict:
    """The bench's own figures: no question to the server (its CPU comes from /proc, by the bench)."""
    from iomodels import bench  # imported late: the lab runs without it

    result = bench.run(server.host, server.port, size=64, server_pid=server.pid, **bench_args)
    row = {"requests": result.requests, "requests_per_s": result.requests_per_s,
           **{f"{key}_us": value for key, value in result.latency_us.items()},
           "errors": result.errors, "client_cpu": result.client_cpu, "server_cpu": result.server_cpu,
           "server_cpu_per_request_us": result.server_cpu_per_request_us}
    if result.errors:
        row.update(connect_errors=result.connect_errors, lost=result.lost, idle_lost=result.idle_lost)
        if result.warnings:
            row["bench_warnings"] = "; ".join(result.warnings)
    return row


def _failed(server, row: dict, connect_error: str, active: int) -> dict:
    """Mark the row failed, with the reason in the model's terms (its counters read with a long,
    bounded wait: a server with thousands of threads answers slowly, and that is not its limit)."""
    row["ok"] = False
    if not server.alive():
        row["reason"] = f"the server exited: {server.last_error() or 'no message'}"
        return row
    try:
        counters = server.counters(timeout=60.0)
    except (ServerFailed, OSError):
        counters = {}
    row["reason"] = _why(row, counters, connect_error, active)
    return row


def _why(row: dict, counters: dict, connect_error: str, active: int) -> str:
    idle, held = row["idle"], row.get("idle_answered", 0)
    if counters.get("rejected_fd_too_high"):
        return (f"refused {counters['rejected_fd_too_high']:,} connections whose descriptor was ≥ 1024 "
                f"(select's FD_SETSIZE)")
    if counters.get("accept_errors"):
        return f"accept() failed {counters['accept_errors']:,} times (out of descriptors or memory)"
    if counters.get("internal_errors") and row["model"] in ("threaded", "forking"):
        return (f"could not start a {'thread' if row['model'] == 'threaded' else 'process'} for every connection "
                f"({counters['internal_errors']:,} refused: threads-max, pid_max or memory)")
    if connect_error:
        return f"only {row.get('idle_connected', 0):,} of {idle:,} idle clients could connect: {connect_error}"
    threads = plural(row.get("threads") or 0, "thread")
    if held < idle and row["model"] == "threadpool":
        return (f"each of its worker threads is held by one of the first {held:,} idle clients (the pool's size); "
                f"the other {idle - held:,} wait in the accept queue, unanswered")
    if held < idle:
        why = (f"answered only {held:,} of {idle:,} idle clients in {row.get('absorb_s', 0):.0f} s "
               f"(it had {threads}")
        if row["model"] == "threaded":
            return why + ", which take turns on one interpreter lock to answer)"
        return why + ")"
    if row.get("bench_error"):
        return f"the active clients could not run: {row['bench_error']}"
    if not row.get("requests"):
        return f"the {active} active clients got no reply while {idle:,} idle ones were held ({threads})"
    why = (f"{row['errors']:,} errors: {row.get('connect_errors', 0):,} failed connects, "
           f"{row.get('lost', 0):,} lost requests, {row.get('idle_lost', 0):,} idle connections dropped")
    return why + (f" ({row['bench_warnings']})" if row.get("bench_warnings") else "")


def _per_connection(record, model: str):
    """KiB of server memory per idle connection, at the largest count the model held."""
    rows = {row["idle"]: row for row in record.rows_for(model=model) if row.get("ok") and not row.get("baseline")}
    base, top = rows.get(0), max((idle for idle in rows if idle), default=None)
    if base is None or top is None:
        return None
    return (rows[top]["memory_mib"] - base["memory_mib"]) * 1024 / top


def judge(record):
    top = max((row["idle"] for row in record.rows_for(model="epoll") if row.get("ok")), default=0)
    # Each run with the crowd is paired with the run beside it without one (they alternated):
    # their ratio cancels whatever load the shared machine had at that moment.
    beside = {row["run"]: row for row in record.rows_for(model="epoll", idle=0) if row.get("baseline")}
    crowded = {row["run"]: row for row in record.rows_for(model="epoll", idle=top) if row.get("ok")} if top else {}
    slower = [crowded[run]["p50_us"] / beside[run]["p50_us"]
              for run in crowded if run in beside and beside[run].get("p50_us")]
    figures = {"epoll: active clients' median latency, most idle ÷ none, run by run": samples(slower) if slower else None}
    for name in ("threaded", "forking", "epoll"):
        per = _per_connection(record, name)
        figures[f"{name}: memory per idle connection"] = samples([per]) if per is not None else None
    verdict, text = RULE.decide(figures)
    if slower:
        for key, label, unit in (("p50_us", "median latency", " µs"), ("requests_per_s", "requests/s", "")):
            text += (f"; {label}: {from_rows(list(crowded.values()), key).text(unit)} with {fmt(top)} idle, "
                     f"{from_rows(list(beside.values()), key).text(unit)} beside it with none")
    failures = [f"{row['model']} stops at {fmt(row['idle'])} idle: {row['reason']}"
                for row in record.rows if not row.get("ok")]
    return verdict, f"the most idle epoll held: {fmt(top)}; {text}" + "".join(f"; {f}" for f in failures)


def plots(record):
    rows = medians([row for row in record.rows if row.get("ok") and not row.get("baseline")], "model", "idle")
    for row in rows:
        if row["idle"]:
            base = next((r for r in rows if r["model"] == row["model"] and r["idle"] == 0), None)
            if base:
                row["memory_per_idle_connection_kib"] = max(0.0, (row["memory_mib"] - base["memory_mib"]) * 1024 / row["idle"])
    per_connection = [row for row in rows if row.get("memory_per_idle_connection_kib")]
    return [
        plotting.small_multiples("Active clients' throughput while idle connections are held",
                                 series(rows, "requests_per_s", "idle"), "idle connections", "requests per second",
                                 logx=True),
        plotting.small_multiples("Active clients' 99th percentile latency", series(rows, "p99_us", "idle"),
                                 "idle connections", "µs (log)", logx=True, logy=True),
        plotting.small_multiples("Server memory per idle connection (PSS over all its processes)",
                                 series(per_connection, "memory_per_idle_connection_kib", "idle"),
                                 "idle connections", "KiB per connection (log)", logx=True, logy=True),
    ]
