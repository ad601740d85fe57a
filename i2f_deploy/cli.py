"""The ``i2f-deploy`` command line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer

from i2f_deploy import __version__
from i2f_deploy.errors import I2FError
from i2f_deploy.loadtest import default as loadtest_default
from i2f_deploy.options import comma_list
from i2f_deploy.runtime.options import OpenVinoOptions, OrtOptions
from i2f_deploy.samples import sample_names
from i2f_deploy.serve.config import default as serve_default

app = typer.Typer(
    help="Export Inter2Former to ONNX, check it against PyTorch, benchmark it and run it on CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., object])
USAGE_ERROR = 2
INTERNAL_ERROR = 3
# modules of the optional extras (pyproject.toml), for a one-line hint when one is missing
EXTRAS = {"torch": "export", "onnx": "export", "onnxscript": "export", "onnxsim": "export", "skimage": "export",
          "matplotlib": "export", "nncf": "export", "openvino": "openvino", "ray": "ray", "fastapi": "serve", "uvicorn": "serve",
          "multipart": "serve", "httpx": "serve", "PIL": "serve", "psutil": "serve"}

ConfigOption = Annotated[
    str, typer.Option("--config", "-c", help="Shipped config name (e.g. inter2former-base-1024) or a TOML file.")
]
CheckpointOption = Annotated[
    Path, typer.Option("--checkpoint", help="Official Inter2Former checkpoint (.pth).", show_default=False)
]
ArtifactDirArgument = Annotated[
    Path, typer.Argument(metavar="ARTIFACT_DIR", help="Directory written by i2f-deploy export.", show_default=False)
]
Backend = Literal["onnxruntime", "openvino"]
# serve's options that are server settings (serve/config.py), by parameter name
SERVE_SETTINGS = {name: name for name in (
    "backend", "threads", "cache_mb", "max_upload_mb", "max_pixels", "graph_runs", "encoder_queue", "max_sessions",
    "max_clicks", "max_json_kb", "fetch_max_mb", "fetch_workers", "image_memory_mb", "label_studio_url",
    "label_studio_api_key", "token", "basic_auth_user", "basic_auth_pass")} | {
    "fetch_timeout": "fetch_timeout_s", "header_timeout": "header_timeout_s", "body_timeout": "body_timeout_s",
    "allow_url_prefix": "allow_url_prefixes", "cors_origin": "cors_origins", "allowed_host": "allowed_hosts"}
SERVE_LIST_OPTIONS = ("allow_url_prefix", "cors_origin", "allowed_host")  # comma lists, like every list option
UnsafePickleOption = Annotated[
    bool,
    typer.Option("--allow-unsafe-pickle", help="Load checkpoints that need full unpickling (runs code: trusted files only)."),
]


DATASET_KINDS = ("davis:PATH (img/, gt/, list/val.txt), hqseg44k:PATH (SAM-HQ's data/sam-hq: COIFT, HRSOD, ThinObject5K "
                 "test, DIS5K-VD) or folder:PATH (images/ and masks/ paired by file name)")
DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", metavar="KIND:PATH", show_default=False,
                 help=f"Images with object masks to check on, prompt states and click loops: {DATASET_KINDS}."),
]
LimitOption = Annotated[int | None, typer.Option(help="Only the first N images of the dataset.", show_default=False)]


class _State:
    debug = False  # --debug: let tracebacks through


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"i2f-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of any error.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _State.debug = debug


def one_line_errors(command: F) -> F:
    """Exit codes: 0 success, 1 a check that ran and failed, 2 a problem the user must fix (one
    ``error:`` line), 3 an internal error (one line; ``--debug`` shows its traceback)."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _State.debug:
                raise
            code, message = _describe(exc)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, I2FError):
        return USAGE_ERROR, str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name in EXTRAS:
        extra = EXTRAS[exc.name]
        return USAGE_ERROR, f"this command needs {exc.name}, which is not installed: pip install 'i2f-deploy[{extra}]'"
    if isinstance(exc, OSError) and exc.filename is not None:
        return USAGE_ERROR, f"{exc.filename}: {exc.strerror or exc}"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return INTERNAL_ERROR, f"internal error ({type(exc).__name__}: {first_line}); rerun with --debug for the traceback"


def _given(context: typer.Context, option: str) -> bool:
    """Whether ``option`` was given (not left at its default). By the source's name: typer
    carries a click of its own, whose ParameterSource is not click's."""
    source = context.get_parameter_source(option)
    return source is not None and source.name != "DEFAULT"


