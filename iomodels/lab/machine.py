"""The machine a lab run measured: numbers only mean something next to it."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource

import psutil

PACKAGES = ("iomodels", "psutil", "uvloop", "uring-api", "hdrhistogram", "matplotlib", "prometheus-client", "rich")


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "open_files_limit": f"{soft} (hard {hard})",
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def summary(machine: dict) -> str:
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['kernel']}, "
            f"{machine['python']}")
