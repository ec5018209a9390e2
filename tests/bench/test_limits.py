"""Connection limits: source-address spreading, RLIMIT_NOFILE, port exhaustion, a saturated client."""

from __future__ import annotations

import asyncio
import errno
import resource

import pytest

from iomodels import addresses
from iomodels.bench import idle
from iomodels.bench.connection import Tally
from iomodels.bench.oneshot import OneShotRequests
from iomodels.bench.result import merge
from tests.faulty import FaultyServer


def test_connections_spread_over_loopback_sources_only_when_needed(monkeypatch):
    monkeypatch.setattr(addresses, "ephemeral_ports", lambda: 100)
    assert not idle.SourcePlan("127.0.0.1", 75).spread
    plan = idle.SourcePlan("127.0.0.1", 300)
    assert plan.spread and plan.addresses == 4
    assert [plan.address(i) for i in (0, 74, 75, 299)] == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.4"]
    assert "4 loopback source addresses" in plan.describe()
    assert not idle.SourcePlan("::1", 300).spread  # IPv6 has one loopback address


def test_a_connection_bound_to_another_loopback_source_reaches_the_server():
    async def peer_of_one_connection(port):
        loop = asyncio.get_running_loop()
        sock = await idle.connect(loop, ("127.0.0.1", port), idle.socket.AF_INET, "127.0.0.3", 10)
        with sock:
            return sock.getsockname()[0]

    with FaultyServer() as server:
        assert asyncio.run(peer_of_one_connection(server.port)) == "127.0.0.3"


def test_nofile_soft_limit_is_raised_and_a_too_low_hard_limit_is_named():
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = before[1]
    try:
        if hard != resource.RLIM_INFINITY:
            assert idle.raise_nofile(min(hard - idle.FD_MARGIN, before[0] + 10)) <= hard
            with pytest.raises(idle.LimitError, match="RLIMIT_NOFILE"):
                idle.raise_nofile(hard + 1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_port_exhaustion_is_counted_explained_and_moves_to_the_next_source():
    tally = Tally()
    requests = OneShotRequests(None, ("127.0.0.1", 9), idle.socket.AF_INET, tally, None)
    requests._connect_failed(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"))
    assert requests.exhausted == 1 and requests._source_address() == "127.0.0.2"
    assert tally.connect.count == 1 and "TIME_WAIT" in next(iter(tally.connect.by_reason))


def _report(cpu: float) -> dict:
    from iomodels.bench.histogram import LatencyHistogram
    return {"index": 0, "window_s": 1.0, "requests": 10, "warmup_requests": 1, "bytes": 640, "cpu": cpu,
            "system_cpu": cpu / 2,
            "histogram": LatencyHistogram().encode(), "mismatches": 0, "warmup_mismatches": 0,
            "protocol_errors": 0, "lost": 0, "idle_lost": 0,
            "connect_errors": 0, "lag_ns": [], "ports_exhausted": 0, "source_addresses": 1}


@pytest.mark.parametrize("cpu, warned", [(0.95, True), (0.5, False)])
def test_a_saturated_worker_is_called_out(cpu, warned):
    from iomodels.bench.payload import Size
    options = {"host": "127.0.0.1", "port": 1, "connections": 1, "idle": 0, "size": Size(64, 64), "pipeline": 1,
               "rate": None, "duration": 1.0, "warmup": 0.0, "connect_per_request": False}
    result = merge(options, [{"connect_errors": 0}], [_report(cpu)], 0.01, None, [])
    assert any("may measure the client" in w for w in result.warnings) is warned
    assert result.requests_per_s == 10 and result.bytes_per_s == 640


def test_port_exhaustion_towards_a_remote_target_keeps_the_kernel_s_source():
    # No socket is opened: _connect_failed only decides where the next connect would come from.
    tally = Tally()
    requests = OneShotRequests(None, ("10.1.2.3", 80), idle.socket.AF_INET, tally, None)
    requests._connect_failed(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"))
    assert requests.exhausted == 0 and requests._source_address() is None and tally.connect.count == 1


def test_a_remote_target_is_never_given_loopback_source_addresses():
    plan = idle.SourcePlan("10.1.2.3", 1_000_000)
    assert not plan.spread and plan.address(999_999) is None