def report_console():
    """Where validate and bench print: tables as wide as the terminal (160 columns into a file or
    pipe), log lines without source locations."""
    from rich.console import Console

    return Console(log_path=False, width=None if sys.stdout.isatty() else 160)


@app.command("inspect-checkpoint")
@one_line_errors
def inspect_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file to check.", show_default=False)],
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


@app.command("export")
@one_line_errors
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact directory to create.", show_default=False)],
    config: ConfigOption = "inter2former-base-1024",
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Official Inter2Former checkpoint (.pth).", show_default=False)
    ] = None,
    random_weights: Annotated[
        bool, typer.Option("--random-weights", help="Use seeded random weights instead of a checkpoint (to try the tool).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of --random-weights.")] = 0,
    opset: Annotated[int, typer.Option(help="ONNX opset of the graphs (18: the one the custom ops are written at).")] = 18,
    routing: Annotated[
        Literal["dynamic", "dense"],
        typer.Option(help="dynamic: the model's routing in the graph; dense: every token on full attention (speed baseline)."),
    ] = "dynamic",
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxsim (kept only if outputs are unchanged).")] = True,
    openvino: Annotated[bool, typer.Option("--openvino", help="Also write OpenVINO IR of both graphs.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty --out.")] = False,
    precision: Annotated[
        Literal["f32", "bf16", "int8"],
        typer.Option(help="The encoder's precision: f32; bf16 (OpenVINO on CPUs with bf16, ONNX Runtime stays f32); "
                          "int8 (post-training quantization for both backends). The decoder stays f32. "
                          "Check the cost on your images with i2f-deploy validate."),
    ] = "f32",
    calibration_images: Annotated[
        str | None,
        typer.Option("--calibration-images", metavar="FILE,...", help="Comma-separated images to calibrate --precision int8 on (default: the built-in samples).", show_default=False),
    ] = None,
    allow_unsafe_pickle: UnsafePickleOption = False,
) -> None:
    """Export the encoder and the dynamic decoder to ONNX (and OpenVINO IR) with a manifest."""
    import time

    from i2f_deploy.config import load_config
    from i2f_deploy.outputs import check_artifact_dir

    if (checkpoint is None) == (not random_weights):
        raise I2FError("give exactly one of --checkpoint PATH or --random-weights")
    if checkpoint is not None and not checkpoint.is_file():
        raise I2FError(f"checkpoint not found: {checkpoint}")
    check_artifact_dir(out, force)  # before the exporter's imports (torch, onnx) take their seconds
    export_config = load_config(config)
    from i2f_deploy.export.exporter import ExportOptions, export_artifacts

    start = time.perf_counter()

    def progress(step: str) -> None:
        typer.echo(f"[{time.perf_counter() - start:6.1f}s] {step}", err=True)

    options = ExportOptions(opset=opset, routing=routing, simplify=simplify, openvino=openvino, force=force,
                            precision=precision, calibration_images=tuple(map(Path, comma_list(calibration_images, "--calibration-images")))
                            if calibration_images is not None else ())
    export_artifacts(export_config, out, options, progress, checkpoint, seed if random_weights else None, allow_unsafe_pickle)
    typer.echo(f"wrote {out} in {time.perf_counter() - start:.1f}s")


@app.command("validate")
@one_line_errors
def validate(
    artifact_dir: ArtifactDirArgument,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="The checkpoint the artifacts were exported from (not needed for --random-weights exports).", show_default=False)
    ] = None,
    backends: Annotated[str, typer.Option(help="Comma-separated, from: onnxruntime,openvino.")] = "onnxruntime,openvino",
    images: Annotated[
        str | None,
        typer.Option("--images", metavar="FILE,...", help="Comma-separated images to compare the graphs on, prompt state by prompt state (no click loops: they need an object mask). Default: the built-in samples, with click loops.", show_default=False),
    ] = None,
    tolerance: Annotated[
        str | None, typer.Option("--tolerance", metavar="NAME=VALUE,...", help="Override tolerances, e.g. logits=2e-3,image_embeddings=1e-3.", show_default=False)
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the JSON report here.")] = None,
    clicks: Annotated[int, typer.Option(help="Clicks per simulated interactive loop (official protocol: 20).")] = 20,
    seed: Annotated[
        int | None, typer.Option(help="Seed for ties between equally deep click candidates (default: first in row-major order).")
    ] = None,
    samples: Annotated[
        str | None, typer.Option("--sample", metavar="NAME,...", help=f"Comma-separated built-in samples to run on, from: {', '.join(sample_names())} (default: all).", show_default=False)
    ] = None,
    dataset: DatasetOption = None,
    limit: LimitOption = None,
) -> None:
    """Check the exported graphs against the PyTorch model on every backend; exit 1 on failure."""
    from i2f_deploy.validate.cli_support import ValidateRequest, run_validation

    request = ValidateRequest(artifact_dir, checkpoint, backends,
                              [Path(item) for item in comma_list(images, "--images")] if images is not None else [],
                              comma_list(tolerance, "--tolerance") if tolerance is not None else [], report, clicks, seed,
                              comma_list(samples, "--sample") if samples is not None else None, dataset, limit)
    passed = run_validation(request, report_console())
    if not passed:
        raise typer.Exit(1)


