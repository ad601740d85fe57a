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
