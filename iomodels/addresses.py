"""Addresses: `HOST:PORT` parsing, the loopback test, and the one policy for loopback source addresses.

A TCP connection is (source address, source port, destination address, port), and the kernel picks
source ports from net.ipv4.ip_local_port_range (about 28,000 ports). Towards one server port, one
source address therefore runs out of ports near that number, counting the connections of the last
minute that still sit in TIME_WAIT on the side that closed first. The whole 127.0.0.0/8 block is
local on Linux, so a client that needs more connections spreads them over 127.0.0.1, 127.0.0.2, ...
(IPv6 has one loopback address, ::1: no spreading there). Every client of the project that opens
many connections — the load generator's idle and active connections, its connect-per-request mode,
the lab's crowds — takes its source address from `SourceAddresses`.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8099
# Share of the ephemeral port range one source address is asked to carry, leaving room for
# TIME_WAIT leftovers of earlier runs and for other programs talking to the same port.
PORT_SHARE = 0.75
# 127.0.0.1 .. 127.0.0.250: the addresses the policy may use.
LAST_SOURCE = 250
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or 'PORT' -> (host, port); argparse.ArgumentTypeError when it is neither."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, for example 127.0.0.1:{DEFAULT_PORT}, not {text!r}")
    return host.strip("[]") or DEFAULT_HOST, number


def format_address(host: str, port: int) -> str:
    """HOST:PORT as people write it (and parse_address reads it): [::1]:8099 for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address_family(host: str) -> socket.AddressFamily:
    """The socket family of an IP address: AF_INET6 for IPv6 ones, AF_INET otherwise."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ephemeral_ports() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return 28232  # Linux's default range, 32768-60999


class SourceAddresses:
    """Which loopback source address the i-th of `total` connections to one port binds to."""

    def __init__(self, host: str, total: int):
        self.family = address_family(host)
        self.per_address = max(1, int(ephemeral_ports() * PORT_SHARE))
        self.spread = self.family == socket.AF_INET and total > self.per_address
        self.addresses = -(-total // self.per_address) if self.spread else 1
        if self.addresses > LAST_SOURCE:
            raise ValueError(f"{total} connections would need {self.addresses} loopback source addresses")

    @classmethod
    def widest(cls, host: str) -> "SourceAddresses":
        """The plan for as many connections as the loopback source addresses can hold."""
        return cls(host, LAST_SOURCE * max(1, int(ephemeral_ports() * PORT_SHARE)))

    def address(self, index: int) -> str | None:
        """None: let the kernel choose (no spreading needed)."""
        return f"127.0.0.{1 + index // self.per_address}" if self.spread else None

    def describe(self) -> str | None:
        if not self.spread:
            return None
        return (f"connections spread over {self.addresses} loopback source addresses "
                f"(127.0.0.1-127.0.0.{self.addresses}): one source address holds about "
                f"{self.per_address} connections to one port (ip_local_port_range)")


def bind_source(sock: socket.socket, source: str | None) -> None:
    """Bind `sock` to a source address before connect(), or leave it to the kernel (None).

    IP_BIND_ADDRESS_NO_PORT lets bind() choose only the address and leave the port to connect(),
    which can then reuse a port towards a different destination.
    """
    if source is not None:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))


def source_address(number: int) -> str | None:
    """The `number`-th loopback source address (1 = let the kernel choose, as a client normally does)."""
    if not 1 <= number <= LAST_SOURCE:
        raise ValueError(f"loopback source addresses run from 1 to {LAST_SOURCE}, not {number}")
    return None if number == 1 else f"127.0.0.{number}"
