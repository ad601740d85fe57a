"""The PyTorch model an artifact was exported from: what validate compares the graphs with and
what bench times as the eager baseline."""

from __future__ import annotations

from pathlib import Path

from i2f_deploy.config import config_from_dict
from i2f_deploy.contract import Manifest, sha256
from i2f_deploy.errors import I2FError
from i2f_deploy.model.inter2former import Inter2Former, build_model, random_model


def check_weights(artifact_dir: Path, manifest: Manifest, checkpoint: Path | None) -> None:
    """Refuse, before any work, a checkpoint that is not the one the export was made from (or a
    missing one for a checkpoint export, or one given for a random-weights export)."""
    weights = manifest.weights
    if checkpoint is None:
        if weights.source != "random":
            raise I2FError(f"{artifact_dir} was exported from a checkpoint: pass --checkpoint")
        return
    if weights.source == "random":
        raise I2FError(f"{artifact_dir} was exported with random weights (seed {weights.seed}), "
                       f"not from {checkpoint}: drop --checkpoint")
    if not Path(checkpoint).is_file():
        raise I2FError(f"checkpoint not found: {checkpoint}")
    expected = weights.sha256
    if expected and sha256(Path(checkpoint)) != expected:
        raise I2FError(f"checkpoint {checkpoint} is not the one {artifact_dir} was exported from (sha256 differs)")


def reference_model(artifact_dir: Path, manifest: Manifest, checkpoint: Path | None) -> Inter2Former:
    """The exported weights in the PyTorch model, with the edge-detector arithmetic the encoder
    graph implements, in the export's routing."""
    check_weights(artifact_dir, manifest, checkpoint)
    config = config_from_dict(manifest.config)
    if checkpoint is None:
        model = random_model(config, manifest.weights.seed or 0, manifest.routing)
    else:
        model = build_model(config, checkpoint, routing=manifest.routing)
    model.edge_detector.use_numerics(manifest.edge_numerics)
    return model


def in_routing(model: Inter2Former, routing: str) -> Inter2Former:
    """``model`` itself, or a twin with its weights and numerics in the other routing (bench
    times the dynamic graphs against the dense model too)."""
    if routing == model.routing:
        return model
    twin = Inter2Former(model.config, routing)
    twin.load_state_dict(model.state_dict())
    twin.edge_detector.use_numerics(model.edge_detector.numerics)
    twin.refresh_constants()
    return twin
