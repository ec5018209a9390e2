"""What the bench sends, and what it must get back.

Every message is a window into one fixed pseudo-random pattern (the same idea, alphabet and prime
period as the project's C load generator, benchmarks/c/loadgen.c). The alphabet holds bytes
that a correct server must uppercase (a-z) and bytes it must leave alone, chosen to catch the usual
wrong servers: the ASCII neighbours of the letters ('@' '[' '`' '{', off-by-one range checks), digits
and punctuation, and two non-ASCII bytes (0xE9 'é' in Latin-1, 0xFF) that a server calling
str.upper() on decoded text, or a locale-aware toupper(), would change.

Messages and their expected replies are built once, as `bytes`, before the run: the hot path then
compares a reply with one `==` (a length check and a memcmp in C) and sends a prebuilt object, with
no per-message allocation or encoding.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
import random
from dataclasses import dataclass

from iomodels.bench.errors import UsageError

ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789 -_.,;:!?@[`{~ABCXYZ\xe9\xff"
PERIOD = 251  # prime, so offsets stepping by 13 visit every position of the pattern
MAX_SIZE = 16 << 20
# Bytes of prebuilt messages per worker (their expected replies take as much again).
TABLE_BUDGET = 16 << 20
MAX_RANGE_DRAWS = 1024


class SizeError(UsageError):
    """A --size the user gave that cannot work."""


@dataclass(frozen=True)
class Size:
    """A message size: fixed (`low == high`) or drawn uniformly from [low, high] per message."""

    low: int
    high: int

    @classmethod
    def parse(cls, value: int | str | tuple[int, int] | list[int] | Size) -> Size:
        """64, '64', '64-4096', (64, 4096) -> Size; SizeError with one clear line otherwise."""
        if isinstance(value, Size):
            return value
        if isinstance(value, str):
            low, sep, high = value.strip().partition("-")
            try:
                pair = (int(low), int(high) if sep else int(low))
            except ValueError:
                raise SizeError(f"--size must be BYTES or LOW-HIGH (e.g. 64 or 64-4096), not {value!r}") from None
        elif isinstance(value, int):
            pair = (value, value)
        else:
            pair = tuple(value)
            if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
                raise SizeError(f"size must be an int or a (low, high) pair of ints, not {value!r}")
        low, high = pair
        if not 1 <= low <= high <= MAX_SIZE:
            raise SizeError(f"--size must be from 1 to {MAX_SIZE} bytes, low <= high, not {low}-{high}")
        return cls(low, high)

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def to_json(self) -> int | list[int]:
        return self.low if self.fixed else [self.low, self.high]

    def __str__(self) -> str:
        return str(self.low) if self.fixed else f"{self.low}-{self.high}"


def describe_byte(value: int) -> str:
    """0x41 -> "'A' (0x41)"; 0xE9 -> "'\\xe9' (0xe9)": for naming the first wrong byte of a reply."""
    return f"'{repr(bytes([value]))[2:-1]}' (0x{value:02x})"


def pattern(length: int) -> bytes:
    """`length` bytes repeating with period PERIOD, drawn from ALPHABET by a xorshift32."""
    x, chosen = 2463534242, bytearray()
    for _ in range(PERIOD):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        chosen.append(ALPHABET[x % len(ALPHABET)])
    whole, rest = divmod(length, PERIOD)
    return bytes(chosen * whole + chosen[:rest])


def uppercase(data: bytes) -> bytes:
    """The reply a correct server sends: ASCII uppercase, every other byte unchanged."""
    return data.upper()  # bytes.upper() is ASCII-only by definition, which is the protocol


class Messages:
    """The table of (message, expected reply) pairs a worker cycles through.

    A fixed size gets up to PERIOD distinct windows of the pattern; a range gets MAX_RANGE_DRAWS
    sizes drawn once from a seeded generator (so a run is reproducible), each at its own offset.
    The table stays under TABLE_BUDGET bytes, however large the messages.
    """

    def __init__(self, size: Size, seed: int = 0):
        self.size = size
        source = pattern(PERIOD + size.high)
        if size.fixed:
            count = max(1, min(PERIOD, TABLE_BUDGET // size.high))
            sizes = [size.high] * count
        else:
            count = max(1, min(MAX_RANGE_DRAWS, TABLE_BUDGET // size.high))
            rng = random.Random(seed)
            sizes = [rng.randint(size.low, size.high) for _ in range(count)]
        self.pairs = []
        for index, length in enumerate(sizes):
            offset = index * 13 % PERIOD
            message = source[offset:offset + length]
            self.pairs.append((message, uppercase(message)))

    def script(self, start: int):
        """An endless iterator of pairs for one connection; connections start at different places."""
        start %= len(self.pairs)
        return itertools.cycle(self.pairs[start:] + self.pairs[:start]).__next__


class Stream:
    """A worker's message table as one endless byte stream, so that a batch is one slice.

    Message i of the stream is table message i mod n; it starts at byte `offset(i)`. Each connection
    starts at its own message and keeps absolute message numbers and byte offsets into this stream,
    so whatever was sent, or is expected back, at any depth, is one contiguous window of `sent`
    or `expected`: a refill of k messages is one slice and one write(2), and the check of a
    receive is one `==` of what arrived against one slice of the expected bytes, however many
    replies (and parts of replies) it holds. The buffers are the table followed by its own start
    again (`reach` bytes of it), so that a window crossing the end of the table is still one
    slice; longer windows are joined from pieces.
    """

    def __init__(self, messages: Messages, reach: int):
        self.pairs = messages.pairs
        self.count = len(self.pairs)
        sent = b"".join(message for message, _ in self.pairs)
        expected = b"".join(reply for _, reply in self.pairs)
        self.period = len(sent)
        self.reach = min(self.period, max(reach, 1))
        self.sent = sent + sent[:self.reach]
        self.expected = expected + expected[:self.reach]
        self.fixed = messages.size.high if messages.size.fixed else 0
        self.longest = max(len(message) for message, _ in self.pairs)
        ends, total = [], 0
        for message, _ in self.pairs:
            total += len(message)
            ends.append(total)
        self.ends = ends
        self.starts = [0, *ends[:-1]]

    def offset(self, index: int) -> int:
        """Where message `index` starts."""
        if self.fixed:
            return index * self.fixed
        turns, at = divmod(index, self.count)
        return turns * self.period + self.starts[at]

    def completed(self, offset: int) -> int:
        """How many messages end at or before byte `offset`."""
        if self.fixed:
            return offset // self.fixed
        turns, at = divmod(offset, self.period)
        return turns * self.count + bisect_right(self.ends, at)

    def window(self, buffer: bytes, offset: int, length: int) -> bytes:
        """`length` bytes of the endless `buffer` (self.sent or self.expected) from `offset`."""
        at = offset % self.period
        if at + length <= self.period + self.reach:
            return buffer[at:at + length]
        pieces = []
        while length > 0:
            take = min(length, self.period - at)
            pieces.append(buffer[at:at + take])
            length -= take
            at = 0
        return b"".join(pieces)