@app.command("evaluate")
@one_line_errors
def evaluate(
    artifact_dir: ArtifactDirArgument,
    dataset: Annotated[
        str,
        typer.Option("--dataset", metavar="KIND:PATH", show_default=False, help=f"The benchmark: {DATASET_KINDS}."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for per-image results (written as each image finishes), summary JSON/CSV and the plot.", show_default=False)],
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="The checkpoint the artifacts were exported from, for the PyTorch reference (not needed for --random-weights exports).", show_default=False)
    ] = None,
    backends: Annotated[str, typer.Option(metavar="BACKEND,...", help="Comma-separated graph contenders, from: onnxruntime,openvino.")] = "onnxruntime,openvino",
    precision: Annotated[str, typer.Option(metavar="PRECISION,...", help="Comma-separated OpenVINO inference precisions, from: f32,bf16,default; each is an openvino contender (non-f32 ones named openvino-<precision>). A bf16 or int8 export runs as exported.")] = "f32",
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Also run the PyTorch model the export was made from (needs torch) and report, per image, the first click where a graph contender's mask differs from it.")] = True,
    clicks: Annotated[int, typer.Option(help="Clicks per image (official protocol: 20).")] = 20,
    limit: LimitOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out: images already recorded there are not run again.")] = False,
    jobs: Annotated[int, typer.Option(help="Images evaluated in parallel, each job a process with its own runners.")] = 1,
    threads: Annotated[int | None, typer.Option(help="Inference threads in all, split evenly between the jobs (default: the CPUs available).", show_default=False)] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for ties between equally deep click candidates, drawn afresh per image and contender (default: first in row-major order).")
    ] = None,
    tolerance: Annotated[
        float | None, typer.Option(help="Mask IoU against the reference below which a click counts as differing (default: validate's, 0.999 for f32 graphs and 0.99 for reduced precision).", show_default=False)
    ] = None,
) -> None:
    """Run the paper's benchmark (NoC, NoF, mIoU per click, latency) on the exported graphs, next
    to the PyTorch reference, and write a table, JSON, CSV and a plot."""
    from i2f_deploy.evaluate.runner import EvaluateRequest, run_evaluation

    request = EvaluateRequest(artifact_dir, dataset, out, checkpoint, backends, precision, reference, clicks, limit,
                              resume, jobs, threads, seed, tolerance)
    run_evaluation(request, report_console())


