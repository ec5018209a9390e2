"""The lab: every claim of the tutorial as an experiment, measured here, judged from the numbers.

`runner` lists the experiments (one module each) and runs them; `servers` and `clients` are the two
ends of every experiment; `measuring` holds what several share (a server at rest, under the bench's
load, sweeps with repeats); `verdicts` turns each experiment's declared RULE and its repeated figures
into holds / does not hold / inconclusive; `pool_callers` runs ConnectionPool's callers in a process
of their own; `report` writes index.html (plots from `plotting`), report.md and results.json; tools/browser.py
checks the page in headless Chromium and takes screenshots; `cli` is `iomodels lab`.
"""
