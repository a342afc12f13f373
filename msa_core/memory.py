"""Memory bounds of a run: parsing "4GB", a default from the machine's free memory, block sizing.

``max_memory`` bounds the estimator's own working arrays (accumulators, blocks of samples, chain
values); the process baseline (interpreter, torch, the model and its activations) comes on top.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "parse_memory",
    "available_memory",
    "default_max_memory",
    "resolve_max_memory",
    "format_bytes",
    "DEFAULT_FRACTION",
]

DEFAULT_FRACTION = 0.5
"""Without ``max_memory``, a run may use this fraction of the memory available when it starts."""

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(value: int | float | str) -> int:
    """Bytes from an int, or a string such as "4GB", "4G", "200 MB", "1.5GiB", "512k" (binary units).

    Raises ValueError for anything else (or a bound below 1 MB).
    """
    if isinstance(value, bool):
        raise ValueError(f"max_memory must be bytes or a size such as '4GB'; got {value!r}")
    if isinstance(value, (int, float)):
        size = int(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(?:i?b)?\s*", value.lower())
        if match is None:
            raise ValueError(f"max_memory {value!r} is not a size such as '4GB', '200MB' or a number of bytes")
        size = int(float(match.group(1)) * _UNITS[match.group(2)])
    else:
        raise ValueError(f"max_memory must be bytes or a size such as '4GB'; got {type(value).__name__}")
    if size < 2**20:
        raise ValueError(f"max_memory must be at least 1 MB; got {size} bytes")
    return size


def available_memory() -> int:
    """Bytes of memory available now: ``MemAvailable`` of /proc/meminfo, else physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def default_max_memory() -> int:
    """The bound without an explicit one: ``$MSA_MAX_MEMORY`` if set, else half the available memory."""
    env = os.environ.get("MSA_MAX_MEMORY")
    if env:
        return parse_memory(env)
    return max(2**28, int(available_memory() * DEFAULT_FRACTION))


def resolve_max_memory(value: int | float | str | None) -> int:
    """``value`` in bytes, or :func:`default_max_memory` for None."""
    return default_max_memory() if value is None else parse_memory(value)


def format_bytes(size: float) -> str:
    """A short human size: "3.2 GB" (binary units)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TB"
