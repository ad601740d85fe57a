"""Eager PyTorch timed in a process of its own.

In the bench's own process, eager PyTorch's time depended on which graph runtimes that process had
loaded and run: the same medium click took 139 to 231 ms within an hour on a quiet machine. A user
runs eager PyTorch alone, so the bench does too. Each eager contender is a child process that
builds the model from the artifact, gets the image, its features and each prompt map over a pipe
and times its own runs; the parent keeps the turns (``runner._round_robin``) and waits on the pipe
without spinning.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from i2f_deploy.contract import EDGE_MAPS, IMAGE_EMBEDDINGS

EagerOutcome = tuple[int, list[int], list[int]]  # routed tokens, DPE box, DLU box


def _serve(connection: Connection, artifact_dir: Path, checkpoint: Path | None, routing: str, threads: int,
           image: np.ndarray, features: dict[str, np.ndarray]) -> None:
    """The child: answer each ("encode"|"decode", prompt map) with (ms, outcome) until "stop"."""
    import torch

    from i2f_deploy.reference import in_routing, reference_model
    from i2f_deploy.runtime import read_manifest

    torch.set_num_threads(threads)
    try:
        model = in_routing(reference_model(artifact_dir, read_manifest(artifact_dir), checkpoint), routing)
    except Exception as error:  # reported by the parent as one line
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    embeddings = torch.from_numpy(features[IMAGE_EMBEDDINGS])
    edge_maps = [torch.from_numpy(features[name]) for name in EDGE_MAPS]
    connection.send(("ready", None))
    while True:
        request, ref_label = connection.recv()
        if request == "stop":
            return
        outcome: EagerOutcome | None = None
        with torch.no_grad():
            start = time.perf_counter()
            if request == "encode":
                model.encode(torch.from_numpy(image))
            else:
                result = model.decode_detailed(embeddings, edge_maps, torch.from_numpy(ref_label))
                outcome = (result.routed_tokens.numel(), result.routing.box_values.tolist(),
                           result.dlu_box.as_tensor().tolist())
            elapsed_ms = (time.perf_counter() - start) * 1e3
        connection.send((elapsed_ms, outcome))


class EagerProcess:
    """The artifact's PyTorch model in ``routing``, run in a child process on ``threads`` threads."""

    def __init__(self, artifact_dir: Path, checkpoint: Path | None, routing: str, threads: int, image: np.ndarray,
                 features: dict[str, np.ndarray]) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this one's runtimes
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, daemon=True, name=f"eager PyTorch ({routing})",
                                        args=(child, artifact_dir, checkpoint, routing, threads, image, features))
        self._process.start()
        child.close()
        status, message = self._receive()
        if status != "ready":
            self.close()
            raise RuntimeError(f"eager PyTorch could not start: {message}")

    def _receive(self) -> tuple:
        try:
            return self._connection.recv()
        except EOFError:
            self._process.join(timeout=5)
            raise RuntimeError(f"the eager PyTorch process ended (exit code {self._process.exitcode})") from None

    def encode(self) -> float:
        """Milliseconds of one encoding of the image."""
        self._connection.send(("encode", None))
        elapsed_ms, _ = self._receive()
        return elapsed_ms

    def decode(self, ref_label: np.ndarray) -> tuple[float, EagerOutcome]:
        """Milliseconds of one click on ``ref_label`` and what it decided."""
        self._connection.send(("decode", ref_label))
        return self._receive()

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._connection.send(("stop", None))
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()
