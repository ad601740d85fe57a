"""Each backend's own options (``runtime.options``) reach its runner, and options of one backend
are refused for the other."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from i2f_deploy import runtime
from i2f_deploy.errors import I2FError
from i2f_deploy.runtime.options import OpenVinoOptions, OrtOptions

pytestmark = pytest.mark.graph


@pytest.mark.parametrize("spinning", [True, False])
def test_onnxruntime_options_set_the_session(tiny_artifacts: Path, spinning: bool) -> None:
    runner = runtime.load(tiny_artifacts, "encoder", "onnxruntime", 1, options=OrtOptions(spinning=spinning), verify=False)
    entry = runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert entry == ("1" if spinning else "0")


def test_openvino_options_set_the_compiled_model(tiny_artifacts: Path) -> None:
    options = OpenVinoOptions(performance_hint="throughput", streams=2)
    runner = runtime.load(tiny_artifacts, "encoder", "openvino", 2, options=options, verify=False)  # a stream per thread at most
    assert str(runner.compiled.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")
    assert runner.compiled.get_property("NUM_STREAMS") == 2


def test_options_of_the_other_backend_are_refused(tiny_artifacts: Path) -> None:
    with pytest.raises(I2FError, match="options for openvino given to backend onnxruntime"):
        runtime.load(tiny_artifacts, "encoder", "onnxruntime", options=OpenVinoOptions(), verify=False)
    with pytest.raises(I2FError, match="options for onnxruntime given to backend openvino"):
        runtime.load(tiny_artifacts, "decoder", "openvino", options=OrtOptions(), verify=False)


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="performance_hint"):
        OpenVinoOptions(performance_hint="fastest")
    with pytest.raises(ValidationError, match="streams"):
        OpenVinoOptions(streams=0)
    with pytest.raises(ValidationError, match="spinnning"):
        OrtOptions(spinnning=False)


def test_interactive_use_loads_onnxruntime_without_spin_waiting(tiny_artifacts: Path) -> None:
    """The session and the server run ``interactive_options``: no spin-wait on ONNX Runtime."""
    from i2f_deploy.runtime.session import InteractiveSession
    from i2f_deploy.serve.config import ServeConfig
    from i2f_deploy.serve.core import Engine

    def spinning(runner) -> set[str]:
        """The setting of each ONNX Runtime session the runner holds (a segmented decoder has several)."""
        graph = getattr(runner, "graph", runner)  # the decoder's graph runner
        sessions = [session for _, session, _ in graph.steps if session is not None] if hasattr(graph, "steps") else [graph.session]
        return {s.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") for s in sessions}

    session = InteractiveSession.from_artifact(tiny_artifacts, "onnxruntime", 1, verify=False)
    assert spinning(session._encoder) == spinning(session._decoder) == {"0"}
    engine = Engine(ServeConfig(artifact_dir=tiny_artifacts, threads=1))
    try:
        assert spinning(engine._encoder) == spinning(engine._decoder) == {"0"}
    finally:
        engine.close()
    assert runtime.load(tiny_artifacts, "encoder", "onnxruntime", 1, verify=False).session.get_session_options() \
        .get_session_config_entry("session.intra_op.allow_spinning") == "1"  # elsewhere the default stays
