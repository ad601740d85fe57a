"""The ``i2f-deploy`` command line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Callable, TypeVar

import typer

from i2f_deploy.errors import I2FError

app = typer.Typer(
    help="Export Inter2Former to ONNX, check it against PyTorch, benchmark it and run it on CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., object])
USAGE_ERROR = 2

ConfigOption = Annotated[
    str, typer.Option("--config", "-c", help="Shipped config name (e.g. inter2former-base-1024) or a TOML file.")
]
CheckpointOption = Annotated[
    Path, typer.Option("--checkpoint", help="Official Inter2Former checkpoint (.pth).", show_default=False)
]
UnsafePickleOption = Annotated[
    bool,
    typer.Option("--allow-unsafe-pickle", help="Load checkpoints that need full unpickling (runs code: trusted files only)."),
]


def one_line_errors(command: F) -> F:
    """Report user-fixable errors as one line on stderr and exit 2, not as a traceback."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except I2FError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(USAGE_ERROR) from None

    return wrapper  # type: ignore[return-value]


@app.command("inspect-checkpoint")
@one_line_errors
def inspect_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file to check.", show_default=False)],
    config: ConfigOption = "inter2former-base-1024",
    allow_unsafe_pickle: UnsafePickleOption = False,
) -> None:
    """Check that a checkpoint loads strictly into the configured model and summarise it."""
    from i2f_deploy.config import load_config
    from i2f_deploy.model.inter2former import build_model

    export_config = load_config(config)
    model = build_model(export_config, checkpoint, allow_unsafe_pickle)
    typer.echo(f"{checkpoint}: fits {export_config.name}")
    for name, part in model.named_children():
        count = sum(p.numel() for p in part.parameters())
        typer.echo(f"  {name:<14} {count / 1e6:8.2f} M parameters")


@app.command("configs")
def list_configs() -> None:
    """List the shipped export configurations."""
    from i2f_deploy.config import available_configs, load_config

    for name in available_configs():
        config = load_config(name)
        backbone = config.model.backbone
        typer.echo(f"{name:<26} target {config.target_size:>4}  backbone depth {backbone.depth}, width {backbone.embed_dim}")


def main() -> None:
    app(prog_name="i2f-deploy")


if __name__ == "__main__":
    sys.exit(main())
