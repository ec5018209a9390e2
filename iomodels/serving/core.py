"""The uppercase-echo protocol, sans I/O.

An `EchoSession` is what one connection knows about the protocol, and nothing about sockets,
threads or event loops (the shape of h11's `Connection`: bytes in, bytes out, state you can ask).
Every model feeds it what `recv` returned and sends what it says is pending; the models differ only
in how they wait, never in what they say.

The protocol: each byte received is answered by `bytes.upper()` of it, in order. `upper()` works
byte by byte on ASCII letters only, so the reply does not depend on how TCP chunked the stream and
a byte such as 0xE9 comes back unchanged.

Flow control, the part a server gets wrong when it forgets that the peer may not read:
output waiting to be sent is bounded by water marks. Once more than `high_water` bytes are
pending, `reading_paused` becomes true and the model must stop reading from this peer (so a client
that sends and never reads cannot grow our memory); once sending brings it down to `low_water` or
below, reading resumes. The gap between the marks keeps a connection from flapping on every send.
"""

from __future__ import annotations

DEFAULT_HIGH_WATER = 256 * 1024
DEFAULT_LOW_WATER = 64 * 1024


class EchoSession:
    """Protocol state of one connection: pending output, end of input, back-pressure."""

    __slots__ = ("_pending", "high_water", "low_water", "reading_paused", "eof_received")

    def __init__(self, high_water: int = DEFAULT_HIGH_WATER, low_water: int = DEFAULT_LOW_WATER):
        if not 0 <= low_water <= high_water:
            raise ValueError(f"need 0 <= low_water ({low_water}) <= high_water ({high_water})")
        # bytes while a single reply waits (the common case: no copy), bytearray once replies pile up.
        self._pending: bytes | bytearray = b""
        self.high_water = high_water
        self.low_water = low_water
        self.reading_paused = False
        self.eof_received = False

    def receive_data(self, data: bytes) -> bytes | bytearray:
        """Take bytes the peer sent; return everything now waiting to be sent."""
        if self.eof_received:
            raise RuntimeError("data received after end of input")
        self.keep(data.upper())
        return self._pending

    def reply_to(self, data: bytes | bytearray) -> bytes | bytearray:
        """The reply to `data`, not queued: the short path of a model that sends it at once and
        hands back (`keep`) what did not go out, or whose transport keeps unsent output itself
        (an event loop's). Only while nothing is pending, or replies would overtake each other."""
        return data.upper()

    def keep(self, unsent: bytes | bytearray) -> None:
        """Queue output that could not be sent yet (the part of a `reply_to` answer the kernel
        did not take), behind whatever is pending."""
        if not self._pending:
            self._pending = unsent
        else:
            if type(self._pending) is bytes:
                self._pending = bytearray(self._pending)
            self._pending += unsent
        if len(self._pending) > self.high_water:
            self.reading_paused = True

    def receive_eof(self) -> None:
        """The peer closed its sending side: no more input will come."""
        self.eof_received = True

    def pending(self) -> bytes | bytearray:
        """The output not yet sent (empty when there is none)."""
        return self._pending

    def sent(self, count: int) -> None:
        """`count` bytes of `pending()` went out; forget them."""
        pending = self._pending
        if count > len(pending) or count < 0:
            raise ValueError(f"sent {count} bytes but only {len(pending)} were pending")
        if count == len(pending):
            self._pending = b""
        elif type(pending) is bytes:
            self._pending = bytearray(memoryview(pending)[count:])
        else:
            # Deleting from the front of a bytearray is amortised O(1) in CPython.
            del pending[:count]
        if self.reading_paused and len(self._pending) <= self.low_water:
            self.reading_paused = False

    @property
    def pending_size(self) -> int:
        return len(self._pending)

    @property
    def wants_read(self) -> bool:
        """Should the model read from this peer now?"""
        return not self.reading_paused and not self.eof_received

    @property
    def wants_write(self) -> bool:
        return bool(self._pending)

    @property
    def finished(self) -> bool:
        """The peer is done sending and every reply went out: close the connection."""
        return self.eof_received and not self._pending
