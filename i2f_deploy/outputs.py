"""Output paths checked before the work starts, so a long run never ends in a write error."""

from __future__ import annotations

import os
from pathlib import Path

from i2f_deploy.errors import I2FError


def _writable_dir(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)


def check_output_file(path: Path | None, option: str) -> None:
    """``path`` can be created or replaced: its directory exists and is writable."""
    if path is None:
        return
    if path.is_dir():
        raise I2FError(f"{option} {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise I2FError(f"{option} {path}: directory {path.parent} does not exist")
    if not _writable_dir(path.parent) or (path.exists() and not os.access(path, os.W_OK)):
        raise I2FError(f"{option} {path}: not writable here (permissions or a read-only file system)")


def check_output_dir(path: Path, option: str) -> None:
    """``path`` can be created (with its missing parents) or filled: the nearest existing
    directory on its way is writable."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise I2FError(f"{option} {path}: {existing} is a file, not a directory")
    if not _writable_dir(existing):
        raise I2FError(f"{option} {path}: {existing} is not writable (permissions or a read-only file system)")


def check_artifact_dir(out: Path, force: bool) -> None:
    """``out`` can receive an export: new, empty, or (with ``force``) an earlier artifact directory."""
    if out.exists() and not out.is_dir():
        raise I2FError(f"--out {out} exists and is not a directory")
    check_output_dir(out.parent, "--out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise I2FError(f"--out {out} is not empty; pass --force to overwrite it")
        if not (out / "manifest.json").is_file():
            raise I2FError(f"--force replaces only artifact directories (with a manifest.json); {out} is not one")
