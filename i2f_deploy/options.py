"""Comma-separated command-line lists (``--backends onnxruntime,openvino``), parsed one way."""

from __future__ import annotations

from collections.abc import Sequence

from i2f_deploy.errors import I2FError


def comma_list(text: str, option: str, choices: Sequence[str] | None = None) -> list[str]:
    """The items of ``text`` in order, repeats dropped; each one of ``choices`` when given."""
    items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise I2FError(f"{option}: give at least one value")
    unknown = [item for item in items if choices is not None and item not in choices]
    if unknown:
        raise I2FError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(choices or ())}")
    return items


def positive_ints(text: str, option: str) -> list[int]:
    values = []
    for item in comma_list(text, option):
        if not item.isdigit() or int(item) <= 0:
            raise I2FError(f"{option}: {item!r} is not a positive integer")
        values.append(int(item))
    return values
