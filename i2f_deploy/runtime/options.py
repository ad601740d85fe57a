"""What tunes a graph run on each backend, one object per backend (``runtime.load(options=...)``):
ONNX Runtime's intra-op spin-wait; OpenVINO's performance hint and streams. The choices every
backend shares (threads, precision, kernels) are ``load``'s own arguments."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveInt


class OrtOptions(BaseModel):
    """ONNX Runtime's session options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["onnxruntime"] = "onnxruntime"
    spinning: bool = True  # intra-op threads spin-wait between runs: lower latency, busier cores


class OpenVinoOptions(BaseModel):
    """OpenVINO's compile options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["openvino"] = "openvino"
    performance_hint: Literal["latency", "throughput"] = "latency"
    streams: PositiveInt | None = None  # None: from the hint


BackendOptions = OrtOptions | OpenVinoOptions


def interactive_options(backend: str) -> BackendOptions:
    """The options the interactive façades (``InteractiveSession.from_artifact``, the server's
    ``Engine``) load graphs with. ONNX Runtime's threads do not spin-wait there: a click's graph
    run is followed by the prompt map, the mask, its PNG and outlines on the same cores, which
    spinning threads would slow down (docs/performance.md, "The click as the user feels it")."""
    return OrtOptions(spinning=False) if backend == "onnxruntime" else OpenVinoOptions()
