"""Scenario 19: the stats file in a shared directory (/tmp is the README's own example).

The file used to be written through `PATH.tmp<PID>`, opened with plain `open(tmp, "w")`: anyone
who can write in PATH's directory could plant a symlink at that name (the PID is in `ps`) and have
the server truncate and overwrite the link's target at the next SIGUSR1 or at exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests import support
from tests.support import ALL_MODELS
from tests.reliability.helpers import read_stats


@pytest.mark.scenario(19, models=ALL_MODELS)  # start-up code every model shares
@pytest.mark.timeout(60)
def test_a_planted_symlink_at_the_temporary_name_is_never_followed(serve, tmp_path):
    """A symlink planted at the old temporary name `PATH.tmp<PID>`, pointing at a victim file.
    Pass: after SIGUSR1 and after exit the stats file is whole JSON and the victim is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    stats_file = tmp_path / "stats.json"
    server = serve("epoll", "--stats-file", str(stats_file))
    os.symlink(victim, f"{stats_file}.tmp{server.pid}")
    os.kill(server.pid, signal.SIGUSR1)
    assert support.wait_until(stats_file.exists, timeout=10)
    assert read_stats(stats_file)["model"] == "epoll"
    assert server.stop(signal.SIGTERM) == 0
    assert read_stats(stats_file)["pid"] == server.pid
    assert victim.read_text() == "precious"
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == sorted(["victim", "stats.json", f"stats.json.tmp{server.pid}"]), leftovers


@pytest.mark.scenario(19, models=ALL_MODELS)  # start-up code every model shares
@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_a_stats_path_that_cannot_be_written_is_refused_at_start_up(tmp_path, where):
    """--stats-file in a directory that does not exist, or naming a directory. Pass: exit status 2
    with one line on stderr, before the ready line (not at the first SIGUSR1 or at exit)."""
    path = tmp_path / "nowhere" / "stats.json" if where == "missing directory" else tmp_path
    result = subprocess.run([sys.executable, "-m", "iomodels", "serve", "--port", "0", "--stats-file",
                             str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert "listening on" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stats" in lines[0], result.stderr