@app.command("bench")
@one_line_errors
def bench(
    artifact_dirs: Annotated[
        list[Path],
        typer.Argument(metavar="ARTIFACT_DIR...", help="Directories written by i2f-deploy export (several sizes or routings may be given).", show_default=False),
    ],
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="The checkpoint the artifacts were exported from (not needed for --random-weights exports).", show_default=False)
    ] = None,
    backends: Annotated[str, typer.Option(help="Comma-separated, from: torch,onnxruntime,openvino (torch also times its dense twin).")] = "torch,onnxruntime,openvino",
    threads: Annotated[str, typer.Option(help="Comma-separated thread counts, e.g. 1,2.")] = "2",
    scenarios: Annotated[str, typer.Option(help="Comma-separated, from: first-click,small,medium,large.")] = "first-click,small,medium,large",
    sizes: Annotated[str | None, typer.Option(help="Only the artifact directories of these target sizes, e.g. 1024,2048.")] = None,
    parts: Annotated[str, typer.Option(help="Comma-separated, from: encoder,decoder,clicks: the encoder per image, the decoder per click, the click as the user feels it (a session and over HTTP).")] = "encoder,decoder,clicks",
    repeat: Annotated[int, typer.Option(min=1, help="Timed runs per row.")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs before each row.")] = 2,
    settle_ms: Annotated[int, typer.Option(min=0, help="Untimed pause after each timed run, so the next contender does not share the cores with this one's spin-waiting threads.")] = 50,
    ort_spinning: Annotated[bool, typer.Option("--ort-spinning/--no-ort-spinning", help="ONNX Runtime intra-op spin-wait.")] = OrtOptions.model_fields["spinning"].default,
    openvino_hint: Annotated[Literal["latency", "throughput"], typer.Option(help="OpenVINO performance hint.")] = OpenVinoOptions.model_fields["performance_hint"].default,
    openvino_streams: Annotated[int | None, typer.Option(min=1, help="OpenVINO streams (default: from the hint).")] = OpenVinoOptions.model_fields["streams"].default,
    precision: Annotated[str, typer.Option(help="Comma-separated OpenVINO inference precisions, from: f32,bf16,default; each is a contender (non-f32 ones are named openvino-<precision>).")] = "f32",
    kernels: Annotated[
        str | None,
        typer.Option(help="Comma-separated, from: function-body,native: how the custom ops run on onnxruntime and openvino; each is a contender (native ones are named <row>-native). Default: both where the native kernels can run.", show_default=False),
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write every row and the speed-ups as JSON.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the rows as CSV.")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of decoder latency vs routed tokens.")] = None,
    profile_path: Annotated[
        Path | None, typer.Option("--profile", help="Also profile the encoder, the first click and a medium-object click per graph backend (time per operator type; of the parts and scenarios timed) into this JSON.")
    ] = None,
) -> None:
    """Time the encoder per image and the decoder per click on each backend, with eager PyTorch
    and dense routing as baselines in the same run."""
    from i2f_deploy.bench.cli_support import BenchRequest
    from i2f_deploy.bench.cli_support import run as run_bench
    from i2f_deploy.bench.runner import Settings

    settings = Settings(threads=0, repeat=repeat, warmup=warmup, settle_ms=settle_ms, ort=OrtOptions(spinning=ort_spinning),
                        openvino=OpenVinoOptions(performance_hint=openvino_hint, streams=openvino_streams))
    request = BenchRequest(artifact_dirs, checkpoint, backends, threads, scenarios, sizes, precision, settings,
                           kernels, json_path, csv_path, plot_path, profile_path, parts)
    run_bench(request, report_console())


@app.command("predict")
@one_line_errors
def predict(
    artifact_dir: ArtifactDirArgument,
    image: Annotated[Path, typer.Option("--image", help="Image file to segment.", show_default=False)],
    click: Annotated[
        list[str], typer.Option("--click", metavar="X,Y,positive|negative", help="X,Y,positive|negative in image pixels; repeat in click order.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Mask PNG to write (0/255, the image's size).", show_default=False)],
    overlay: Annotated[Path | None, typer.Option("--overlay", help="Also write the mask drawn over the image (PNG).")] = None,
    backend: Annotated[Backend, typer.Option(help="Inference backend.")] = "onnxruntime",
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: the backend's choice).")] = None,
) -> None:
    """Segment an image from clicks with the exported graphs (no torch needed)."""
    from i2f_deploy.outputs import check_output_dir
    from i2f_deploy.predict import predict as run_predict
    from i2f_deploy.prompt_map import Click

    for path, option in ((out, "--out"), (overlay, "--overlay")):
        if path is not None:
            check_output_dir(path.parent, option)
    clicks = [Click.parse(text) for text in click]
    result = run_predict(artifact_dir, image, clicks, out, overlay, backend, threads)
    typer.echo(f"wrote {out} ({int(result.mask.sum())} foreground pixels, {result.num_routed} tokens routed at the last click)")


