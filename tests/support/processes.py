"""Memory of a server process the tests started: resident now (psutil) and its peak."""

from __future__ import annotations

from pathlib import Path

import psutil

MIB = 1 << 20


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` now, in MiB."""
    return psutil.Process(pid).memory_info().rss / MIB


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of process ``pid`` since it started, in MiB (Linux's VmHWM:
    psutil reports no peak there, and a peak between two samples would be missed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"VmHWM not found for process {pid}")
