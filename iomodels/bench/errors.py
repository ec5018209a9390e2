"""What a user may ask of the bench (the bounds), and the two ways a request fails, one line each."""

MAX_DURATION = 3600.0  # seconds: every run stops by itself
MAX_WARMUP = 600.0


class UsageError(ValueError):
    """The request itself cannot work (bad address, bad size, non-loopback target): exit status 2."""


class BenchError(RuntimeError):
    """The run could not happen or could not be measured (refused, limits too low): exit status 1."""
