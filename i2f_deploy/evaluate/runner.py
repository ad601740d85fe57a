"""``i2f-deploy evaluate``: the paper's benchmark on the deployed graphs, image by image.

Each image runs through every contender (the PyTorch reference, then each backend x precision),
each with its own official click loop; the image's record is written before the next one starts
(``results``), so an interrupted run continues with ``--resume``. With ``--jobs N`` images run
in N processes, each loading its own runners with the thread count split between them.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from i2f_deploy import runtime
from i2f_deploy.compare import mask_iou
from i2f_deploy.errors import I2FError, InputError
from i2f_deploy.evaluate.contenders import REFERENCE, GraphChoice, check_precisions, graph_choices, load_contenders
from i2f_deploy.evaluate.datasets import DatasetSpec, Entry, entries, load
from i2f_deploy.evaluate.report import build_summary, print_table, write_outputs
from i2f_deploy.evaluate.results import ResultStore
from i2f_deploy.options import comma_list
from i2f_deploy.runtime import BACKENDS
from i2f_deploy.validate.clicks import noc

__all__ = ["EvaluateRequest", "run_evaluation"]


@dataclass(frozen=True)
class EvaluateRequest:
    """``i2f-deploy evaluate`` as given on the command line (lists still comma-separated)."""

    artifact_dir: Path
    dataset: str
    out: Path
    checkpoint: Path | None = None
    backends: str = ",".join(BACKENDS)
    precision: str = "f32"
    reference: bool = True
    clicks: int = 20
    limit: int | None = None
    resume: bool = False
    jobs: int = 1
    threads: int | None = None
    seed: int | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class Setup:
    """What a process needs to build its contenders and evaluate images (picklable)."""

    artifact_dir: Path
    checkpoint: Path | None
    reference: bool
    choices: list[GraphChoice] = field(default_factory=list)
    threads: int | None = None
    clicks: int = 20
    seed: int | None = None


class ImageEvaluator:
    """One process's contenders; turns an entry into its record (a problem record for files
    that cannot be read: never an exception)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.contenders = load_contenders(setup.artifact_dir, setup.checkpoint, setup.reference, setup.choices, setup.threads)

    def __call__(self, entry: Entry) -> dict:
        try:
            sample = load(entry)
        except InputError as exc:
            return {"name": entry.name, "problem": str(exc)}
        runs = {c.name: c.run(sample.image, sample.mask, self.setup.clicks, self.setup.seed) for c in self.contenders}
        record: dict[str, Any] = {"name": entry.name, "height": int(sample.mask.shape[0]), "width": int(sample.mask.shape[1]),
                  "contenders": {name: run.record() for name, run in runs.items()}}
        reference = runs.get(REFERENCE)
        if reference is not None:
            for name, run in runs.items():
                if name != REFERENCE:
                    record["contenders"][name]["agreement"] = [
                        mask_iou(a, b) for a, b in zip(run.loop.predictions, reference.loop.predictions)]
        return record


_worker: ImageEvaluator | None = None


def _start_worker(setup: Setup) -> None:
    global _worker
    _worker = ImageEvaluator(setup)


def _evaluate_in_worker(entry: Entry) -> dict:
    assert _worker is not None
    return _worker(entry)


def _in_processes(setup: Setup, jobs: int, pending: list[Entry]) -> Iterator[dict]:
    """Records as images finish, at most two per process queued (the dataset is never held)."""
    context = multiprocessing.get_context("spawn")  # no fork of loaded runtimes' thread pools
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(setup,)) as pool:
        queue = iter(pending)
        running: set[Future] = set()
        try:
            while True:
                for entry in queue:
                    running.add(pool.submit(_evaluate_in_worker, entry))
                    if len(running) >= 2 * jobs:
                        break
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _tolerance_bars(choices: list[GraphChoice], tolerance: float | None) -> dict[str, float]:
    """validate's bars: f32 graphs' masks as the reference's, reduced-precision ones within the
    reduced gate; ``--tolerance`` sets one bar for all."""
    from i2f_deploy.validate.runner import Tolerances

    bars = Tolerances()
    return {c.name: tolerance if tolerance is not None else (bars.reduced_mask_iou if c.reduced else bars.edge_maps_mask_iou)
            for c in choices}


