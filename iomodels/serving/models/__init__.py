"""The registry of I/O models: each module here is one model, found by its `MODEL` description.

A model module exports:
- `MODEL = ModelInfo(...)`: its name on the command line, family, what it waits in, its cost;
- `serve(listener, config, stats, stop, new_session)`: serve until `stop` is requested and connections
  drained, with a session from `new_session()` for each connection;
- optionally `unavailable_reason() -> str | None`: why it cannot run on this machine, if so.
The module's docstring is its essay, printed by `iomodels explain NAME`.
Modules whose names start with `_` are helpers shared by several models, not models.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from types import ModuleType

from iomodels.serving.config import ConfigError


# What a model's loop is built on, and so which shared helper serves it.
KINDS = ("blocking", "readiness", "event loop", "completion")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model is, and what it can do: tests and the lab choose models by these flags."""
    kind: str  # one of KINDS
    name: str
    family: str
    section: str  # tutorial section, e.g. "1.3"
    waits_in: str
    cost: str
    # Can run as several processes sharing the port (SO_REUSEPORT, `--workers N`).
    multi_worker: bool = False
    # Can serve two clients at once (the iterative `blocking` server cannot, by design).
    concurrent: bool = True
    # The options (ServerConfig fields) this model reads among those not every model reads
    # (TUNABLE below is their union): `iomodels serve` warns about the others when given.
    reads: tuple[str, ...] = ("recv_size",)
    # serve() can run in a thread of another program (a test hands it a session in-process); not
    # forking (it forks its caller) nor sigio (its signals go to the whole process).
    runs_in_thread: bool = True
    # The sets of flags it runs in, each a variant to test (io_uring: its two receive modes).
    variants: tuple[tuple[str, ...], ...] = ((),)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model {self.name}: kind must be one of {KINDS}, not {self.kind!r}")


# The order of `iomodels models`: the tutorial's order, from blocking to asynchronous I/O.
ORDER = ("blocking", "threaded", "forking", "threadpool", "nonblocking", "select", "poll",
         "epoll", "epoll-et", "sigio", "asyncio", "uvloop", "io_uring")


def _discover() -> dict[str, ModuleType]:
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found[module.MODEL.name] = module
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda item: (rank.get(item[0], len(ORDER)), item[0])))


_modules: dict[str, ModuleType] | None = None


def _registry() -> dict[str, ModuleType]:
    global _modules
    if _modules is None:
        _modules = _discover()
    return _modules


def names() -> list[str]:
    return list(_registry())


def info(name: str) -> ModelInfo:
    return load(name).MODEL


def load(name: str) -> ModuleType:
    try:
        return _registry()[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(names())}") from None


def unavailable_reason(name: str) -> str | None:
    check = getattr(load(name), "unavailable_reason", None)
    return check() if check else None


def tunable() -> set[str]:
    """The options that only some models read (the union of every model's `reads`)."""
    return {option for name in names() for option in info(name).reads}


def ignored_options(name: str, given) -> list[str]:
    """Which of the options `given` (ServerConfig field names) model `name` does not read."""
    reads = set(info(name).reads)
    return sorted(option for option in given if option in tunable() and option not in reads)


def readers(option: str) -> str:
    """Who reads `option`, in words: 'threadpool', or 'every model but uvloop'."""
    reading = [name for name in names() if option in info(name).reads]
    if len(reading) > len(names()) / 2:
        return "every model but " + ", ".join(name for name in names() if name not in reading)
    return ", ".join(reading)


def essay(name: str) -> str:
    return (load(name).__doc__ or "").strip()
