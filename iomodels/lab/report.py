"""Writing a lab run out: index.html (one self-contained page), report.md and results.json.

The page has no scripts and fetches nothing: the styles are in the template, every plot is an
inline SVG drawn by matplotlib from the rows in results.json. So the page opens offline, and
`iomodels lab --report-only DIR` can redraw it from the JSON alone.
"""

from __future__ import annotations

import html
import json
import os
import re
import string
from importlib import resources

from iomodels.lab import machine as machine_info
from iomodels.lab import plotting, runner
from iomodels.lab.measuring import fmt
from iomodels.lab.runner import Record

VERDICT_CLASS = {runner.HOLDS: "holds", runner.FAILS: "does-not-hold", runner.INCONCLUSIVE: "inconclusive",
                 runner.UNKNOWN: "not-measured"}


def write(out_dir: str, records: list[Record], meta: dict, machine: dict, json_only: bool = False) -> dict[str, str]:
    """Write the three files (or only results.json, cheap enough after every experiment)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, name) for kind, name in
             (("json", "results.json"), ("markdown", "report.md"), ("html", "index.html"))}
    results = {"meta": meta, "machine": machine, "experiments": [record.to_dict() for record in records]}
    _atomic(paths["json"], json.dumps(results, indent=1, default=str))
    if json_only:
        return paths
    _atomic(paths["markdown"], markdown(records, meta, machine))
    _atomic(paths["html"], page(records, meta, machine))
    return paths


def load(out_dir: str) -> tuple[list[Record], dict, dict]:
    """Records, meta and machine back from a results.json."""
    with open(os.path.join(out_dir, "results.json")) as f:
        results = json.load(f)
    return [Record(**item) for item in results["experiments"]], results["meta"], results["machine"]


def _atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _anchor(record: Record) -> str:
    return record.name.replace("_", "-")


def _deciding(record: Record) -> str:
    if record.status == "not run":
        return "not run (the lab was interrupted before it)"
    if record.status == "failed" and not record.rows:
        last = record.error.strip().splitlines()[-1] if record.error else "unknown error"
        # The traceback's last line is "module.ExceptionName: message": the message is for people.
        return f"the experiment failed: {re.sub(r'^[A-Za-z_.]+(Error|Exception|Failed|Timeout)?: ', '', last)}"
    return record.deciding


def tally(records: list[Record]) -> dict[str, int]:
    counts = {runner.HOLDS: 0, runner.FAILS: 0, runner.INCONCLUSIVE: 0, runner.UNKNOWN: 0}
    for record in records:
        counts[record.verdict] = counts.get(record.verdict, 0) + 1
    return counts


# -- HTML --------------------------------------------------------------------------------------

def page(records: list[Record], meta: dict, machine: dict) -> str:
    template = string.Template(resources.files("iomodels.lab").joinpath("template.html").read_text())
    e = html.escape
    claims_rows = "\n".join(
        f'      <tr><td class="claim"><a href="#{_anchor(r)}">{e(r.title)}</a><q>{e(r.claim)}</q></td>'
        f"<td>{e(r.section)}</td><td>{_badge(r.verdict)}</td><td class=\"rule\">{e(r.rule)}</td>"
        f"<td class=\"numbers\">{e(_deciding(r))}</td></tr>"
        for r in records)
    counts = tally(records)
    tally_html = "".join(f'<span class="{VERDICT_CLASS[verdict]}">{count} {e(verdict)}</span>'
                         for verdict, count in counts.items() if count)
    machine_rows = "\n".join(f"    <dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in _machine_items(machine))
    return template.substitute(
        machine_summary=e(machine_info.summary(machine)), run_summary=e(_run_summary(meta)), tally=tally_html,
        claims_rows=claims_rows, sections="\n".join(_section(r) for r in records), machine_rows=machine_rows,
        scale_flag=e(f"--{meta.get('scale', 'quick')}"), generated=e(meta.get("started", "")))


def _badge(verdict: str) -> str:
    return f'<span class="verdict {VERDICT_CLASS.get(verdict, "not-measured")}">{html.escape(verdict)}</span>'


def _run_summary(meta: dict) -> str:
    text = f"Scale: {meta.get('scale')}; started {meta.get('started')}; took {fmt(meta.get('seconds'))} s."
    if meta.get("models"):
        text += f" Models chosen: {', '.join(meta['models'])}."
    if meta.get("interrupted"):
        text += " Interrupted with Ctrl-C: what was measured until then is below."
    return text


def _machine_items(machine: dict):
    for key, value in machine.items():
        label = key.replace("_", " ")
        if isinstance(value, dict):
            value = ", ".join(f"{name} {version}" for name, version in value.items())
        elif isinstance(value, list):
            value = " ".join(str(item) for item in value)
        yield label, str(value)


def _section(record: Record) -> str:
    e = html.escape
    parts = [f'<section id="{_anchor(record)}">',
             f'<h2>{e(record.title)}<span class="section">§{e(record.section)}</span></h2>',
             f"<blockquote>{e(record.claim)}</blockquote>",
             *([f'<p class="rule"><strong>Rule:</strong> {e(record.rule)}</p>'] if record.rule else []),
             f'<p class="deciding">{_badge(record.verdict)} {e(_deciding(record))}</p>',
             f'<p class="explain">{_code(e(" ".join(record.explanation.split())))}</p>']
    plots = _plots(record)
    if plots:
        parts.append('<div class="plots">' + "".join(f"<figure>{svg}</figure>" for svg in plots) + "</div>")
    for item in record.skipped:
        parts.append(f'<p class="note">Skipped {e(item["model"])}: {e(item["reason"])}</p>')
    for note in record.notes:
        parts.append(f'<p class="note">{e(note)}</p>')
    if record.rows:
        parts.append(f"<details><summary>Raw numbers ({len(record.rows)} rows, {fmt(record.seconds)} s)</summary>"
                     f'<div class="raw">{_html_table(record.rows)}</div></details>')
    if record.error:
        parts.append(f"<details><summary>Why it failed</summary><pre>{e(record.error)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def _code(escaped: str) -> str:
    """`name` in an (already escaped) explanation becomes <code>name</code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _plots(record: Record) -> list[str]:
    if not record.rows:
        return []
    try:
        figures = runner.load(record.name).plots(record)
    except Exception as exc:  # a plot must not cost the report: say so instead
        return [f'<p class="note">Plot unavailable: {html.escape(str(exc))} (a bug: please report it)</p>']
    return [plotting.to_svg(fig, f"{_anchor(record)}-{i}") for i, fig in enumerate(figures)]


def columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _html_table(rows: list[dict]) -> str:
    e = html.escape
    keys = columns(rows)
    head = "".join(f"<th>{e(key.replace('_', ' '))}</th>" for key in keys)
    body = []
    for row in rows:
        cells = []
        for key in keys:
            text = _cell(row.get(key))
            cells.append(f'<td class="text">{e(text)}</td>' if len(text) > 24 else f"<td>{e(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- Markdown ----------------------------------------------------------------------------------

def markdown(records: list[Record], meta: dict, machine: dict) -> str:
    counts = tally(records)
    lines = ["# iomodels lab report", "",
             f"Machine: {machine_info.summary(machine)}.", "", _run_summary(meta), "",
             "Verdicts: " + ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count) + ".", "",
             "| Claim | § | Verdict | Rule | The numbers that decided it |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| **{_md(r.title)}**: {_md(r.claim)} | {r.section} | {r.verdict} | {_md(r.rule)} "
                     f"| {_md(_deciding(r))} |")
    for r in records:
        lines += ["", f"## {r.title} (§{r.section})", "", f"> {r.claim}", "",
                  *([f"Rule: {r.rule}", ""] if r.rule else []),
                  f"**{r.verdict}**: {_deciding(r)}", "", " ".join(r.explanation.split())]
        lines += [f"\nSkipped {item['model']}: {item['reason']}" for item in r.skipped]
        lines += [f"\nNote: {note}" for note in r.notes]
        if r.rows:
            keys = columns(r.rows)
            lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_md(_cell(row.get(key))) for key in keys) + " |" for row in r.rows]
    lines += ["", "## The machine", ""]
    lines += [f"- {label}: {value}" for label, value in _machine_items(machine)]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return value if isinstance(value, str) else "" if value is None else fmt(value)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