def _check(request: EvaluateRequest) -> None:
    if request.clicks < 1:
        raise I2FError(f"--clicks must be at least 1, got {request.clicks}")
    if request.limit is not None and request.limit < 1:
        raise I2FError(f"--limit must be at least 1, got {request.limit}")
    if request.tolerance is not None and not 0 < request.tolerance <= 1:
        raise I2FError(f"--tolerance is a mask IoU in (0, 1], got {request.tolerance}")
    cpus = runtime.available_cpus()
    if not 1 <= request.jobs <= cpus:
        raise I2FError(f"--jobs must be from 1 to {cpus} (the CPUs available), got {request.jobs}")
    runtime.check_threads(request.threads, "--threads")
    if request.threads is not None and request.threads < request.jobs:
        raise I2FError(f"--threads {request.threads} is fewer than --jobs {request.jobs}: each job needs one")


def _eta(start: float, done: int, total: int) -> str:
    if not done:
        return ""
    remaining = (time.perf_counter() - start) / done * (total - done)
    return f", about {time.strftime('%H:%M:%S', time.gmtime(remaining))} left"


def _describe(record: dict, clicks: int) -> str:
    if "problem" in record:
        return f"[yellow]skipped[/yellow]: {record['problem']}"
    return "NoC@90 " + ", ".join(f"{name} {noc(run['ious'], (0.9,), clicks)[0.9]}"
                                 for name, run in record["contenders"].items())


def run_evaluation(request: EvaluateRequest, console: Console) -> dict:
    """Evaluate, write OUT's files and print the table; returns the summary."""
    _check(request)
    import matplotlib  # noqa: F401  (the plot comes last: a missing library is refused now, not after hours)

    spec = DatasetSpec.parse(request.dataset)
    backends = comma_list(request.backends, "--backends", BACKENDS)
    precisions = comma_list(request.precision, "--precision")
    check_precisions(precisions)
    manifest = runtime.read_manifest(request.artifact_dir)
    choices = graph_choices(manifest, backends, precisions)
    reference = request.reference and _torch_available()
    if request.reference and not reference:
        console.print("no PyTorch reference: torch is not installed (pip install 'i2f-deploy[export]'); "
                      "graph contenders only, no mask comparison (--no-reference silences this)", highlight=False)
    if reference:
        from i2f_deploy.reference import check_weights

        try:
            check_weights(request.artifact_dir, manifest, request.checkpoint)
        except I2FError as exc:
            raise I2FError(f"{exc} (the PyTorch reference needs the weights; --no-reference runs without it)") from None
    elif request.tolerance is not None:
        raise I2FError("--tolerance judges masks against the PyTorch reference, which this run does not have")
    manifest.verify(request.artifact_dir)  # once here; the processes load without hashing again
    names = ([REFERENCE] if reference else []) + [c.name for c in choices]
    header = {"artifact_dir": str(request.artifact_dir.resolve()), "target_size": manifest.target_size,
              "export_precision": manifest.precision.choice, "dataset": f"{spec.kind}:{spec.path.resolve()}",
              "clicks": request.clicks, "seed": request.seed, "contenders": names}
    store = ResultStore(request.out, header, request.resume)
    selected = list(entries(spec))[:request.limit]
    if not selected:
        raise I2FError(f"--dataset {spec}: no images listed")
    pending = [e for e in selected if e.name not in store.done]
    threads = (request.threads or runtime.available_cpus()) // request.jobs
    setup = Setup(request.artifact_dir, request.checkpoint, reference, choices, threads, request.clicks, request.seed)
    console.print(f"{len(selected)} image(s) in {spec}, {len(selected) - len(pending)} done before; contenders "
                  f"{', '.join(names)}; {request.jobs} job(s) x {threads} thread(s)", highlight=False, soft_wrap=True)
    if pending:
        records = _in_processes(setup, request.jobs, pending) if request.jobs > 1 else map(ImageEvaluator(setup), pending)
        start = time.perf_counter()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("evaluate", total=len(pending))
            for done, record in enumerate(records, 1):
                store.add(record)
                progress.advance(task)
                progress.console.print(f"[{done}/{len(pending)}{_eta(start, done, len(pending))}] {record['name']}: "
                                       f"{_describe(record, request.clicks)}", highlight=False, soft_wrap=True)
    finished = [store.done[e.name] for e in selected if e.name in store.done]
    bars = _tolerance_bars(choices, request.tolerance) if reference else {}
    result = build_summary({**header, "jobs": request.jobs, "threads_per_job": threads}, finished, bars)
    print_table(result, console)
    for path in write_outputs(request.out, result, finished):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return result
