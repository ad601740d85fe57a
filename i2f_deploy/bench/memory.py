"""Peak resident memory of this process while a block runs, sampled from /proc/self/status."""

from __future__ import annotations

import threading
from pathlib import Path

STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def resident_mb() -> float:
    """Current VmRSS in MiB (0.0 where /proc is not available)."""
    return _status_mb("VmRSS")


def peak_resident_mb() -> float:
    """VmHWM in MiB: this process's peak since it started its program. Unlike ``ru_maxrss``,
    which survives ``exec``, it does not include the peak of the parent that spawned us."""
    return _status_mb("VmHWM")


class PeakSampler:
    """``with PeakSampler() as peak: ...`` then ``peak.mb``: the highest RSS seen every 2 ms."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mb = max(self.mb, resident_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self.mb = resident_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = max(self.mb, resident_mb())