@app.command("serve")
@one_line_errors
def serve(
    context: typer.Context,
    artifact_dir: ArtifactDirArgument,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default: only this machine can connect).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    ray_cluster: Annotated[bool, typer.Option("--ray", help="Serve as a Ray Serve application: engine replicas on a Ray cluster, each image's requests routed to the replica holding its features (needs the [ray] extra).")] = False,
    replicas: Annotated[int | None, typer.Option(min=1, help="With --ray: engine replicas (each loads the graphs once and keeps its own feature cache of --cache-mb) [default: 1].", show_default=False)] = None,
    address: Annotated[str | None, typer.Option(help="With --ray: the Ray cluster to join (e.g. auto, or HEAD_IP:6379); default: start a local one.", show_default=False)] = None,
    backend: Annotated[Backend, typer.Option(help="Inference backend.")] = serve_default("backend"),
    threads: Annotated[int | None, typer.Option(help="Threads per graph run (default: the backend's choice).")] = serve_default("threads"),
    cache_mb: Annotated[int, typer.Option(help="Feature cache size in MiB (encoder outputs of recent images, least recently used dropped).")] = serve_default("cache_mb"),
    max_upload_mb: Annotated[int, typer.Option(help="Largest request body in MiB (uploads, base64 images); larger ones get 413.")] = serve_default("max_upload_mb"),
    max_pixels: Annotated[int, typer.Option(help="Largest image in pixels (width x height); larger ones get 413.")] = serve_default("max_pixels"),
    graph_runs: Annotated[int, typer.Option(help="Graph runs at once; encodings may use all but one, clicks go first.")] = serve_default("graph_runs"),
    encoder_queue: Annotated[int, typer.Option(help="Images waiting for the encoder; more get 503.")] = serve_default("encoder_queue"),
    max_sessions: Annotated[int, typer.Option(help="Interactive sessions kept (least recently used dropped first).")] = serve_default("max_sessions"),
    max_clicks: Annotated[int, typer.Option(help="Clicks per session or request; more get 422.")] = serve_default("max_clicks"),
    max_json_kb: Annotated[int, typer.Option(help="Largest body in KiB of requests without an image (sessions, clicks, /setup); larger ones get 413.")] = serve_default("max_json_kb"),
    fetch_timeout: Annotated[float, typer.Option(help="Seconds a task image URL may take, the whole transfer (headers and redirects included); slower ones get 424.")] = serve_default("fetch_timeout_s"),
    fetch_max_mb: Annotated[int, typer.Option(help="Largest task image fetched from a URL, in MiB; larger ones get 413.")] = serve_default("fetch_max_mb"),
    fetch_workers: Annotated[int, typer.Option(help="Label Studio /predict calls at once (each fetches its task image), on threads of their own; one that waits --fetch-timeout for a slot gets 503.")] = serve_default("fetch_workers"),
    image_memory_mb: Annotated[int, typer.Option(help="Memory in MiB for decoding images and computing masks at once (estimated from each image's size before the work); beyond it 503.")] = serve_default("image_memory_mb"),
    header_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send a request's headers; slower connections are closed.")] = serve_default("header_timeout_s"),
    body_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send a request's body after its headers; slower ones are answered 408 and closed.")] = serve_default("body_timeout_s"),
    label_studio_url: Annotated[str | None, typer.Option(help="Label Studio's address (or LABEL_STUDIO_URL, LABEL_STUDIO_HOST): relative task image URLs are resolved against it, and absolute ones under it are fetched.", show_default=False)] = None,
    label_studio_api_key: Annotated[str | None, typer.Option(help="Label Studio API token (or LABEL_STUDIO_API_KEY, LABEL_STUDIO_ACCESS_TOKEN) sent with fetches from its address only.", show_default=False)] = None,
    allow_url_prefix: Annotated[str | None, typer.Option("--allow-url-prefix", metavar="URL,...", help="Also fetch task images under these http(s) URL prefixes (comma list); any other URL gets 403.", show_default=False)] = None,
    token: Annotated[str | None, typer.Option(help="Require this token on every request but /health and the page (Authorization: Bearer TOKEN or a Token header); prefer the environment variable I2F_SERVE_TOKEN to keep it out of process listings.", show_default=False)] = None,
    basic_auth_user: Annotated[str | None, typer.Option(help="Also accept HTTP basic auth with this user (or BASIC_AUTH_USER; Label Studio's model connection sends it).", show_default=False)] = None,
    basic_auth_pass: Annotated[str | None, typer.Option(help="The password for --basic-auth-user (or BASIC_AUTH_PASS).", show_default=False)] = None,
    cors_origin: Annotated[str | None, typer.Option("--cors-origin", metavar="ORIGIN,...", help="Let web pages from these origins call the API (comma list); none by default.", show_default=False)] = None,
    allowed_host: Annotated[str | None, typer.Option("--allowed-host", metavar="HOST,...", help="Answer requests for these host names only (comma list; '*' for any); default: localhost and 127.0.0.1 when listening on loopback, any otherwise.", show_default=False)] = None,
) -> None:
    """Serve click-to-segment over HTTP: the native API and web page, and the Label Studio,
    X-AnyLabeling and CVAT adapters (no torch needed).

    Every setting but --host, --port, --ray, --replicas and --address can also come from an
    environment variable: I2F_ and its name (I2F_CACHE_MB, I2F_FETCH_TIMEOUT_S; lists as JSON).
    An option given wins over the variable."""
    from i2f_deploy.serve.config import serve_config
    from i2f_deploy.serve.server import allowed_hosts, run

    settings: dict[str, object] = {"artifact_dir": artifact_dir}
    for option, value in context.params.items():  # options given, so that the environment fills the rest
        if option in SERVE_SETTINGS and _given(context, option):
            settings[SERVE_SETTINGS[option]] = (tuple(comma_list(value, "--" + option.replace("_", "-")))
                                                if option in SERVE_LIST_OPTIONS else value)
    config = serve_config(**settings)
    if "allowed_hosts" not in config.model_fields_set:  # neither --allowed-host nor I2F_ALLOWED_HOSTS
        config = config.model_copy(update={"allowed_hosts": allowed_hosts(host, None)})
    if not ray_cluster:
        if replicas is not None or address is not None:
            raise I2FError("--replicas and --address need --ray")
        run(config, host, port)
        return
    from i2f_deploy.serve import ray_app

    ray_app.run(config, host, port, replicas or 1, address)


