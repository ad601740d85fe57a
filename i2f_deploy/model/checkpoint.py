"""Reading official Inter2Former checkpoints and loading them strictly into the model.

Accepted layouts: the mmengine file (``{"meta": ..., "state_dict": {...}}``) and a bare
state_dict. Keys are used as they are (no prefix is stripped); ``step`` is ignored; float16 and
bfloat16 tensors become float32. Any missing, unexpected or mis-shaped key is one error.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from i2f_deploy.errors import CheckpointError

IGNORED_KEYS = frozenset({"step"})
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format
PICKLE_PROTOCOL = b"\x80"  # the legacy format: a pickle, protocol 2 or later
UNSAFE_FLAG = "--allow-unsafe-pickle"
_LISTED = 8


def read_state_dict(path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, float32 where they were half precision.

    Loads with ``weights_only=True`` unless ``allow_unsafe_pickle``: a file that needs arbitrary
    unpickling is refused, because unpickling runs code from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with path.open("rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if not (head == ZIP_MAGIC or head[:1] == PICKLE_PROTOCOL):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except pickle.UnpicklingError as exc:
        if allow_unsafe_pickle:
            raise CheckpointError(f"cannot unpickle checkpoint {path}: {_first_line(exc)}") from None
        raise CheckpointError(
            f"checkpoint {path} needs full unpickling ({_first_line(exc) or 'unsupported object'}); "
            f"rerun with {UNSAFE_FLAG} only if you trust the file"
        ) from None
    except (AttributeError, ImportError) as exc:  # full unpickling: a class this Python does not have
        raise CheckpointError(f"cannot unpickle checkpoint {path}: it needs code that is not installed here "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
    except Exception as exc:  # any other failure of the deserialiser on a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    state = _extract_state_dict(obj, path)
    _check_finite(state, path)
    return state


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _check_finite(state: dict[str, Tensor], path: Path) -> None:
    """NaN or Inf weights would be exported as they are and give NaN masks: refuse them by name."""
    bad = [
        f"{key} ({int((~torch.isfinite(value)).sum())} values)"
        for key, value in state.items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise CheckpointError(f"checkpoint {path} has NaN or Inf in {len(bad)} tensor(s): {_listing(bad)}")


def _extract_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: 'state_dict' is a {type(state).__name__}, expected a dict")
    tensors: dict[str, Tensor] = {}
    not_tensors = []
    for key, value in state.items():
        if key in IGNORED_KEYS:
            continue
        if not isinstance(value, Tensor):
            not_tensors.append(f"{key} ({type(value).__name__})")
            continue
        tensors[key] = value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if not_tensors:
        raise CheckpointError(f"checkpoint {path}: entries that are not tensors: {_listing(not_tensors)}")
    if not tensors:
        raise CheckpointError(f"checkpoint {path} holds no tensors")
    return tensors


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" ... and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def check_compatible(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Raise one :class:`CheckpointError` naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = [f"{k} {list(v.shape)}" for k, v in expected.items() if k not in state]
    unexpected = [f"{k} {list(v.shape)}" for k, v in state.items() if k not in expected]
    mismatched = [
        f"{k} checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(names)} {kind}: {_listing(names)}"
        for kind, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched))
        if names
    ]
    if problems:
        raise CheckpointError("checkpoint does not fit the configured model: " + "; ".join(problems))


def load_weights(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Strictly load ``state`` into ``model`` after checking every key and shape."""
    check_compatible(model, state)
    model.load_state_dict(state, strict=True)
