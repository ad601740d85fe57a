"""Per-image results on disk, one JSON line each, so a killed evaluation continues with --resume.

``OUT/run.json`` holds what the run measures (artifact, dataset, clicks, contenders...);
``OUT/images.jsonl`` one record per image, appended and flushed as each image finishes. A resumed
run must measure the same thing; a record cut short by the kill is dropped and run again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from i2f_deploy.errors import I2FError
from i2f_deploy.outputs import check_output_dir

__all__ = ["IMAGES_FILE", "RUN_FILE", "ResultStore"]

RUN_FILE = "run.json"
IMAGES_FILE = "images.jsonl"


class ResultStore:
    """The records of one run; the directory is created with the first record (a run refused
    or failing before any image leaves nothing behind)."""

    def __init__(self, out: Path, header: dict, resume: bool) -> None:
        if out.exists() and not out.is_dir():
            raise I2FError(f"--out {out} is a file; give a directory")
        check_output_dir(out, "--out")
        self.out, self.header = out, header
        self.done: dict[str, dict] = {}
        has_files = out.is_dir() and any(out.iterdir())
        if has_files and not resume:
            raise I2FError(f"--out {out} is not empty: pass --resume to continue that run, or give a new directory")
        if has_files:
            self._resume()

    def _resume(self) -> None:
        run_file, images_file = self.out / RUN_FILE, self.out / IMAGES_FILE
        if not run_file.is_file():
            raise I2FError(f"--resume: {self.out} holds no {RUN_FILE}; it is not an evaluate output directory")
        try:
            previous = json.loads(run_file.read_text())
        except json.JSONDecodeError as exc:
            raise I2FError(f"--resume: {run_file} is not valid JSON: {exc}") from None
        differs = sorted(key for key in self.header.keys() | previous.keys() if self.header.get(key) != previous.get(key))
        if differs:
            detail = "; ".join(f"{key}: was {previous.get(key)!r}, now {self.header.get(key)!r}" for key in differs)
            raise I2FError(f"--resume: this run measures something else than the one in {self.out} ({detail})")
        lines = images_file.read_text().splitlines(keepends=True) if images_file.is_file() else []
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut short by the kill: that image runs again
            if line.endswith("\n") and isinstance(record, dict) and "name" in record:
                self.done[record["name"]] = record
                kept.append(line)
        if len(kept) != len(lines):
            images_file.write_text("".join(kept))

    def add(self, record: dict) -> None:
        """Append ``record`` durably (flushed and synced: a kill loses at most the image running)."""
        if not (self.out / RUN_FILE).is_file():
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / RUN_FILE).write_text(json.dumps(self.header, indent=2) + "\n")
        with (self.out / IMAGES_FILE).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[record["name"]] = record