@app.command("loadtest")
@one_line_errors
def loadtest(
    artifact_dir: ArtifactDirArgument,
    users: Annotated[int, typer.Option(help="Simulated people clicking at once.")] = loadtest_default("users"),
    images: Annotated[int, typer.Option(help="Images each user posts (the same ones for every user, unless --own-images).")] = loadtest_default("images"),
    clicks: Annotated[int, typer.Option(help="Clicks per user on each image (then one undo and one redo).")] = loadtest_default("clicks"),
    backend: Annotated[Backend, typer.Option(help="Inference backend of the server.")] = loadtest_default("backend"),
    threads: Annotated[int | None, typer.Option(help="Threads per graph run (default: the server's).", show_default=False)] = loadtest_default("threads"),
    graph_runs: Annotated[int | None, typer.Option(help="Graph runs at once per server or replica (default: the server's).", show_default=False)] = loadtest_default("graph_runs"),
    cache_mb: Annotated[int, typer.Option(help="The server's feature cache in MiB: the memory budget the run is checked against.")] = loadtest_default("cache_mb"),
    slack_mb: Annotated[int, typer.Option(help="Memory growth in MiB allowed beyond --cache-mb (sessions, buffers).")] = loadtest_default("slack_mb"),
    max_seconds: Annotated[float, typer.Option(help="Stop clicking after this many seconds (the run then fails).")] = loadtest_default("max_seconds"),
    ray_replicas: Annotated[int, typer.Option("--ray", metavar="N", help="Serve with --ray --replicas N on a local Ray cluster (0: the single process; memory is then not measured).")] = loadtest_default("ray_replicas"),
    own_images: Annotated[bool, typer.Option("--own-images", help="Each user posts images of its own (default: all users post the same ones).")] = loadtest_default("own_images"),
    json_path: Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Also write the report here.", show_default=False)] = None,
    server_log: Annotated[Path | None, typer.Option(metavar="FILE", help="Write the server's output here.", show_default=False)] = None,
) -> None:
    """Load a server on 127.0.0.1 with simulated users clicking at once, and print a JSON report:
    click latency, errors, encoder runs and the server's memory against its cache budget. Exit
    status 1 if a request failed, an image was encoded twice or memory outgrew the budget."""
    import json

    from i2f_deploy.loadtest import load_test
    from i2f_deploy.loadtest import run as run_load
    from i2f_deploy.outputs import check_output_file

    check_output_file(json_path, "--json")
    check_output_file(server_log, "--server-log")
    test = load_test(artifact_dir=artifact_dir, users=users, images=images, clicks=clicks, backend=backend, threads=threads,
                     graph_runs=graph_runs, cache_mb=cache_mb, slack_mb=slack_mb, max_seconds=max_seconds,
                     ray_replicas=ray_replicas, own_images=own_images, server_log=server_log)
    report = run_load(test)
    text = json.dumps(report, indent=2)
    typer.echo(text)
    if json_path:
        json_path.write_text(text + "\n")
    if not report["ok"]:
        raise typer.Exit(1)


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
    main()
